// The addon's Model class: BackendModel of lib/backend/types.ts, method for method, over the
// core model. Thin: check what crosses, call the core, translate exceptions.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>

#include "addon/predictor_handle.h"
#include "core/model.h"

namespace mlpkit::addon {

class ModelWrap final : public Napi::ObjectWrap<ModelWrap> {
 public:
  // The class for one environment; the addon keeps it in its instance data.
  static Napi::Function DefineClass(Napi::Env env);

  // new Model(config: ModelConfig, params: Float32Array)
  explicit ModelWrap(const Napi::CallbackInfo& info);
  ~ModelWrap() override;

  // The core model, shared (the native socket path serves it), or a TypeError once disposed.
  std::shared_ptr<Model> Core(Napi::Env env, const char* what) const { return handle_.Live(env, what); }

 private:
  Napi::Value Predict(const Napi::CallbackInfo& info) { return handle_.Predict(info); }
  // predict as an own function of each instance with the instance as its data: calling it skips
  // the napi_unwrap of a prototype method (a private-symbol property lookup, ~40 ns, a tenth of
  // a batch-1 predict of a small MLP).
  static Napi::Value PredictBound(const Napi::CallbackInfo& info);
  Napi::Value PredictAsync(const Napi::CallbackInfo& info);
  Napi::Value GetParams(const Napi::CallbackInfo& info);
  Napi::Value SetParams(const Napi::CallbackInfo& info);
  Napi::Value GetGrads(const Napi::CallbackInfo& info);
  Napi::Value SetGrads(const Napi::CallbackInfo& info);
  Napi::Value LossGrad(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value OptimizerStep(const Napi::CallbackInfo& info);
  Napi::Value ResetOptimizer(const Napi::CallbackInfo& info);
  Napi::Value TrainStep(const Napi::CallbackInfo& info);
  Napi::Value TrainStepAsync(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  // The core model, or a TypeError "<what>: Model has been disposed".
  const std::shared_ptr<Model>& Live(Napi::Env env, const char* what) const { return handle_.Live(env, what); }

  PredictorHandle<Model> handle_;
  // Kept after dispose().
  std::size_t param_count_ = 0;
  std::size_t inputs_ = 0;
  std::size_t outputs_ = 0;
};

}  // namespace mlpkit::addon

// The CUDA addon's Model class: BackendModel of lib/backend/types.ts over cuda::CudaModel, with
// the CPU addon's argument checks (checks.h, model_args.h) and async jobs (async_work.h).
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>

#include "addon/predictor_handle.h"
#include "core/cuda/cuda_model.h"

namespace mlpkit::addon {

class CudaModelWrap final : public Napi::ObjectWrap<CudaModelWrap> {
 public:
  static Napi::Function DefineClass(Napi::Env env);

  // new Model(config: ModelConfig, params: Float32Array, precision: 0 fp32 | 1 fp16 | 2 bf16, device: number)
  explicit CudaModelWrap(const Napi::CallbackInfo& info);
  ~CudaModelWrap() override;

 private:
  Napi::Value Predict(const Napi::CallbackInfo& info) { return handle_.Predict(info); }
  Napi::Value PredictAsync(const Napi::CallbackInfo& info) { return handle_.PredictAsync(info, "mlpkit:cuda:predictAsync"); }
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

  const std::shared_ptr<cuda::CudaModel>& Live(Napi::Env env, const char* what) const { return handle_.Live(env, what); }

  PredictorHandle<cuda::CudaModel> handle_;
  std::size_t param_count_ = 0;
  std::size_t inputs_ = 0;
  std::size_t outputs_ = 0;
  const char* precision_ = "";
  const char* kernel_ = "";
};

}  // namespace mlpkit::addon

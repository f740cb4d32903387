// The addon's QuantModel class: BackendQuantModel of lib/backend/types.ts over the core's
// quantised model. Thin: check what crosses (the layer arrays against the format of
// lib/quant/format.ts), call the core, translate exceptions.
#pragma once

#include <napi.h>

#include <memory>

#include "addon/predictor_handle.h"
#include "core/quant/qmodel.h"

namespace mlpkit::addon {

class QuantModelWrap final : public Napi::ObjectWrap<QuantModelWrap> {
 public:
  static Napi::Function DefineClass(Napi::Env env);

  // new QuantModel(config: QuantModelConfig, layers: QuantLayer[])
  explicit QuantModelWrap(const Napi::CallbackInfo& info);
  ~QuantModelWrap() override;

 private:
  Napi::Value Predict(const Napi::CallbackInfo& info) { return handle_.Predict(info); }
  Napi::Value PredictAsync(const Napi::CallbackInfo& info) { return handle_.PredictAsync(info, "mlpkit:quantPredictAsync"); }
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  PredictorHandle<quant::QuantModel> handle_;
};

// quantMatmul(config, layers, x, batch, out): the model of new QuantModel(config, layers) made,
// run once into out and freed within the call (lib/quant/qmatmul.ts). No JS object per call,
// so a loop of calls that never yields to the event loop leaves nothing for finalizers.
Napi::Value QuantMatmul(const Napi::CallbackInfo& info);

}  // namespace mlpkit::addon

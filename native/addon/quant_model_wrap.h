// The addon's QuantModel class: BackendQuantModel of lib/backend/types.ts over the core's
// quantised model. Thin: check what crosses (the layer arrays against the format of
// lib/quant/format.ts), call the core, translate exceptions.
#pragma once

#include <napi.h>

#include <memory>

#include "core/quant/qmodel.h"

namespace mlpkit::addon {

class QuantModelWrap final : public Napi::ObjectWrap<QuantModelWrap> {
 public:
  static Napi::Function DefineClass(Napi::Env env);

  // new QuantModel(config: QuantModelConfig, layers: QuantLayer[])
  explicit QuantModelWrap(const Napi::CallbackInfo& info);
  ~QuantModelWrap() override;

 private:
  Napi::Value Predict(const Napi::CallbackInfo& info);
  Napi::Value PredictAsync(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  const std::shared_ptr<quant::QuantModel>& Live(Napi::Env env, const char* what) const;
  void Release();

  std::shared_ptr<quant::QuantModel> model_;
  std::size_t inputs_ = 0, outputs_ = 0;
  std::int64_t external_bytes_ = 0;
};

}  // namespace mlpkit::addon

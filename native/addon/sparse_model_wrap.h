// The addon's SparseModel class: BackendSparseModel of lib/backend/types.ts over the core's
// sparse-activation model. Thin: check what crosses (the layer arrays and sparsity settings),
// call the core, translate exceptions.
#pragma once

#include <napi.h>

#include <memory>

#include "addon/predictor_handle.h"
#include "core/sparse/sparse_model.h"

namespace mlpkit::addon {

class SparseModelWrap final : public Napi::ObjectWrap<SparseModelWrap> {
 public:
  static Napi::Function DefineClass(Napi::Env env);

  // new SparseModel(config: SparseModelConfig, layers: SparseLayer[])
  explicit SparseModelWrap(const Napi::CallbackInfo& info);
  ~SparseModelWrap() override;

 private:
  Napi::Value Predict(const Napi::CallbackInfo& info) { return handle_.Predict(info); }
  Napi::Value PredictAsync(const Napi::CallbackInfo& info) { return handle_.PredictAsync(info, "mlpkit:sparsePredictAsync"); }
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  PredictorHandle<sparse::SparseModel> handle_;
};

}  // namespace mlpkit::addon

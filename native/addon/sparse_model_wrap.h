// The addon's SparseModel class: BackendSparseModel of lib/backend/types.ts over the core's
// sparse-activation model. Thin: check what crosses (the layer arrays and sparsity settings),
// call the core, translate exceptions.
#pragma once

#include <napi.h>

#include <memory>

#include "core/sparse/sparse_model.h"

namespace mlpkit::addon {

class SparseModelWrap final : public Napi::ObjectWrap<SparseModelWrap> {
 public:
  static Napi::Function DefineClass(Napi::Env env);

  // new SparseModel(config: SparseModelConfig, layers: SparseLayer[])
  explicit SparseModelWrap(const Napi::CallbackInfo& info);
  ~SparseModelWrap() override;

 private:
  Napi::Value Predict(const Napi::CallbackInfo& info);
  Napi::Value PredictAsync(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  const std::shared_ptr<sparse::SparseModel>& Live(Napi::Env env, const char* what) const;
  void Release();

  std::shared_ptr<sparse::SparseModel> model_;
  std::size_t inputs_ = 0, outputs_ = 0;
  std::int64_t external_bytes_ = 0;
};

}  // namespace mlpkit::addon

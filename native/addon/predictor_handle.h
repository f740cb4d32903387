// What every model class of the addon (Model, QuantModel, SparseModel, the CUDA addon's Model)
// shares: the core model it owns, its size reported to V8 as external memory (so the GC feels
// its weight), the disposed check, and predict / predictAsync with one set of argument checks.
// Each class keeps only what is its own: reading its layers, training.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "addon/async_work.h"
#include "addon/checks.h"
#include "addon/errors.h"

namespace mlpkit::addon {

template <class CoreModel>
class PredictorHandle {
 public:
  // Takes the model built by the class's constructor; `bytes` count as external memory.
  void Adopt(Napi::Env env, std::shared_ptr<CoreModel> model, std::size_t bytes) {
    model_ = std::move(model);
    inputs_ = model_->inputs();
    outputs_ = model_->outputs();
    external_bytes_ = static_cast<std::int64_t>(bytes);
    std::int64_t total = 0;
    napi_adjust_external_memory(env, external_bytes_, &total);
  }

  // Drops the model (async work still running keeps its own reference); idempotent. A plain
  // napi call, status ignored: this also runs from finalizers during environment teardown,
  // where a throwing wrapper would escape a destructor.
  void Release(Napi::Env env) {
    model_.reset();
    if (external_bytes_ != 0) {
      std::int64_t total = 0;
      napi_adjust_external_memory(env, -external_bytes_, &total);
      external_bytes_ = 0;
    }
  }

  const std::shared_ptr<CoreModel>& Live(Napi::Env env, const char* what) const {
    if (!model_) throw DisposedError(env, what);
    return model_;
  }

  Napi::Value Predict(const Napi::CallbackInfo& info) {
    constexpr const char* what = "predict";
    Napi::Env env = info.Env();
    return Guard(env, what, [&]() -> Napi::Value {
      const auto& model = Live(env, what);
      const PredictArgs a = ReadPredictArgs(info, inputs_, outputs_, what);
      PredictInto(*model, a);
      return env.Undefined();
    });
  }

  // resource: the async resource name async_hooks report for the job.
  Napi::Value PredictAsync(const Napi::CallbackInfo& info, const char* resource) {
    constexpr const char* what = "predictAsync";
    Napi::Env env = info.Env();
    return GuardAsync(env, what, [&]() -> Napi::Value {
      const auto& model = Live(env, what);
      const PredictArgs a = ReadPredictArgs(info, inputs_, outputs_, what);
      return Job::Queue(env, std::make_unique<PredictJob>(model, a.x, a.batch, a.out, what), resource);
    });
  }

 private:
  std::shared_ptr<CoreModel> model_;
  std::size_t inputs_ = 0, outputs_ = 0;
  std::int64_t external_bytes_ = 0;
};

}  // namespace mlpkit::addon

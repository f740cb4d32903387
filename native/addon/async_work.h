// predictAsync / trainStepAsync: the work runs on the libuv thread pool and settles a Promise.
//
// Lifetime: each job holds its own shared_ptr to the core model, so dispose() while it runs
// only drops the wrapper's reference, and an ObjectReference to every TypedArray it reads or
// writes, so none can be collected before the promise settles. The arrays' lengths are checked
// on the JS thread right before queueing; the caller must not detach them meanwhile.
//
// Built on the plain napi_async_work API rather than Napi::AsyncWorker: when a worker_thread is
// terminated with work in flight, Node still completes the work during environment teardown,
// where no JS can run. Napi::AsyncWorker turns the failing resolve into a C++ exception there,
// which escapes the callback and aborts the process; here those failures are ignored instead.
#pragma once

#include <napi.h>

#include <memory>
#include <utility>

#include "addon/checks.h"
#include "addon/errors.h"
#include "core/model.h"

namespace mlpkit::addon {

class Job {
 public:
  virtual ~Job() = default;

  // Queues the job on the thread pool and returns its promise; the job then owns itself.
  static Napi::Value Queue(Napi::Env env, std::unique_ptr<Job> job, const char* name);

 protected:
  // Runs on a pool thread: no JS, no napi calls.
  virtual void Run() = 0;
  // Runs on the JS thread when Run succeeded; nullptr when no value could be made.
  virtual napi_value Result(napi_env env) = 0;

  CapturedError error_;
  bool failed_ = false;

 private:
  static void Execute(napi_env env, void* data);
  static void Complete(napi_env env, napi_status status, void* data);

  napi_async_work work_ = nullptr;
  napi_deferred deferred_ = nullptr;
};

class PredictJob final : public Job {
 public:
  // out = predict(x), resolving to undefined.
  PredictJob(std::shared_ptr<const Predictor> model, const ArrayArg<float>& x, std::size_t batch,
             const ArrayArg<float>& out);

 private:
  void Run() override;
  napi_value Result(napi_env env) override;

  std::shared_ptr<const Predictor> model_;
  Napi::ObjectReference x_ref_;
  Napi::ObjectReference out_ref_;
  const float* x_;
  float* out_;
  std::size_t batch_;
};

// Everything trainStep takes besides the model.
struct TrainArgs {
  ArrayArg<float> x;
  std::size_t batch = 0;
  Loss loss = Loss::Mse;
  double loss_param = 0;
  napi_value target = nullptr;  // Float32Array, or Int32Array of labels
  std::size_t target_length = 0;
  LossTarget target_data;
  Optimizer optimizer = Optimizer::Sgd;
  Hyper hyper;
  double clip_norm = 0;
};

// One train step on model type M (the CPU Model, or the CUDA addon's CudaModel: anything with
// inputs(), outputs() and train_step() as in core/model.h), resolving to the loss.
template <class M>
class TrainJobT final : public Job {
 public:
  TrainJobT(std::shared_ptr<M> model, const TrainArgs& a)
      : model_(std::move(model)),
        x_ref_(Napi::Persistent(a.x.Object())),
        target_ref_(Napi::Persistent(Napi::Object(a.x.env, a.target))),
        x_(a.x.Data()),
        batch_(a.batch),
        loss_(a.loss),
        loss_param_(a.loss_param),
        target_(a.target_data),
        optimizer_(a.optimizer),
        hyper_(a.hyper),
        clip_norm_(a.clip_norm) {
    const std::size_t want = loss_uses_labels(a.loss) ? a.batch : a.batch * model_->outputs();
    if (a.x.ElementLength() != a.batch * model_->inputs() || a.target_length != want) {
      throw RangeError(Napi::Env(a.x.env), "trainStepAsync: x or target does not match batch");
    }
  }

 private:
  void Run() override {
    try {
      result_ = model_->train_step(x_, batch_, loss_, loss_param_, target_, optimizer_, hyper_, clip_norm_);
    } catch (...) {
      error_ = CaptureCurrentException("trainStepAsync");
      failed_ = true;
    }
  }

  napi_value Result(napi_env env) override {
    napi_value number = nullptr;
    return napi_create_double(env, result_, &number) == napi_ok ? number : nullptr;
  }

  std::shared_ptr<M> model_;
  Napi::ObjectReference x_ref_;
  Napi::ObjectReference target_ref_;
  const float* x_;
  std::size_t batch_;
  Loss loss_;
  double loss_param_;
  LossTarget target_;
  Optimizer optimizer_;
  Hyper hyper_;
  double clip_norm_;
  double result_ = 0;
};

using TrainJob = TrainJobT<Model>;

}  // namespace mlpkit::addon

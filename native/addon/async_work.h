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

class TrainJob final : public Job {
 public:
  // One train step, resolving to the loss.
  TrainJob(std::shared_ptr<Model> model, const TrainArgs& args);

 private:
  void Run() override;
  napi_value Result(napi_env env) override;

  std::shared_ptr<Model> model_;
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

}  // namespace mlpkit::addon

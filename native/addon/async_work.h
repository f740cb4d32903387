// predictAsync / trainStepAsync: the work runs on the libuv thread pool and settles a Promise.
//
// Memory: a job never touches JS memory off the JS thread. It copies its inputs (x, the target)
// when the call is made and computes into its own output buffer, which is copied into the
// caller's `out` on the JS thread when the work is done, after checking that `out` is still a
// Float32Array of the right length. JS may meanwhile detach, transfer, resize or collect any
// array it passed (or write to it from another thread through a SharedArrayBuffer): the call
// then rejects with a RangeError, or computes from the values it was given, and never reads or
// writes memory it does not own. The copies cost a memcpy of x and out, small beside the
// multiply-adds of any call worth running off the event loop.
//
// Lifetime and order: each job holds its own shared_ptr to the core model, so dispose() while it
// runs only drops the wrapper's reference, and the ticket it took when the call was made (core/
// sequencer.h), so it runs in call order with the model's other calls.
//
// Built on the plain napi_async_work API rather than Napi::AsyncWorker: when a worker_thread is
// terminated with work in flight, Node still completes the work during environment teardown,
// where no JS can run. Napi::AsyncWorker turns the failing resolve into a C++ exception there,
// which escapes the callback and aborts the process; here those failures are ignored instead.
#pragma once

#include <napi.h>

#include <memory>
#include <utility>
#include <vector>

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
  // Runs on the JS thread when Run succeeded: the value to resolve with, or nullptr with
  // error_ set (failed_ true) to reject, or nullptr alone when no value could be made.
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
  // out = predict(x), resolving to undefined. Copies x now; fills out when done.
  PredictJob(std::shared_ptr<const Predictor> model, const ArrayArg<float>& x, std::size_t batch,
             const ArrayArg<float>& out, const char* what);

 private:
  void Run() override;
  napi_value Result(napi_env env) override;

  std::shared_ptr<const Predictor> model_;
  Sequencer::Ticket turn_;  // after model_: released before the model it belongs to
  Napi::ObjectReference out_ref_;
  std::vector<float> x_;
  std::vector<float> y_;
  std::size_t batch_;
  const char* what_;
};

// Everything trainStep takes besides the model.
struct TrainArgs {
  ArrayArg<float> x;
  std::size_t batch = 0;
  Loss loss = Loss::Mse;
  double loss_param = 0;
  std::size_t target_length = 0;
  LossTarget target_data;
  Optimizer optimizer = Optimizer::Sgd;
  Hyper hyper;
  double clip_norm = 0;
};

// One train step on model type M (the CUDA addon's CudaModel: anything with inputs(), outputs()
// and train_step() as in core/model.h), resolving to the loss. Copies x and the target now, as
// TrainJob does: the caller may overwrite, shrink or transfer (detach) them while the step runs.
template <class M>
class TrainJobT final : public Job {
 public:
  TrainJobT(std::shared_ptr<M> model, const TrainArgs& a)
      : model_(std::move(model)),
        batch_(a.batch),
        loss_(a.loss),
        loss_param_(a.loss_param),
        optimizer_(a.optimizer),
        hyper_(a.hyper),
        clip_norm_(a.clip_norm) {
    const std::size_t want = loss_uses_labels(a.loss) ? a.batch : a.batch * model_->outputs();
    if (a.x.ElementLength() != a.batch * model_->inputs() || a.target_length != want) {
      throw RangeError(Napi::Env(a.x.env), "trainStepAsync: x or target does not match batch");
    }
    x_.assign(a.x.Data(), a.x.Data() + a.x.ElementLength());
    if (a.target_data.labels) {
      target_labels_.assign(a.target_data.labels, a.target_data.labels + a.target_length);
    } else {
      target_values_.assign(a.target_data.values, a.target_data.values + a.target_length);
    }
  }

 private:
  void Run() override {
    try {
      const LossTarget target = loss_uses_labels(loss_) ? LossTarget{nullptr, target_labels_.data()}
                                                        : LossTarget{target_values_.data(), nullptr};
      result_ = model_->train_step(x_.data(), batch_, loss_, loss_param_, target, optimizer_, hyper_, clip_norm_);
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
  std::vector<float> x_;
  std::vector<float> target_values_;
  std::vector<std::int32_t> target_labels_;
  std::size_t batch_;
  Loss loss_;
  double loss_param_;
  Optimizer optimizer_;
  Hyper hyper_;
  double clip_norm_;
  double result_ = 0;
};

// The CPU Model's train step: copies x and the target now, and takes its place in the model's
// order of calls (core/sequencer.h) when queued.
class TrainJob final : public Job {
 public:
  TrainJob(std::shared_ptr<Model> model, const TrainArgs& args);

 private:
  void Run() override;
  napi_value Result(napi_env env) override;

  std::shared_ptr<Model> model_;
  Sequencer::Ticket turn_;
  std::vector<float> x_;
  std::vector<float> target_values_;
  std::vector<std::int32_t> target_labels_;
  std::size_t batch_;
  Loss loss_;
  double loss_param_;
  Optimizer optimizer_;
  Hyper hyper_;
  double clip_norm_;
  double result_ = 0;
};

}  // namespace mlpkit::addon

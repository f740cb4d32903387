#include "addon/async_work.h"

#include <string>
#include <utility>

namespace mlpkit::addon {
namespace {

// The rejection value, made with plain napi calls whose failures are ignored (see Complete).
napi_value MakeError(napi_env env, const CapturedError& error) {
  napi_value message = nullptr, value = nullptr, code = nullptr;
  if (napi_create_string_utf8(env, error.message.data(), error.message.size(), &message) != napi_ok) return nullptr;
  napi_status status;
  const char* code_text = nullptr;
  switch (error.kind) {
    case CapturedError::Kind::Type:
      status = napi_create_type_error(env, nullptr, message, &value);
      code_text = kErrInvalidArgType;
      break;
    case CapturedError::Kind::Range:
      status = napi_create_range_error(env, nullptr, message, &value);
      code_text = kErrOutOfRange;
      break;
    case CapturedError::Kind::OutOfMemory:
      status = napi_create_range_error(env, nullptr, message, &value);
      code_text = kErrOutOfMemory;
      break;
    default:
      status = napi_create_error(env, nullptr, message, &value);
      break;
  }
  if (status != napi_ok) return nullptr;
  if (code_text && napi_create_string_utf8(env, code_text, NAPI_AUTO_LENGTH, &code) == napi_ok) {
    napi_set_named_property(env, value, "code", code);
  }
  return value;
}

}  // namespace

Napi::Value Job::Queue(Napi::Env env, std::unique_ptr<Job> job, const char* name) {
  napi_value promise = nullptr, resource_name = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &job->deferred_, &promise), Napi::Value());
  NAPI_THROW_IF_FAILED(env, napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name), Napi::Value());
  NAPI_THROW_IF_FAILED(
      env, napi_create_async_work(env, nullptr, resource_name, &Job::Execute, &Job::Complete, job.get(), &job->work_),
      Napi::Value());
  const napi_status queued = napi_queue_async_work(env, job->work_);
  if (queued != napi_ok) {
    napi_delete_async_work(env, job->work_);
    // The promise is dropped unsettled; the caller gets the exception instead.
    NAPI_THROW_IF_FAILED(env, queued, Napi::Value());
  }
  (void)job.release();  // Complete() deletes it
  return Napi::Value(env, promise);
}

void Job::Execute(napi_env, void* data) {
  Job* job = static_cast<Job*>(data);
  try {
    job->Run();
  } catch (...) {
    job->error_ = CaptureCurrentException("async work");
    job->failed_ = true;
  }
}

void Job::Complete(napi_env env, napi_status status, void* data) {
  std::unique_ptr<Job> job(static_cast<Job*>(data));
  // During environment teardown (a worker_thread terminated mid-flight) these calls fail; the
  // promise can no longer be observed then, so failures are ignored rather than thrown.
  napi_handle_scope scope = nullptr;
  const bool scoped = napi_open_handle_scope(env, &scope) == napi_ok;
  if (status == napi_cancelled && !job->failed_) {
    job->failed_ = true;
    job->error_ = {CapturedError::Kind::Other, "the work was cancelled"};
  }
  if (job->failed_) {
    if (napi_value error = MakeError(env, job->error_)) napi_reject_deferred(env, job->deferred_, error);
  } else if (napi_value value = job->Result(env)) {
    napi_resolve_deferred(env, job->deferred_, value);
  }
  if (scoped) napi_close_handle_scope(env, scope);
  napi_delete_async_work(env, job->work_);
}

// ---- predictAsync -------------------------------------------------------------------------

PredictJob::PredictJob(std::shared_ptr<const Predictor> model, const ArrayArg<float>& x, std::size_t batch,
                       const ArrayArg<float>& out)
    : model_(std::move(model)),
      x_ref_(Napi::Persistent(x.Object())),
      out_ref_(Napi::Persistent(out.Object())),
      x_(x.Data()),
      out_(out.Data()),
      batch_(batch) {
  // Re-checked here, with the references held, right before the pointers go to another thread:
  // these are the lengths the work relies on.
  if (x.ElementLength() != batch * model_->inputs() || out.ElementLength() != batch * model_->outputs()) {
    throw RangeError(Napi::Env(x.env), "predictAsync: x or out does not match batch");
  }
}

void PredictJob::Run() {
  try {
    model_->predict(x_, batch_, out_);
  } catch (...) {
    error_ = CaptureCurrentException("predictAsync");
    failed_ = true;
  }
}

napi_value PredictJob::Result(napi_env env) {
  napi_value undefined = nullptr;
  return napi_get_undefined(env, &undefined) == napi_ok ? undefined : nullptr;
}

// ---- trainStepAsync -----------------------------------------------------------------------

TrainJob::TrainJob(std::shared_ptr<Model> model, const TrainArgs& a)
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

void TrainJob::Run() {
  try {
    result_ = model_->train_step(x_, batch_, loss_, loss_param_, target_, optimizer_, hyper_, clip_norm_);
  } catch (...) {
    error_ = CaptureCurrentException("trainStepAsync");
    failed_ = true;
  }
}

napi_value TrainJob::Result(napi_env env) {
  napi_value number = nullptr;
  return napi_create_double(env, result_, &number) == napi_ok ? number : nullptr;
}

}  // namespace mlpkit::addon

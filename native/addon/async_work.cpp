#include "addon/async_work.h"

#include <cstring>
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
  napi_value value = job->failed_ ? nullptr : job->Result(env);
  if (job->failed_) {
    if (napi_value error = MakeError(env, job->error_)) napi_reject_deferred(env, job->deferred_, error);
  } else if (value) {
    napi_resolve_deferred(env, job->deferred_, value);
  }
  if (scoped) napi_close_handle_scope(env, scope);
  napi_delete_async_work(env, job->work_);
}

// ---- predictAsync -------------------------------------------------------------------------

PredictJob::PredictJob(std::shared_ptr<const Predictor> model, const ArrayArg<float>& x, std::size_t batch,
                       const ArrayArg<float>& out, const char* what)
    : model_(std::move(model)), batch_(batch), what_(what) {
  // Re-checked here, right before the work is set up: these are the lengths it relies on.
  if (x.ElementLength() != batch * model_->inputs() || out.ElementLength() != batch * model_->outputs()) {
    throw RangeError(Napi::Env(x.env), std::string(what) + ": x or out does not match batch");
  }
  x_.assign(x.Data(), x.Data() + x.ElementLength());
  y_.resize(out.ElementLength());
  out_ref_ = Napi::Persistent(out.Object());
  turn_ = model_->reserve_predict();  // last: nothing after this can fail
}

void PredictJob::Run() {
  try {
    model_->predict(std::move(turn_), x_.data(), batch_, y_.data());
  } catch (...) {
    error_ = CaptureCurrentException(what_);
    failed_ = true;
  }
}

napi_value PredictJob::Result(napi_env env) {
  // `out` is read again now: JS may have detached or resized it while the work ran.
  napi_value out = nullptr;
  napi_typedarray_type type;
  std::size_t length = 0;
  void* data = nullptr;
  if (napi_get_reference_value(env, out_ref_, &out) != napi_ok || out == nullptr ||
      napi_get_typedarray_info(env, out, &type, &length, &data, nullptr, nullptr) != napi_ok) {
    return nullptr;
  }
  if (type != napi_float32_array || length != y_.size() || (length != 0 && data == nullptr)) {
    error_ = {CapturedError::Kind::Range, std::string(what_) + ": out was detached or resized while the call was in flight (expected " +
                                              std::to_string(y_.size()) + " elements, found " + std::to_string(length) + ")"};
    failed_ = true;
    return nullptr;
  }
  if (length != 0) std::memcpy(data, y_.data(), length * sizeof(float));
  napi_value undefined = nullptr;
  return napi_get_undefined(env, &undefined) == napi_ok ? undefined : nullptr;
}

// ---- trainStepAsync -----------------------------------------------------------------------

TrainJob::TrainJob(std::shared_ptr<Model> model, const TrainArgs& a)
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
  turn_ = model_->reserve(Sequencer::Access::Write);  // last: nothing after this can fail
}

void TrainJob::Run() {
  try {
    const LossTarget target = loss_uses_labels(loss_) ? LossTarget{nullptr, target_labels_.data()}
                                                      : LossTarget{target_values_.data(), nullptr};
    result_ = model_->train_step(std::move(turn_), x_.data(), batch_, loss_, loss_param_, target, optimizer_, hyper_, clip_norm_);
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

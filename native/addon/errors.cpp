#include "addon/errors.h"

#include <exception>
#include <new>
#include <stdexcept>

namespace mlpkit::addon {
namespace {

Napi::Error WithCode(Napi::Error error, const char* code) {
  error.Set("code", Napi::String::New(error.Env(), code));
  return error;
}

}  // namespace

Napi::Error TypeError(Napi::Env env, const std::string& message) {
  return WithCode(Napi::TypeError::New(env, message), kErrInvalidArgType);
}

Napi::Error RangeError(Napi::Env env, const std::string& message) {
  return WithCode(Napi::RangeError::New(env, message), kErrOutOfRange);
}

Napi::Error OutOfMemoryError(Napi::Env env, const std::string& message) {
  return WithCode(Napi::RangeError::New(env, message), kErrOutOfMemory);
}

Napi::Error DisposedError(Napi::Env env, const char* what) {
  return WithCode(Napi::TypeError::New(env, std::string(what) + ": Model has been disposed"), kErrDisposed);
}

CapturedError CaptureCurrentException(const char* what) {
  const std::string prefix = std::string(what) + ": ";
  try {
    throw;
  } catch (const std::out_of_range& e) {
    return {CapturedError::Kind::Range, prefix + e.what()};
  } catch (const std::length_error& e) {
    return {CapturedError::Kind::Range, prefix + e.what()};
  } catch (const std::invalid_argument& e) {
    return {CapturedError::Kind::Range, prefix + e.what()};
  } catch (const std::bad_alloc&) {
    return {CapturedError::Kind::OutOfMemory, prefix + "out of memory"};
  } catch (const std::exception& e) {
    return {CapturedError::Kind::Other, prefix + e.what()};
  } catch (...) {
    return {CapturedError::Kind::Other, prefix + "unknown native error"};
  }
}

Napi::Error ToJsError(Napi::Env env, const CapturedError& error) {
  switch (error.kind) {
    case CapturedError::Kind::Type: return TypeError(env, error.message);
    case CapturedError::Kind::Range: return RangeError(env, error.message);
    case CapturedError::Kind::OutOfMemory: return OutOfMemoryError(env, error.message);
    case CapturedError::Kind::Other: break;
  }
  return Napi::Error::New(env, error.message);
}

Napi::Promise Rejected(Napi::Env env, const Napi::Error& error) {
  auto deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(error.Value());
  return deferred.Promise();
}

}  // namespace mlpkit::addon

// JS errors with Node-style codes (the same codes as lib/errors.ts), and the one translation
// from C++ exceptions to them. Only a Napi::Error may leave the binding: every other exception
// is caught at the boundary and turned into the matching TypeError / RangeError / Error.
#pragma once

#include <napi.h>

#include <string>
#include <utility>

namespace mlpkit::addon {

constexpr const char* kErrInvalidArgType = "ERR_INVALID_ARG_TYPE";
constexpr const char* kErrOutOfRange = "ERR_OUT_OF_RANGE";
constexpr const char* kErrDisposed = "ERR_MLPKIT_DISPOSED";
constexpr const char* kErrOutOfMemory = "ERR_MLPKIT_OUT_OF_MEMORY";

Napi::Error TypeError(Napi::Env env, const std::string& message);
Napi::Error RangeError(Napi::Env env, const std::string& message);
// A RangeError with code ERR_MLPKIT_OUT_OF_MEMORY: an allocation for sizes the caller asked for failed.
Napi::Error OutOfMemoryError(Napi::Env env, const std::string& message);
// "predict: Model has been disposed", a TypeError like a call on a revoked Proxy.
Napi::Error DisposedError(Napi::Env env, const char* what);

// An exception caught where no JS is allowed (a libuv worker), kept until it can become a
// JS error back on the JS thread.
struct CapturedError {
  enum class Kind { Type, Range, OutOfMemory, Other };
  Kind kind = Kind::Other;
  std::string message;
};

// Call only inside a catch block: classifies the exception in flight and prefixes "what: ".
// std::out_of_range, std::length_error and std::invalid_argument are range errors (the core
// throws invalid_argument for values it cannot take: a scale that is not finite, a k too large;
// the types were checked before the core saw them), std::bad_alloc an out-of-memory
// RangeError; anything else a plain Error.
CapturedError CaptureCurrentException(const char* what);
Napi::Error ToJsError(Napi::Env env, const CapturedError& error);

// Runs body, converting any C++ exception into a JS one. Napi::Errors pass through as they are.
template <class Body>
auto Guard(Napi::Env env, const char* what, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw ToJsError(env, CaptureCurrentException(what));
  }
}

// A promise already rejected with `error`: how a promise-returning method reports bad arguments
// (it rejects rather than throws).
Napi::Promise Rejected(Napi::Env env, const Napi::Error& error);

// Guard for a promise-returning method: body returns the promise of the job it queued; any error
// before that (bad arguments, a disposed model) comes back as a rejected promise, not a throw.
template <class Body>
Napi::Value GuardAsync(Napi::Env env, const char* what, Body&& body) {
  try {
    return Guard(env, what, std::forward<Body>(body));
  } catch (const Napi::Error& e) {
    return Rejected(env, e);
  }
}

}  // namespace mlpkit::addon

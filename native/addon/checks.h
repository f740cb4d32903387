// Cheap checks on everything that crosses into C++. lib/validate.ts has already checked the
// same things with friendlier messages; these exist so that a caller bypassing it (or a bug in
// it) gets a TypeError / RangeError, never a crash. Each throws a Napi::Error.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "addon/errors.h"
#include "core/aligned.h"

namespace mlpkit::addon {

template <class T>
struct TypedArrayTraits;
template <>
struct TypedArrayTraits<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <>
struct TypedArrayTraits<double> {
  static constexpr napi_typedarray_type type = napi_float64_array;
  static constexpr const char* name = "Float64Array";
};
template <>
struct TypedArrayTraits<std::int32_t> {
  static constexpr napi_typedarray_type type = napi_int32_array;
  static constexpr const char* name = "Int32Array";
};
template <>
struct TypedArrayTraits<std::int8_t> {
  static constexpr napi_typedarray_type type = napi_int8_array;
  static constexpr const char* name = "Int8Array";
};
template <>
struct TypedArrayTraits<std::uint8_t> {
  static constexpr napi_typedarray_type type = napi_uint8_array;
  static constexpr const char* name = "Uint8Array";
};

// The shortest decimal that reads back as the same double, as JS prints numbers.
inline std::string FormatNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  for (int precision = 1; precision <= 17; ++precision) {
    std::ostringstream out;
    out.precision(precision);
    out << v;
    if (std::strtod(out.str().c_str(), nullptr) == v) return out.str();
  }
  return std::to_string(v);
}

// What was received, for messages: "Float64Array(3)", "number 1.5", "string", "null".
inline std::string Describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) return "number " + FormatNumber(v.As<Napi::Number>().DoubleValue());
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "boolean true" : "boolean false";
  if (v.IsString()) return "string";
  if (v.IsFunction()) return "function";
  if (v.IsTypedArray()) {
    static constexpr const char* kNames[] = {
        "Int8Array",    "Uint8Array",   "Uint8ClampedArray", "Int16Array",    "Uint16Array",    "Int32Array",
        "Uint32Array",  "Float32Array", "Float64Array",      "BigInt64Array", "BigUint64Array",
    };
    const Napi::TypedArray a = v.As<Napi::TypedArray>();
    const int type = static_cast<int>(a.TypedArrayType());
    const char* name = type >= 0 && type < static_cast<int>(sizeof kNames / sizeof *kNames) ? kNames[type] : "TypedArray";
    return std::string(name) + "(" + std::to_string(a.ElementLength()) + ")";
  }
  if (v.IsArray()) return "Array(" + std::to_string(v.As<Napi::Array>().Length()) + ")";
  return "object";
}

inline std::string Where(const char* what, const char* name) { return std::string(what) + ": " + name; }

inline void ExpectArgs(const Napi::CallbackInfo& info, std::size_t n, const char* what) {
  if (info.Length() < n) {
    throw TypeError(info.Env(), std::string(what) + ": expected " + std::to_string(n) + " arguments, got " +
                                    std::to_string(info.Length()));
  }
}

// A TypedArray argument, read with one napi call (this is on the batch-1 hot path, where a
// few extra calls would cost more than the kernel).
template <class T>
struct ArrayArg {
  napi_env env = nullptr;
  napi_value value = nullptr;
  T* data = nullptr;
  std::size_t length = 0;

  T* Data() const { return data; }
  std::size_t ElementLength() const { return length; }
  Napi::Object Object() const { return Napi::Object(env, value); }
};

// A TypedArray of exactly element type T (a Float64Array is not a Float32Array).
template <class T>
ArrayArg<T> TypedArg(const Napi::Value& v, const char* what, const char* name) {
  ArrayArg<T> a;
  a.env = v.Env();
  a.value = v;
  napi_typedarray_type type;
  void* data = nullptr;
  // Fails with a status (and no pending JS exception) when v is not a TypedArray.
  const napi_status status = napi_get_typedarray_info(a.env, v, &type, &a.length, &data, nullptr, nullptr);
  if (status != napi_ok || type != TypedArrayTraits<T>::type) {
    const char* expected = TypedArrayTraits<T>::name;
    const char* article = expected[0] == 'I' ? "an " : "a ";
    throw TypeError(v.Env(), Where(what, name) + " must be " + article + expected + ", got " + Describe(v));
  }
  a.data = static_cast<T*>(data);
  return a;
}

// The bytes of a TypedArray of any element type.
struct ByteView {
  void* data = nullptr;
  std::size_t bytes = 0;
};

inline ByteView AnyTypedArg(const Napi::Value& v, const char* what, const char* name) {
  napi_typedarray_type type;
  std::size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(v.Env(), v, &type, &length, &data, nullptr, nullptr) != napi_ok) {
    throw TypeError(v.Env(), Where(what, name) + " must be a TypedArray, got " + Describe(v));
  }
  // Element sizes in napi_typedarray_type's order (int8 ... biguint64).
  static constexpr std::size_t kSizes[] = {1, 1, 1, 2, 2, 4, 4, 4, 8, 8, 8};
  const int t = static_cast<int>(type);
  const std::size_t size = t >= 0 && t < static_cast<int>(sizeof kSizes / sizeof *kSizes) ? kSizes[t] : 1;
  return {data, length * size};
}

// TypedArg for an array the call fills (outputs, copies out). The caller's array is usually fresh
// (new Float32Array: untouched zero pages) and first written here, by the kernels: a large one is
// offered to huge pages first (core/aligned.h), which took getParameters of a 4096 -> 16384
// layer (268 MB) from 0.72-0.89 s to 0.04 s on a 2-core VM (docs/ARCHITECTURE.md). Contents are
// unchanged.
template <class T>
ArrayArg<T> OutputArg(const Napi::Value& v, const char* what, const char* name) {
  ArrayArg<T> a = TypedArg<T>(v, what, name);
  if (a.length * sizeof(T) >= 2 * kHugePage) offer_huge_pages(a.data, a.length * sizeof(T));
  return a;
}

inline bool IsNullish(const Napi::Value& v) { return v.IsNull() || v.IsUndefined(); }

inline double NumberArg(const Napi::Value& v, const char* what, const char* name) {
  double d = 0;
  if (napi_get_value_double(v.Env(), v, &d) != napi_ok) {
    throw TypeError(v.Env(), Where(what, name) + " must be a number, got " + Describe(v));
  }
  return d;
}

// A positive integer no larger than 2^53 - 1.
inline std::size_t BatchArg(const Napi::Value& v, const char* what) {
  const double b = NumberArg(v, what, "batch");
  if (!(b >= 1 && b <= 9007199254740991.0 && std::floor(b) == b)) {
    throw RangeError(v.Env(), std::string(what) + ": batch must be a positive integer, got " + FormatNumber(b));
  }
  return static_cast<std::size_t>(b);
}

// An integer code in [0, count): an activation, loss, optimizer or encoding.
inline int CodeArg(const Napi::Value& v, const char* what, const char* name, const char* kind, int count) {
  const double c = NumberArg(v, what, name);
  if (!(c >= 0 && c < count && std::floor(c) == c)) {
    throw RangeError(v.Env(), Where(what, name) + " must be " + kind + " code in [0, " + std::to_string(count) +
                                  "), got " + FormatNumber(c));
  }
  return static_cast<int>(c);
}

// Checks length == a * b where the message spells out the product:
// "predict: x must have batch * inputs = 12 elements, got 10".
inline void ExpectLength(Napi::Env env, std::size_t length, std::size_t a, std::size_t b, const char* what,
                         const char* name, const char* formula) {
  const bool overflows = b != 0 && a > std::numeric_limits<std::size_t>::max() / b;
  if (overflows || length != a * b) {
    const std::string expected = overflows ? std::string("more than fits in memory") : std::to_string(a * b);
    throw RangeError(env, Where(what, name) + " must have " + formula + " = " + expected + " elements, got " +
                              std::to_string(length));
  }
}

// True when two byte ranges share a byte (out passed as x, or overlapping views of one buffer).
inline bool Overlaps(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
  const auto a0 = reinterpret_cast<std::uintptr_t>(a), b0 = reinterpret_cast<std::uintptr_t>(b);
  return a_bytes != 0 && b_bytes != 0 && a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}
template <class A, class B>
bool Overlaps(const ArrayArg<A>& a, const ArrayArg<B>& b) {
  return Overlaps(a.Data(), a.ElementLength() * sizeof(A), b.Data(), b.ElementLength() * sizeof(B));
}

// predict(x, batch, out) and predictAsync(x, batch, out), for a model of `inputs` -> `outputs`.
struct PredictArgs {
  ArrayArg<float> x;
  std::size_t batch = 0;
  ArrayArg<float> out;
};

// out = model.predict(x); through a scratch output when out overlaps x, since the kernels read
// the inputs of later rows (and columns) after writing the outputs of earlier ones.
template <class Model>
void PredictInto(const Model& model, const PredictArgs& a) {
  if (!Overlaps(a.x, a.out)) {
    model.predict(a.x.Data(), a.batch, a.out.Data());
    return;
  }
  std::vector<float> y(a.out.ElementLength());
  model.predict(a.x.Data(), a.batch, y.data());
  std::memcpy(a.out.Data(), y.data(), y.size() * sizeof(float));
}

// x, batch and out from info[first], info[first + 1] and info[first + 2].
inline PredictArgs ReadPredictArgs(const Napi::CallbackInfo& info, std::size_t inputs, std::size_t outputs,
                                   const char* what, std::size_t first = 0) {
  ExpectArgs(info, first + 3, what);
  PredictArgs a;
  a.x = TypedArg<float>(info[first], what, "x");
  a.batch = BatchArg(info[first + 1], what);
  a.out = OutputArg<float>(info[first + 2], what, "out");
  ExpectLength(info.Env(), a.x.ElementLength(), a.batch, inputs, what, "x", "batch * inputs");
  ExpectLength(info.Env(), a.out.ElementLength(), a.batch, outputs, what, "out", "batch * outputs");
  return a;
}

}  // namespace mlpkit::addon

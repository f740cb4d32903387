#include "addon/quantize_weights.h"

#include <cmath>
#include <cstdint>
#include <string>

#include "addon/checks.h"
#include "addon/errors.h"
#include "core/finite.h"
#include "core/quant/gptq.h"
#include "core/quant/quantize.h"

namespace mlpkit::addon {
namespace {

// inputs / outputs: an integer in [1, 2^31 - 1].
std::size_t SizeArg(const Napi::Value& v, const char* what, const char* name) {
  const double d = NumberArg(v, what, name);
  if (!(d >= 1 && d <= 2147483647.0 && std::floor(d) == d)) {
    throw RangeError(v.Env(), Where(what, name) + " must be an integer in [1, 2147483647], got " + FormatNumber(d));
  }
  return static_cast<std::size_t>(d);
}

// The weights every quantiser reads: [outputs x inputs] floats, all finite (a NaN has no code).
ArrayArg<float> WeightArg(const Napi::CallbackInfo& info, const char* what, std::size_t k, std::size_t n) {
  ArrayArg<float> w = TypedArg<float>(info[0], what, "weight");
  ExpectLength(info.Env(), w.ElementLength(), n, k, what, "weight", "outputs * inputs");
  const std::int64_t bad = first_non_finite(w.Data(), w.ElementLength());
  if (bad >= 0) {
    throw RangeError(info.Env(), std::string(what) + ": weight[" + std::to_string(bad) + "] must be finite, got " +
                                     FormatNumber(w.Data()[bad]));
  }
  return w;
}

template <class A>
void ExpectApart(Napi::Env env, const ArrayArg<float>& weight, const ArrayArg<A>& out, const char* what, const char* name) {
  if (Overlaps(weight, out)) throw RangeError(env, Where(what, name) + " must not share memory with weight");
}

}  // namespace

Napi::Value QuantizeInt8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  constexpr const char* what = "quantizeInt8";
  return Guard(env, what, [&]() -> Napi::Value {
    ExpectArgs(info, 5, what);
    const std::size_t k = SizeArg(info[1], what, "inputs");
    const std::size_t n = SizeArg(info[2], what, "outputs");
    const ArrayArg<float> w = WeightArg(info, what, k, n);
    const ArrayArg<std::int8_t> codes = OutputArg<std::int8_t>(info[3], what, "codes");
    ExpectLength(env, codes.ElementLength(), n, k, what, "codes", "outputs * inputs");
    const ArrayArg<float> scales = TypedArg<float>(info[4], what, "scales");
    ExpectLength(env, scales.ElementLength(), n, 1, what, "scales", "outputs * 1");
    ExpectApart(env, w, codes, what, "codes");
    ExpectApart(env, w, scales, what, "scales");
    quant::quantize_int8_weights(w.Data(), k, n, codes.Data(), scales.Data());
    return env.Undefined();
  });
}

Napi::Value QuantizeInt4(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  constexpr const char* what = "quantizeInt4";
  return Guard(env, what, [&]() -> Napi::Value {
    ExpectArgs(info, 7, what);
    const std::size_t k = SizeArg(info[1], what, "inputs");
    const std::size_t n = SizeArg(info[2], what, "outputs");
    const double group = NumberArg(info[3], what, "groupSize");
    if (group != 32 && group != 64 && group != 128) {
      throw RangeError(env, std::string(what) + ": groupSize must be 32, 64 or 128, got " + FormatNumber(group));
    }
    const std::size_t g = static_cast<std::size_t>(group);
    const std::size_t groups = (k + g - 1) / g;
    const ArrayArg<float> w = WeightArg(info, what, k, n);
    const ArrayArg<std::uint8_t> packed = OutputArg<std::uint8_t>(info[4], what, "packed");
    ExpectLength(env, packed.ElementLength(), n, groups * g / 2, what, "packed", "outputs * paddedInputs / 2");
    const ArrayArg<float> scales = TypedArg<float>(info[5], what, "scales");
    ExpectLength(env, scales.ElementLength(), n, groups, what, "scales", "outputs * groups");
    std::uint8_t* zeros = nullptr;
    ExpectApart(env, w, packed, what, "packed");
    ExpectApart(env, w, scales, what, "scales");
    if (!IsNullish(info[6])) {
      const ArrayArg<std::uint8_t> z = TypedArg<std::uint8_t>(info[6], what, "zeros");
      ExpectLength(env, z.ElementLength(), n, groups, what, "zeros", "outputs * groups");
      ExpectApart(env, w, z, what, "zeros");
      zeros = z.Data();
    }
    quant::quantize_int4_weights(w.Data(), k, n, g, packed.Data(), scales.Data(), zeros);
    return env.Undefined();
  });
}

Napi::Value ColumnAbsMax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  constexpr const char* what = "columnAbsMax";
  return Guard(env, what, [&]() -> Napi::Value {
    ExpectArgs(info, 4, what);
    const std::size_t k = SizeArg(info[1], what, "inputs");
    const std::size_t n = SizeArg(info[2], what, "outputs");
    const ArrayArg<float> w = TypedArg<float>(info[0], what, "weight");
    ExpectLength(env, w.ElementLength(), n, k, what, "weight", "outputs * inputs");
    const ArrayArg<float> out = TypedArg<float>(info[3], what, "out");
    ExpectLength(env, out.ElementLength(), k, 1, what, "out", "inputs * 1");
    ExpectApart(env, w, out, what, "out");
    quant::column_abs_max(w.Data(), k, n, out.Data());
    return env.Undefined();
  });
}

Napi::Value GptqFactor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  constexpr const char* what = "gptqFactor";
  return Guard(env, what, [&]() -> Napi::Value {
    ExpectArgs(info, 3, what);
    const std::size_t k = SizeArg(info[1], what, "inputs");
    const ArrayArg<float> x = TypedArg<float>(info[0], what, "x");
    if (x.ElementLength() == 0 || x.ElementLength() % k != 0) {
      throw RangeError(env, std::string(what) + ": x must hold a positive whole number of rows of " + std::to_string(k) +
                                " inputs, got " + std::to_string(x.ElementLength()) + " elements");
    }
    const ArrayArg<double> u = OutputArg<double>(info[2], what, "u");
    ExpectLength(env, u.ElementLength(), k, k, what, "u", "inputs * inputs");
    if (Overlaps(x, u)) throw RangeError(env, Where(what, "u") + " must not share memory with x");
    return Napi::Boolean::New(env, quant::gptq_inverse_factor(x.Data(), x.ElementLength() / k, k, u.Data()));
  });
}

Napi::Value GptqRound(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  constexpr const char* what = "gptqRound";
  return Guard(env, what, [&]() -> Napi::Value {
    ExpectArgs(info, 8, what);
    const std::size_t k = SizeArg(info[1], what, "inputs");
    const std::size_t n = SizeArg(info[2], what, "outputs");
    const double group = NumberArg(info[3], what, "groupSize");
    if (group != 0 && group != 32 && group != 64 && group != 128) {
      throw RangeError(env, std::string(what) + ": groupSize must be 0 (int8), 32, 64 or 128, got " + FormatNumber(group));
    }
    const std::size_t g = static_cast<std::size_t>(group);
    const std::size_t groups = g == 0 ? 1 : (k + g - 1) / g;
    const ArrayArg<float> w = WeightArg(info, what, k, n);
    const ArrayArg<double> u = TypedArg<double>(info[4], what, "u");
    ExpectLength(env, u.ElementLength(), k, k, what, "u", "inputs * inputs");
    std::uint8_t* codes = nullptr;
    if (g == 0) {
      const ArrayArg<std::int8_t> c = OutputArg<std::int8_t>(info[5], what, "codes");
      ExpectLength(env, c.ElementLength(), n, k, what, "codes", "outputs * inputs");
      ExpectApart(env, w, c, what, "codes");
      codes = reinterpret_cast<std::uint8_t*>(c.Data());
    } else {
      const ArrayArg<std::uint8_t> c = OutputArg<std::uint8_t>(info[5], what, "codes");
      ExpectLength(env, c.ElementLength(), n, groups * g / 2, what, "codes", "outputs * paddedInputs / 2");
      ExpectApart(env, w, c, what, "codes");
      codes = c.Data();
    }
    const ArrayArg<float> scales = TypedArg<float>(info[6], what, "scales");
    ExpectLength(env, scales.ElementLength(), n, groups, what, "scales", "outputs * groups");
    ExpectApart(env, w, scales, what, "scales");
    std::uint8_t* zeros = nullptr;
    if (!IsNullish(info[7])) {
      if (g == 0) throw RangeError(env, Where(what, "zeros") + " must be null for int8 (groupSize 0)");
      const ArrayArg<std::uint8_t> z = TypedArg<std::uint8_t>(info[7], what, "zeros");
      ExpectLength(env, z.ElementLength(), n, groups, what, "zeros", "outputs * groups");
      ExpectApart(env, w, z, what, "zeros");
      zeros = z.Data();
    }
    return Napi::Boolean::New(env, quant::gptq_round(w.Data(), k, n, g, u.Data(), codes, scales.Data(), zeros));
  });
}

}  // namespace mlpkit::addon

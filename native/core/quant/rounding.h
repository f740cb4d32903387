// lib/quant/rounding.ts's two integer steps, for the quantisers built with baseline flags
// (quantize.cpp, gptq.cpp). In an anonymous namespace on purpose: each file keeps its own copy,
// so the linker can never merge in one from a file built with wider ISA flags (the weak-symbol
// SIGILL scripts/check-isa-isolation.sh guards against).
#pragma once

#include <cmath>

namespace mlpkit::quant {
namespace {

// rounding.ts roundHalfEven: ties to even at every magnitude, as nearbyint does in the default
// rounding mode, and never -0. Below 2^51 by adding and subtracting 1.5 * 2^52: the baseline
// x86-64 build has no roundsd, so nearbyint is a libm call.
inline double round_half_even(double v) {
  return std::fabs(v) < 2251799813685248.0 ? v + 6755399441055744.0 - 6755399441055744.0 : std::nearbyint(v) + 0.0;
}

// rounding.ts clamp for finite v. A NaN comes out as lo rather than NaN, so that a conversion
// to an integer type that follows is always defined (where rounding.ts would keep the NaN, the
// callers either never pass one or give up on the result: gptq.cpp).
inline double clamp(double v, double lo, double hi) { return v >= lo ? (v > hi ? hi : v) : lo; }

// rounding.ts int8Scale: f32(amax / 127), one float32 step lower when 127 times it would
// round past FLT_MAX (amax = FLT_MAX only), so that code 127 dequantises to a finite value.
inline float int8_scale(double amax) {
  const float scale = static_cast<float>(amax / 127);
  return std::isinf(127.0f * scale) ? std::nextafter(scale, 0.0f) : scale;
}

}  // namespace
}  // namespace mlpkit::quant

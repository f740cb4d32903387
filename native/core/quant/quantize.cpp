// The arithmetic below copies lib/quant/quantize.ts and lib/quant/rounding.ts operation by
// operation: a JS number is a double, Math.fround is a cast to float, and the order of every
// addition is kept (the build has no -ffast-math and contracts no FMAs), so each line gives the
// bits its TypeScript twin gives. Rows are independent, so the split over threads changes
// nothing.
#include "core/quant/quantize.h"

#include <cmath>
#include <cstring>

#include "core/parallel.h"

namespace mlpkit::quant {
namespace {

constexpr double kRoundingShift = 6755399441055744.0;  // 1.5 * 2^52: rounding.ts ROUNDING_SHIFT

// rounding.ts clamp for finite v. A NaN (which the callers never pass) comes out as lo rather
// than NaN, so that the conversion to an integer type that follows is always defined.
inline double clamp(double v, double lo, double hi) { return v >= lo ? (v > hi ? hi : v) : lo; }

// rounding.ts roundHalfEven: ties to even at every magnitude, as nearbyint does in the default
// rounding mode, and never -0.
inline double round_half_even(double v) { return std::nearbyint(v) + 0.0; }

// rounding.ts roundToBf16: to float32, then to the nearest bfloat16, ties to even.
inline double round_to_bf16(double v) {
  float f = static_cast<float>(v);
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return f;
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

double max_abs(const float* row, std::size_t p0, std::size_t p1) {
  double m = 0;
  for (std::size_t p = p0; p < p1; ++p) {
    const double a = std::fabs(static_cast<double>(row[p]));
    if (a > m) m = a;
  }
  return m;
}

constexpr std::size_t kMaxCandidates = 10;  // asymmetric: 5 ranges x 2 anchors
constexpr std::size_t kMaxGroup = 128;

// quantize.ts groupError for `count` candidates (scale s[c], zero point z[c]) of row[p0, p1):
// e[c], each summed in element order as there. groupError stops summing once its sum reaches
// the best error so far, and that candidate then loses. This sums on: the terms are
// non-negative and rounded addition is monotone, so such a sum stays at or above that limit and
// loses the same comparison, while every sum that did not stop is the same double. Summing
// every candidate whole lets the per-element terms vectorise and the candidates' sums run as
// independent chains: a 4096 x 16384 int4 g32 layer took 0.73 s instead of 0.83 s on 2 Zen 1
// cores (the float64 arithmetic JS prescribes, ~10 operations per weight and candidate, is most
// of it).
void group_errors(const float* row, std::size_t p0, std::size_t p1, const double* s, const double* z, std::size_t count,
                  double qmin, double qmax, double* e) {
  const std::size_t len = p1 - p0;
  double d2[kMaxCandidates][kMaxGroup];
  for (std::size_t c = 0; c < count; ++c) {
    const double sc = s[c], zc = z[c], inv = 1 / sc;
    double* out = d2[c];
    for (std::size_t i = 0; i < len; ++i) {
      const double v = row[p0 + i];
      const double d = v - sc * (clamp(v * inv + kRoundingShift - kRoundingShift + zc, qmin, qmax) - zc);
      out[i] = d * d;
    }
  }
  for (std::size_t c = 0; c < count; ++c) e[c] = 0;
  for (std::size_t i = 0; i < len; ++i) {
    for (std::size_t c = 0; c < count; ++c) e[c] += d2[c][i];
  }
}

constexpr double kSymmetricDivisors[] = {7, 7.5, 8, 8.5, 9};   // quantize.ts SYMMETRIC_DIVISORS
constexpr double kRangeFactors[] = {1, 0.95, 0.9, 0.85, 0.8};  // quantize.ts RANGE_FACTORS

// quantize.ts symmetricScale: the candidates in order, up to the first scale of 0; the first
// whose error beats every earlier one's wins.
double symmetric_scale(const float* row, std::size_t p0, std::size_t p1) {
  const double amax = max_abs(row, p0, p1);
  double s[kMaxCandidates], z[kMaxCandidates], e[kMaxCandidates];
  std::size_t count = 0;
  for (const double d : kSymmetricDivisors) {
    const double c = round_to_bf16(amax / d);
    if (c == 0) break;
    s[count] = c;
    z[count] = 0;
    ++count;
  }
  if (count == 0) return 0;
  group_errors(row, p0, p1, s, z, count, -8, 7, e);
  std::size_t best = 0;
  for (std::size_t c = 1; c < count; ++c) {
    if (e[c] < e[best]) best = c;
  }
  return s[best];
}

// quantize.ts asymmetricScale, its candidates listed first in the order it scores them.
void asymmetric_scale(const float* row, std::size_t p0, std::size_t p1, double* scale, double* zero) {
  double lo = 0, hi = 0;
  for (std::size_t p = p0; p < p1; ++p) {
    const double v = row[p];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  double s[kMaxCandidates], z[kMaxCandidates], e[kMaxCandidates];
  std::size_t count = 0;
  for (const double f : kRangeFactors) {
    const double c = round_to_bf16(((hi - lo) * f) / 15);
    if (c == 0) break;
    const double from_lo = clamp(round_half_even(static_cast<float>(-lo / c)), 0, 15);
    const double from_hi = clamp(15 - round_half_even(static_cast<float>(hi / c)), 0, 15);
    s[count] = c;
    z[count] = from_lo;
    ++count;
    if (from_hi != from_lo) {
      s[count] = c;
      z[count] = from_hi;
      ++count;
    }
  }
  double best_scale = 0, best_zero = 0, best_error = INFINITY;
  if (count > 0) group_errors(row, p0, p1, s, z, count, 0, 15, e);
  for (std::size_t c = 0; c < count; ++c) {
    if (e[c] < best_error) {
      best_scale = s[c];
      best_zero = z[c];
      best_error = e[c];
    }
  }
  *scale = best_scale;
  *zero = best_zero;
}

// f32(w / scale) rounded by the shift trick (quantize.ts inlines roundHalfEven so: |w / scale|
// is small), as a double.
inline double rounded_quotient(float w, double scale) {
  return static_cast<float>(static_cast<double>(w) / scale) + kRoundingShift - kRoundingShift;
}

// Rows per task: ~64K weights, so small layers stay on the calling thread.
std::size_t rows_per_task(std::size_t k) { return k >= 65536 ? 1 : 65536 / k; }

template <class RowFn>
void for_rows(std::size_t n, std::size_t k, RowFn&& row_fn) {
  const std::size_t per = rows_per_task(k);
  parallel_for((n + per - 1) / per, [&](std::size_t t) {
    const std::size_t j1 = n < (t + 1) * per ? n : (t + 1) * per;
    for (std::size_t j = t * per; j < j1; ++j) row_fn(j);
  });
}

}  // namespace

void quantize_int8_weights(const float* w, std::size_t k, std::size_t n, std::int8_t* codes, float* scales) {
  for_rows(n, k, [&](std::size_t j) {
    const float* row = w + j * k;
    std::int8_t* out = codes + j * k;
    const float scale = static_cast<float>(max_abs(row, 0, k) / 127);
    scales[j] = scale;
    if (scale == 0) {
      std::memset(out, 0, k);
      return;
    }
    for (std::size_t p = 0; p < k; ++p) out[p] = static_cast<std::int8_t>(clamp(rounded_quotient(row[p], scale), -127, 127));
  });
}

void quantize_int4_weights(const float* w, std::size_t k, std::size_t n, std::size_t group, std::uint8_t* packed,
                           float* scales, std::uint8_t* zeros) {
  const std::size_t groups = (k + group - 1) / group;
  const std::size_t kp = groups * group;
  for_rows(n, k, [&](std::size_t j) {
    const float* row = w + j * k;
    std::uint8_t* out = packed + j * (kp / 2);
    std::uint8_t codes[128];  // one group's nibbles, padding included
    for (std::size_t g = 0; g < groups; ++g) {
      const std::size_t p0 = g * group;
      const std::size_t p1 = p0 + group < k ? p0 + group : k;  // real inputs; the rest is padding
      const std::size_t at = j * groups + g;
      if (zeros == nullptr) {
        const double scale = symmetric_scale(row, p0, p1);
        scales[at] = static_cast<float>(scale);
        std::memset(codes, 8, group);
        if (scale != 0) {
          for (std::size_t p = p0; p < p1; ++p) codes[p - p0] = static_cast<std::uint8_t>(clamp(rounded_quotient(row[p], scale), -8, 7) + 8);
        }
      } else {
        double scale = 0, zero = 0;
        asymmetric_scale(row, p0, p1, &scale, &zero);
        scales[at] = static_cast<float>(scale);
        zeros[at] = static_cast<std::uint8_t>(zero);
        for (std::size_t p = p0; p < p0 + group; ++p) {
          const float v = p < p1 ? row[p] : 0.0f;
          codes[p - p0] = scale == 0 ? 0
                                     : static_cast<std::uint8_t>(clamp(round_half_even(static_cast<float>(static_cast<double>(v) / scale)) + zero, 0, 15));
        }
      }
      for (std::size_t i = 0; i < group / 2; ++i) out[p0 / 2 + i] = static_cast<std::uint8_t>((codes[2 * i] & 15) | ((codes[2 * i + 1] & 15) << 4));
    }
  });
}

}  // namespace mlpkit::quant

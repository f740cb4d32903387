// The arithmetic below copies lib/quant/quantize.ts and lib/quant/rounding.ts operation by
// operation: a JS number is a double, Math.fround is a cast to float, and the order of every
// addition is kept (the build has no -ffast-math and contracts no FMAs), so each line gives the
// bits its TypeScript twin gives. Rows are independent, so the split over threads changes
// nothing.
#include "core/quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/cpu/kernels.h"
#include "core/parallel.h"
#include "core/quant/quantize_avx2.h"
#include "core/quant/rounding.h"

namespace mlpkit::quant {
namespace {

// kRoundingShift, clamp_min_max and the scale search's group_errors_of, shared with the AVX2
// build of the search (quantize_avx2.cpp).
#include "core/quant/quantize_search.inl"

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

// Largest |row[p]| over [p0, p1), as a double. The maximum is exact in float and does not
// depend on the order, so eight running maxima (a form the compiler vectorises; one chain of
// double compares did not) give the same value.
double max_abs(const float* row, std::size_t p0, std::size_t p1) {
  float m[8] = {};
  std::size_t p = p0;
  for (; p + 8 <= p1; p += 8) {
    for (std::size_t l = 0; l < 8; ++l) {
      const float a = std::fabs(row[p + l]);
      m[l] = a > m[l] ? a : m[l];
    }
  }
  for (; p < p1; ++p) {
    const float a = std::fabs(row[p]);
    m[0] = a > m[0] ? a : m[0];
  }
  float r = 0;
  for (const float v : m) r = v > r ? v : r;
  return r;
}

// Where the float kernels run AVX2 or wider (any x86 table but scalar; MLPKIT_ISA=scalar
// keeps this baseline build), the search runs its AVX2 build: four double lanes instead of
// two, the same operations in the same order, so the same bits.
#if defined(__x86_64__) || defined(_M_X64)
bool search_uses_avx2() {
  static const bool avx2 = std::strcmp(cpu::kernels().isa, "scalar") != 0;
  return avx2;
}
#endif

void group_errors(const float* row, std::size_t p0, std::size_t p1, const double* s, const double* z, std::size_t count,
                  double qmin, double qmax, double* e) {
#if defined(__x86_64__) || defined(_M_X64)
  if (search_uses_avx2()) return group_errors_avx2(row + p0, p1 - p0, s, z, count, qmin, qmax, e);
#endif
  group_errors_of(row + p0, p1 - p0, s, z, count, qmin, qmax, e);
}

constexpr double kSymmetricDivisors[] = {7, 7.5, 8, 8.5, 9};   // quantize.ts SYMMETRIC_DIVISORS
constexpr double kRangeFactors[] = {1, 0.95, 0.9, 0.85, 0.8};  // quantize.ts RANGE_FACTORS

// quantize.ts finiteCodes: the codes of values in [lo, hi] (lo <= 0 <= hi) with scale s and zero
// point z all dequantise (f32(s * q)) to finite float32 values.
bool finite_codes(double lo, double hi, double s, double z, double qmin, double qmax) {
  const double qlo = clamp(round_half_even(static_cast<float>(lo / s)) + z, qmin, qmax) - z;
  const double qhi = clamp(round_half_even(static_cast<float>(hi / s)) + z, qmin, qmax) - z;
  return !std::isinf(static_cast<float>(s * std::max(-qlo, qhi)));
}

// quantize.ts symmetricScale: the candidates in order, up to the first scale of 0, less those
// whose codes would dequantise past FLT_MAX; the first whose error beats every earlier one's wins.
double symmetric_scale(const float* row, std::size_t p0, std::size_t p1) {
  const double amax = max_abs(row, p0, p1);
  double s[kMaxCandidates], z[kMaxCandidates], e[kMaxCandidates];
  std::size_t count = 0;
  for (const double d : kSymmetricDivisors) {
    const double c = round_to_bf16(amax / d);
    if (c == 0) break;
    if (!finite_codes(-amax, amax, c, 0, -8, 7)) continue;
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
    if (finite_codes(lo, hi, c, from_lo, 0, 15)) {
      s[count] = c;
      z[count] = from_lo;
      ++count;
    }
    if (from_hi != from_lo && finite_codes(lo, hi, c, from_hi, 0, 15)) {
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

// The codes of one group, in loops the compiler vectorises (the conversion goes through int:
// straight to uint8_t it did not, and these loops, with a division per weight, were a third of
// the int4 time).
void symmetric_codes(const float* w, std::size_t len, double scale, std::uint8_t* codes) {
  for (std::size_t i = 0; i < len; ++i) codes[i] = static_cast<std::uint8_t>(static_cast<int>(clamp_min_max(rounded_quotient(w[i], scale), -8, 7)) + 8);
}

// quantize.ts rounds these quotients with roundHalfEven, the shift below 2^51 only. The shift
// alone serves here because the code is clamped to [0, 15] next: from 2^51 up (infinity
// included) the shifted value keeps its sign and stays far outside that range, so it clamps to
// the same end. Never NaN: a finite weight over a scale > 0.
void asymmetric_codes(const float* w, std::size_t len, double scale, double zero, std::uint8_t* codes) {
  for (std::size_t i = 0; i < len; ++i) codes[i] = static_cast<std::uint8_t>(static_cast<int>(clamp_min_max(rounded_quotient(w[i], scale) + zero, 0, 15)));
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

double int4_symmetric_scale(const float* row, std::size_t p0, std::size_t p1) { return symmetric_scale(row, p0, p1); }

void int4_asymmetric_scale(const float* row, std::size_t p0, std::size_t p1, double* scale, double* zero) {
  asymmetric_scale(row, p0, p1, scale, zero);
}

// Columns per task: a row's slice of them is 2 KiB, and each task keeps its maxima in a local
// array the compiler vectorises over; tasks never share an output.
constexpr std::size_t kColumnsPerTask = 512;

void column_abs_max(const float* w, std::size_t k, std::size_t n, float* out) {
  parallel_for((k + kColumnsPerTask - 1) / kColumnsPerTask, [&](std::size_t t) {
    const std::size_t p0 = t * kColumnsPerTask;
    const std::size_t len = k - p0 < kColumnsPerTask ? k - p0 : kColumnsPerTask;
    float m[kColumnsPerTask] = {};
    for (std::size_t j = 0; j < n; ++j) {
      const float* row = w + j * k + p0;
      for (std::size_t i = 0; i < len; ++i) {
        const float a = std::fabs(row[i]);
        m[i] = a > m[i] ? a : m[i];
      }
    }
    std::memcpy(out + p0, m, len * sizeof(float));
  });
}

void quantize_int8_weights(const float* w, std::size_t k, std::size_t n, std::int8_t* codes, float* scales) {
  for_rows(n, k, [&](std::size_t j) {
    const float* row = w + j * k;
    std::int8_t* out = codes + j * k;
    const float scale = int8_scale(max_abs(row, 0, k));
    scales[j] = scale;
    if (scale == 0) {
      std::memset(out, 0, k);
      return;
    }
    for (std::size_t p = 0; p < k; ++p) out[p] = static_cast<std::int8_t>(static_cast<int>(clamp_min_max(rounded_quotient(row[p], scale), -127, 127)));
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
          // rounded_quotient is never NaN here (a finite weight over a nonzero scale; an overflow
          // to infinity clamps as in clamp).
          symmetric_codes(row + p0, p1 - p0, scale, codes);
        }
      } else {
        double scale = 0, zero = 0;
        asymmetric_scale(row, p0, p1, &scale, &zero);
        scales[at] = static_cast<float>(scale);
        zeros[at] = static_cast<std::uint8_t>(zero);
        if (scale == 0) {
          std::memset(codes, 0, group);
        } else {
          const std::uint8_t pad = static_cast<std::uint8_t>(clamp_min_max(zero, 0, 15));
          std::memset(codes + (p1 - p0), pad, group - (p1 - p0));  // a weight of 0 codes as the zero point
          asymmetric_codes(row + p0, p1 - p0, scale, zero, codes);
        }
      }
      for (std::size_t i = 0; i < group / 2; ++i) out[p0 / 2 + i] = static_cast<std::uint8_t>((codes[2 * i] & 15) | ((codes[2 * i + 1] & 15) << 4));
    }
  });
}

}  // namespace mlpkit::quant

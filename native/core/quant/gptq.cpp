// The arithmetic below copies lib/quant/hessian.ts and lib/quant/gptq.ts operation by operation
// (a JS number is a double, Math.fround a cast to float, every element's additions in their
// order there), so it gives their bits; the work is split over threads only where elements do
// not depend on each other. The three O(k^3) and O(n k^2) passes are written around the
// elementwise loops of gptq_loops.inl so that a block of rows shares each row of the factor it
// reads: a 4096-input factor is 128 MB, read once per row it would be 1 TB for 16384 rows.
#include "core/quant/gptq.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/parallel.h"
#include "core/quant/gptq_avx2.h"
#include "core/quant/quantize.h"
#include "core/quant/rounding.h"

namespace mlpkit::quant {
namespace {

#include "core/quant/gptq_loops.inl"

#if defined(__x86_64__) || defined(_M_X64)
// As quantize.cpp's scale search: the AVX2 build wherever the float kernels run AVX2 or wider.
bool loops_use_avx2() {
  static const bool avx2 = std::strcmp(cpu::kernels().isa, "scalar") != 0;
  return avx2;
}
#endif

void add_scaled_f32(double* a, const float* x, double s, std::size_t n) {
#if defined(__x86_64__) || defined(_M_X64)
  if (loops_use_avx2()) return add_scaled_f32_avx2(a, x, s, n);
#endif
  add_scaled_f32_of(a, x, s, n);
}

void add_scaled(double* a, const double* b, double s, std::size_t n) {
#if defined(__x86_64__) || defined(_M_X64)
  if (loops_use_avx2()) return add_scaled_avx2(a, b, s, n);
#endif
  add_scaled_of(a, b, s, n);
}

void sub_scaled(double* a, const double* b, double s, std::size_t n) {
#if defined(__x86_64__) || defined(_M_X64)
  if (loops_use_avx2()) return sub_scaled_avx2(a, b, s, n);
#endif
  sub_scaled_of(a, b, s, n);
}

constexpr double kDamping = 0.01;  // hessian.ts DAMPING
constexpr int kDampingRetries = 4;  // hessian.ts DAMPING_RETRIES
constexpr std::size_t kRowsPerTask = 16;  // rows of H, R^-1 or W that one task walks together

std::size_t tasks_for(std::size_t rows) { return (rows + kRowsPerTask - 1) / kRowsPerTask; }

// hessian.ts gramUpper: row p of H over t >= p, tasks by blocks of p (each element summed over
// the calibration rows in their order).
void gram_upper(const float* x, std::size_t rows, std::size_t k, double* h) {
  parallel_for(tasks_for(k), [&](std::size_t task) {
    const std::size_t p0 = task * kRowsPerTask;
    const std::size_t p1 = p0 + kRowsPerTask < k ? p0 + kRowsPerTask : k;
    for (std::size_t r = 0; r < rows; ++r) {
      const float* xr = x + r * k;
      for (std::size_t p = p0; p < p1; ++p) {
        const float xp = xr[p];
        if (xp == 0) continue;
        add_scaled_f32(h + p * k + p, xr + p, xp, k - p);
      }
    }
  });
}

// hessian.ts reverseCholesky on a (H + lambda I, upper triangle), in place.
bool reverse_cholesky(double* a, std::size_t k) {
  std::vector<double> column(k);
  for (std::size_t j = k; j-- > 0;) {
    const double d = a[j * k + j];
    if (!(d > 0)) return false;
    const double pivot = std::sqrt(d);
    a[j * k + j] = pivot;
    for (std::size_t i = 0; i < j; ++i) {
      const double v = a[i * k + j] / pivot;
      a[i * k + j] = v;
      column[i] = v;
    }
    parallel_for(tasks_for(j), [&](std::size_t task) {
      const std::size_t i0 = task * kRowsPerTask;
      const std::size_t i1 = i0 + kRowsPerTask < j ? i0 + kRowsPerTask : j;
      for (std::size_t i = i0; i < i1; ++i) {
        const double ci = column[i];
        if (ci == 0) continue;
        sub_scaled(a + i * k + i, column.data() + i, ci, j - i);
      }
    });
  }
  return true;
}

// hessian.ts invertUpper: u = r^-1, rows in blocks that share each row of r they read.
void invert_upper(const double* r, std::size_t k, double* u) {
  std::memset(u, 0, k * k * sizeof(double));
  parallel_for(tasks_for(k), [&](std::size_t task) {
    const std::size_t i0 = task * kRowsPerTask;
    const std::size_t i1 = i0 + kRowsPerTask < k ? i0 + kRowsPerTask : k;
    std::vector<double> acc((i1 - i0) * k, 0.0);
    for (std::size_t s = i0; s < k; ++s) {
      const double* rs = r + s * k;
      const std::size_t last = s + 1 < i1 ? s + 1 : i1;  // rows i <= s
      for (std::size_t i = i0; i < last; ++i) {
        double* ai = acc.data() + (i - i0) * k;
        const double v = ((s == i ? 1.0 : 0.0) - ai[s]) / rs[s];
        u[i * k + s] = v;
        if (v == 0) continue;
        add_scaled(ai + s + 1, rs + s + 1, v, k - s - 1);
      }
    }
  });
}

}  // namespace

bool gptq_inverse_factor(const float* x, std::size_t rows, std::size_t k, double* u) {
  std::vector<double> h(k * k, 0.0);
  gram_upper(x, rows, k, h.data());
  double trace = 0;
  for (std::size_t p = 0; p < k; ++p) trace += h[p * k + p];
  if (!(trace > 0) || !std::isfinite(trace)) return false;
  double lambda = (kDamping * trace) / static_cast<double>(k);
  std::vector<double> a(k * k);
  for (int attempt = 0; attempt <= kDampingRetries; ++attempt, lambda *= 10) {
    std::memcpy(a.data(), h.data(), k * k * sizeof(double));
    for (std::size_t p = 0; p < k; ++p) a[p * k + p] += lambda;
    if (reverse_cholesky(a.data(), k)) {
      invert_upper(a.data(), k, u);
      return true;
    }
  }
  return false;
}

bool gptq_round(const float* w, std::size_t k, std::size_t n, std::size_t group, const double* u, std::uint8_t* codes,
                float* scales, std::uint8_t* zeros) {
  const bool int8 = group == 0;
  const bool symmetric = zeros == nullptr;
  const std::size_t g = int8 ? k : group;
  const std::size_t groups = (k + g - 1) / g;
  const std::size_t kp = groups * g;
  std::atomic<bool> failed{false};
  parallel_for(tasks_for(n), [&](std::size_t task) {
    const std::size_t j0 = task * kRowsPerTask;
    const std::size_t j1 = j0 + kRowsPerTask < n ? j0 + kRowsPerTask : n;
    const std::size_t count = j1 - j0;
    std::vector<double> rows(count * k);
    std::vector<std::uint8_t> nibbles(int8 ? 0 : count * kp);
    std::vector<float> current(k);  // a group's current values, as float32, for the scale search
    std::vector<double> scale(count), zero(count);
    std::vector<bool> active(count, true);
    for (std::size_t b = 0; b < count; ++b) {
      const float* wj = w + (j0 + b) * k;
      for (std::size_t p = 0; p < k; ++p) rows[b * k + p] = wj[p];
      if (int8) {
        // gptq.ts roundInt8: the float row's scale; a zero scale leaves every code 0.
        double amax = 0;
        for (std::size_t p = 0; p < k; ++p) amax = amax >= std::fabs(static_cast<double>(wj[p])) ? amax : std::fabs(static_cast<double>(wj[p]));
        scale[b] = static_cast<float>(amax / 127);
        scales[j0 + b] = static_cast<float>(scale[b]);
        std::memset(codes + (j0 + b) * k, 0, k);
        active[b] = scale[b] != 0;
      }
    }
    for (std::size_t p = 0; p < k && !failed.load(std::memory_order_relaxed); ++p) {
      const double* up = u + p * k;
      for (std::size_t b = 0; b < count; ++b) {
        if (!active[b]) continue;
        double* row = rows.data() + b * k;
        if (!int8 && p % g == 0) {
          // gptq.ts roundInt4: the group's scale (and zero point) searched over its current values.
          const std::size_t p1 = p + g < k ? p + g : k;
          for (std::size_t t = p; t < p1; ++t) current[t] = static_cast<float>(row[t]);
          const std::size_t at = (j0 + b) * groups + p / g;
          if (symmetric) {
            scale[b] = int4_symmetric_scale(current.data(), p, p1);
            zero[b] = 8;
          } else {
            int4_asymmetric_scale(current.data(), p, p1, &scale[b], &zero[b]);
            zeros[at] = static_cast<std::uint8_t>(zero[b]);
          }
          scales[at] = static_cast<float>(scale[b]);
          std::memset(nibbles.data() + b * kp + p, static_cast<int>(zero[b]), g);  // padding included
        }
        const double s = scale[b];
        // gptq.ts: a value pushed past float32's range gives up on the layer.
        const float v = static_cast<float>(row[p]);
        if (!std::isfinite(v)) {
          failed.store(true, std::memory_order_relaxed);
          return;
        }
        double q = 0;
        if (int8) {
          q = clamp(round_half_even(static_cast<float>(static_cast<double>(v) / s)), -127, 127);
          codes[(j0 + b) * k + p] = static_cast<std::uint8_t>(static_cast<std::int8_t>(static_cast<int>(q)));
        } else {
          if (s != 0) {
            const double rq = round_half_even(static_cast<float>(static_cast<double>(v) / s));
            q = symmetric ? clamp(rq, -8, 7) : clamp(rq + zero[b], 0, 15) - zero[b];
          }
          nibbles[b * kp + p] = static_cast<std::uint8_t>(static_cast<int>(q + zero[b]));
        }
        // gptq.ts propagate.
        const double e = (row[p] - static_cast<float>(s * q)) / up[p];
        if (e == 0) continue;
        if (!std::isfinite(e)) {
          failed.store(true, std::memory_order_relaxed);
          return;
        }
        sub_scaled(row + p + 1, up + p + 1, e, k - p - 1);
      }
    }
    if (int8) return;
    for (std::size_t b = 0; b < count; ++b) {
      std::uint8_t* out = codes + (j0 + b) * (kp / 2);
      const std::uint8_t* nb = nibbles.data() + b * kp;
      for (std::size_t i = 0; i < kp / 2; ++i) out[i] = static_cast<std::uint8_t>((nb[2 * i] & 15) | ((nb[2 * i + 1] & 15) << 4));
    }
  });
  return !failed.load();
}

}  // namespace mlpkit::quant

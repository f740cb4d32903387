// The arithmetic below copies lib/quant/hessian.ts and lib/quant/gptq.ts operation by operation
// (a JS number is a double, Math.fround a cast to float, every element's additions in their
// order there), so it gives their bits; the work is split over threads only where elements do
// not depend on each other. The four passes (Gram matrix, Cholesky, inverse, rounding) are
// blocked: the updates an element receives come in panels, and apply_panel_of
// (gptq_loops.inl) applies a panel's updates to an element while it stays in a register, still
// one by one in their order. That keeps the bits and turns passes that streamed their
// matrices through memory once per update into ones bound by arithmetic: a 4096-input factor
// is 128 MB.
#include "core/quant/gptq.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
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

void sub_panel(double* x, const double* packed, const double* coef, std::size_t count, std::size_t begin, std::size_t end) {
#if defined(__x86_64__) || defined(_M_X64)
  if (loops_use_avx2()) return sub_panel_avx2(x, packed, coef, count, begin, end);
#endif
  apply_panel_of<true>(x, packed, coef, count, begin, end);
}

void add_panel(double* x, const double* packed, const double* coef, std::size_t count, std::size_t begin, std::size_t end) {
#if defined(__x86_64__) || defined(_M_X64)
  if (loops_use_avx2()) return add_panel_avx2(x, packed, coef, count, begin, end);
#endif
  apply_panel_of<false>(x, packed, coef, count, begin, end);
}

std::size_t packed_size(std::size_t count, std::size_t n) {
  return (n + kPanelChunk - 1) / kPanelChunk * kPanelChunk * count;
}

constexpr double kDamping = 0.01;  // hessian.ts DAMPING
constexpr int kDampingRetries = 4;  // hessian.ts DAMPING_RETRIES
// Every blocked pass applies panels of updates (rows of X, pivots of R, rows of R or of U) of
// this size, and a task walks kRowsPerTask rows of its output (H, R, R^-1 or W) over a tile of
// kColumnTile columns at a time, so that the tile of a panel is read from memory once for all
// of them and stays in L2 (64 x 256 doubles: 128 KB). The rounding panel is a multiple of every
// int4 group size, so that a group's scale search sees its values with every earlier update.
constexpr std::size_t kPanel = 64;
constexpr std::size_t kRoundPanel = 128;
constexpr std::size_t kRowsPerTask = 32;
constexpr std::size_t kColumnTile = 256;
constexpr std::size_t kGramRowsPacked = 512;  // calibration rows packed at a time: 16 MB at 4096 inputs

// A matrix's rows in panels of `width`, each packed (pack_panel_of) over the columns after it:
// panel q holds rows [q width, q width + width) over columns [q width + width, k), at offset[q].
// apply_panel_of then reads a row's updates from them, as their columns are at a matrix row's
// distance from each other in place.
struct TrailingPanels {
  std::size_t width;
  std::vector<std::size_t> offset;
  std::vector<double> data;

  TrailingPanels(const double* m, std::size_t k, std::size_t w) : width(w) {
    const std::size_t panels = (k + w - 1) / w;
    offset.resize(panels + 1, 0);
    for (std::size_t q = 0; q < panels; ++q) {
      const std::size_t end = std::min(q * w + w, k);
      offset[q + 1] = offset[q] + packed_size(end - q * w, k - end);
    }
    data.resize(offset[panels]);
    parallel_for(panels, [&](std::size_t q) {
      const std::size_t end = std::min(q * w + w, k);
      pack_panel_of(m + q * w * k + end, k, end - q * w, k - end, data.data() + offset[q]);
    });
  }
};

// hessian.ts gramUpper: h[p][t] for t >= p summed over the calibration rows in their order,
// a panel of kPanel rows at a time (add_panel). h need not be initialised.
void gram_upper(const float* x, std::size_t rows, std::size_t k, double* h) {
  const std::size_t tasks = (k + kRowsPerTask - 1) / kRowsPerTask;
  parallel_for(tasks, [&](std::size_t task) {
    const std::size_t p0 = task * kRowsPerTask;
    const std::size_t p1 = std::min(p0 + kRowsPerTask, k);
    for (std::size_t p = p0; p < p1; ++p) std::fill(h + p * k + p, h + p * k + k, 0.0);
  });
  std::vector<double> packed(packed_size(kPanel, k) * (kGramRowsPacked / kPanel));
  for (std::size_t g0 = 0; g0 < rows; g0 += kGramRowsPacked) {
    const std::size_t g1 = std::min(g0 + kGramRowsPacked, rows);
    const std::size_t panels = (g1 - g0 + kPanel - 1) / kPanel;
    const std::size_t panel_size = packed_size(kPanel, k);
    parallel_for(panels, [&](std::size_t q) {
      const std::size_t r0 = g0 + q * kPanel;
      pack_panel_of(x + r0 * k, k, std::min(r0 + kPanel, g1) - r0, k, packed.data() + q * panel_size);
    });
    parallel_for(tasks, [&](std::size_t task) {
      const std::size_t p0 = task * kRowsPerTask;
      const std::size_t p1 = std::min(p0 + kRowsPerTask, k);
      double coef[kRowsPerTask * kPanel];
      for (std::size_t q = 0; q < panels; ++q) {
        const std::size_t r0 = g0 + q * kPanel;
        const std::size_t count = std::min(r0 + kPanel, g1) - r0;
        for (std::size_t p = p0; p < p1; ++p)
          for (std::size_t m = 0; m < count; ++m) coef[(p - p0) * count + m] = x[(r0 + m) * k + p];
        for (std::size_t c0 = p0; c0 < k; c0 += kColumnTile) {
          const std::size_t c1 = std::min(c0 + kColumnTile, k);
          for (std::size_t p = p0; p < p1 && p < c1; ++p)
            add_panel(h + p * k, packed.data() + q * panel_size, coef + (p - p0) * count, count, std::max(p, c0), c1);
        }
      }
    });
  }
}

// hessian.ts reverseCholesky on a (H + lambda I, upper triangle), in place, blocked by panels of
// kPanel columns [j0, j1), every element seeing its updates in hessian.ts's order (from
// the last pivot down):
// - the panel's diagonal block is factored as there, one pivot at a time;
// - each row above it then takes the panel's pivots in turn on its own segment of the panel,
//   a row per task: its entries of R and their updates to its later panel columns;
// - the panel's updates then reach the rest of the leading block together (sub_panel).
// Row by row in place, each pivot would walk the whole leading block, twice as it is read and
// written, and its panel columns lie a row apart, all in the same cache sets.
bool reverse_cholesky(double* a, std::size_t k) {
  constexpr std::size_t kWidth = kPanel;
  std::vector<double> packed(packed_size(kWidth, k));  // R[i][j1 - 1 - m] for i < j0, as pack_panel_of
  double block[kWidth * kWidth];  // block[(j - j0) kWidth + (l - j0)]: R[l][j] of the diagonal block
  double pivots[kWidth];
  for (std::size_t j1 = k; j1 > 0;) {
    const std::size_t j0 = j1 > kWidth ? j1 - kWidth : 0;
    const std::size_t count = j1 - j0;
    for (std::size_t j = j1; j-- > j0;) {
      const double d = a[j * k + j];
      if (!(d > 0)) return false;
      const double pivot = std::sqrt(d);
      a[j * k + j] = pivot;
      pivots[j - j0] = pivot;
      double* column = block + (j - j0) * kWidth;
      for (std::size_t l = j0; l < j; ++l) {
        const double v = a[l * k + j] / pivot;
        a[l * k + j] = v;
        column[l - j0] = v;
      }
      for (std::size_t i = j0; i < j; ++i) {
        const double ci = column[i - j0];
        if (ci == 0) continue;
        sub_scaled(a + i * k + i, column + (i - j0), ci, j - i);
      }
    }
    parallel_for((j0 + kRowsPerTask - 1) / kRowsPerTask, [&](std::size_t task) {
      const std::size_t i0 = task * kRowsPerTask;
      const std::size_t i1 = std::min(i0 + kRowsPerTask, j0);
      for (std::size_t i = i0; i < i1; ++i) {
        double* segment = a + i * k + j0;  // a[i][j0 .. j1)
        double* out = packed.data() + (i / kPanelChunk) * count * kPanelChunk + i % kPanelChunk;
        for (std::size_t j = j1; j-- > j0;) {
          const double v = segment[j - j0] / pivots[j - j0];
          segment[j - j0] = v;
          out[(j1 - 1 - j) * kPanelChunk] = v;
          if (v == 0) continue;
          sub_scaled(segment, block + (j - j0) * kWidth, v, j - j0);
        }
      }
    });
    parallel_for((j0 + kRowsPerTask - 1) / kRowsPerTask, [&](std::size_t task) {
      const std::size_t i0 = task * kRowsPerTask;
      const std::size_t i1 = std::min(i0 + kRowsPerTask, j0);
      double coef[kRowsPerTask * kWidth];
      for (std::size_t i = i0; i < i1; ++i) {
        const double* in = packed.data() + (i / kPanelChunk) * count * kPanelChunk + i % kPanelChunk;
        for (std::size_t m = 0; m < count; ++m) coef[(i - i0) * count + m] = in[m * kPanelChunk];
      }
      for (std::size_t c0 = i0; c0 < j0; c0 += kColumnTile) {
        const std::size_t c1 = c0 + kColumnTile < j0 ? c0 + kColumnTile : j0;
        for (std::size_t i = i0; i < i1 && i < c1; ++i)
          sub_panel(a + i * k, packed.data(), coef + (i - i0) * count, count, std::max(i, c0), c1);
      }
    });
    j1 = j0;
  }
  return true;
}

// hessian.ts invertUpper: u = r^-1, row i from acc[i][t] = sum over s < t of u[i][s] r[s][t].
// A task walks kRowsPerTask rows; rows s of r come in panels of kPanel, each taken one at a
// time for the entries of u it gives (and its own columns of acc), then added to the rest of
// acc together (add_panel), in order of s: every element's sum in hessian.ts's order.
void invert_upper(const double* r, std::size_t k, double* u) {
  const TrailingPanels panels(r, k, kPanel);
  parallel_for((k + kRowsPerTask - 1) / kRowsPerTask, [&](std::size_t task) {
    const std::size_t i0 = task * kRowsPerTask;
    const std::size_t i1 = std::min(i0 + kRowsPerTask, k);
    for (std::size_t i = i0; i < i1; ++i) std::fill(u + i * k, u + i * k + i, 0.0);
    std::vector<double> acc((i1 - i0) * k, 0.0);
    std::vector<double> coef((i1 - i0) * kPanel);  // u[i][s] over the panel, 0 for s < i
    for (std::size_t q = i0 / kPanel; q * kPanel < k; ++q) {
      const std::size_t s0 = q * kPanel;
      const std::size_t s1 = std::min(s0 + kPanel, k);
      const std::size_t count = s1 - s0;
      std::fill(coef.begin(), coef.end(), 0.0);
      for (std::size_t s = std::max(s0, i0); s < s1; ++s) {
        const double* rs = r + s * k;
        const std::size_t last = std::min(s + 1, i1);  // rows i <= s
        for (std::size_t i = i0; i < last; ++i) {
          double* ai = acc.data() + (i - i0) * k;
          const double v = ((s == i ? 1.0 : 0.0) - ai[s]) / rs[s];
          u[i * k + s] = v;
          coef[(i - i0) * count + (s - s0)] = v;
          if (v == 0) continue;
          add_scaled(ai + s + 1, rs + s + 1, v, s1 - s - 1);
        }
      }
      const double* packed = panels.data.data() + panels.offset[q];
      for (std::size_t c0 = s1; c0 < k; c0 += kColumnTile) {
        const std::size_t c1 = std::min(c0 + kColumnTile, k);
        for (std::size_t i = i0; i < i1; ++i)
          add_panel(acc.data() + (i - i0) * k + s1, packed, coef.data() + (i - i0) * count, count, c0 - s1, c1 - s1);
      }
    }
  });
}

}  // namespace

bool gptq_inverse_factor(const float* x, std::size_t rows, std::size_t k, double* u) {
  // H is factored in place; a retry with more damping (rare) sums it again rather than keeping a
  // second k x k copy.
  const std::unique_ptr<double[]> h(new double[k * k]);
  gram_upper(x, rows, k, h.get());
  double trace = 0;
  for (std::size_t p = 0; p < k; ++p) trace += h[p * k + p];
  if (!(trace > 0) || !std::isfinite(trace)) return false;
  double lambda = (kDamping * trace) / static_cast<double>(k);
  for (int attempt = 0; attempt <= kDampingRetries; ++attempt, lambda *= 10) {
    if (attempt > 0) gram_upper(x, rows, k, h.get());
    for (std::size_t p = 0; p < k; ++p) h[p * k + p] += lambda;
    if (reverse_cholesky(h.get(), k)) {
      invert_upper(h.get(), k, u);
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
  const TrailingPanels panels(u, k, kRoundPanel);
  parallel_for((n + kRowsPerTask - 1) / kRowsPerTask, [&](std::size_t task) {
    const std::size_t j0 = task * kRowsPerTask;
    const std::size_t j1 = std::min(j0 + kRowsPerTask, n);
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
        scale[b] = int8_scale(amax);
        scales[j0 + b] = static_cast<float>(scale[b]);
        std::memset(codes + (j0 + b) * k, 0, k);
        active[b] = scale[b] != 0;
      }
    }
    // Inputs in panels of kRoundPanel: each input's error is pushed onto the rest of its panel
    // at once (the next input's code needs it), and the panel's errors onto the inputs after
    // the panel together, in order of input (sub_panel): every value sees gptq.ts's updates in
    // its order.
    std::vector<double> errors(count * kRoundPanel);
    for (std::size_t p0 = 0; p0 < k && !failed.load(std::memory_order_relaxed); p0 += kRoundPanel) {
      const std::size_t p1 = std::min(p0 + kRoundPanel, k);
      const double* packed = panels.data.data() + panels.offset[p0 / kRoundPanel];
      const std::size_t width = p1 - p0;
      std::fill(errors.begin(), errors.end(), 0.0);
      for (std::size_t p = p0; p < p1; ++p) {
      const double* up = u + p * k;
      for (std::size_t b = 0; b < count; ++b) {
        if (!active[b]) continue;
        double* row = rows.data() + b * k;
        if (!int8 && p % g == 0) {
          // gptq.ts roundInt4: the group's scale (and zero point) searched over its current values.
          const std::size_t end = p + g < k ? p + g : k;
          for (std::size_t t = p; t < end; ++t) current[t] = static_cast<float>(row[t]);
          const std::size_t at = (j0 + b) * groups + p / g;
          if (symmetric) {
            scale[b] = int4_symmetric_scale(current.data(), p, end);
            zero[b] = 8;
          } else {
            int4_asymmetric_scale(current.data(), p, end, &scale[b], &zero[b]);
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
        errors[b * width + (p - p0)] = e;
        sub_scaled(row + p + 1, up + p + 1, e, p1 - p - 1);
      }
      }
      for (std::size_t c0 = p1; c0 < k; c0 += kColumnTile) {
        const std::size_t c1 = std::min(c0 + kColumnTile, k);
        for (std::size_t b = 0; b < count; ++b) {
          if (!active[b]) continue;
          sub_panel(rows.data() + b * k + p1, packed, errors.data() + b * width, width, c0 - p1, c1 - p1);
        }
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

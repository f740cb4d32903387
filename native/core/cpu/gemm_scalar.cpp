// Portable scalar kernels: the baseline every other ISA is checked against.
//
// Every output element is one float32 sum taken in a fixed order (bias first, then k = 0, 1, ...;
// rows r = 0, 1, ... for weight gradients), whatever the blocking. That keeps results
// independent of batch size and tile shape, and equal to the reference's summation order.
#include <cstddef>

#include "core/cpu/kernels.h"

namespace mlpkit::cpu {
namespace {

// Register tile of the forward GEMM: MR rows of A against NR rows of W, so each loaded value
// feeds several independent accumulator chains.
constexpr std::size_t MR = 4;
constexpr std::size_t NR = 4;

template <std::size_t R, std::size_t C>
inline void tile(std::size_t k, const float* a, const float* w, const float* bias, float* z, std::size_t ldz) {
  float acc[R][C];
  for (std::size_t j = 0; j < C; ++j) {
    const float b0 = bias ? bias[j] : 0.0f;
    for (std::size_t i = 0; i < R; ++i) acc[i][j] = b0;
  }
  for (std::size_t p = 0; p < k; ++p) {
    float av[R], wv[C];
    for (std::size_t i = 0; i < R; ++i) av[i] = a[i * k + p];
    for (std::size_t j = 0; j < C; ++j) wv[j] = w[j * k + p];
    for (std::size_t i = 0; i < R; ++i)
      for (std::size_t j = 0; j < C; ++j) acc[i][j] += av[i] * wv[j];
  }
  for (std::size_t i = 0; i < R; ++i)
    for (std::size_t j = 0; j < C; ++j) z[i * ldz + j] = acc[i][j];
}

// The edge of the matrix, where fewer than MR rows or NR columns remain.
inline void edge(std::size_t rows, std::size_t cols, std::size_t k, const float* a, const float* w,
                 const float* bias, float* z, std::size_t ldz) {
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t j = 0; j < cols; ++j) {
      float s = bias ? bias[j] : 0.0f;
      const float* ar = a + i * k;
      const float* wr = w + j * k;
      for (std::size_t p = 0; p < k; ++p) s += ar[p] * wr[p];
      z[i * ldz + j] = s;
    }
  }
}

void linear_forward(std::size_t m, std::size_t n, std::size_t k, const float* a, const float* w, const float* bias,
                    float* z) {
  std::size_t r = 0;
  for (; r + MR <= m; r += MR) {
    std::size_t c = 0;
    for (; c + NR <= n; c += NR) tile<MR, NR>(k, a + r * k, w + c * k, bias ? bias + c : nullptr, z + r * n + c, n);
    if (c < n) edge(MR, n - c, k, a + r * k, w + c * k, bias ? bias + c : nullptr, z + r * n + c, n);
  }
  if (r < m) {
    const std::size_t rows = m - r;
    std::size_t c = 0;
    for (; c + NR <= n; c += NR) {
      for (std::size_t i = 0; i < rows; ++i)
        tile<1, NR>(k, a + (r + i) * k, w + c * k, bias ? bias + c : nullptr, z + (r + i) * n + c, n);
    }
    if (c < n) edge(rows, n - c, k, a + r * k, w + c * k, bias ? bias + c : nullptr, z + r * n + c, n);
  }
}

void gemv(std::size_t n, std::size_t k, const float* w, const float* a, const float* bias, float* z) {
  std::size_t c = 0;
  for (; c + NR <= n; c += NR) tile<1, NR>(k, a, w + c * k, bias ? bias + c : nullptr, z + c, n);
  if (c < n) edge(1, n - c, k, a, w + c * k, bias ? bias + c : nullptr, z + c, n);
}

// Rows of the batch per pass in the weight-gradient kernel: a block of A stays in cache while
// every weight row is updated from it.
constexpr std::size_t RB = 64;

void linear_backward_weights(std::size_t m, std::size_t n, std::size_t k, const float* dz, const float* a,
                             float* dw, float* db) {
  for (std::size_t i = 0; i < n * k; ++i) dw[i] = 0.0f;
  if (db)
    for (std::size_t j = 0; j < n; ++j) db[j] = 0.0f;
  for (std::size_t r0 = 0; r0 < m; r0 += RB) {
    const std::size_t r1 = r0 + RB < m ? r0 + RB : m;
    for (std::size_t j = 0; j < n; ++j) {
      float* __restrict row = dw + j * k;
      float bsum = db ? db[j] : 0.0f;
      for (std::size_t r = r0; r < r1; ++r) {
        const float d = dz[r * n + j];
        // Zero gradients (every inactive ReLU) contribute nothing: skip the row, as the
        // reference does, which also keeps 0 * inf from turning into NaN.
        if (d == 0.0f) continue;
        bsum += d;
        const float* __restrict ar = a + r * k;
        for (std::size_t p = 0; p < k; ++p) row[p] += d * ar[p];
      }
      if (db) db[j] = bsum;
    }
  }
}

void linear_backward_input(std::size_t m, std::size_t n, std::size_t k, const float* dz, const float* w,
                           float* da) {
  for (std::size_t r = 0; r < m; ++r) {
    float* __restrict row = da + r * k;
    for (std::size_t p = 0; p < k; ++p) row[p] = 0.0f;
    for (std::size_t j = 0; j < n; ++j) {
      const float d = dz[r * n + j];
      if (d == 0.0f) continue;
      const float* __restrict wr = w + j * k;
      for (std::size_t p = 0; p < k; ++p) row[p] += d * wr[p];
    }
  }
}

constexpr Kernels kScalar = {
    "scalar", linear_forward, gemv, linear_backward_weights, linear_backward_input,
};

}  // namespace

const Kernels& scalar_kernels() { return kScalar; }

}  // namespace mlpkit::cpu

// The CPU kernels a model needs, as a table of function pointers chosen once per process.
// Each ISA fills the table in its own translation unit, compiled with its own flags, from the
// one generic implementation in kernels_impl.inl; no wide-vector instruction can leak into code
// that runs before the CPU has been checked (dispatch.cpp).
//
// Numerics shared by every ISA:
//  - Each GEMM output element is one float32 chain: its initial value (bias, 0, or the value
//    already in C when accumulating), then the products for p = 0, 1, ..., k-1 in order. A row's
//    result therefore never depends on the batch or tile it came in, nor on the thread that ran
//    it. (Splitting the chain in two was measured: no faster at batch 1, whose floor here is
//    streaming the weights from L2, and ~12% slower on batches.)
//  - SIMD ISAs use fused multiply-add; the scalar table multiplies and adds separately.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mlpkit::cpu {

// Weights are packed for the forward GEMM into panels of kPanel output columns:
// panel q holds W^T[p][q*kPanel + c] at q*k*kPanel + p*kPanel + c, zero past the last column.
constexpr std::size_t kPanel = 16;

// Epilogue applied in registers before the store. The *Grad forms multiply by the derivative
// of relu / leaky_relu at Gemm::gate (the backward pass of the previous layer's activation).
enum class Epilogue : int { None = 0, Relu = 1, LeakyRelu = 2, ReluGrad = 3, LeakyReluGrad = 4 };

// C[m x n] = init + A[m x k] . B[k x n], with strided views so one kernel serves the forward
// pass, both backward products, and the weight gradient:
//   A(i, p) = a[i * a_rs + p * a_cs]
//   B(p, c) = b[(c / kPanel) * b_ps + c % kPanel + p * b_rs]   (row-major B: b_rs = ldb, b_ps = kPanel;
//                                                               packed panels: b_rs = kPanel, b_ps = k * kPanel)
//   init    = C itself when accumulate, else bias[c] when bias is set, else 0.
// Loads never touch B or C past column n-1 of a row, nor bias past n-1.
struct Gemm {
  std::size_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  std::size_t a_rs = 0, a_cs = 1;
  const float* b = nullptr;
  std::size_t b_rs = 0, b_ps = kPanel;
  const float* bias = nullptr;
  float* c = nullptr;
  std::size_t ldc = 0;
  bool accumulate = false;
  Epilogue epilogue = Epilogue::None;
  float alpha = 0;  // leaky_relu slope
  // Relu / LeakyRelu with act set: C gets the raw values, act the activated ones (training
  // keeps both). Same layout as C.
  float* act = nullptr;
  // ReluGrad / LeakyReluGrad: the pre-activations z the derivative is taken at, laid out as C.
  const float* gate = nullptr;
};

// One Adam/AdamW (or SGD) update over params[begin, end), in the formulas of core/optimizer.cpp.
// With check set nothing is stored: the kernel only says whether every value the update would
// store (parameters and moments) is finite, so a step can be refused before it changes anything.
struct AdamStep {
  float* p;
  const float* g;
  float* m;
  float* v;
  float step_size, sqrt_bc2, b1, one_b1, b2, one_b2, eps, wd, decay;
  bool decoupled;
  bool check = false;
};
struct SgdStep {
  float* p;
  const float* g;
  float* buf;
  float lr, wd, momentum, keep;
  bool use_momentum, first, nesterov;
  bool check = false;
};

// Products over neuron-major weights (core/sparse/): row j of w (ldw floats apart) holds the
// weights that input neuron j sends to every output, so the rows of the active neurons are
// read whole and in order, and the skipped ones never.
//   y[r * ldy + c] += h[r * ldh + j] * w[j * ldw + c]  for c in [c0, c1), each listed j in order,
// each output one chain over the listed j in increasing order (a zero h may be skipped: with
// finite weights it adds exactly nothing), the same chain whatever the number of rows, so a
// row's result does not depend on its batch.
struct AxpyRows {
  const float* w = nullptr;
  // Instead of w: int8 codes, each widened to float exactly (per-output scales are the caller's).
  const std::int8_t* w8 = nullptr;
  std::size_t ldw = 0;
  const std::uint32_t* idx = nullptr;  // increasing
  std::size_t count = 0;
  const float* h = nullptr;
  std::size_t ldh = 0;
  std::size_t rows = 0;
  float* y = nullptr;
  std::size_t ldy = 0;
  std::size_t c0 = 0, c1 = 0;
};
//   h[r * ldh + j] = sum over p < k of w[j * ldw + p] * x[r * ldx + p]  for each listed j,
// in a fixed order that depends on k alone: one vector chain over p in steps of the vector
// width (the tail masked), then a fixed tree over the lanes.
struct DotRows {
  const float* w = nullptr;
  const std::int8_t* w8 = nullptr;  // instead of w: int8 codes, widened to float exactly

  std::size_t ldw = 0, k = 0;
  const std::uint32_t* idx = nullptr;
  std::size_t count = 0;
  const float* x = nullptr;
  std::size_t ldx = 0;
  std::size_t rows = 0;
  float* h = nullptr;
  std::size_t ldh = 0;
};

struct Kernels {
  const char* isa;
  void (*gemm)(const Gemm& g);
  // gemm using only the inputs p listed in idx (increasing): the product for rows of A that are
  // zero at every other p, reading only the listed rows of B. Each output's chain runs over the
  // listed p in order, so it equals gemm up to the sign of an all-zero sum.
  void (*gemm_sparse)(const Gemm& g, const std::uint32_t* idx, std::size_t count);
  // y = relu(z) or leaky_relu(z); y may alias z.
  void (*rectify)(Epilogue e, float alpha, const float* z, float* y, std::size_t n);
  // gz = gy * f'(z) for relu / leaky_relu (f'(0) = 0 or alpha, as PyTorch); gz may alias gy.
  void (*rectify_backward)(Epilogue e, float alpha, const float* z, const float* gy, float* gz, std::size_t n);
  // db[j] += sum over rows r of dz[r * ldz + j], rows in order.
  void (*column_sums)(std::size_t m, std::size_t n, const float* dz, std::size_t ldz, float* db);
  // dst[i] = srcs[0][i] + srcs[1][i] + ... (left to right) for i in [begin, end).
  void (*reduce)(float* dst, const float* const* srcs, std::size_t count, std::size_t begin, std::size_t end);
  // Both return false only with check set and some result NaN or +-Infinity.
  bool (*adam)(const AdamStep& s, std::size_t begin, std::size_t end);
  bool (*sgd)(const SgdStep& s, std::size_t begin, std::size_t end);
  void (*axpy_rows)(const AxpyRows& a);
  void (*dot_rows)(const DotRows& d);
  // True when no x[i], i < n, is NaN or +-Infinity (the gradient check before an update).
  bool (*all_finite)(const float* x, std::size_t n);
  // The float32 sum of x[i]^2, i < n, in partial sums of a fixed order: finite only when every
  // x[i] is, and then its square root bounds every |x[i]| (the update's overflow bounds).
  float (*sum_squares)(const float* x, std::size_t n);
};

const Kernels& scalar_kernels();
#if defined(__x86_64__) || defined(_M_X64)
const Kernels& avx2_kernels();
const Kernels& avx512_kernels();
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
const Kernels& neon_kernels();
#endif

// The table for this CPU: the widest ISA that the CPU and the OS support, or a lower one named
// by MLPKIT_ISA (scalar, avx2, avx512, neon). Chosen on first use, fixed for the process.
const Kernels& kernels();

// True when the AVX-512 table is in use and the CPU also has AVX-512 BW, VL and VNNI (the
// quantised kernels, core/quant/, build on that).
bool avx512_vnni_in_use();

// The ISAs this machine can run, widest first (what MLPKIT_ISA may name).
const char* const* supported_isas(std::size_t* count);

}  // namespace mlpkit::cpu

// The CUDA kernels of mlpkit as host-callable launchers: plain CUDA C++, no Node, no model
// logic. CudaModel (cuda_model.cu) and the tests (native/tests/cuda_tests.cu) call these.
//
// Conventions shared by every kernel here:
//  - Matrices are row-major unless a stride says otherwise; weights follow torch.nn.Linear,
//    W [out x in]. Nothing here allocates: callers pass device pointers and a stream.
//  - No atomics, anywhere. Every sum is taken in a fixed order that depends on the shapes
//    alone (a sequential chain per thread, a fixed shuffle or shared-memory tree per warp or
//    block, chunk partials summed in chunk order), so a call repeated on the same device with
//    the same inputs gives the same bits.
//  - A launcher throws std::runtime_error when the launch fails (check_launch).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace mlpkit::cuda {

// ---- errors ---------------------------------------------------------------------------------

// Throws std::runtime_error("CUDA error <name> (<code>): <text> in <call> at <file>:<line>").
[[noreturn]] void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line);
#define MLPKIT_CUDA_CHECK(call)                                                       \
  do {                                                                                \
    const cudaError_t mlpkit_cuda_status_ = (call);                                   \
    if (mlpkit_cuda_status_ != cudaSuccess)                                           \
      ::mlpkit::cuda::throw_cuda_error(mlpkit_cuda_status_, #call, __FILE__, __LINE__); \
  } while (0)
// After a launch: throws if the launch itself failed (bad configuration, no kernel image).
void check_launch(const char* kernel);

// ---- tiled fp32 GEMM with a fused epilogue (gemm_f32.cu) ---------------------------------------
//
// C[m x n] = init + A[m x k] . B[k x n] over strided views:
//   A(i, p) = a[i * a_rs + p * a_cs],  B(p, c) = b[p * b_rs + c * b_cs]
//   init    = C itself when accumulate, else bias[c] when bias is set, else 0.
// Each output is one float32 chain: init, then fmaf(A(i, p), B(p, c), acc) for p = k0, k0+1, ...
// in order: the same chain as the CPU kernels' SIMD ISAs (core/cpu/kernels.h), independent of
// the tile an element falls in.
// Epilogue, per element z of the chain:
//   gate set:  c = z * f'(gate) with f = gate_activation (the backward pass of an activation)
//   otherwise: z_out = z when z_out is set; c = f(z) with f = activation (none: z)
// Split-K (k_chunk > 0): the launch has ceil(k / k_chunk) slices along k; slice s covers
// p in [s * k_chunk, min(k, (s + 1) * k_chunk)) and writes c + s * c_zstride (init 0 or bias).
struct GemmF32 {
  long long m = 0, n = 0, k = 0;
  const float* a = nullptr;
  long long a_rs = 0, a_cs = 1;
  const float* b = nullptr;
  long long b_rs = 0, b_cs = 1;
  const float* bias = nullptr;
  float* c = nullptr;
  long long ldc = 0;
  bool accumulate = false;
  int activation = 0;  // core/activation.h codes
  float alpha = 0;
  float* z_out = nullptr;
  long long ld_z = 0;
  const float* gate = nullptr;
  long long ld_gate = 0;
  int gate_activation = 0;
  float gate_alpha = 0;
  long long k_chunk = 0;
  long long c_zstride = 0;
};
void gemm_f32(const GemmF32& g, cudaStream_t stream);

// ---- element-wise kernels (elementwise.cu) ----------------------------------------------------

// dst[r * ld_dst + c] for r < rows_pad, c < cols_pad: src[r * ld_src + c] converted to T when
// r < rows and c < cols, else 0. T is float, __half or __nv_bfloat16. src may be null (all 0).
template <class T>
void convert_pad(const float* src, long long rows, long long cols, long long ld_src, T* dst, long long rows_pad,
                 long long cols_pad, long long ld_dst, cudaStream_t stream);

// gz[i] = gy[i] * f'(z[i]) for i < n (gz may alias gy).
void activation_backward(int activation, float alpha, const float* z, const float* gy, float* gz, std::size_t n,
                         cudaStream_t stream);

// Blocks of the fixed-order reductions below (their partial sums live in `block_sums`).
constexpr int kReduceBlocks = 1024;

// The loss of core/loss.h and its gradient dLoss/dy, as loss_sum_and_gradient there (terms in
// double, gradients rounded once to float): result[0] = (sum of terms) * result_scale.
struct LossArgs {
  int loss = 0;           // core/loss.h codes
  double param = 0;       // Huber's delta
  const float* y = nullptr;
  long long rows = 0, outputs = 0;
  const float* values = nullptr;          // rows x outputs, when the loss takes values
  const std::int32_t* labels = nullptr;   // rows, softmax cross-entropy (checked by the caller)
  double inv_n = 0;       // 1 / (rows * outputs)
  double inv_rows = 0;    // 1 / rows
  float* grad = nullptr;  // rows x outputs
  double* block_sums = nullptr;  // kReduceBlocks doubles of scratch
  double* result = nullptr;      // one double
  double result_scale = 1;
};
void loss_and_gradient(const LossArgs& args, cudaStream_t stream);

// result[0] = sum of x[i]^2 in double (the gradient norm before its square root).
void sum_squares(const float* x, std::size_t n, double* block_sums, double* result, cudaStream_t stream);
// x[i] = float(double(x[i]) * coef): clip_grad_norm's scaling.
void scale_by(float* x, std::size_t n, double coef, cudaStream_t stream);

// One Adam/AdamW or SGD update, operation for operation the CPU kernels' (kernels_impl.inl),
// each a correctly rounded float operation (no contraction into FMA), so given the same
// gradients the parameters and moments are the CPU's bit for bit.
struct AdamArgs {
  float step_size, sqrt_bc2, b1, one_b1, b2, one_b2, eps, wd, decay;
  bool decoupled;
};
void adam_update(float* p, const float* g, float* m, float* v, std::size_t n, const AdamArgs& a, cudaStream_t stream);
struct SgdArgs {
  float lr, wd, momentum, keep;
  bool use_momentum, first, nesterov;
};
void sgd_update(float* p, const float* g, float* buf, std::size_t n, const SgdArgs& a, cudaStream_t stream);

// ---- chunked reductions for gradients (wgrad.cu) --------------------------------------------

// dst[r * cols + c] = scale * (partial[0][r][c] + partial[1][r][c] + ...), chunks in order,
// partial[s][r][c] at partial[s * chunk_stride + r * ld_partial + c].
void reduce_chunks(const float* partial, long long chunk_stride, int chunks, long long rows, long long cols,
                   long long ld_partial, float scale, float* dst, cudaStream_t stream);
// partial[s][c] = sum of x[r * ld + c] over the rows r of chunk s (rows [s * chunk_rows, ...)
// up to `rows`), in row order, in float. T is float, __half or __nv_bfloat16.
template <class T>
void column_sum_chunks(const T* x, long long ld, long long cols, long long rows, long long chunk_rows, int chunks,
                       float* partial, cudaStream_t stream);
// Weight gradient on tensor cores: partial[s] [out_pad x in_pad] = dz^T . a over the rows of
// chunk s, dz [rows x out_pad] (ld_dz), a [rows x in_pad] (ld_a), T = __half or __nv_bfloat16,
// fp32 accumulation. rows, chunk_rows, out_pad and in_pad are multiples of 16; pointers are
// 32-byte aligned.
template <class T>
void weight_grad_chunks(const T* dz, long long ld_dz, const T* a, long long ld_a, int out_pad, int in_pad,
                        long long rows, long long chunk_rows, int chunks, float* partial, cudaStream_t stream);

// ---- fully fused MLP on tensor cores (fused_mlp.cu) -----------------------------------------

constexpr int kFusedMaxWidth = 128;   // every width, padded to a multiple of 16, up to this
constexpr int kFusedMaxLayers = 16;
constexpr int kFusedTileRows = 128;   // rows per thread block: 8 warps x 16 rows

template <class T>
struct FusedLayer {
  const T* w = nullptr;      // [out_pad x in_pad], zero past out x in
  const float* b = nullptr;  // [out_pad], zero past out (and all zero without a bias)
  int in_pad = 0, out_pad = 0, out = 0;
  int activation = 0;
  float alpha = 0;
};

// Forward over rows_pad rows (a multiple of 16) of x [rows_pad x in_pad0] (T, zero-padded).
// Inference: y [rows x out_L] (fp32) = net(x) for the first `rows` rows.
// Training (z[0] set): also z[l] and a[l + 1] ([rows_pad x out_pad_l], T) for every hidden
// layer l < L - 1, and z_last [rows x out_L] (fp32), the last layer's pre-activation.
template <class T>
struct FusedForward {
  int layers = 0;
  FusedLayer<T> layer[kFusedMaxLayers];
  const T* x = nullptr;
  long long rows = 0, rows_pad = 0;
  T* z[kFusedMaxLayers] = {};
  T* a[kFusedMaxLayers] = {};  // a[l] is the input of layer l; a[0] is x and is not written
  float* z_last = nullptr;
  float* y = nullptr;
};
template <class T>
void fused_forward(const FusedForward<T>& p, cudaStream_t stream);

// Backward from dy [rows x out_L] (fp32): dz[L-1] = T(scale * dy * f'(z_last)), then
// dz[l-1] = T(float(dz[l] . W_l) * f'(z[l-1])) down the layers ([rows_pad x out_pad_l], zero on
// the padded rows and columns), and dx [rows x dx_cols] = dx_scale * (dz[0] . W_0) when dx is set.
template <class T>
struct FusedBackward {
  int layers = 0;
  FusedLayer<T> layer[kFusedMaxLayers];
  long long rows = 0, rows_pad = 0;
  const T* z[kFusedMaxLayers] = {};
  const float* z_last = nullptr;
  const float* dy = nullptr;
  float scale = 1;
  T* dz[kFusedMaxLayers] = {};
  float* dx = nullptr;
  int dx_cols = 0;
  float dx_scale = 1;
};
template <class T>
void fused_backward(const FusedBackward<T>& p, cudaStream_t stream);

// Dynamic shared memory one fused block uses (above the default 48 KB: the launchers opt in).
std::size_t fused_shared_bytes();

// ---- quantised GEMV (quant_gemv.cu) -------------------------------------------------------------
//
// The file formats of lib/quant/format.ts (docs/QUANTIZATION.md), kept output-major on the device:
//   int8: w8 [n x kq] (kq = k rounded up to 4, zero-padded), one scale per output.
//   int4: w4 [n x kq / 2] bytes (kq = k rounded up to the group), code 2c in the low nibble of
//         byte c, 2c + 1 in the high one; scales and zero points [n x groups] (zero points 8 when
//         symmetric).
struct QuantLayerDevice {
  int k = 0, n = 0, kq = 0;
  int format = 0;  // 0 int8, 1 int4 (core/quant/qlayer.h)
  int group = 0, groups = 1;
  const std::int8_t* w8 = nullptr;
  const std::uint8_t* w4 = nullptr;
  const float* scales = nullptr;
  const std::uint8_t* zeros = nullptr;
  const float* bias = nullptr;  // [n], zeros when the layer has none
  int activation = 0;
  float alpha = 0;
};
// W8A8 input rows, exactly lib/quant/format.ts: sx[r] = f32(max |x| / 127) (NaN for a row with
// NaN or Infinity), xq [batch x kq] = clamp(rhe(f32(x / sx)), -127, 127) (0 past k, and for a
// zero or non-finite row), xsum [batch x groups] the integer sums of xq over each group.
void quantize_rows(const float* x, long long batch, int k, int kq, int group, int groups, std::int8_t* xq,
                   std::int32_t* xsum, float* sx, cudaStream_t stream);
// y [batch x n] = act(W8A8 product + bias): the float steps of format.ts in their order, each a
// correctly rounded operation, so the result is the CPU's bit for bit before the activation.
void qgemv_w8a8(const QuantLayerDevice& l, const std::int8_t* xq, const std::int32_t* xsum, const float* sx,
                long long batch, float* y, cudaStream_t stream);
// y [batch x n] = act(x . dequant(W)^T + bias), weight-only, codes dequantised in registers:
// per group a float sum of x * (q - z), times the group's scale, groups summed in order.
void qgemv_wfloat(const QuantLayerDevice& l, const float* x, long long batch, float* y, cudaStream_t stream);

// ---- exact activation sparsity (sparse_gemv.cu) ---------------------------------------------

// idx[0, *count) = the inputs p < k (increasing) at which some row of x [batch x k] is not
// exactly zero. One block, an ordered compaction.
void active_inputs(const float* x, long long batch, int k, int* idx, int* count, cudaStream_t stream);
// y [batch x n] = act(bias + sum over the listed p of x[r][p] * wt[p][n]) with wt = W^T [k x n]
// (neuron-major: an active input is one contiguous row), the chain over the listed p in order
// with fmaf. count is read on the device. Equals the dense chain up to the sign of a zero sum.
void sparse_gemv(const float* x, long long batch, int k, const int* idx, const int* count, const float* wt, int n,
                 const float* bias, int activation, float alpha, float* y, cudaStream_t stream);

}  // namespace mlpkit::cuda

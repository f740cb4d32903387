// Exact activation sparsity on the GPU: after a ReLU most inputs of the next layer are exactly
// zero. active_inputs lists the inputs that are not (in increasing order, an ordered block-wide
// compaction), and sparse_gemv reads only those rows of the neuron-major weights W^T [k x n]:
// each active input is one contiguous row of n floats, read coalesced by the threads (one per
// output), while its activation is one broadcast load. Each output is one fmaf chain over the
// listed inputs in order, which is the dense chain with its zero terms left out.
#include "core/cuda/activation.cuh"
#include "core/cuda/kernels.cuh"

namespace mlpkit::cuda {
namespace {

constexpr int kCompactThreads = 1024;
constexpr int kThreads = 256;
constexpr unsigned kFull = 0xffffffffu;

__global__ void __launch_bounds__(kCompactThreads) active_inputs_kernel(const float* x, long long batch, int k, int* idx,
                                                                       int* count) {
  __shared__ int warp_base[kCompactThreads / 32];
  __shared__ int total;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int base = 0;  // inputs listed so far (the same in every thread)
  for (int p0 = 0; p0 < k; p0 += kCompactThreads) {
    const int p = p0 + threadIdx.x;
    bool active = false;
    if (p < k) {
      // NaN != 0, so a NaN input is listed (and propagates, as in the dense product).
      for (long long r = 0; r < batch && !active; ++r) active = x[r * k + p] != 0.0f;
    }
    const unsigned ballot = __ballot_sync(kFull, active);
    if (lane == 0) warp_base[warp] = __popc(ballot);
    __syncthreads();
    if (threadIdx.x == 0) {
      int run = 0;
      for (int w = 0; w < kCompactThreads / 32; ++w) {
        const int c = warp_base[w];
        warp_base[w] = run;
        run += c;
      }
      total = run;
    }
    __syncthreads();
    if (active) idx[base + warp_base[warp] + __popc(ballot & ((1u << lane) - 1u))] = p;
    base += total;
    __syncthreads();  // warp_base and total are rewritten by the next round
  }
  if (threadIdx.x == 0) *count = base;
}

__global__ void sparse_gemv_kernel(const float* x, long long batch, int k, const int* idx, const int* count,
                                   const float* wt, int n, const float* bias, int activation, float alpha, float* y) {
  const long long j = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const int listed = *count;
  for (long long r = blockIdx.y; r < batch; r += gridDim.y) {
    const float* xr = x + r * k;
    float acc = bias ? bias[j] : 0.0f;
    for (int t = 0; t < listed; ++t) {
      const int p = idx[t];
      acc = fmaf(xr[p], wt[static_cast<long long>(p) * n + j], acc);
    }
    y[r * n + j] = activation != 0 ? act_value(activation, acc, alpha) : acc;
  }
}

}  // namespace

void active_inputs(const float* x, long long batch, int k, int* idx, int* count, cudaStream_t stream) {
  active_inputs_kernel<<<1, kCompactThreads, 0, stream>>>(x, batch, k, idx, count);
  check_launch("active_inputs");
}

void sparse_gemv(const float* x, long long batch, int k, const int* idx, const int* count, const float* wt, int n,
                 const float* bias, int activation, float alpha, float* y, cudaStream_t stream) {
  if (batch <= 0 || n <= 0) return;
  const long long rows = batch < 65535 ? batch : 65535;
  const dim3 grid(static_cast<unsigned>((n + kThreads - 1) / kThreads), static_cast<unsigned>(rows));
  sparse_gemv_kernel<<<grid, kThreads, 0, stream>>>(x, batch, k, idx, count, wt, n, bias, activation, alpha, y);
  check_launch("sparse_gemv");
}

}  // namespace mlpkit::cuda

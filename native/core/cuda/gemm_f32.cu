// The fp32 path: a tiled GEMM with the bias, activation and activation-derivative epilogues
// fused, for any shape (see GemmF32 in kernels.cuh). Correctness first: 64 x 64 output tiles,
// 16-deep slices of A and B staged in shared memory, 4 x 4 outputs per thread, and each output
// one fmaf chain in k order, the CPU's chain (so fp32 results do not depend on the tiling).
#include <algorithm>

#include "core/cuda/activation.cuh"
#include "core/cuda/kernels.cuh"

namespace mlpkit::cuda {
namespace {

constexpr int kBM = 64;  // output rows per block
constexpr int kBN = 64;  // output columns per block
constexpr int kBK = 16;  // reduction slice staged in shared memory
constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) gemm_f32_kernel(const GemmF32 g) {
  __shared__ float as[kBK][kBM + 4];
  __shared__ float bs[kBK][kBN + 4];
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const long long row0 = static_cast<long long>(blockIdx.x) * kBM;
  const long long col0 = static_cast<long long>(blockIdx.y) * kBN;
  long long k0 = 0, k1 = g.k;
  float* c = g.c;
  if (g.k_chunk > 0) {
    k0 = static_cast<long long>(blockIdx.z) * g.k_chunk;
    k1 = k0 + g.k_chunk < g.k ? k0 + g.k_chunk : g.k;
    c += static_cast<long long>(blockIdx.z) * g.c_zstride;
  }

  // Thread (tx, ty) owns rows row0 + ty + 16 r and columns col0 + tx + 16 q, r, q < 4.
  float acc[4][4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const long long i = row0 + ty + 16 * r, j = col0 + tx + 16 * q;
      float init = 0.0f;
      if (i < g.m && j < g.n) {
        if (g.accumulate) init = c[i * g.ldc + j];
        else if (g.bias) init = g.bias[j];
      }
      acc[r][q] = init;
    }
  }

  for (long long p0 = k0; p0 < k1; p0 += kBK) {
    const int kc = static_cast<int>(k1 - p0 < kBK ? k1 - p0 : kBK);
    // Stage A [64 x kc] and B [kc x 64]; consecutive threads walk the contiguous dimension.
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int idx = tid + e * kThreads;
      int i, p;
      if (g.a_cs == 1) {
        i = idx / kBK;
        p = idx % kBK;
      } else {
        i = idx % kBM;
        p = idx / kBM;
      }
      const long long gi = row0 + i;
      as[p][i] = (gi < g.m && p < kc) ? g.a[gi * g.a_rs + (p0 + p) * g.a_cs] : 0.0f;
      int pb, jb;
      if (g.b_cs == 1) {
        jb = idx % kBN;
        pb = idx / kBN;
      } else {
        pb = idx % kBK;
        jb = idx / kBK;
      }
      const long long gj = col0 + jb;
      bs[pb][jb] = (gj < g.n && pb < kc) ? g.b[(p0 + pb) * g.b_rs + gj * g.b_cs] : 0.0f;
    }
    __syncthreads();
    // Only the kc valid steps: a padded step would add 0 * w, which is not a no-op for
    // w = Inf or NaN, nor for a chain at -0.
    for (int p = 0; p < kc; ++p) {
      float av[4], bv[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) av[r] = as[p][ty + 16 * r];
#pragma unroll
      for (int q = 0; q < 4; ++q) bv[q] = bs[p][tx + 16 * q];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[r][q] = fmaf(av[r], bv[q], acc[r][q]);
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int r = 0; r < 4; ++r) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const long long i = row0 + ty + 16 * r, j = col0 + tx + 16 * q;
      if (i >= g.m || j >= g.n) continue;
      const float z = acc[r][q];
      if (g.gate) {
        c[i * g.ldc + j] = z * act_derivative(g.gate_activation, g.gate[i * g.ld_gate + j], g.gate_alpha);
      } else {
        if (g.z_out) g.z_out[i * g.ld_z + j] = z;
        c[i * g.ldc + j] = g.activation != 0 ? act_value(g.activation, z, g.alpha) : z;
      }
    }
  }
}

}  // namespace

void gemm_f32(const GemmF32& g, cudaStream_t stream) {
  if (g.m <= 0 || g.n <= 0) return;
  const long long slices = g.k_chunk > 0 ? std::max<long long>(1, (g.k + g.k_chunk - 1) / g.k_chunk) : 1;
  const dim3 grid(static_cast<unsigned>((g.m + kBM - 1) / kBM), static_cast<unsigned>((g.n + kBN - 1) / kBN),
                  static_cast<unsigned>(slices));
  gemm_f32_kernel<<<grid, kThreads, 0, stream>>>(g);
  check_launch("gemm_f32");
}

}  // namespace mlpkit::cuda

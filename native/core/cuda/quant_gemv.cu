// Quantised GEMV over the file layouts of lib/quant/format.ts (see QuantLayerDevice in
// kernels.cuh): one warp per output, batch rows along grid.y, codes dequantised in registers.
//
// int8 rows are read 4 codes per lane per step (__dp4a for W8A8: exact int32 sums); int4 rows
// one group per lane (group g on lane g % 32, in rounds of 32 groups), and the per-group float
// terms are then folded in group order through warp shuffles, so every float operation of the
// format's arithmetic happens in its stated order. W8A8 uses correctly rounded intrinsics
// (__fmul_rn, __fadd_rn, __fdiv_rn) that nvcc never contracts: the result is the CPU's bit for
// bit before the activation.
#include <cfloat>

#include "core/cuda/activation.cuh"
#include "core/cuda/kernels.cuh"

namespace mlpkit::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ __forceinline__ int warp_sum(int v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

__device__ __forceinline__ int zero_point(const QuantLayerDevice& l, long long j, int g) {
  return l.zeros ? static_cast<int>(l.zeros[j * l.groups + g]) : 8;
}

__global__ void __launch_bounds__(kThreads) qgemv_wfloat_kernel(const QuantLayerDevice l, const float* x,
                                                               long long batch, float* y) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const long long j = static_cast<long long>(blockIdx.x) * kWarps + warp;
  if (j >= l.n) return;
  for (long long r = blockIdx.y; r < batch; r += gridDim.y) {
    const float* xr = x + r * l.k;
    float sum = 0.0f;
    if (l.format == 0) {
      // One group: part = sum of x_p * q_p (lanes over 4-byte steps, then a fixed tree), y = s * part.
      const std::int8_t* w = l.w8 + j * l.kq;
      float part = 0.0f;
      for (int p = lane * 4; p < l.k; p += 128) {
        const char4 q = *reinterpret_cast<const char4*>(w + p);
        part += xr[p] * static_cast<float>(q.x);
        if (p + 1 < l.k) part += xr[p + 1] * static_cast<float>(q.y);
        if (p + 2 < l.k) part += xr[p + 2] * static_cast<float>(q.z);
        if (p + 3 < l.k) part += xr[p + 3] * static_cast<float>(q.w);
      }
      sum = 0.0f + l.scales[j] * warp_sum(part);
    } else {
      const std::uint8_t* w = l.w4 + j * (l.kq / 2);
      for (int g0 = 0; g0 < l.groups; g0 += 32) {
        const int g = g0 + lane;
        float t = 0.0f;
        if (g < l.groups) {
          const int z = zero_point(l, j, g);
          float part = 0.0f;
          // Positions past k are padding (q = 0): skipped, x has only k columns.
          const int end = (g + 1) * l.group < l.k ? (g + 1) * l.group : l.k;
          for (int p = g * l.group; p < end; p += 2) {
            const unsigned byte = w[p / 2];
            part += xr[p] * static_cast<float>(static_cast<int>(byte & 15u) - z);
            if (p + 1 < end) part += xr[p + 1] * static_cast<float>(static_cast<int>(byte >> 4) - z);
          }
          t = l.scales[j * l.groups + g] * part;
        }
        const int count = l.groups - g0 < 32 ? l.groups - g0 : 32;
        for (int i = 0; i < count; ++i) sum += __shfl_sync(kFull, t, i);
      }
    }
    if (lane == 0) y[r * l.n + j] = act_value(l.activation, sum + l.bias[j], l.alpha);
  }
}

__global__ void __launch_bounds__(kThreads) qgemv_w8a8_kernel(const QuantLayerDevice l, const std::int8_t* xq,
                                                             const std::int32_t* xsum, const float* sx,
                                                             long long batch, float* y) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const long long j = static_cast<long long>(blockIdx.x) * kWarps + warp;
  if (j >= l.n) return;
  for (long long r = blockIdx.y; r < batch; r += gridDim.y) {
    const std::int8_t* xr = xq + r * l.kq;
    const float s_x = sx[r];
    float sum = 0.0f;
    if (l.format == 0) {
      const std::int8_t* w = l.w8 + j * l.kq;
      int acc = 0;
      for (int p = lane * 4; p < l.kq; p += 128) {
        acc = __dp4a(*reinterpret_cast<const int*>(w + p), *reinterpret_cast<const int*>(xr + p), acc);
      }
      acc = warp_sum(acc);  // exact: any order gives the same int32
      sum = __fmul_rn(__fmul_rn(s_x, l.scales[j]), __int2float_rn(acc));
    } else {
      const std::uint8_t* w = l.w4 + j * (l.kq / 2);
      for (int g0 = 0; g0 < l.groups; g0 += 32) {
        const int g = g0 + lane;
        float t = 0.0f;
        if (g < l.groups) {
          int acc = 0;
          for (int p = g * l.group; p < (g + 1) * l.group; p += 2) {
            const unsigned byte = w[p / 2];
            acc += static_cast<int>(xr[p]) * static_cast<int>(byte & 15u) +
                   static_cast<int>(xr[p + 1]) * static_cast<int>(byte >> 4);
          }
          acc -= zero_point(l, j, g) * xsum[r * l.groups + g];
          t = __fmul_rn(__fmul_rn(s_x, l.scales[j * l.groups + g]), __int2float_rn(acc));
        }
        // y = t_0, then y = f32(y + t_g) for g = 1, 2, ... (format.ts).
        const int count = l.groups - g0 < 32 ? l.groups - g0 : 32;
        for (int i = 0; i < count; ++i) {
          const float ti = __shfl_sync(kFull, t, i);
          sum = g0 + i == 0 ? ti : __fadd_rn(sum, ti);
        }
      }
    }
    if (lane == 0) y[r * l.n + j] = act_value(l.activation, __fadd_rn(sum, l.bias[j]), l.alpha);
  }
}

// One block per row (grid-stride over rows).
__global__ void quantize_rows_kernel(const float* x, long long batch, int k, int kq, int group, int groups,
                                     std::int8_t* xq, std::int32_t* xsum, float* sx) {
  __shared__ float smax[kThreads];
  __shared__ int sbad[kThreads];
  for (long long r = blockIdx.x; r < batch; r += gridDim.x) {
    const float* xr = x + r * k;
    float amax = 0.0f;
    int bad = 0;
    for (int p = threadIdx.x; p < k; p += blockDim.x) {
      const float a = fabsf(xr[p]);
      bad |= !(a <= FLT_MAX);  // NaN and Infinity
      amax = fmaxf(amax, a);
    }
    smax[threadIdx.x] = amax;
    sbad[threadIdx.x] = bad;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s /= 2) {
      if (static_cast<int>(threadIdx.x) < s) {
        smax[threadIdx.x] = fmaxf(smax[threadIdx.x], smax[threadIdx.x + s]);
        sbad[threadIdx.x] |= sbad[threadIdx.x + s];
      }
      __syncthreads();
    }
    const bool finite = sbad[0] == 0;
    const float s = finite ? __fdiv_rn(smax[0], 127.0f) : __int_as_float(0x7fc00000);
    const bool quantise = finite && s > 0.0f;
    std::int8_t* qr = xq + r * kq;
    for (int p = threadIdx.x; p < kq; p += blockDim.x) {
      int q = 0;
      if (quantise && p < k) {
        // rintf rounds half to even; a true division, not x * (1 / s).
        const float v = fminf(fmaxf(rintf(__fdiv_rn(xr[p], s)), -127.0f), 127.0f);
        q = static_cast<int>(v);
      }
      qr[p] = static_cast<std::int8_t>(q);
    }
    __syncthreads();  // this block's xq writes are visible to it after the barrier
    for (int g = threadIdx.x; g < groups; g += blockDim.x) {
      int sum = 0;
      for (int p = g * group; p < (g + 1) * group; ++p) sum += qr[p];
      xsum[r * groups + g] = sum;
    }
    if (threadIdx.x == 0) sx[r] = s;
    __syncthreads();  // smax / sbad are reused by the next row
  }
}

dim3 gemv_grid(int n, long long batch) {
  const long long rows = batch < 65535 ? batch : 65535;
  return dim3(static_cast<unsigned>((n + kWarps - 1) / kWarps), static_cast<unsigned>(rows));
}

}  // namespace

void quantize_rows(const float* x, long long batch, int k, int kq, int group, int groups, std::int8_t* xq,
                   std::int32_t* xsum, float* sx, cudaStream_t stream) {
  if (batch <= 0) return;
  const unsigned blocks = static_cast<unsigned>(batch < 65535 * 16 ? batch : 65535 * 16);
  quantize_rows_kernel<<<blocks, kThreads, 0, stream>>>(x, batch, k, kq, group, groups, xq, xsum, sx);
  check_launch("quantize_rows");
}

void qgemv_w8a8(const QuantLayerDevice& l, const std::int8_t* xq, const std::int32_t* xsum, const float* sx,
                long long batch, float* y, cudaStream_t stream) {
  if (batch <= 0 || l.n <= 0) return;
  qgemv_w8a8_kernel<<<gemv_grid(l.n, batch), kThreads, 0, stream>>>(l, xq, xsum, sx, batch, y);
  check_launch("qgemv_w8a8");
}

void qgemv_wfloat(const QuantLayerDevice& l, const float* x, long long batch, float* y, cudaStream_t stream) {
  if (batch <= 0 || l.n <= 0) return;
  qgemv_wfloat_kernel<<<gemv_grid(l.n, batch), kThreads, 0, stream>>>(l, x, batch, y);
  check_launch("qgemv_wfloat");
}

}  // namespace mlpkit::cuda

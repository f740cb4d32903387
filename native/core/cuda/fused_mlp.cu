// The fully fused MLP (the tiny-cuda-nn recipe): one kernel runs every layer of a 128-row tile
// of the batch, with the activations never leaving shared memory.
//
// A block is 8 warps; warp w owns rows [16 w, 16 w + 16) of the block's tile and walks them
// through all the layers on its own (no block-wide barrier anywhere). Per layer, for each
// 16-column block of the output, the warp multiplies its 16 x in_pad activations (fragments of
// matrix_a, from shared memory) by the layer's weights (fragments of matrix_b, read from global
// memory, where the 8 warps of a block and the blocks of an SM hit the same L1/L2 lines) on the
// tensor cores, T = half or bf16 inputs with fp32 accumulation (nvcuda::wmma, 16 x 16 x 16).
// The fp32 accumulator goes through a per-warp 16 x 16 scratch, where the bias and activation
// are applied in fp32, and the result is rounded to T into the other activation buffer.
//
// Shared memory per warp: two activation buffers of 16 x (128 + 8) T (ping-pong between layers;
// the 8-element skew staggers rows across banks) and the 16 x 16 float scratch: 9.5 KB, 76 KB a
// block, so blocks opt in to more than the default 48 KB.
#include <mma.h>

#include "core/cuda/activation.cuh"
#include "core/cuda/kernels.cuh"

namespace mlpkit::cuda {
namespace {

constexpr int kWarps = kFusedTileRows / 16;
constexpr int kThreads = kWarps * 32;
constexpr int kLds = kFusedMaxWidth + 8;  // row stride of an activation buffer, in elements
constexpr int kBufferElems = 16 * kLds;
constexpr std::size_t kWarpBytes = 2 * kBufferElems * 2 + 16 * 16 * sizeof(float);
static_assert(kWarpBytes % 32 == 0, "each warp's buffers must stay 32-byte aligned for wmma");

template <class T>
__device__ __forceinline__ T to_t(float v);
template <>
__device__ __forceinline__ __half to_t<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 to_t<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
struct WarpSmem {
  T* buf[2];
  float* scratch;
};

template <class T>
__device__ __forceinline__ WarpSmem<T> warp_smem(unsigned char* smem, int warp) {
  WarpSmem<T> s;
  unsigned char* base = smem + warp * kWarpBytes;
  s.buf[0] = reinterpret_cast<T*>(base);
  s.buf[1] = s.buf[0] + kBufferElems;
  s.scratch = reinterpret_cast<float*>(base + 2 * kBufferElems * sizeof(T));
  return s;
}

// acc = A [16 x 16 kblocks] (shared memory at a, row stride kLds) . B [16 kblocks x 16], B's
// k-th 16 x 16 block at b + kb * b_step with leading dimension ldb in the given wmma layout.
template <class T, class Layout>
__device__ __forceinline__ void warp_tile_product(nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>& acc,
                                                  const T* a, int kblocks, const T* b, long long b_step, unsigned ldb) {
  using namespace nvcuda;
  wmma::fill_fragment(acc, 0.0f);
  for (int kb = 0; kb < kblocks; ++kb) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, Layout> fb;
    wmma::load_matrix_sync(fa, a + kb * 16, kLds);
    wmma::load_matrix_sync(fb, b + kb * b_step, ldb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) fused_forward_kernel(const FusedForward<T> p) {
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const long long row0 = static_cast<long long>(blockIdx.x) * kFusedTileRows + warp * 16;
  if (row0 >= p.rows_pad) return;  // rows_pad is a multiple of 16: whole warps leave
  WarpSmem<T> s = warp_smem<T>(smem, warp);
  const bool training = p.z[0] != nullptr;  // keep z and a of the hidden layers for backward

  // The warp's 16 input rows into buffer 0.
  {
    const int in = p.layer[0].in_pad;
    for (int e = lane; e < 16 * in; e += 32) {
      const int r = e / in, c = e % in;
      s.buf[0][r * kLds + c] = p.x[(row0 + r) * in + c];
    }
  }
  __syncwarp();

  int cur = 0;
  for (int l = 0; l < p.layers; ++l) {
    const FusedLayer<T> ly = p.layer[l];
    const bool last = l + 1 == p.layers;
    T* in = s.buf[cur];
    T* out = s.buf[cur ^ 1];
    for (int nb = 0; nb < ly.out_pad / 16; ++nb) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      // B(k = i, n = o) = W[o][i]: W row-major is W^T column-major with ld = in_pad.
      warp_tile_product<T, wmma::col_major>(acc, in, ly.in_pad / 16, ly.w + static_cast<long long>(nb) * 16 * ly.in_pad,
                                            16, static_cast<unsigned>(ly.in_pad));
      wmma::store_matrix_sync(s.scratch, acc, 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int r = e / 16, c = nb * 16 + e % 16;
        const long long row = row0 + r;
        const bool valid = c < ly.out;
        const float z = s.scratch[e] + ly.b[c];
        const float a = act_value(ly.activation, z, ly.alpha);
        if (last) {
          if (valid && row < p.rows) {
            if (p.z_last) p.z_last[row * ly.out + c] = z;
            p.y[row * ly.out + c] = a;
          }
        } else {
          // Padded columns hold 0, not f(0): the next layer's padded weights are zero anyway,
          // and the backward pass relies on zeros there.
          const T at = to_t<T>(valid ? a : 0.0f);
          out[r * kLds + c] = at;
          if (training) {
            p.z[l][row * ly.out_pad + c] = to_t<T>(valid ? z : 0.0f);
            p.a[l + 1][row * ly.out_pad + c] = at;
          }
        }
      }
      __syncwarp();
    }
    cur ^= 1;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) fused_backward_kernel(const FusedBackward<T> p) {
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const long long row0 = static_cast<long long>(blockIdx.x) * kFusedTileRows + warp * 16;
  if (row0 >= p.rows_pad) return;
  WarpSmem<T> s = warp_smem<T>(smem, warp);
  const int L = p.layers;

  // dz of the last layer: scale * dy * f'(z_last), zero on padded rows and columns.
  {
    const FusedLayer<T> top = p.layer[L - 1];
    for (int e = lane; e < 16 * top.out_pad; e += 32) {
      const int r = e / top.out_pad, c = e % top.out_pad;
      const long long row = row0 + r;
      float g = 0.0f;
      if (c < top.out && row < p.rows) {
        const long long at = row * top.out + c;
        g = p.scale * p.dy[at] * act_derivative(top.activation, p.z_last[at], top.alpha);
      }
      const T gt = to_t<T>(g);
      s.buf[0][r * kLds + c] = gt;
      p.dz[L - 1][row * top.out_pad + c] = gt;
    }
  }
  __syncwarp();

  int cur = 0;
  for (int l = L - 1; l >= 0; --l) {
    if (l == 0 && p.dx == nullptr) break;
    const FusedLayer<T> ly = p.layer[l];
    const T* g = s.buf[cur];
    T* out = s.buf[cur ^ 1];
    FusedLayer<T> below;
    if (l > 0) below = p.layer[l - 1];
    // dA [16 x in_pad] = dZ [16 x out_pad] . W [out_pad x in_pad], W read row-major.
    for (int nb = 0; nb < ly.in_pad / 16; ++nb) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      warp_tile_product<T, wmma::row_major>(acc, g, ly.out_pad / 16, ly.w + nb * 16, 16LL * ly.in_pad,
                                            static_cast<unsigned>(ly.in_pad));
      wmma::store_matrix_sync(s.scratch, acc, 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int r = e / 16, c = nb * 16 + e % 16;
        const long long row = row0 + r;
        const float v = s.scratch[e];
        if (l == 0) {
          if (row < p.rows && c < p.dx_cols) p.dx[row * p.dx_cols + c] = v * p.dx_scale;
        } else {
          float gz = 0.0f;
          if (c < below.out) {
            gz = v * act_derivative(below.activation, to_f(p.z[l - 1][row * below.out_pad + c]), below.alpha);
          }
          const T gt = to_t<T>(gz);
          out[r * kLds + c] = gt;
          p.dz[l - 1][row * below.out_pad + c] = gt;
        }
      }
      __syncwarp();
    }
    cur ^= 1;
  }
}

template <class Kernel>
void allow_large_smem(Kernel kernel) {
  MLPKIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(fused_shared_bytes())));
}

unsigned tiles_for(long long rows_pad) {
  return static_cast<unsigned>((rows_pad + kFusedTileRows - 1) / kFusedTileRows);
}

}  // namespace

std::size_t fused_shared_bytes() { return kWarps * kWarpBytes; }

template <class T>
void fused_forward(const FusedForward<T>& p, cudaStream_t stream) {
  if (p.rows_pad <= 0) return;
  allow_large_smem(fused_forward_kernel<T>);
  fused_forward_kernel<T><<<tiles_for(p.rows_pad), kThreads, fused_shared_bytes(), stream>>>(p);
  check_launch("fused_forward");
}

template <class T>
void fused_backward(const FusedBackward<T>& p, cudaStream_t stream) {
  if (p.rows_pad <= 0) return;
  allow_large_smem(fused_backward_kernel<T>);
  fused_backward_kernel<T><<<tiles_for(p.rows_pad), kThreads, fused_shared_bytes(), stream>>>(p);
  check_launch("fused_backward");
}

template void fused_forward<__half>(const FusedForward<__half>&, cudaStream_t);
template void fused_forward<__nv_bfloat16>(const FusedForward<__nv_bfloat16>&, cudaStream_t);
template void fused_backward<__half>(const FusedBackward<__half>&, cudaStream_t);
template void fused_backward<__nv_bfloat16>(const FusedBackward<__nv_bfloat16>&, cudaStream_t);

}  // namespace mlpkit::cuda

// Gradients of the weights and biases, reduced over the batch without atomics: the batch is cut
// into chunks of rows whose boundaries depend on the batch size alone; each chunk writes its own
// partial sums, and reduce_chunks adds the partials in chunk order. The tensor-core weight
// gradient (dW = dZ^T . A per chunk) is the GEMM of the fused path; the fp32 path uses gemm_f32
// in its split-K form with the same reduction.
#include <mma.h>

#include "core/cuda/kernels.cuh"

namespace mlpkit::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

__global__ void reduce_chunks_kernel(const float* partial, long long chunk_stride, int chunks, long long rows,
                                     long long cols, long long ld_partial, float scale, float* dst) {
  const long long total = rows * cols;
  for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long r = e / cols, c = e % cols;
    const float* src = partial + r * ld_partial + c;
    float sum = src[0];
    for (int s = 1; s < chunks; ++s) sum += src[s * chunk_stride];
    dst[e] = sum * scale;
  }
}

// blockIdx.x: chunk; blockIdx.y * 256 + threadIdx.x: column. Rows in order within the chunk.
template <class T>
__global__ void column_sum_kernel(const T* x, long long ld, long long cols, long long rows, long long chunk_rows,
                                  float* partial) {
  const long long c = blockIdx.y * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  const long long r0 = blockIdx.x * chunk_rows;
  const long long r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  float sum = 0.0f;
  for (long long r = r0; r < r1; ++r) sum += to_float(x[r * ld + c]);
  partial[blockIdx.x * cols + c] = sum;
}

// blockIdx.x: chunk; each warp one 16 x 16 tile (blockIdx.y * 8 + warp) of dW [out_pad x in_pad].
template <class T>
__global__ void __launch_bounds__(kThreads) weight_grad_kernel(const T* dz, long long ld_dz, const T* a, long long ld_a,
                                                              int out_pad, int in_pad, long long rows,
                                                              long long chunk_rows, float* partial) {
  using namespace nvcuda;
  const int warp = threadIdx.x / 32;
  const int tiles_n = in_pad / 16;
  const int tile = blockIdx.y * (kThreads / 32) + warp;
  if (tile >= (out_pad / 16) * tiles_n) return;
  const int tm = tile / tiles_n, tn = tile % tiles_n;
  const long long r0 = blockIdx.x * chunk_rows;
  const long long r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  for (long long r = r0; r < r1; r += 16) {
    // A(m = o, k = r) = dz[r][o]: dz^T read column-major. B(k = r, n = i) = a[r][i]: row-major.
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::col_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
    wmma::load_matrix_sync(fa, dz + r * ld_dz + tm * 16, static_cast<unsigned>(ld_dz));
    wmma::load_matrix_sync(fb, a + r * ld_a + tn * 16, static_cast<unsigned>(ld_a));
    wmma::mma_sync(acc, fa, fb, acc);
  }
  float* out = partial + blockIdx.x * static_cast<long long>(out_pad) * in_pad + static_cast<long long>(tm) * 16 * in_pad +
               tn * 16;
  wmma::store_matrix_sync(out, acc, static_cast<unsigned>(in_pad), wmma::mem_row_major);
}

}  // namespace

void reduce_chunks(const float* partial, long long chunk_stride, int chunks, long long rows, long long cols,
                   long long ld_partial, float scale, float* dst, cudaStream_t stream) {
  const long long total = rows * cols;
  if (total <= 0 || chunks <= 0) return;
  long long blocks = (total + kThreads - 1) / kThreads;
  if (blocks > 65535LL * 16) blocks = 65535LL * 16;
  reduce_chunks_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(partial, chunk_stride, chunks, rows, cols,
                                                                               ld_partial, scale, dst);
  check_launch("reduce_chunks");
}

template <class T>
void column_sum_chunks(const T* x, long long ld, long long cols, long long rows, long long chunk_rows, int chunks,
                       float* partial, cudaStream_t stream) {
  if (cols <= 0 || chunks <= 0) return;
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>((cols + kThreads - 1) / kThreads));
  column_sum_kernel<T><<<grid, kThreads, 0, stream>>>(x, ld, cols, rows, chunk_rows, partial);
  check_launch("column_sum_chunks");
}

template void column_sum_chunks<float>(const float*, long long, long long, long long, long long, int, float*,
                                       cudaStream_t);
template void column_sum_chunks<__half>(const __half*, long long, long long, long long, long long, int, float*,
                                        cudaStream_t);
template void column_sum_chunks<__nv_bfloat16>(const __nv_bfloat16*, long long, long long, long long, long long, int,
                                               float*, cudaStream_t);

template <class T>
void weight_grad_chunks(const T* dz, long long ld_dz, const T* a, long long ld_a, int out_pad, int in_pad,
                        long long rows, long long chunk_rows, int chunks, float* partial, cudaStream_t stream) {
  if (chunks <= 0) return;
  const int tiles = (out_pad / 16) * (in_pad / 16);
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>((tiles + 7) / 8));
  weight_grad_kernel<T><<<grid, kThreads, 0, stream>>>(dz, ld_dz, a, ld_a, out_pad, in_pad, rows, chunk_rows, partial);
  check_launch("weight_grad_chunks");
}

template void weight_grad_chunks<__half>(const __half*, long long, const __half*, long long, int, int, long long,
                                         long long, int, float*, cudaStream_t);
template void weight_grad_chunks<__nv_bfloat16>(const __nv_bfloat16*, long long, const __nv_bfloat16*, long long, int,
                                                int, long long, long long, int, float*, cudaStream_t);

}  // namespace mlpkit::cuda

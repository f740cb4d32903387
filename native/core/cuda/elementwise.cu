// Element-wise kernels: conversions with padding, the activation backward pass, losses, the
// gradient norm, and the optimizer updates. Reductions run in two fixed stages: each of at most
// kReduceBlocks blocks walks a grid-stride sequence (fixed by n) and sums its threads with a
// shared-memory tree; one block then sums the block partials with the same tree. No atomics.
#include <cmath>

#include "core/cuda/activation.cuh"
#include "core/cuda/kernels.cuh"

namespace mlpkit::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(std::size_t n, unsigned cap = 65535u * 16u) {
  const std::size_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b == 0 ? 1 : (b < cap ? b : cap));
}

unsigned reduce_blocks_for(std::size_t n) { return blocks_for(n, kReduceBlocks); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <class T>
__global__ void convert_pad_kernel(const float* src, long long rows, long long cols, long long ld_src, T* dst,
                                   long long rows_pad, long long cols_pad, long long ld_dst) {
  const long long total = rows_pad * cols_pad;
  for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long r = e / cols_pad, c = e % cols_pad;
    const float v = (src && r < rows && c < cols) ? src[r * ld_src + c] : 0.0f;
    dst[r * ld_dst + c] = from_float<T>(v);
  }
}

__global__ void activation_backward_kernel(int activation, float alpha, const float* z, const float* gy, float* gz,
                                           std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    gz[i] = gy[i] * act_derivative(activation, z[i], alpha);
  }
}

// Sum of v over the block's threads, a fixed tree; the result is valid in thread 0.
__device__ double block_sum(double v) {
  __shared__ double part[kThreads];
  part[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (static_cast<int>(threadIdx.x) < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  return part[0];
}

// result[0] = scale * (block_sums[0] + ... + block_sums[count - 1]) summed as a fixed tree.
__global__ void finish_sum_kernel(const double* block_sums, int count, double scale, double* result) {
  __shared__ double part[kReduceBlocks];
  for (int i = threadIdx.x; i < kReduceBlocks; i += blockDim.x) part[i] = i < count ? block_sums[i] : 0.0;
  __syncthreads();
  for (int s = kReduceBlocks / 2; s > 0; s /= 2) {
    for (int i = threadIdx.x; i < s; i += blockDim.x) part[i] += part[i + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) result[0] = part[0] * scale;
}

__device__ __forceinline__ double sigmoid_d(double z) {
  if (z >= 0) return 1.0 / (1.0 + exp(-z));
  const double e = exp(z);
  return e / (1.0 + e);
}

__device__ __forceinline__ double sign_d(double d) { return d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0); }

// The element-wise losses of core/loss.cpp, term and gradient in double, the gradient rounded once.
__global__ void elementwise_loss_kernel(const LossArgs a) {
  const long long n = a.rows * a.outputs;
  double sum = 0;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const double y = a.y[i];
    const double t = a.values[i];
    double term = 0, grad = 0;
    switch (a.loss) {
      case 0: {  // mse
        const double d = y - t;
        grad = 2 * d * a.inv_n;
        term = d * d;
        break;
      }
      case 1: {  // l1
        const double d = y - t;
        grad = sign_d(d) * a.inv_n;
        term = fabs(d);
        break;
      }
      case 2: {  // huber
        const double d = y - t;
        const double ad = fabs(d);
        if (ad < a.param) {
          grad = d * a.inv_n;
          term = 0.5 * d * d;
        } else {
          grad = a.param * sign_d(d) * a.inv_n;
          term = a.param * (ad - 0.5 * a.param);
        }
        break;
      }
      default: {  // bce-with-logits: max(z, 0) - z t + log(1 + e^-|z|)
        grad = (sigmoid_d(y) - t) * a.inv_n;
        term = fmax(y, 0.0) - y * t + log1p(exp(-fabs(y)));
        break;
      }
    }
    a.grad[i] = static_cast<float>(grad);
    sum += term;
  }
  const double total = block_sum(sum);
  if (threadIdx.x == 0) a.block_sums[blockIdx.x] = total;
}

// Softmax cross-entropy, one row per thread (rows in a grid-stride sequence), as core/loss.cpp.
__global__ void softmax_cross_entropy_kernel(const LossArgs a) {
  double sum = 0;
  for (long long r = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; r < a.rows;
       r += static_cast<long long>(gridDim.x) * blockDim.x) {
    const float* yr = a.y + r * a.outputs;
    float* gr = a.grad + r * a.outputs;
    const long long label = a.labels[r];
    double max = -INFINITY;
    for (long long j = 0; j < a.outputs; ++j) max = fmax(max, static_cast<double>(yr[j]));
    double s = 0;
    for (long long j = 0; j < a.outputs; ++j) s += exp(yr[j] - max);
    sum += max + log(s) - yr[label];
    for (long long j = 0; j < a.outputs; ++j) {
      const double p = exp(yr[j] - max) / s;
      gr[j] = static_cast<float>((p - (j == label ? 1.0 : 0.0)) * a.inv_rows);
    }
  }
  const double total = block_sum(sum);
  if (threadIdx.x == 0) a.block_sums[blockIdx.x] = total;
}

__global__ void sum_squares_kernel(const float* x, std::size_t n, double* block_sums) {
  double sum = 0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const double v = x[i];
    sum += v * v;
  }
  const double total = block_sum(sum);
  if (threadIdx.x == 0) block_sums[blockIdx.x] = total;
}

__global__ void scale_kernel(float* x, std::size_t n, double coef) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    x[i] = __double2float_rn(__dmul_rn(static_cast<double>(x[i]), coef));
  }
}

// adam_lanes of kernels_impl.inl, one element per thread; every operation is an explicitly
// rounded intrinsic so that nvcc cannot contract a multiply and an add into an FMA.
__global__ void adam_kernel(float* p, const float* g, float* m, float* v, std::size_t n, const AdamArgs a) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    float pi = p[i], gi = g[i];
    if (a.decoupled) {
      pi = __fmul_rn(pi, a.decay);
    } else {
      gi = __fadd_rn(gi, __fmul_rn(a.wd, pi));
    }
    const float mi = __fadd_rn(__fmul_rn(a.b1, m[i]), __fmul_rn(a.one_b1, gi));
    const float vi = __fadd_rn(__fmul_rn(a.b2, v[i]), __fmul_rn(__fmul_rn(a.one_b2, gi), gi));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), a.sqrt_bc2), a.eps);
    m[i] = mi;
    v[i] = vi;
    p[i] = __fsub_rn(pi, __fdiv_rn(__fmul_rn(a.step_size, mi), denom));
  }
}

// sgd_lanes of kernels_impl.inl.
__global__ void sgd_kernel(float* p, const float* g, float* buf, std::size_t n, const SgdArgs a) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float pi = p[i];
    float gi = __fadd_rn(g[i], __fmul_rn(a.wd, pi));
    if (a.use_momentum) {
      const float b = a.first ? gi : __fadd_rn(__fmul_rn(a.momentum, buf[i]), __fmul_rn(a.keep, gi));
      buf[i] = b;
      gi = a.nesterov ? __fadd_rn(gi, __fmul_rn(a.momentum, b)) : b;
    }
    p[i] = __fsub_rn(pi, __fmul_rn(a.lr, gi));
  }
}

}  // namespace

template <class T>
void convert_pad(const float* src, long long rows, long long cols, long long ld_src, T* dst, long long rows_pad,
                 long long cols_pad, long long ld_dst, cudaStream_t stream) {
  const std::size_t total = static_cast<std::size_t>(rows_pad) * static_cast<std::size_t>(cols_pad);
  if (total == 0) return;
  convert_pad_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(src, rows, cols, ld_src, dst, rows_pad, cols_pad,
                                                                    ld_dst);
  check_launch("convert_pad");
}

template void convert_pad<float>(const float*, long long, long long, long long, float*, long long, long long,
                                 long long, cudaStream_t);
template void convert_pad<__half>(const float*, long long, long long, long long, __half*, long long, long long,
                                  long long, cudaStream_t);
template void convert_pad<__nv_bfloat16>(const float*, long long, long long, long long, __nv_bfloat16*, long long,
                                         long long, long long, cudaStream_t);

void activation_backward(int activation, float alpha, const float* z, const float* gy, float* gz, std::size_t n,
                         cudaStream_t stream) {
  if (n == 0) return;
  activation_backward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(activation, alpha, z, gy, gz, n);
  check_launch("activation_backward");
}

void loss_and_gradient(const LossArgs& args, cudaStream_t stream) {
  const bool labels = args.loss == 3;
  const std::size_t items = labels ? static_cast<std::size_t>(args.rows)
                                   : static_cast<std::size_t>(args.rows) * static_cast<std::size_t>(args.outputs);
  const unsigned blocks = reduce_blocks_for(items);
  if (labels) {
    softmax_cross_entropy_kernel<<<blocks, kThreads, 0, stream>>>(args);
  } else {
    elementwise_loss_kernel<<<blocks, kThreads, 0, stream>>>(args);
  }
  check_launch("loss_and_gradient");
  finish_sum_kernel<<<1, kThreads, 0, stream>>>(args.block_sums, static_cast<int>(blocks), args.result_scale,
                                                args.result);
  check_launch("finish_sum");
}

void sum_squares(const float* x, std::size_t n, double* block_sums, double* result, cudaStream_t stream) {
  const unsigned blocks = reduce_blocks_for(n);
  sum_squares_kernel<<<blocks, kThreads, 0, stream>>>(x, n, block_sums);
  check_launch("sum_squares");
  finish_sum_kernel<<<1, kThreads, 0, stream>>>(block_sums, static_cast<int>(blocks), 1.0, result);
  check_launch("finish_sum");
}

void scale_by(float* x, std::size_t n, double coef, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, n, coef);
  check_launch("scale_by");
}

void adam_update(float* p, const float* g, float* m, float* v, std::size_t n, const AdamArgs& a, cudaStream_t stream) {
  if (n == 0) return;
  adam_kernel<<<blocks_for(n), kThreads, 0, stream>>>(p, g, m, v, n, a);
  check_launch("adam_update");
}

void sgd_update(float* p, const float* g, float* buf, std::size_t n, const SgdArgs& a, cudaStream_t stream) {
  if (n == 0) return;
  sgd_kernel<<<blocks_for(n), kThreads, 0, stream>>>(p, g, buf, n, a);
  check_launch("sgd_update");
}

}  // namespace mlpkit::cuda

#include "core/cuda/cuda_model.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/cuda/device.h"
#include "core/cuda/kernels.cuh"
#include "core/encoding.h"

namespace mlpkit::cuda {
namespace {

// Gradient reductions cut the batch into at most kMaxChunks chunks of at least kMinChunkRows
// rows (a split that depends on the batch size alone), within a budget for the partial sums.
constexpr std::size_t kMaxChunks = 1024;
constexpr std::size_t kMinChunkRows = 256;
constexpr std::size_t kPartialBytes = std::size_t(256) << 20;
// Device and pinned buffers are sized for a multiple of this many rows (a fused tile).
constexpr std::size_t kRowQuantum = kFusedTileRows;

std::size_t round_up(std::size_t a, std::size_t m) { return (a + m - 1) / m * m; }
std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

// Device memory, freed on destruction; growing reallocates (the contents are not kept).
class DeviceMemory {
 public:
  DeviceMemory() = default;
  ~DeviceMemory() { release(); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  void reserve(std::size_t bytes) {
    if (bytes <= bytes_) return;
    release();
    void* p = nullptr;
    MLPKIT_CUDA_CHECK(cudaMalloc(&p, bytes));
    ptr_ = static_cast<char*>(p);
    bytes_ = bytes;
  }
  void release() {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  char* data() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  char* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Page-locked host memory (the staging buffers of asynchronous copies).
class PinnedMemory {
 public:
  PinnedMemory() = default;
  ~PinnedMemory() { release(); }
  PinnedMemory(const PinnedMemory&) = delete;
  PinnedMemory& operator=(const PinnedMemory&) = delete;

  void reserve(std::size_t bytes) {
    if (bytes <= bytes_) return;
    release();
    void* p = nullptr;
    MLPKIT_CUDA_CHECK(cudaMallocHost(&p, bytes));
    ptr_ = static_cast<char*>(p);
    bytes_ = bytes;
  }
  void release() {
    if (ptr_) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  char* data() const { return ptr_; }

 private:
  char* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Offsets of 256-byte aligned pieces of one allocation (wmma wants 32-byte aligned tiles).
class Carver {
 public:
  template <class T>
  std::size_t take(std::size_t count) {
    at_ = round_up(at_, 256);
    const std::size_t offset = at_;
    at_ += count * sizeof(T);
    return offset;
  }
  std::size_t bytes() const { return round_up(at_ == 0 ? 1 : at_, 256); }

 private:
  std::size_t at_ = 0;
};

struct Chunks {
  std::size_t rows = 0;  // rows per chunk (the last may have fewer)
  int count = 0;
};

void check_loss_code(Loss loss) {
  const int code = static_cast<int>(loss);
  if (code < 0 || code >= kLossCount) {
    throw std::out_of_range("loss must be a loss code in [0, " + std::to_string(kLossCount) + "), got " +
                            std::to_string(code));
  }
}

void check_optimizer_code(Optimizer optimizer) {
  const int code = static_cast<int>(optimizer);
  if (code < 0 || code >= kOptimizerCount) {
    throw std::out_of_range("optimizer must be an optimizer code in [0, " + std::to_string(kOptimizerCount) +
                            "), got " + std::to_string(code));
  }
}

// What core/loss.cpp rejects, checked before anything runs (so a bad call changes nothing).
// Labels are checked later, on the staged copy that goes to the device (see stage_target).
void check_loss_args(Loss loss, double param, const LossTarget& target) {
  check_loss_code(loss);
  if (loss_uses_labels(loss)) {
    if (!target.labels) throw std::invalid_argument("this loss needs integer class labels");
  } else if (!target.values) {
    throw std::invalid_argument("this loss needs a float target");
  }
  if (loss == Loss::Huber && (!(param > 0) || !std::isfinite(param))) {
    throw std::out_of_range("huber delta must be a finite number > 0, got " + std::to_string(param));
  }
}

}  // namespace

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::F32: return "fp32";
    case Precision::F16: return "fp16";
    case Precision::BF16: return "bf16";
  }
  return "unknown";
}

struct CudaModel::Impl {
  ModelPlan plan;
  Precision precision = Precision::F32;
  int device = 0;
  bool fused = false;
  std::size_t L = 0, in0 = 0, P = 0, outs = 0;
  std::vector<std::size_t> in_pad, out_pad;  // per layer, multiples of 16 (fused path)
  int max_chunks = 1;
  cudaStream_t stream = nullptr;
  mutable std::mutex mutex;
  std::int64_t step = 0;  // optimizer steps taken (Adam's t)

  // Resident state: params, grads, moments; the fused path's half/bf16 weights and fp32 biases.
  DeviceMemory state;
  float* params = nullptr;
  float* grads = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  std::vector<void*> wt;
  std::vector<float*> bias32;

  // Per-batch buffers, sized for `capacity` rows.
  DeviceMemory work;
  PinnedMemory pinned;
  std::size_t capacity = 0;
  float* x32 = nullptr;               // [R x in0] the encoded input, fp32
  void* xt = nullptr;                 // [R x in_pad0] the input as T (fused)
  std::vector<void*> z, a, dz;        // per layer (see reserve_rows)
  float* z_last = nullptr;            // [R x outs] (fused)
  float* y = nullptr;                 // [R x outs]
  float* dy = nullptr;                // [R x outs]
  float* dx = nullptr;                // [R x in0]
  float* target = nullptr;            // [R x outs]
  std::int32_t* labels = nullptr;     // [R]
  float* partial = nullptr;
  double* block_sums = nullptr;       // [kReduceBlocks]
  double* scalars = nullptr;          // [4]: loss, squared norm
  float* h_in = nullptr;              // pinned [R x max(inputs, in0)]
  float* h_out = nullptr;             // pinned [R x max(outs, in0)]
  float* h_target = nullptr;          // pinned [R x outs] floats (or R labels)
  double* h_scalars = nullptr;        // pinned [4]

  Impl(const ModelConfig& config, const float* init, std::size_t count, Precision prec, int dev)
      : plan(plan_model(config)), precision(prec), device(dev) {
    if (count != plan.param_count) {
      throw std::length_error("params must have " + std::to_string(plan.param_count) + " elements, got " +
                              std::to_string(count));
    }
    const int code = static_cast<int>(prec);
    if (code < 0 || code >= kPrecisionCount) {
      throw std::out_of_range("precision must be a precision code in [0, " + std::to_string(kPrecisionCount) +
                              "), got " + std::to_string(code));
    }
    require_device(device);
    MLPKIT_CUDA_CHECK(cudaSetDevice(device));
    MLPKIT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

    L = plan.layers.size();
    in0 = plan.encoding.width();
    P = plan.param_count;
    outs = plan.layers.back().outputs;
    fused = precision != Precision::F32 && L <= static_cast<std::size_t>(kFusedMaxLayers) &&
            in0 <= static_cast<std::size_t>(kFusedMaxWidth) && plan.max_width <= static_cast<std::size_t>(kFusedMaxWidth);
    std::size_t widest = 1;
    for (const LayerPlan& l : plan.layers) {
      in_pad.push_back(round_up(l.inputs, 16));
      out_pad.push_back(round_up(l.outputs, 16));
      widest = std::max(widest, fused ? in_pad.back() * out_pad.back() : l.inputs * l.outputs);
    }
    max_chunks = static_cast<int>(std::clamp<std::size_t>(kPartialBytes / (sizeof(float) * widest), 1, kMaxChunks));

    Carver c;
    const std::size_t o_params = c.take<float>(P), o_grads = c.take<float>(P), o_m = c.take<float>(P),
                      o_v = c.take<float>(P);
    std::vector<std::size_t> o_wt, o_b;
    if (fused) {
      for (std::size_t l = 0; l < L; ++l) {
        o_wt.push_back(c.take<std::uint16_t>(out_pad[l] * in_pad[l]));
        o_b.push_back(c.take<float>(out_pad[l]));
      }
    }
    state.reserve(c.bytes());
    char* base = state.data();
    params = reinterpret_cast<float*>(base + o_params);
    grads = reinterpret_cast<float*>(base + o_grads);
    m = reinterpret_cast<float*>(base + o_m);
    v = reinterpret_cast<float*>(base + o_v);
    for (std::size_t l = 0; l < o_wt.size(); ++l) {
      wt.push_back(base + o_wt[l]);
      bias32.push_back(reinterpret_cast<float*>(base + o_b[l]));
    }
    MLPKIT_CUDA_CHECK(cudaMemcpyAsync(params, init, P * sizeof(float), cudaMemcpyHostToDevice, stream));
    MLPKIT_CUDA_CHECK(cudaMemsetAsync(grads, 0, P * sizeof(float), stream));
    MLPKIT_CUDA_CHECK(cudaMemsetAsync(m, 0, P * sizeof(float), stream));
    MLPKIT_CUDA_CHECK(cudaMemsetAsync(v, 0, P * sizeof(float), stream));
    refresh_weights();
    sync();
  }

  ~Impl() {
    if (stream) {
      cudaSetDevice(device);
      cudaStreamSynchronize(stream);
      cudaStreamDestroy(stream);
    }
  }

  void sync() { MLPKIT_CUDA_CHECK(cudaStreamSynchronize(stream)); }
  void use_device() const { MLPKIT_CUDA_CHECK(cudaSetDevice(device)); }

  const char* kernel_name() const {
    if (!fused) return "gemm-fp32";
    return precision == Precision::F16 ? "fused-fp16" : "fused-bf16";
  }

  Chunks chunks_for(std::size_t rows, std::size_t quantum) const {
    Chunks ch;
    ch.rows = std::max(kMinChunkRows, round_up(ceil_div(rows, static_cast<std::size_t>(max_chunks)), quantum));
    ch.count = static_cast<int>(ceil_div(rows, ch.rows));
    return ch;
  }

  // The fused path's gradient scale (both fp16 and bf16; bf16 would not need it, having fp32's
  // exponent range, but one rule is simpler). A power of two, so dividing it out of the fp32
  // gradients is exact.
  //  - From a loss: the power of two at or below the batch size. Mean-reduced gradients are
  //    ~1/batch per row (at batch 2^21 in fp16's subnormal range); scaled, they are per-row sized.
  //  - From a caller's dL/dy: its scale is unknown, so the one that brings max |dL/dy| into
  //    [0.5, 1), within 2^-24 .. 2^24 (1 for an all-zero or non-finite gradient).
  static float loss_scale_for(std::size_t rows) {
    int e = 0;
    std::frexp(static_cast<double>(rows), &e);  // rows = f * 2^e, f in [0.5, 1)
    return static_cast<float>(std::ldexp(1.0, e - 1));
  }
  static float scale_for_max(float amax) {
    if (!(amax > 0) || !std::isfinite(amax)) return 1.0f;
    int e = 0;
    std::frexp(amax, &e);  // amax = f * 2^e, f in [0.5, 1)
    return std::ldexp(1.0f, std::clamp(-e, -24, 24));
  }
  float grad_scale = 1;  // set by forward_backward for the fused backward pass

  // ---- buffers ---------------------------------------------------------------------------------

  void reserve_rows(std::size_t rows) {
    if (rows <= capacity) return;
    const std::size_t R = round_up(std::max(rows, capacity + capacity / 2), kRowQuantum);
    Carver c;
    const std::size_t o_x32 = c.take<float>(R * in0);
    const std::size_t o_xt = fused ? c.take<std::uint16_t>(R * in_pad[0]) : 0;
    std::vector<std::size_t> o_z(L, SIZE_MAX), o_a(L, SIZE_MAX), o_dz(L, SIZE_MAX);
    for (std::size_t l = 0; l < L; ++l) {
      const LayerPlan& ly = plan.layers[l];
      if (fused) {
        if (l + 1 < L) {
          o_z[l] = c.take<std::uint16_t>(R * out_pad[l]);
          o_a[l] = c.take<std::uint16_t>(R * out_pad[l]);  // a[l] here is the output of layer l
        }
        o_dz[l] = c.take<std::uint16_t>(R * out_pad[l]);
      } else {
        if (ly.activation != Activation::None) o_z[l] = c.take<float>(R * ly.outputs);
        if (l + 1 < L) o_a[l] = c.take<float>(R * ly.outputs);
        o_dz[l] = c.take<float>(R * ly.outputs);
      }
    }
    const std::size_t o_zl = fused ? c.take<float>(R * outs) : 0;
    const std::size_t o_y = c.take<float>(R * outs), o_dy = c.take<float>(R * outs), o_dx = c.take<float>(R * in0);
    const std::size_t o_t = c.take<float>(R * outs), o_lab = c.take<std::int32_t>(R);
    // Partial sums: at most min(max_chunks, R / kMinChunkRows) chunks for any batch up to R rows.
    const std::size_t chunk_bound = std::min<std::size_t>(max_chunks, ceil_div(R, kMinChunkRows));
    std::size_t partial_floats = 0;
    for (std::size_t l = 0; l < L; ++l) {
      const LayerPlan& ly = plan.layers[l];
      partial_floats = std::max(partial_floats, chunk_bound * (fused ? out_pad[l] * in_pad[l] : ly.outputs * ly.inputs));
    }
    const std::size_t o_part = c.take<float>(partial_floats);
    const std::size_t o_bs = c.take<double>(kReduceBlocks), o_sc = c.take<double>(4);

    // Nothing runs on the stream between calls (each call ends with a sync), so the old buffers
    // can go at once; capacity is 0 until the new ones are all in place, so a failed allocation
    // leaves no dangling pointers behind.
    capacity = 0;
    work.release();
    pinned.release();
    work.reserve(c.bytes());
    char* b = work.data();
    x32 = reinterpret_cast<float*>(b + o_x32);
    xt = fused ? b + o_xt : nullptr;
    z.assign(L, nullptr);
    a.assign(L, nullptr);
    dz.assign(L, nullptr);
    for (std::size_t l = 0; l < L; ++l) {
      if (o_z[l] != SIZE_MAX) z[l] = b + o_z[l];
      if (o_a[l] != SIZE_MAX) a[l] = b + o_a[l];
      dz[l] = b + o_dz[l];
    }
    z_last = fused ? reinterpret_cast<float*>(b + o_zl) : nullptr;
    y = reinterpret_cast<float*>(b + o_y);
    dy = reinterpret_cast<float*>(b + o_dy);
    dx = reinterpret_cast<float*>(b + o_dx);
    target = reinterpret_cast<float*>(b + o_t);
    labels = reinterpret_cast<std::int32_t*>(b + o_lab);
    partial = reinterpret_cast<float*>(b + o_part);
    block_sums = reinterpret_cast<double*>(b + o_bs);
    scalars = reinterpret_cast<double*>(b + o_sc);

    const std::size_t in_w = std::max(plan.encoding.inputs, in0), out_w = std::max(outs, in0);
    Carver h;
    const std::size_t h_i = h.take<float>(R * in_w), h_o = h.take<float>(R * out_w), h_t = h.take<float>(R * outs + R),
                      h_s = h.take<double>(4);
    pinned.reserve(h.bytes());
    h_in = reinterpret_cast<float*>(pinned.data() + h_i);
    h_out = reinterpret_cast<float*>(pinned.data() + h_o);
    h_target = reinterpret_cast<float*>(pinned.data() + h_t);
    h_scalars = reinterpret_cast<double*>(pinned.data() + h_s);
    capacity = R;
  }

  // ---- weights -----------------------------------------------------------------------------

  // The fused path's copies of the parameters: W as T [out_pad x in_pad], b as fp32 [out_pad].
  void refresh_weights() {
    if (!fused) return;
    for (std::size_t l = 0; l < L; ++l) {
      const LayerPlan& ly = plan.layers[l];
      const long long n = static_cast<long long>(ly.outputs), k = static_cast<long long>(ly.inputs);
      const long long np = static_cast<long long>(out_pad[l]), kp = static_cast<long long>(in_pad[l]);
      if (precision == Precision::F16) {
        convert_pad<__half>(params + ly.weight, n, k, k, static_cast<__half*>(wt[l]), np, kp, kp, stream);
      } else {
        convert_pad<__nv_bfloat16>(params + ly.weight, n, k, k, static_cast<__nv_bfloat16*>(wt[l]), np, kp, kp, stream);
      }
      convert_pad<float>(ly.has_bias ? params + ly.bias : nullptr, 1, n, n, bias32[l], 1, np, np, stream);
    }
  }

  // ---- input and targets -------------------------------------------------------------------

  void stage_input(const float* x, std::size_t rows) {
    if (plan.encoding.type == Encoding::Identity) {
      std::memcpy(h_in, x, rows * in0 * sizeof(float));
    } else {
      encode_forward(plan.encoding, x, rows, h_in);
    }
    MLPKIT_CUDA_CHECK(cudaMemcpyAsync(x32, h_in, rows * in0 * sizeof(float), cudaMemcpyHostToDevice, stream));
    if (!fused) return;
    const long long r = static_cast<long long>(rows), rp = static_cast<long long>(round_up(rows, 16));
    const long long k = static_cast<long long>(in0), kp = static_cast<long long>(in_pad[0]);
    if (precision == Precision::F16) {
      convert_pad<__half>(x32, r, k, k, static_cast<__half*>(xt), rp, kp, kp, stream);
    } else {
      convert_pad<__nv_bfloat16>(x32, r, k, k, static_cast<__nv_bfloat16*>(xt), rp, kp, kp, stream);
    }
  }

  // Copies the target into the pinned staging buffer and checks labels there: the copy the
  // device reads is the copy that was checked, whatever the caller's array does meanwhile.
  // Throws before any device work when a label is out of range.
  void stage_target(std::size_t rows, Loss loss, const LossTarget& t) {
    if (loss_uses_labels(loss)) {
      std::memcpy(h_target, t.labels, rows * sizeof(std::int32_t));
      check_labels(reinterpret_cast<const std::int32_t*>(h_target), rows, outs);
    } else {
      std::memcpy(h_target, t.values, rows * outs * sizeof(float));
    }
  }

  // dy = dLoss/dy of the loss on y; the loss (mean) goes to scalars[0]. The target is staged.
  void run_loss(std::size_t rows, Loss loss, double param) {
    LossArgs args;
    args.loss = static_cast<int>(loss);
    args.param = param;
    args.y = y;
    args.rows = static_cast<long long>(rows);
    args.outputs = static_cast<long long>(outs);
    if (loss_uses_labels(loss)) {
      MLPKIT_CUDA_CHECK(
          cudaMemcpyAsync(labels, h_target, rows * sizeof(std::int32_t), cudaMemcpyHostToDevice, stream));
      args.labels = labels;
    } else {
      MLPKIT_CUDA_CHECK(cudaMemcpyAsync(target, h_target, rows * outs * sizeof(float), cudaMemcpyHostToDevice, stream));
      args.values = target;
    }
    args.inv_n = 1.0 / static_cast<double>(rows * outs);
    args.inv_rows = 1.0 / static_cast<double>(rows);
    args.grad = dy;
    args.block_sums = block_sums;
    args.result = scalars;
    args.result_scale = loss_scale(loss, rows, outs);
    loss_and_gradient(args, stream);
  }

  void stage_grad_output(const float* grad_output, std::size_t rows) {
    std::memcpy(h_target, grad_output, rows * outs * sizeof(float));
    float amax = 0;
    for (std::size_t i = 0; i < rows * outs; ++i) amax = std::max(amax, std::fabs(h_target[i]));
    grad_scale = scale_for_max(amax);
    MLPKIT_CUDA_CHECK(cudaMemcpyAsync(dy, h_target, rows * outs * sizeof(float), cudaMemcpyHostToDevice, stream));
  }

  // ---- the fp32 path -------------------------------------------------------------------------

  // Every layer through gemm_f32; y receives the output. keep: also z (pre-activations) and
  // a (outputs) of each layer, for backward.
  void f32_forward(std::size_t rows) {
    const float* in = x32;
    for (std::size_t l = 0; l < L; ++l) {
      const LayerPlan& ly = plan.layers[l];
      GemmF32 g;
      g.m = static_cast<long long>(rows);
      g.n = static_cast<long long>(ly.outputs);
      g.k = static_cast<long long>(ly.inputs);
      g.a = in;
      g.a_rs = g.k;
      g.a_cs = 1;
      g.b = params + ly.weight;  // B(p = i, c = o) = W[o][i]
      g.b_rs = 1;
      g.b_cs = g.k;
      g.bias = ly.has_bias ? params + ly.bias : nullptr;
      float* out = l + 1 == L ? y : static_cast<float*>(a[l]);
      g.c = out;
      g.ldc = g.n;
      g.activation = static_cast<int>(ly.activation);
      g.alpha = ly.alpha;
      if (z[l]) {
        g.z_out = static_cast<float*>(z[l]);
        g.ld_z = g.n;
      }
      gemm_f32(g, stream);
      in = out;
    }
  }

  // The pre-activation of layer l (fp32 path): z[l], or the output itself without activation.
  const float* f32_pre(std::size_t l) const {
    if (z[l]) return static_cast<const float*>(z[l]);
    return l + 1 == L ? y : static_cast<const float*>(a[l]);
  }

  void f32_backward(std::size_t rows, bool want_dx) {
    const Chunks ch = chunks_for(rows, 1);
    const LayerPlan& top = plan.layers[L - 1];
    const float* gz = dy;
    if (top.activation != Activation::None) {
      activation_backward(static_cast<int>(top.activation), top.alpha, f32_pre(L - 1), dy,
                          static_cast<float*>(dz[L - 1]), rows * top.outputs, stream);
      gz = static_cast<const float*>(dz[L - 1]);
    }
    for (std::size_t l = L; l-- > 0;) {
      const LayerPlan& ly = plan.layers[l];
      const long long n = static_cast<long long>(ly.outputs), k = static_cast<long long>(ly.inputs);
      const float* layer_in = l == 0 ? x32 : static_cast<const float*>(a[l - 1]);
      // dW [n x k] = dZ^T . A over the rows, one partial per chunk, summed in chunk order.
      GemmF32 w;
      w.m = n;
      w.n = k;
      w.k = static_cast<long long>(rows);
      w.a = gz;
      w.a_rs = 1;
      w.a_cs = n;
      w.b = layer_in;
      w.b_rs = k;
      w.b_cs = 1;
      w.c = partial;
      w.ldc = k;
      w.k_chunk = static_cast<long long>(ch.rows);
      w.c_zstride = n * k;
      gemm_f32(w, stream);
      reduce_chunks(partial, n * k, ch.count, n, k, k, 1.0f, grads + ly.weight, stream);
      if (ly.has_bias) {
        column_sum_chunks<float>(gz, n, n, static_cast<long long>(rows), static_cast<long long>(ch.rows), ch.count,
                                 partial, stream);
        reduce_chunks(partial, n, ch.count, 1, n, n, 1.0f, grads + ly.bias, stream);
      }
      if (l == 0 && !want_dx) break;
      // dA [rows x k] = dZ . W, times the derivative of the activation below in the epilogue.
      GemmF32 x;
      x.m = static_cast<long long>(rows);
      x.n = k;
      x.k = n;
      x.a = gz;
      x.a_rs = n;
      x.a_cs = 1;
      x.b = params + ly.weight;  // B(p = o, c = i) = W[o][i]
      x.b_rs = k;
      x.b_cs = 1;
      x.ldc = k;
      if (l == 0) {
        x.c = dx;
        gemm_f32(x, stream);
        break;
      }
      const LayerPlan& below = plan.layers[l - 1];
      x.c = static_cast<float*>(dz[l - 1]);
      if (below.activation != Activation::None) {
        x.gate = f32_pre(l - 1);
        x.ld_gate = k;
        x.gate_activation = static_cast<int>(below.activation);
        x.gate_alpha = below.alpha;
      }
      gemm_f32(x, stream);
      gz = static_cast<const float*>(dz[l - 1]);
    }
  }

  // ---- the fused path ------------------------------------------------------------------------

  template <class T>
  FusedLayer<T> fused_layer(std::size_t l) const {
    const LayerPlan& ly = plan.layers[l];
    FusedLayer<T> f;
    f.w = static_cast<const T*>(wt[l]);
    f.b = bias32[l];
    f.in_pad = static_cast<int>(in_pad[l]);
    f.out_pad = static_cast<int>(out_pad[l]);
    f.out = static_cast<int>(ly.outputs);
    f.activation = static_cast<int>(ly.activation);
    f.alpha = ly.alpha;
    return f;
  }

  template <class T>
  void fused_forward_pass(std::size_t rows, bool training) {
    FusedForward<T> p;
    p.layers = static_cast<int>(L);
    for (std::size_t l = 0; l < L; ++l) p.layer[l] = fused_layer<T>(l);
    p.x = static_cast<const T*>(xt);
    p.rows = static_cast<long long>(rows);
    p.rows_pad = static_cast<long long>(round_up(rows, 16));
    if (training) {
      for (std::size_t l = 0; l + 1 < L; ++l) {
        p.z[l] = static_cast<T*>(z[l]);
        p.a[l + 1] = static_cast<T*>(a[l]);
      }
      p.z_last = z_last;
    }
    p.y = y;
    fused_forward(p, stream);
  }

  template <class T>
  void fused_backward_pass(std::size_t rows, bool want_dx) {
    const float scale = grad_scale;
    const std::size_t rows16 = round_up(rows, 16);
    FusedBackward<T> p;
    p.layers = static_cast<int>(L);
    for (std::size_t l = 0; l < L; ++l) p.layer[l] = fused_layer<T>(l);
    p.rows = static_cast<long long>(rows);
    p.rows_pad = static_cast<long long>(rows16);
    for (std::size_t l = 0; l + 1 < L; ++l) p.z[l] = static_cast<const T*>(z[l]);
    p.z_last = z_last;
    p.dy = dy;
    p.scale = scale;
    for (std::size_t l = 0; l < L; ++l) p.dz[l] = static_cast<T*>(dz[l]);
    if (want_dx) {
      p.dx = dx;
      p.dx_cols = static_cast<int>(in0);
      p.dx_scale = 1.0f / scale;
    }
    fused_backward(p, stream);

    const Chunks ch = chunks_for(rows16, 16);
    const float unscale = 1.0f / scale;
    for (std::size_t l = 0; l < L; ++l) {
      const LayerPlan& ly = plan.layers[l];
      const long long n = static_cast<long long>(ly.outputs), k = static_cast<long long>(ly.inputs);
      const long long np = static_cast<long long>(out_pad[l]), kp = static_cast<long long>(in_pad[l]);
      const T* layer_in = static_cast<const T*>(l == 0 ? xt : a[l - 1]);
      weight_grad_chunks<T>(static_cast<const T*>(dz[l]), np, layer_in, kp, static_cast<int>(np), static_cast<int>(kp),
                            static_cast<long long>(rows16), static_cast<long long>(ch.rows), ch.count, partial, stream);
      reduce_chunks(partial, np * kp, ch.count, n, k, kp, unscale, grads + ly.weight, stream);
      if (ly.has_bias) {
        column_sum_chunks<T>(static_cast<const T*>(dz[l]), np, n, static_cast<long long>(rows16),
                             static_cast<long long>(ch.rows), ch.count, partial, stream);
        reduce_chunks(partial, n, ch.count, 1, n, n, unscale, grads + ly.bias, stream);
      }
    }
  }

  // ---- operations --------------------------------------------------------------------------

  void predict(const float* x, std::size_t batch, float* out) {
    if (batch == 0) throw std::out_of_range("batch must be at least 1");
    use_device();
    reserve_rows(batch);
    stage_input(x, batch);
    if (!fused) {
      f32_forward(batch);
    } else if (precision == Precision::F16) {
      fused_forward_pass<__half>(batch, false);
    } else {
      fused_forward_pass<__nv_bfloat16>(batch, false);
    }
    MLPKIT_CUDA_CHECK(cudaMemcpyAsync(h_out, y, batch * outs * sizeof(float), cudaMemcpyDeviceToHost, stream));
    sync();
    std::memcpy(out, h_out, batch * outs * sizeof(float));
  }

  // Forward keeping activations, dy from the loss (or the caller), backward into grads; dx
  // (dLoss/d encoded input) is left on the device in dx when want_dx. Does not synchronise.
  void forward_backward(const float* x, std::size_t batch, const Loss* loss, double loss_param, const LossTarget* t,
                        const float* grad_output, bool want_dx) {
    if (batch == 0) throw std::out_of_range("batch must be at least 1");
    use_device();
    reserve_rows(batch);
    if (loss) stage_target(batch, *loss, *t);
    stage_input(x, batch);
    if (!fused) {
      f32_forward(batch);
    } else if (precision == Precision::F16) {
      fused_forward_pass<__half>(batch, true);
    } else {
      fused_forward_pass<__nv_bfloat16>(batch, true);
    }
    if (loss) {
      run_loss(batch, *loss, loss_param);
      grad_scale = loss_scale_for(batch);
    } else {
      stage_grad_output(grad_output, batch);
    }
    if (!fused) {
      f32_backward(batch, want_dx);
    } else if (precision == Precision::F16) {
      fused_backward_pass<__half>(batch, want_dx);
    } else {
      fused_backward_pass<__nv_bfloat16>(batch, want_dx);
    }
    if (loss) MLPKIT_CUDA_CHECK(cudaMemcpyAsync(h_scalars, scalars, sizeof(double), cudaMemcpyDeviceToHost, stream));
    if (want_dx) {
      MLPKIT_CUDA_CHECK(cudaMemcpyAsync(h_out, dx, batch * in0 * sizeof(float), cudaMemcpyDeviceToHost, stream));
    }
  }

  // After forward_backward and a sync: dLoss/dx through the encoding into grad_input.
  void finish_grad_input(const float* x, std::size_t batch, float* grad_input) const {
    if (plan.encoding.type == Encoding::Identity) {
      std::memcpy(grad_input, h_out, batch * in0 * sizeof(float));
    } else {
      encode_backward(plan.encoding, x, batch, h_out, grad_input);
    }
  }

  double optimizer_step(Optimizer optimizer, const Hyper& h, double clip_norm, bool want_norm) {
    check_optimizer_code(optimizer);
    use_device();
    const bool clipping = clip_norm > 0 && std::isfinite(clip_norm);
    double norm = 0;
    if (clipping || want_norm) {
      if (capacity == 0) reserve_rows(1);  // the reduction scratch lives with the batch buffers
      sum_squares(grads, P, block_sums, scalars + 1, stream);
      MLPKIT_CUDA_CHECK(cudaMemcpyAsync(h_scalars + 1, scalars + 1, sizeof(double), cudaMemcpyDeviceToHost, stream));
      sync();
      norm = std::sqrt(h_scalars[1]);
    }
    if (clipping) {
      // torch.nn.utils.clip_grad_norm_, as core/optimizer.cpp.
      const double coef = clip_norm / (norm + 1e-6);
      if (coef < 1) scale_by(grads, P, coef, stream);
    }
    step += 1;
    if (optimizer == Optimizer::Sgd) {
      SgdArgs s;
      s.lr = static_cast<float>(h.lr);
      s.wd = static_cast<float>(h.weight_decay);
      s.momentum = static_cast<float>(h.momentum);
      s.keep = static_cast<float>(1.0 - h.dampening);
      s.use_momentum = h.momentum != 0;
      s.first = step == 1;  // torch starts the buffer as a copy of the first gradient
      s.nesterov = h.nesterov;
      sgd_update(params, grads, m, P, s, stream);
    } else {
      // The scalars of core/optimizer.cpp, computed the same way (bias corrections in double).
      const double tt = static_cast<double>(step);
      const double bc1 = 1.0 - std::pow(h.beta1, tt);
      const double bc2 = 1.0 - std::pow(h.beta2, tt);
      AdamArgs s;
      s.step_size = static_cast<float>(h.lr / bc1);
      s.sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
      s.b1 = static_cast<float>(h.beta1);
      s.one_b1 = static_cast<float>(1.0 - h.beta1);
      s.b2 = static_cast<float>(h.beta2);
      s.one_b2 = static_cast<float>(1.0 - h.beta2);
      s.eps = static_cast<float>(h.eps);
      s.wd = static_cast<float>(h.weight_decay);
      s.decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
      s.decoupled = optimizer == Optimizer::AdamW;
      adam_update(params, grads, m, v, P, s, stream);
    }
    refresh_weights();
    return norm;
  }

  void copy_out(const float* src, float* out) {
    use_device();
    MLPKIT_CUDA_CHECK(cudaMemcpyAsync(out, src, P * sizeof(float), cudaMemcpyDeviceToHost, stream));
    sync();
  }

  void copy_in(float* dst, const float* src) {
    use_device();
    MLPKIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, P * sizeof(float), cudaMemcpyHostToDevice, stream));
  }
};

CudaModel::CudaModel(const ModelConfig& config, const float* params, std::size_t count, Precision precision, int device)
    : impl_(std::make_unique<Impl>(config, params, count, precision, device)) {}

CudaModel::~CudaModel() = default;

std::size_t CudaModel::param_count() const { return impl_->P; }
std::size_t CudaModel::inputs() const { return impl_->plan.encoding.inputs; }
std::size_t CudaModel::outputs() const { return impl_->outs; }
Precision CudaModel::precision() const { return impl_->precision; }
const char* CudaModel::kernel() const { return impl_->kernel_name(); }

std::size_t CudaModel::device_bytes() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->state.bytes() + impl_->work.bytes();
}

void CudaModel::predict(const float* x, std::size_t batch, float* out) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->predict(x, batch, out);
}

void CudaModel::get_params(float* out) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->copy_out(impl_->params, out);
}

void CudaModel::set_params(const float* params) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->copy_in(impl_->params, params);
  impl_->refresh_weights();
  impl_->sync();
}

void CudaModel::get_grads(float* out) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->copy_out(impl_->grads, out);
}

void CudaModel::set_grads(const float* grads) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->copy_in(impl_->grads, grads);
  impl_->sync();
}

double CudaModel::loss_grad(const float* x, std::size_t batch, Loss loss, double loss_param, const LossTarget& target,
                            float* grad_input) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  check_loss_args(loss, loss_param, target);
  impl_->forward_backward(x, batch, &loss, loss_param, &target, nullptr, grad_input != nullptr);
  impl_->sync();
  if (grad_input) impl_->finish_grad_input(x, batch, grad_input);
  return impl_->h_scalars[0];
}

void CudaModel::backward(const float* x, std::size_t batch, const float* grad_output, float* grad_input) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->forward_backward(x, batch, nullptr, 0, nullptr, grad_output, grad_input != nullptr);
  impl_->sync();
  if (grad_input) impl_->finish_grad_input(x, batch, grad_input);
}

double CudaModel::optimizer_step(Optimizer optimizer, const Hyper& hyper, double clip_norm) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const double norm = impl_->optimizer_step(optimizer, hyper, clip_norm, true);
  impl_->sync();
  return norm;
}

void CudaModel::reset_optimizer() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->use_device();
  MLPKIT_CUDA_CHECK(cudaMemsetAsync(impl_->m, 0, impl_->P * sizeof(float), impl_->stream));
  MLPKIT_CUDA_CHECK(cudaMemsetAsync(impl_->v, 0, impl_->P * sizeof(float), impl_->stream));
  impl_->sync();
  impl_->step = 0;
}

double CudaModel::train_step(const float* x, std::size_t batch, Loss loss, double loss_param, const LossTarget& target,
                             Optimizer optimizer, const Hyper& hyper, double clip_norm) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  // Both codes and the target are checked before anything runs, as on the CPU.
  check_loss_args(loss, loss_param, target);
  check_optimizer_code(optimizer);
  impl_->forward_backward(x, batch, &loss, loss_param, &target, nullptr, false);
  impl_->optimizer_step(optimizer, hyper, clip_norm, false);
  impl_->sync();
  return impl_->h_scalars[0];
}

}  // namespace mlpkit::cuda

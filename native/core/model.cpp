#include "core/model.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "core/cpu/kernels.h"

namespace mlpkit {
namespace {

// predict runs the whole network on a tile of rows before moving to the next tile, so the
// activations it needs stay in cache and its scratch memory does not grow with the batch.
constexpr std::size_t kTileFloats = 64 * 1024;
constexpr std::size_t kMaxTileRows = 256;

void check_loss(Loss loss) {
  const int code = static_cast<int>(loss);
  if (code < 0 || code >= kLossCount) {
    throw std::out_of_range("loss must be a loss code in [0, " + std::to_string(kLossCount) + "), got " +
                            std::to_string(code));
  }
}

void check_optimizer(Optimizer optimizer) {
  const int code = static_cast<int>(optimizer);
  if (code < 0 || code >= kOptimizerCount) {
    throw std::out_of_range("optimizer must be an optimizer code in [0, " + std::to_string(kOptimizerCount) +
                            "), got " + std::to_string(code));
  }
}

inline void dense(const cpu::Kernels& k, const LayerPlan& l, const float* params, std::size_t rows, const float* in,
                  float* out) {
  const float* w = params + l.weight;
  const float* b = l.has_bias ? params + l.bias : nullptr;
  if (rows == 1) {
    k.gemv(l.outputs, l.inputs, w, in, b, out);
  } else {
    k.linear_forward(rows, l.outputs, l.inputs, in, w, b, out);
  }
}

}  // namespace

// Everything one training pass keeps between forward and backward, in one allocation sized
// for the batch. Allocated per call: training work is O(batch * params), far above the cost of
// one allocation, and per-call buffers need no locking between concurrent calls.
struct Model::Trace {
  std::unique_ptr<float[]> storage;
  float* enc_buf = nullptr;           // encoded input, when the encoding is not the identity
  const float* enc = nullptr;         // the first layer's input: enc_buf, or x itself
  std::vector<float*> z;              // pre-activations per layer
  std::vector<float*> a;              // post-activations per layer (== z without an activation)
  float* grad_y = nullptr;            // dLoss/dy
  float* grad_z = nullptr;            // dLoss/dz of the layer being walked back
  float* grad_a[2] = {nullptr, nullptr};  // dLoss/d(layer input), alternating between layers

  Trace(const ModelPlan& plan, std::size_t batch) {
    const std::size_t width = plan.encoding.width();
    const bool identity = plan.encoding.type == Encoding::Identity;
    const std::size_t wide = std::max(plan.max_width, width);
    std::size_t floats = identity ? 0 : width;
    for (const LayerPlan& l : plan.layers) floats += l.outputs * (l.activation == Activation::None ? 1 : 2);
    floats += plan.layers.back().outputs + plan.max_width + 2 * wide;
    if (floats != 0 && batch > std::numeric_limits<std::size_t>::max() / sizeof(float) / floats) {
      throw std::bad_alloc();
    }
    storage.reset(new float[batch * floats]);
    float* p = storage.get();
    auto take = [&](std::size_t n) {
      float* q = p;
      p += batch * n;
      return q;
    };
    if (!identity) enc_buf = take(width);
    for (const LayerPlan& l : plan.layers) {
      float* zl = take(l.outputs);
      z.push_back(zl);
      a.push_back(l.activation == Activation::None ? zl : take(l.outputs));
    }
    grad_y = take(plan.layers.back().outputs);
    grad_z = take(plan.max_width);
    grad_a[0] = take(wide);
    grad_a[1] = take(wide);
  }
};

Model::Model(const ModelConfig& config, const float* params, std::size_t count)
    : plan_(plan_model(config)) {
  if (count != plan_.param_count) {
    throw std::length_error("params must have " + std::to_string(plan_.param_count) + " elements, got " +
                            std::to_string(count));
  }
  params_.assign(params, params + count);
  grads_.assign(count, 0.0f);
  opt_ = OptimizerState(count);
}

void Model::predict(const float* x, std::size_t batch, float* out) const {
  std::shared_lock lock(mutex_);
  const cpu::Kernels& k = cpu::kernels();
  const std::size_t d = plan_.encoding.inputs;
  const std::size_t width = plan_.encoding.width();
  const bool identity = plan_.encoding.type == Encoding::Identity;
  const std::size_t enc_floats = identity ? 0 : width;
  const std::size_t row_floats = enc_floats + 2 * plan_.max_width;
  const std::size_t tile = std::clamp<std::size_t>(kTileFloats / row_floats, 1, kMaxTileRows);

  // One scratch per thread: the JS thread and each libuv worker reuse theirs across calls, and
  // no two calls on one thread overlap. Its size is bounded by the largest model seen.
  thread_local std::vector<float> scratch;
  if (scratch.size() < tile * row_floats) scratch.resize(tile * row_floats);
  float* enc = scratch.data();
  float* ping[2] = {enc + tile * enc_floats, enc + tile * enc_floats + tile * plan_.max_width};

  const float* params = params_.data();
  const std::size_t L = plan_.layers.size();
  for (std::size_t r0 = 0; r0 < batch; r0 += tile) {
    const std::size_t rows = std::min(tile, batch - r0);
    const float* in = x + r0 * d;
    if (!identity) {
      encode_forward(plan_.encoding, in, rows, enc);
      in = enc;
    }
    for (std::size_t l = 0; l < L; ++l) {
      const LayerPlan& layer = plan_.layers[l];
      float* dst = l + 1 == L ? out + r0 * layer.outputs : ping[l & 1];
      dense(k, layer, params, rows, in, dst);
      activation_forward(layer.activation, layer.alpha, dst, dst, rows * layer.outputs);
      in = dst;
    }
  }
}

void Model::get_params(float* out) const {
  std::shared_lock lock(mutex_);
  std::memcpy(out, params_.data(), params_.size() * sizeof(float));
}

void Model::set_params(const float* params) {
  std::unique_lock lock(mutex_);
  std::memcpy(params_.data(), params, params_.size() * sizeof(float));
}

void Model::get_grads(float* out) const {
  std::shared_lock lock(mutex_);
  std::memcpy(out, grads_.data(), grads_.size() * sizeof(float));
}

void Model::set_grads(const float* grads) {
  std::unique_lock lock(mutex_);
  std::memcpy(grads_.data(), grads, grads_.size() * sizeof(float));
}

void Model::forward_trace(const float* x, std::size_t batch, Trace& t) const {
  const cpu::Kernels& k = cpu::kernels();
  if (plan_.encoding.type == Encoding::Identity) {
    t.enc = x;
  } else {
    encode_forward(plan_.encoding, x, batch, t.enc_buf);
    t.enc = t.enc_buf;
  }
  const float* in = t.enc;
  for (std::size_t l = 0; l < plan_.layers.size(); ++l) {
    const LayerPlan& layer = plan_.layers[l];
    dense(k, layer, params_.data(), batch, in, t.z[l]);
    if (layer.activation != Activation::None) {
      activation_forward(layer.activation, layer.alpha, t.z[l], t.a[l], batch * layer.outputs);
    }
    in = t.a[l];
  }
}

void Model::backward_trace(const float* x, std::size_t batch, Trace& t, const float* grad_y, float* grad_input) {
  const cpu::Kernels& k = cpu::kernels();
  const float* grad_a = grad_y;
  for (std::size_t l = plan_.layers.size(); l-- > 0;) {
    const LayerPlan& layer = plan_.layers[l];
    const std::size_t n = batch * layer.outputs;
    activation_backward(layer.activation, layer.alpha, t.z[l], grad_a, t.grad_z, n);
    const float* in = l == 0 ? t.enc : t.a[l - 1];
    float* db = layer.has_bias ? grads_.data() + layer.bias : nullptr;
    k.linear_backward_weights(batch, layer.outputs, layer.inputs, t.grad_z, in, grads_.data() + layer.weight, db);
    if (l == 0 && !grad_input) break;
    // Alternate buffers so this layer's input gradient never overwrites the one being read.
    float* grad_in = t.grad_a[l & 1];
    k.linear_backward_input(batch, layer.outputs, layer.inputs, t.grad_z, params_.data() + layer.weight, grad_in);
    grad_a = grad_in;
  }
  if (grad_input) encode_backward(plan_.encoding, x, batch, grad_a, grad_input);
}

double Model::loss_grad_locked(const float* x, std::size_t batch, Loss loss, double loss_param,
                               const LossTarget& target, float* grad_input) {
  check_loss(loss);
  Trace t(plan_, batch);
  forward_trace(x, batch, t);
  const std::size_t L = plan_.layers.size();
  // Throws on a bad label before the gradient buffer is touched.
  const double value = loss_and_gradient(loss, loss_param, t.a[L - 1], target, batch, outputs(), t.grad_y);
  backward_trace(x, batch, t, t.grad_y, grad_input);
  return value;
}

double Model::loss_grad(const float* x, std::size_t batch, Loss loss, double loss_param, const LossTarget& target,
                        float* grad_input) {
  std::unique_lock lock(mutex_);
  return loss_grad_locked(x, batch, loss, loss_param, target, grad_input);
}

void Model::backward(const float* x, std::size_t batch, const float* grad_output, float* grad_input) {
  std::unique_lock lock(mutex_);
  Trace t(plan_, batch);
  forward_trace(x, batch, t);
  backward_trace(x, batch, t, grad_output, grad_input);
}

double Model::optimizer_step_locked(Optimizer optimizer, const Hyper& hyper, double clip_norm) {
  check_optimizer(optimizer);
  const double norm = clip_grad_norm(grads_.data(), grads_.size(), clip_norm);
  optimizer_update(optimizer, hyper, params_.data(), grads_.data(), params_.size(), opt_);
  return norm;
}

double Model::optimizer_step(Optimizer optimizer, const Hyper& hyper, double clip_norm) {
  std::unique_lock lock(mutex_);
  return optimizer_step_locked(optimizer, hyper, clip_norm);
}

void Model::reset_optimizer() {
  std::unique_lock lock(mutex_);
  opt_.reset();
}

double Model::train_step(const float* x, std::size_t batch, Loss loss, double loss_param, const LossTarget& target,
                         Optimizer optimizer, const Hyper& hyper, double clip_norm) {
  // Check both codes before anything runs, so a bad optimizer code cannot leave fresh
  // gradients behind without the update they were computed for.
  check_loss(loss);
  check_optimizer(optimizer);
  std::unique_lock lock(mutex_);
  const double value = loss_grad_locked(x, batch, loss, loss_param, target, nullptr);
  optimizer_step_locked(optimizer, hyper, clip_norm);
  return value;
}

}  // namespace mlpkit

// Gradient clipping and optimizer updates over the flat parameter vector, with the exact
// update formulas of torch.optim.SGD / Adam / AdamW (single-tensor, non-foreach semantics).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/aligned.h"

namespace mlpkit {

// Codes are ABI: they index OPTIMIZERS in lib/backend/types.ts.
enum class Optimizer : int { Sgd = 0, Adam, AdamW };
constexpr int kOptimizerCount = 3;

// The hyper array crossing the binding: [lr, weightDecay, momentum, dampening, nesterov,
// beta1, beta2, eps]. Every optimizer reads the fields it uses and ignores the rest.
constexpr std::size_t kHyperCount = 8;
struct Hyper {
  double lr = 0, weight_decay = 0, momentum = 0, dampening = 0;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;

  static Hyper from_array(const double* h);
};

// Moments share the parameters' flat layout: m is SGD's momentum buffer or Adam's first
// moment, v Adam's second moment. t counts optimizer steps (the first update sees t = 1).
struct OptimizerState {
  AlignedVector<float> m, v;
  std::int64_t t = 0;

  explicit OptimizerState(std::size_t n = 0) : m(n, 0.0f), v(n, 0.0f) {}
  void reset();
};

// torch.nn.utils.clip_grad_norm_: scales grad by max_norm / (norm + 1e-6) when that is < 1.
// Skipped when max_norm is not a finite positive number. Returns the norm before clipping.
double clip_grad_norm(float* grad, std::size_t n, double max_norm);

// One update of params from grad. Increments state.t first.
void optimizer_update(Optimizer opt, const Hyper& hyper, float* params, const float* grad, std::size_t n,
                      OptimizerState& state);

}  // namespace mlpkit

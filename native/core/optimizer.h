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
// bound_*: upper bounds of max |p|, max |m| and max v, from which the next update's overflow
// check proves most steps finite without a pass over the data (optimizer_update_finite).
struct OptimizerState {
  AlignedVector<float> m, v;
  std::int64_t t = 0;
  double bound_p = 0, bound_m = 0, bound_v = 0;
  bool bounds_known = false;  // false after the parameters are set from outside, or reset
  bool bounds_exact = false;  // measured from the arrays, not grown step by step
  // The bounds after the update optimizer_update_finite proved; optimizer_update adopts them.
  double next_p = 0, next_m = 0, next_v = 0;
  bool next_known = false;

  explicit OptimizerState(std::size_t n = 0) : m(n, 0.0f), v(n, 0.0f) {}
  void reset();
};

// torch.nn.utils.clip_grad_norm_: scales grad by max_norm / (norm + 1e-6) when that is < 1.
// Skipped when max_norm is not a finite positive number. Returns the norm before clipping.
double clip_grad_norm(float* grad, std::size_t n, double max_norm);

// True when the next update would leave every parameter and moment finite; changes nothing but
// the bounds in state. Finite gradients can still overflow float32 in an update: a huge learning
// rate, or a gradient past ~1e19 squared into Adam's second moment. grad_bound bounds every
// |grad[i]| (see grad_bound()). Bounds carried from step to step settle almost every step at no
// cost; when they cannot, they are measured again (passes over p, m and v), and if that is not
// enough either, a pass runs the update's arithmetic without storing it.
bool optimizer_update_finite(Optimizer opt, const Hyper& hyper, const float* params, const float* grad, std::size_t n,
                             OptimizerState& state, double grad_bound);

// A bound of every |x[i]| from sum_squares(x) (its float32 rounding included), or +Infinity.
double grad_bound(float sum_squares, std::size_t n);

// One update of params from grad; state.t counts it.
void optimizer_update(Optimizer opt, const Hyper& hyper, float* params, const float* grad, std::size_t n,
                      OptimizerState& state);

}  // namespace mlpkit

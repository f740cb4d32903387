#include "core/optimizer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace mlpkit {

Hyper Hyper::from_array(const double* h) {
  Hyper out;
  out.lr = h[0];
  out.weight_decay = h[1];
  out.momentum = h[2];
  out.dampening = h[3];
  out.nesterov = h[4] != 0;
  out.beta1 = h[5];
  out.beta2 = h[6];
  out.eps = h[7];
  return out;
}

void OptimizerState::reset() {
  std::fill(m.begin(), m.end(), 0.0f);
  std::fill(v.begin(), v.end(), 0.0f);
  t = 0;
}

double clip_grad_norm(float* grad, std::size_t n, double max_norm) {
  // The norm is a sum of up to millions of squares: accumulate in double so it does not drift.
  double sq = 0;
  for (std::size_t i = 0; i < n; ++i) sq += static_cast<double>(grad[i]) * grad[i];
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && std::isfinite(max_norm)) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1) {
      for (std::size_t i = 0; i < n; ++i) grad[i] = static_cast<float>(grad[i] * coef);
    }
  }
  return norm;
}

namespace {

void sgd(const Hyper& h, float* p, const float* grad, std::size_t n, OptimizerState& s) {
  const float lr = static_cast<float>(h.lr);
  const float wd = static_cast<float>(h.weight_decay);
  const float momentum = static_cast<float>(h.momentum);
  const float keep = static_cast<float>(1.0 - h.dampening);
  float* buf = s.m.data();
  // torch creates the momentum buffer as a copy of the first gradient (no dampening on step 1).
  const bool first = s.t == 1;
  for (std::size_t i = 0; i < n; ++i) {
    float g = grad[i] + wd * p[i];
    if (h.momentum != 0) {
      buf[i] = first ? g : momentum * buf[i] + keep * g;
      g = h.nesterov ? g + momentum * buf[i] : buf[i];
    }
    p[i] -= lr * g;
  }
}

void adam(const Hyper& h, bool decoupled, float* p, const float* grad, std::size_t n, OptimizerState& s) {
  // Bias corrections in double: 1 - beta^t loses most of its digits in float once beta^t ~ 1.
  const double t = static_cast<double>(s.t);
  const double bc1 = 1.0 - std::pow(h.beta1, t);
  const double bc2 = 1.0 - std::pow(h.beta2, t);
  const float step_size = static_cast<float>(h.lr / bc1);
  const float sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
  const float b1 = static_cast<float>(h.beta1), one_b1 = static_cast<float>(1.0 - h.beta1);
  const float b2 = static_cast<float>(h.beta2), one_b2 = static_cast<float>(1.0 - h.beta2);
  const float eps = static_cast<float>(h.eps);
  const float wd = static_cast<float>(h.weight_decay);
  const float decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  float* m = s.m.data();
  float* v = s.v.data();
  for (std::size_t i = 0; i < n; ++i) {
    float pi = p[i];
    float g = grad[i];
    if (decoupled) {
      pi *= decay;  // AdamW: decay the weights first, then a plain Adam step
    } else {
      g += wd * pi;
    }
    m[i] = b1 * m[i] + one_b1 * g;
    v[i] = b2 * v[i] + one_b2 * g * g;
    const float denom = std::sqrt(v[i]) / sqrt_bc2 + eps;
    p[i] = pi - step_size * m[i] / denom;
  }
}

}  // namespace

void optimizer_update(Optimizer opt, const Hyper& hyper, float* params, const float* grad, std::size_t n,
                      OptimizerState& state) {
  const int code = static_cast<int>(opt);
  if (code < 0 || code >= kOptimizerCount) throw std::out_of_range("unknown optimizer code " + std::to_string(code));
  if (state.m.size() < n || state.v.size() < n) throw std::length_error("optimizer state is smaller than the parameters");
  state.t += 1;
  switch (opt) {
    case Optimizer::Sgd: sgd(hyper, params, grad, n, state); return;
    case Optimizer::Adam: adam(hyper, false, params, grad, n, state); return;
    case Optimizer::AdamW: adam(hyper, true, params, grad, n, state); return;
  }
}

}  // namespace mlpkit

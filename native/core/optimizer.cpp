#include "core/optimizer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/cpu/float_mode.h"
#include "core/cpu/kernels.h"
#include "core/parallel.h"

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
  // The norm is a sum of up to millions of squares: accumulate in double so it does not drift,
  // in eight interleaved partial sums (a fixed order) so the additions do not wait on each other.
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (std::size_t j = 0; j < 8; ++j) part[j] += static_cast<double>(grad[i + j]) * grad[i + j];
  for (std::size_t j = 0; i < n; ++i, ++j) part[j] += static_cast<double>(grad[i]) * grad[i];
  const double sq = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && std::isfinite(max_norm)) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1) {
      for (std::size_t e = 0; e < n; ++e) grad[e] = static_cast<float>(grad[e] * coef);
    }
  }
  return norm;
}

namespace {

// Updates run as ISA kernels (core/cpu/kernels_impl.inl) over blocks of parameters; large
// models spread the blocks over the thread pool. Every element is independent, so neither the
// blocking nor the thread count changes a result.
constexpr std::size_t kBlock = 1 << 15;

template <class Fn>
void over_blocks(std::size_t n, Fn fn) {
  const std::size_t blocks = (n + kBlock - 1) / kBlock;
  auto run = [&](std::size_t b) {
    cpu::FlushDenormals flush;  // see float_mode.h: Adam's decaying moments would crawl otherwise
    fn(b * kBlock, std::min(n, (b + 1) * kBlock));
  };
  if (blocks > 1) {
    parallel_for(blocks, run);
  } else if (n > 0) {
    run(0);
  }
}

void sgd(const Hyper& h, float* p, const float* grad, std::size_t n, OptimizerState& s) {
  cpu::SgdStep step;
  step.p = p;
  step.g = grad;
  step.buf = s.m.data();
  step.lr = static_cast<float>(h.lr);
  step.wd = static_cast<float>(h.weight_decay);
  step.momentum = static_cast<float>(h.momentum);
  step.keep = static_cast<float>(1.0 - h.dampening);
  step.use_momentum = h.momentum != 0;
  // torch creates the momentum buffer as a copy of the first gradient (no dampening on step 1).
  step.first = s.t == 1;
  step.nesterov = h.nesterov;
  const cpu::Kernels& k = cpu::kernels();
  over_blocks(n, [&](std::size_t begin, std::size_t end) { k.sgd(step, begin, end); });
}

void adam(const Hyper& h, bool decoupled, float* p, const float* grad, std::size_t n, OptimizerState& s) {
  // Bias corrections in double: 1 - beta^t loses most of its digits in float once beta^t ~ 1.
  const double t = static_cast<double>(s.t);
  const double bc1 = 1.0 - std::pow(h.beta1, t);
  const double bc2 = 1.0 - std::pow(h.beta2, t);
  cpu::AdamStep step;
  step.p = p;
  step.g = grad;
  step.m = s.m.data();
  step.v = s.v.data();
  step.step_size = static_cast<float>(h.lr / bc1);
  step.sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
  step.b1 = static_cast<float>(h.beta1);
  step.one_b1 = static_cast<float>(1.0 - h.beta1);
  step.b2 = static_cast<float>(h.beta2);
  step.one_b2 = static_cast<float>(1.0 - h.beta2);
  step.eps = static_cast<float>(h.eps);
  step.wd = static_cast<float>(h.weight_decay);
  step.decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  // AdamW decays the weights first, then takes a plain Adam step; Adam adds wd * p to the gradient.
  step.decoupled = decoupled;
  const cpu::Kernels& k = cpu::kernels();
  over_blocks(n, [&](std::size_t begin, std::size_t end) { k.adam(step, begin, end); });
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

#include "core/optimizer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <limits>
#include <string>
#include <vector>

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
  bounds_known = next_known = false;
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

// fn(begin, end) returns false when its block's check found a non-finite result.
template <class Fn>
bool over_blocks(std::size_t n, Fn fn) {
  const std::size_t blocks = (n + kBlock - 1) / kBlock;
  auto run = [&](std::size_t b) {
    cpu::FlushDenormals flush;  // see float_mode.h: Adam's decaying moments would crawl otherwise
    return fn(b * kBlock, std::min(n, (b + 1) * kBlock));
  };
  if (blocks > 1) {
    std::vector<char> finite(blocks, 1);
    parallel_for(blocks, [&](std::size_t b) { finite[b] = run(b) ? 1 : 0; });
    return std::find(finite.begin(), finite.end(), 0) == finite.end();
  }
  return n == 0 || run(0);
}

// x as a float32 constant of the kernels: rounded, or +-Infinity past float32's range (where a
// plain conversion is undefined behaviour). lr / bc1 and 1 - lr * wd can get there from
// hyperparameters that are each in range; the update's check then refuses the step.
float as_float(double x) {
  if (x > std::numeric_limits<float>::max()) return std::numeric_limits<float>::infinity();
  if (x < -std::numeric_limits<float>::max()) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(x);
}

// The update that makes step t (the first is t = 1); with check, only whether it stays finite.
bool sgd(const Hyper& h, float* p, const float* grad, std::size_t n, float* buf, std::int64_t t, bool check) {
  cpu::SgdStep step;
  step.p = p;
  step.g = grad;
  step.buf = buf;
  step.lr = as_float(h.lr);
  step.wd = as_float(h.weight_decay);
  step.momentum = as_float(h.momentum);
  step.keep = as_float(1.0 - h.dampening);
  step.use_momentum = h.momentum != 0;
  // torch creates the momentum buffer as a copy of the first gradient (no dampening on step 1).
  step.first = t == 1;
  step.nesterov = h.nesterov;
  step.check = check;
  const cpu::Kernels& k = cpu::kernels();
  return over_blocks(n, [&](std::size_t begin, std::size_t end) { return k.sgd(step, begin, end); });
}

bool adam(const Hyper& h, bool decoupled, float* p, const float* grad, std::size_t n, float* m, float* v, std::int64_t t,
          bool check) {
  // Bias corrections in double: 1 - beta^t loses most of its digits in float once beta^t ~ 1.
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(t));
  cpu::AdamStep step;
  step.p = p;
  step.g = grad;
  step.m = m;
  step.v = v;
  step.step_size = as_float(h.lr / bc1);
  step.sqrt_bc2 = as_float(std::sqrt(bc2));
  step.b1 = as_float(h.beta1);
  step.one_b1 = as_float(1.0 - h.beta1);
  step.b2 = as_float(h.beta2);
  step.one_b2 = as_float(1.0 - h.beta2);
  step.eps = as_float(h.eps);
  step.wd = as_float(h.weight_decay);
  step.decay = as_float(1.0 - h.lr * h.weight_decay);
  // AdamW decays the weights first, then takes a plain Adam step; Adam adds wd * p to the gradient.
  step.decoupled = decoupled;
  step.check = check;
  const cpu::Kernels& k = cpu::kernels();
  return over_blocks(n, [&](std::size_t begin, std::size_t end) { return k.adam(step, begin, end); });
}

// The next update, or with check only whether it would leave every value finite.
bool update(Optimizer opt, const Hyper& hyper, float* params, const float* grad, std::size_t n, OptimizerState& state,
            std::int64_t t, bool check) {
  const int code = static_cast<int>(opt);
  if (code < 0 || code >= kOptimizerCount) throw std::out_of_range("unknown optimizer code " + std::to_string(code));
  if (state.m.size() < n || state.v.size() < n) throw std::length_error("optimizer state is smaller than the parameters");
  switch (opt) {
    case Optimizer::Sgd: return sgd(hyper, params, grad, n, state.m.data(), t, check);
    case Optimizer::Adam: return adam(hyper, false, params, grad, n, state.m.data(), state.v.data(), t, check);
    case Optimizer::AdamW: return adam(hyper, true, params, grad, n, state.m.data(), state.v.data(), t, check);
  }
  return false;
}

// Below this no float32 result can round past FLT_MAX: each bound is of exact values, and the
// few roundings on the way add a relative 2^-24 each.
constexpr double kSafe = std::numeric_limits<float>::max() / 4.0;

// Bounds of the values step t computes, from the state's bounds and the gradients'. Every
// intermediate below kSafe (and Adam dividing by at least eps, a normal float: a denormal eps is
// flushed to 0 while training) proves the step finite; otherwise it is not proven, which is not
// to say it overflows.
struct StepBounds {
  bool proven = false;
  double p = 0, m = 0, v = 0;
};

StepBounds step_bounds(Optimizer opt, const Hyper& h, const OptimizerState& s, double G, std::int64_t t) {
  auto f = [](double x) { return std::fabs(static_cast<double>(as_float(x))); };  // |x| as the kernel's constant
  const double P = s.bound_p, M = s.bound_m, V = s.bound_v;
  StepBounds out;
  if (opt == Optimizer::Sgd) {
    const double g = G + f(h.weight_decay) * P;
    double step = g, buf = M;
    if (h.momentum != 0) {
      buf = t == 1 ? g : f(h.momentum) * M + f(1.0 - h.dampening) * g;
      step = h.nesterov ? g + f(h.momentum) * buf : buf;
    }
    out.p = P + f(h.lr) * step;
    out.m = buf;
    out.v = V;
    out.proven = g < kSafe && buf < kSafe && step < kSafe && out.p < kSafe;
    return out;
  }
  const bool decoupled = opt == Optimizer::AdamW;
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(t));
  const double step_size = f(h.lr / bc1), sqrt_bc2 = f(std::sqrt(bc2)), eps = f(h.eps);
  const double p = decoupled ? f(1.0 - h.lr * h.weight_decay) * P : P;
  const double g = decoupled ? G : G + f(h.weight_decay) * P;
  out.m = f(h.beta1) * M + f(1.0 - h.beta1) * g;
  out.v = f(h.beta2) * V + f(1.0 - h.beta2) * g * g;
  // |m / denom| <= |m| / eps: loose (eps is tiny), but it only has to stay below kSafe.
  const double scaled = step_size * out.m;
  out.p = p + scaled / eps;
  // The magnitudes above hold for constants of any sign, but Adam also needs its domain: v >= 0
  // (betas in [0, 1], so no sqrt of a negative) and a denominator of at least eps > 0. The
  // TypeScript options ensure these; the raw addon takes any finite numbers, which then go to
  // the check pass instead of a proof.
  const double normal = std::numeric_limits<float>::min();
  const bool domain = as_float(h.eps) >= normal && h.beta1 >= 0 && h.beta1 <= 1 && h.beta2 >= 0 && h.beta2 <= 1;
  out.proven = domain && sqrt_bc2 >= normal && p < kSafe && g < kSafe && out.m < kSafe && out.v < kSafe &&
               std::sqrt(out.v) / sqrt_bc2 < kSafe && scaled < kSafe && out.p < kSafe;
  return out;
}

// Bounds measured from the arrays themselves (grad_bound bounds any array's max |x|).
void measure_bounds(OptimizerState& s, const float* params, std::size_t n) {
  cpu::FlushDenormals flush;  // tiny squares would crawl otherwise; grad_bound allows for them
  const cpu::Kernels& k = cpu::kernels();
  s.bound_p = grad_bound(k.sum_squares(params, n), n);
  s.bound_m = grad_bound(k.sum_squares(s.m.data(), n), n);
  s.bound_v = grad_bound(k.sum_squares(s.v.data(), n), n);
  s.bounds_known = s.bounds_exact = true;
}

}  // namespace

double grad_bound(float sum_squares, std::size_t n) {
  if (!std::isfinite(sum_squares)) return HUGE_VAL;
  // A float32 sum of n nonnegative terms is off by at most (n - 1) u relative (u = 2^-24),
  // whatever the order: allow n 2^-23. Squares below ~1e-45 underflow (or flush to 0) instead:
  // each square and add may lose up to 2^-126 outright, so a sum of 0 still allows |x| ~ 1e-19
  // per sqrt(n) (found in review: without it a gradient of 1e-25, times lr 1e38, was "proven").
  const double relative = static_cast<double>(sum_squares) * (1.0 + static_cast<double>(n) * 0x1p-23);
  return std::sqrt(relative + static_cast<double>(n) * 0x1p-125);
}

bool optimizer_update_finite(Optimizer opt, const Hyper& hyper, const float* params, const float* grad, std::size_t n,
                             OptimizerState& state, double grad_bound) {
  const int code = static_cast<int>(opt);
  if (code < 0 || code >= kOptimizerCount) throw std::out_of_range("unknown optimizer code " + std::to_string(code));
  if (state.m.size() < n || state.v.size() < n) throw std::length_error("optimizer state is smaller than the parameters");
  state.next_known = false;
  const std::int64_t t = state.t + 1;
  if (!state.bounds_known) measure_bounds(state, params, n);
  StepBounds b = step_bounds(opt, hyper, state, grad_bound, t);
  if (!b.proven && !state.bounds_exact) {
    // Bounds grown over many steps may have drifted far above the values: measure them again.
    measure_bounds(state, params, n);
    b = step_bounds(opt, hyper, state, grad_bound, t);
  }
  if (b.proven) {
    // The bounds are of exact values; the floats stored round each of a few operations by a
    // relative 2^-24 at most, which 1e-6 covers.
    constexpr double kRounding = 1.0 + 1e-6;
    state.next_p = b.p * kRounding;
    state.next_m = b.m * kRounding;
    state.next_v = b.v * kRounding;
    state.next_known = true;
    return true;
  }
  // The check stores nothing: the pointers lose their const only to share the update's struct.
  return update(opt, hyper, const_cast<float*>(params), grad, n, state, t, true);
}

void optimizer_update(Optimizer opt, const Hyper& hyper, float* params, const float* grad, std::size_t n,
                      OptimizerState& state) {
  update(opt, hyper, params, grad, n, state, state.t + 1, false);
  state.t += 1;
  // The bounds proven for this step, if the check proved it; otherwise measured when next needed.
  state.bounds_known = state.next_known;
  state.bounds_exact = false;
  if (state.next_known) {
    state.bound_p = state.next_p;
    state.bound_m = state.next_m;
    state.bound_v = state.next_v;
  }
  state.next_known = false;
}

}  // namespace mlpkit

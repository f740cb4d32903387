// Every CUDA kernel of native/core/cuda against the CPU core (or against a host statement of the
// same arithmetic), on random shapes: rows 1, 3, 17, 63, 65, 1000 and widths 16..128. No Node,
// no framework. Exit status: 0 all passed, 1 a check failed, 77 no usable CUDA device (ctest
// SKIP_RETURN_CODE), after printing "SKIPPED: no CUDA device (<reason>)".
//
// Tolerances, each relative to the largest magnitude compared (relative_error below):
//  - exact (== on every element): the fp32 GEMM against a host std::fma chain in the same order
//    (none / relu / leaky_relu epilogues), the sparse GEMV against the dense host chain, W8A8
//    against the CPU QuantModel before non-piecewise-linear activations, and the optimizers
//    against the CPU's (every operation correctly rounded on both sides).
//  - 1e-5, fp32: the model against the CPU Model (different summation chunks and FMA use; CUDA's
//    expf/erff/tanhf are within a few ulps of glibc's), weight-only quantised GEMV (per-lane
//    partial sums instead of one chain per group).
//  - 1e-2, fp16 fused path: inputs, weights and every hidden activation are rounded to fp16
//    (10-bit mantissa, unit roundoff 2^-11 ~ 4.9e-4); with a few such roundings per layer
//    compounding through 3 layers the error relative to the output scale is a few 1e-3.
//  - 5e-2, bf16 fused path: the same with bf16's 7-bit mantissa (unit roundoff 2^-8 ~ 3.9e-3).
// Reduced-precision gradients are compared by relative RMS error (rms_error), twice the forward
// tolerance, on networks with smooth activations and smooth losses. At a kink (relu' at 0, l1's
// sign at y = t) a rounding of z or y can flip the derivative; a fraction p ~ 1.6 eps of the
// units flips, which moves a weight gradient by ~sqrt(2 p) in RMS: ~5% for fp16, ~11% for bf16,
// whatever the kernels do. ReLU networks are therefore checked at 0.15 (fp16) and 0.3 (bf16)
// RMS, which still catches a wrong layout, a missed bias or a lost row (errors of order 1).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/activation.h"
#include "core/config.h"
#include "core/cuda/cuda_model.h"
#include "core/cuda/device.h"
#include "core/cuda/kernels.cuh"
#include "core/loss.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "core/quant/qmodel.h"

using namespace mlpkit;

namespace {

int g_checks = 0;
int g_failures = 0;
std::string g_test;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    if (g_failures < 200) std::printf("  FAIL [%s] %s\n", g_test.c_str(), what.c_str());
  }
}

void run(const char* name, const std::function<void()>& test) {
  g_test = name;
  const int before = g_failures;
  try {
    test();
  } catch (const std::exception& e) {
    check(false, std::string("unexpected exception: ") + e.what());
  }
  std::printf("%s %s\n", g_failures == before ? "ok  " : "FAIL", name);
  std::fflush(stdout);
}

// max |a - b| / max(max |b|, floor); NaN in both at the same place counts as equal.
double relative_error(const float* a, const float* b, std::size_t n, double floor = 1e-6) {
  double diff = 0, scale = floor;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;  // NaN where the reference has NaN
    const double d = std::abs(static_cast<double>(a[i]) - b[i]);
    diff = std::isnan(d) ? INFINITY : std::max(diff, d);
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
  if (got.size() != want.size()) {
    check(false, what + ": sizes differ");
    return;
  }
  const double err = relative_error(got.data(), want.data(), got.size());
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s: relative error %.3g > %.3g", what.c_str(), err, tol);
  check(err <= tol, buf);
}

// sqrt(sum (a - b)^2) / sqrt(sum b^2) (relative RMS error).
double rms_error(const float* a, const float* b, std::size_t n) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    diff += d * d;
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

void check_rms(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
  const double err = got.size() == want.size() ? rms_error(got.data(), want.data(), got.size()) : INFINITY;
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s: relative RMS error %.3g > %.3g", what.c_str(), err, tol);
  check(err <= tol, buf);
}

void check_equal(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < want.size() && i < got.size(); ++i) {
    const bool same = got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i]));
    if (!same && bad++ == 0) first = i;
  }
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s: %zu of %zu elements differ (first at %zu: %.9g vs %.9g)", what.c_str(), bad,
                want.size(), first, bad ? got[first] : 0.0f, bad ? want[first] : 0.0f);
  check(bad == 0 && got.size() == want.size(), buf);
}

// splitmix64: reproducible data without <random>'s implementation-defined distributions.
struct Rng {
  std::uint64_t s;
  explicit Rng(std::uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ull + 1) {}
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  float sym(float scale = 1) { return static_cast<float>((2 * uniform() - 1) * scale); }
  std::uint32_t below(std::uint32_t n) { return static_cast<std::uint32_t>(next() % n); }
};

std::vector<float> random_vector(std::size_t n, std::uint64_t seed, float scale = 1) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = rng.sym(scale);
  return v;
}

// A device copy of a host vector, freed on scope exit.
template <class T>
struct Dev {
  T* p = nullptr;
  std::size_t n = 0;
  explicit Dev(std::size_t count) : n(count) { MLPKIT_CUDA_CHECK(cudaMalloc(&p, std::max<std::size_t>(1, n) * sizeof(T))); }
  explicit Dev(const std::vector<T>& v) : Dev(v.size()) {
    MLPKIT_CUDA_CHECK(cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  std::vector<T> get() const {
    MLPKIT_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<T> v(n);
    MLPKIT_CUDA_CHECK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
};

const std::size_t kRows[] = {1, 3, 17, 63, 65, 1000};
const int kActivations[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
bool exact_activation(int a) { return a == 0 || a == 1 || a == 2; }

// ---- fp32 GEMM --------------------------------------------------------------------------------

// The host statement of gemm_f32: one std::fma chain per output, in k order.
void host_gemm(const cuda::GemmF32& g, const std::vector<float>& a, const std::vector<float>& b,
               const std::vector<float>& bias, std::vector<float>& c, std::vector<float>* z, const std::vector<float>* gate) {
  for (long long i = 0; i < g.m; ++i) {
    for (long long j = 0; j < g.n; ++j) {
      float acc = bias.empty() ? 0.0f : bias[j];
      for (long long p = 0; p < g.k; ++p) acc = std::fma(a[i * g.a_rs + p * g.a_cs], b[p * g.b_rs + j * g.b_cs], acc);
      if (gate) {
        c[i * g.ldc + j] = acc * static_cast<float>(activation_derivative(static_cast<Activation>(g.gate_activation),
                                                                          (*gate)[i * g.ld_gate + j], g.gate_alpha));
      } else {
        if (z) (*z)[i * g.ld_z + j] = acc;
        float y = acc;
        activation_forward(static_cast<Activation>(g.activation), g.alpha, &acc, &y, 1);
        c[i * g.ldc + j] = y;
      }
    }
  }
}

void test_gemm_f32() {
  const long long ms[] = {1, 3, 17, 63, 65, 1000};
  const long long ns[] = {1, 16, 17, 64, 128};
  const long long ks[] = {1, 16, 33, 128, 300};
  int seed = 1;
  for (long long m : ms) {
    for (long long n : ns) {
      for (long long k : ks) {
        const int act = kActivations[seed % 9];
        const bool transposed_a = seed % 2 == 0;  // A read as a_rs = 1 (the weight-gradient view)
        cuda::GemmF32 g;
        g.m = m;
        g.n = n;
        g.k = k;
        g.a_rs = transposed_a ? 1 : k;
        g.a_cs = transposed_a ? m : 1;
        g.b_rs = 1;  // B(p, c) = W[c][p], the forward view of W [n x k]
        g.b_cs = k;
        g.ldc = n;
        g.ld_z = n;
        g.activation = act;
        g.alpha = 0.05f;
        const auto a = random_vector(m * k, seed * 7 + 1);
        const auto b = random_vector(n * k, seed * 7 + 2);
        const auto bias = random_vector(n, seed * 7 + 3);
        Dev<float> da(a), db(b), dbias(bias), dc(m * n), dz(m * n);
        g.a = da.p;
        g.b = db.p;
        g.bias = dbias.p;
        g.c = dc.p;
        g.z_out = dz.p;
        cuda::gemm_f32(g, nullptr);
        std::vector<float> c(m * n), z(m * n);
        host_gemm(g, a, b, bias, c, &z, nullptr);
        const std::string what = "m" + std::to_string(m) + " n" + std::to_string(n) + " k" + std::to_string(k) +
                                 " act " + std::to_string(act) + (transposed_a ? " A^T" : "");
        check_equal(dz.get(), z, what + " z");
        if (exact_activation(act)) check_equal(dc.get(), c, what + " y");
        else check_close(dc.get(), c, 1e-5, what + " y");
        ++seed;
      }
    }
  }
}

void test_gemm_f32_gate_and_split() {
  int seed = 100;
  for (long long m : {1LL, 17LL, 65LL, 1000LL}) {
    for (long long n : {16LL, 63LL, 128LL}) {
      const long long k = 48;
      const int act = kActivations[seed % 9];
      // dA = dZ . W with the derivative of the layer below at z (the gate epilogue).
      cuda::GemmF32 g;
      g.m = m;
      g.n = n;
      g.k = k;
      g.a_rs = k;
      g.a_cs = 1;
      g.b_rs = n;  // B(p = o, c = i) = W[o][i], W [k x n]
      g.b_cs = 1;
      g.ldc = n;
      g.gate_activation = act;
      g.gate_alpha = 0.1f;
      g.ld_gate = n;
      const auto a = random_vector(m * k, seed + 1), b = random_vector(k * n, seed + 2), gate = random_vector(m * n, seed + 3);
      Dev<float> da(a), db(b), dg(gate), dc(m * n);
      g.a = da.p;
      g.b = db.p;
      g.gate = dg.p;
      g.c = dc.p;
      cuda::gemm_f32(g, nullptr);
      std::vector<float> c(m * n);
      host_gemm(g, a, b, {}, c, nullptr, &gate);
      const std::string what = "gate m" + std::to_string(m) + " n" + std::to_string(n) + " act " + std::to_string(act);
      if (exact_activation(act)) check_equal(dc.get(), c, what);
      else check_close(dc.get(), c, 1e-5, what);

      // dW [n x k'] = dZ^T . A in chunks of rows, partials summed in chunk order.
      const long long kk = 37, chunk = 256;
      const int chunks = static_cast<int>((m + chunk - 1) / chunk);
      const auto dz = random_vector(m * n, seed + 4), in = random_vector(m * kk, seed + 5);
      Dev<float> ddz(dz), din(in), dpart(static_cast<std::size_t>(chunks) * n * kk), dw(n * kk);
      cuda::GemmF32 w;
      w.m = n;
      w.n = kk;
      w.k = m;
      w.a = ddz.p;
      w.a_rs = 1;
      w.a_cs = n;
      w.b = din.p;
      w.b_rs = kk;
      w.b_cs = 1;
      w.c = dpart.p;
      w.ldc = kk;
      w.k_chunk = chunk;
      w.c_zstride = n * kk;
      cuda::gemm_f32(w, nullptr);
      cuda::reduce_chunks(dpart.p, n * kk, chunks, n, kk, kk, 1.0f, dw.p, nullptr);
      std::vector<float> want(n * kk);
      for (long long o = 0; o < n; ++o) {
        for (long long i = 0; i < kk; ++i) {
          float total = 0;
          for (int s = 0; s < chunks; ++s) {
            float acc = 0;
            for (long long r = s * chunk; r < std::min(m, (s + 1) * chunk); ++r) acc = std::fma(dz[r * n + o], in[r * kk + i], acc);
            total = s == 0 ? acc : total + acc;
          }
          want[o * kk + i] = total;
        }
      }
      check_equal(dw.get(), want, "split-K dW m" + std::to_string(m) + " n" + std::to_string(n));

      // Bias gradient: column sums per chunk, then the same reduction.
      Dev<float> dcol(static_cast<std::size_t>(chunks) * n), db2(n);
      cuda::column_sum_chunks<float>(ddz.p, n, n, m, chunk, chunks, dcol.p, nullptr);
      cuda::reduce_chunks(dcol.p, n, chunks, 1, n, n, 1.0f, db2.p, nullptr);
      std::vector<float> wantb(n);
      for (long long o = 0; o < n; ++o) {
        float total = 0;
        for (int s = 0; s < chunks; ++s) {
          float acc = 0;
          for (long long r = s * chunk; r < std::min(m, (s + 1) * chunk); ++r) acc += dz[r * n + o];
          total = s == 0 ? acc : total + acc;
        }
        wantb[o] = total;
      }
      check_equal(db2.get(), wantb, "column sums m" + std::to_string(m) + " n" + std::to_string(n));
      ++seed;
    }
  }
}

// ---- losses and optimizers ----------------------------------------------------------------------

void test_losses() {
  for (int loss = 0; loss < kLossCount; ++loss) {
    for (std::size_t rows : {1, 17, 1000}) {
      const std::size_t outs = loss == 3 ? 10 : 3;
      const auto y = random_vector(rows * outs, 40 + loss + rows, 3);
      auto values = random_vector(rows * outs, 50 + loss + rows);
      if (loss == 4) for (float& v : values) v = v > 0 ? 1.0f : 0.0f;
      std::vector<std::int32_t> labels(rows);
      Rng rng(rows + 7);
      for (auto& l : labels) l = static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(outs)));
      const double param = 0.4;
      LossTarget t;
      if (loss == 3) t.labels = labels.data();
      else t.values = values.data();
      std::vector<float> want(rows * outs);
      const double want_loss = loss_and_gradient(static_cast<Loss>(loss), param, y.data(), t, rows, outs, want.data());

      Dev<float> dy(y), dv(values), dgrad(rows * outs);
      Dev<std::int32_t> dl(labels);
      Dev<double> sums(cuda::kReduceBlocks), result(1);
      cuda::LossArgs a;
      a.loss = loss;
      a.param = param;
      a.y = dy.p;
      a.rows = static_cast<long long>(rows);
      a.outputs = static_cast<long long>(outs);
      a.values = loss == 3 ? nullptr : dv.p;
      a.labels = loss == 3 ? dl.p : nullptr;
      a.inv_n = 1.0 / static_cast<double>(rows * outs);
      a.inv_rows = 1.0 / static_cast<double>(rows);
      a.grad = dgrad.p;
      a.block_sums = sums.p;
      a.result = result.p;
      a.result_scale = loss_scale(static_cast<Loss>(loss), rows, outs);
      cuda::loss_and_gradient(a, nullptr);
      const double got_loss = result.get()[0];
      const std::string what = "loss " + std::to_string(loss) + " rows " + std::to_string(rows);
      check(std::abs(got_loss - want_loss) <= 1e-12 * std::max(1.0, std::abs(want_loss)),
            what + ": value " + std::to_string(got_loss) + " vs " + std::to_string(want_loss));
      check_close(dgrad.get(), want, 1e-6, what + " gradient");
    }
  }
}

void test_optimizers() {
  const std::size_t n = 10007;
  for (int opt = 0; opt < kOptimizerCount; ++opt) {
    for (int variant = 0; variant < 2; ++variant) {
      Hyper h;
      h.lr = 0.01;
      h.weight_decay = variant ? 0.03 : 0.0;
      h.momentum = variant ? 0.9 : 0.0;
      h.dampening = variant ? 0.1 : 0.0;
      h.nesterov = variant == 1 && opt == 0;
      h.beta1 = 0.9;
      h.beta2 = 0.99;
      h.eps = 1e-7;
      std::vector<float> p = random_vector(n, 60 + opt), g = random_vector(n, 70 + opt, 0.1f);
      OptimizerState state(n);
      Dev<float> dp(p), dg(g), dm(n), dv(n);
      MLPKIT_CUDA_CHECK(cudaMemset(dm.p, 0, n * sizeof(float)));
      MLPKIT_CUDA_CHECK(cudaMemset(dv.p, 0, n * sizeof(float)));
      for (int step = 1; step <= 3; ++step) {
        optimizer_update(static_cast<Optimizer>(opt), h, p.data(), g.data(), n, state);
        if (opt == 0) {
          cuda::SgdArgs s{static_cast<float>(h.lr), static_cast<float>(h.weight_decay), static_cast<float>(h.momentum),
                          static_cast<float>(1.0 - h.dampening), h.momentum != 0, step == 1, h.nesterov};
          cuda::sgd_update(dp.p, dg.p, dm.p, n, s, nullptr);
        } else {
          const double bc1 = 1.0 - std::pow(h.beta1, step), bc2 = 1.0 - std::pow(h.beta2, step);
          cuda::AdamArgs s{static_cast<float>(h.lr / bc1),
                           static_cast<float>(std::sqrt(bc2)),
                           static_cast<float>(h.beta1),
                           static_cast<float>(1.0 - h.beta1),
                           static_cast<float>(h.beta2),
                           static_cast<float>(1.0 - h.beta2),
                           static_cast<float>(h.eps),
                           static_cast<float>(h.weight_decay),
                           static_cast<float>(1.0 - h.lr * h.weight_decay),
                           opt == 2};
          cuda::adam_update(dp.p, dg.p, dm.p, dv.p, n, s, nullptr);
        }
      }
      const std::string what = "optimizer " + std::to_string(opt) + " variant " + std::to_string(variant);
      check_equal(dp.get(), p, what + " params");
      std::vector<float> m(state.m.begin(), state.m.end());
      check_equal(dm.get(), m, what + " first moment");
    }
  }
  // Norm and clipping scale.
  const auto g = random_vector(n, 90);
  Dev<float> dg(g);
  Dev<double> sums(cuda::kReduceBlocks), result(1);
  cuda::sum_squares(dg.p, n, sums.p, result.p, nullptr);
  double want = 0;
  for (float v : g) want += static_cast<double>(v) * v;
  const double got = result.get()[0];
  check(std::abs(got - want) <= 1e-12 * want, "sum of squares");
  cuda::scale_by(dg.p, n, 0.3, nullptr);
  std::vector<float> scaled(g);
  for (float& v : scaled) v = static_cast<float>(v * 0.3);
  check_equal(dg.get(), scaled, "scale_by");
}

// ---- the model, against the CPU Model --------------------------------------------------------

ModelConfig make_config(std::int64_t inputs, std::vector<std::int64_t> units, std::vector<int> acts, bool bias = true) {
  ModelConfig c;
  c.inputs = inputs;
  c.units = std::move(units);
  c.activations = std::move(acts);
  c.alphas.assign(c.units.size(), 0.05f);
  c.bias.assign(c.units.size(), bias ? 1 : 0);
  return c;
}

// nn.Linear's default initialisation: U(-1/sqrt(in), 1/sqrt(in)).
std::vector<float> init_params(const ModelConfig& c, std::uint64_t seed) {
  const ModelPlan plan = plan_model(c);
  std::vector<float> p(plan.param_count);
  Rng rng(seed);
  for (const LayerPlan& l : plan.layers) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(l.inputs));
    for (std::size_t i = 0; i < l.inputs * l.outputs; ++i) p[l.weight + i] = rng.sym(bound);
    if (l.has_bias) for (std::size_t i = 0; i < l.outputs; ++i) p[l.bias + i] = rng.sym(bound);
  }
  return p;
}

double tolerance(cuda::Precision p) {
  switch (p) {
    case cuda::Precision::F32: return 1e-5;
    case cuda::Precision::F16: return 1e-2;
    case cuda::Precision::BF16: return 5e-2;
  }
  return 0;
}

// How gradients are compared: max error relative to the largest (fp32), or relative RMS.
struct GradCheck {
  bool rms = false;
  double tol = 0;
};

void compare_models(const ModelConfig& c, std::size_t rows, cuda::Precision prec, int loss, const std::string& name,
                    const char* expect_kernel, GradCheck grad) {
  const ModelPlan plan = plan_model(c);
  const std::vector<float> params = init_params(c, rows * 131 + plan.param_count);
  Model cpu(c, params.data(), params.size());
  cuda::CudaModel gpu(c, params.data(), params.size(), prec);
  if (expect_kernel) check(std::strcmp(gpu.kernel(), expect_kernel) == 0, name + ": kernel " + gpu.kernel());
  const std::size_t in = cpu.inputs(), out = cpu.outputs(), P = cpu.param_count();
  const double tol = tolerance(prec);
  const auto compare_grads = [&](const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
    if (grad.rms) check_rms(got, want, grad.tol, what);
    else check_close(got, want, grad.tol, what);
  };
  const auto x = random_vector(rows * in, rows + in);

  std::vector<float> yc(rows * out), yg(rows * out);
  cpu.predict(x.data(), rows, yc.data());
  gpu.predict(x.data(), rows, yg.data());
  check_close(yg, yc, tol, name + " predict");

  auto values = random_vector(rows * out, rows + 3);
  if (loss == 4) for (float& v : values) v = v > 0 ? 1.0f : 0.0f;
  std::vector<std::int32_t> labels(rows);
  for (std::size_t r = 0; r < rows; ++r) labels[r] = static_cast<std::int32_t>((r * 7 + 3) % out);
  LossTarget t;
  if (loss == 3) t.labels = labels.data();
  else t.values = values.data();
  std::vector<float> gxc(rows * in), gxg(rows * in), gc(P), gg(P);
  const double lc = cpu.loss_grad(x.data(), rows, static_cast<Loss>(loss), 0.3, t, gxc.data());
  const double lg = gpu.loss_grad(x.data(), rows, static_cast<Loss>(loss), 0.3, t, gxg.data());
  check(std::abs(lg - lc) <= tol * std::max(1e-6, std::abs(lc)), name + ": loss " + std::to_string(lg) + " vs " + std::to_string(lc));
  cpu.get_grads(gc.data());
  gpu.get_grads(gg.data());
  compare_grads(gg, gc, name + " dparams");
  compare_grads(gxg, gxc, name + " dx");

  // A caller-given dL/dy.
  const auto gy = random_vector(rows * out, rows + 5, 0.1f);
  cpu.backward(x.data(), rows, gy.data(), gxc.data());
  gpu.backward(x.data(), rows, gy.data(), gxg.data());
  cpu.get_grads(gc.data());
  gpu.get_grads(gg.data());
  compare_grads(gg, gc, name + " backward dparams");
  compare_grads(gxg, gxc, name + " backward dx");
}

void test_model_fp32() {
  const GradCheck grad{false, 1e-5};
  int i = 0;
  for (std::size_t rows : kRows) {
    for (std::int64_t w : {16, 17, 32, 48, 63, 64, 80, 96, 112, 128}) {
      const int act = kActivations[i % 9];
      const ModelConfig c = make_config(w, {w, w, 5}, {act, (act + 4) % 9, 0});
      compare_models(c, rows, cuda::Precision::F32, i % kLossCount,
                     "fp32 rows " + std::to_string(rows) + " width " + std::to_string(w) + " act " + std::to_string(act),
                     "gemm-fp32", grad);
      ++i;
    }
  }
  // Wide layers, frequency encoding, no bias.
  ModelConfig wide = make_config(300, {700, 10}, {1, 0});
  compare_models(wide, 65, cuda::Precision::F32, 3, "fp32 wide", nullptr, grad);
  ModelConfig freq = make_config(3, {63, 2}, {4, 6}, false);
  freq.encoding = 1;
  freq.octaves = 5;
  freq.include_input = true;
  compare_models(freq, 17, cuda::Precision::F32, 0, "fp32 frequency encoding, no bias", nullptr, grad);
  compare_models(make_config(7, {5}, {7}), 65, cuda::Precision::F32, 0, "fp32 a single layer", nullptr, grad);
}

void test_model_fused(cuda::Precision prec) {
  const bool f16 = prec == cuda::Precision::F16;
  const char* kernel = f16 ? "fused-fp16" : "fused-bf16";
  const std::string tag = f16 ? "fp16" : "bf16";
  const GradCheck smooth{true, 2 * tolerance(prec)};
  const GradCheck kinks{true, f16 ? 0.15 : 0.3};
  const int smooth_acts[] = {0, 3, 4, 5, 6, 7, 8};
  const int smooth_losses[] = {0, 2, 3, 4};  // not l1: its sign flips where y ~ t
  int i = 0;
  for (std::size_t rows : kRows) {
    for (std::int64_t w = 16; w <= 128; w += 16) {
      const int act = smooth_acts[i % 7];
      const ModelConfig c = make_config(w, {w, w, w, 7}, {act, 7, 6, 0});
      compare_models(c, rows, prec, smooth_losses[i % 4],
                     tag + " rows " + std::to_string(rows) + " width " + std::to_string(w) + " act " + std::to_string(act),
                     kernel, smooth);
      const ModelConfig r = make_config(w, {w, w, 7}, {1, 2, 0});
      compare_models(r, rows, prec, 0, tag + " relu rows " + std::to_string(rows) + " width " + std::to_string(w), kernel,
                     kinks);
      ++i;
    }
  }
  // Widths that are not multiples of 16 are padded; the encoding widens the input to 34.
  ModelConfig freq = make_config(2, {64, 64, 3}, {1, 1, 0});
  freq.encoding = 1;
  freq.octaves = 8;
  freq.include_input = true;
  compare_models(freq, 1000, prec, 0, tag + " neural field 2-34-64-64-3", kernel, kinks);
  compare_models(make_config(5, {33, 1}, {5, 6}, false), 63, prec, 4, tag + " odd widths, no bias", kernel, smooth);
  compare_models(make_config(7, {5}, {7}), 65, prec, 0, tag + " a single layer", kernel, smooth);
  // Wider than 128: the fp32 path.
  compare_models(make_config(16, {200, 4}, {1, 0}), 17, prec, 0, tag + " too wide", "gemm-fp32", GradCheck{false, 1e-5});
}

void test_training_matches_cpu() {
  // Ten Adam steps with clipping on both sides: same trajectory within fp32 tolerance.
  const ModelConfig c = make_config(8, {64, 64, 4}, {1, 7, 0});
  const auto params = init_params(c, 5);
  Model cpu(c, params.data(), params.size());
  cuda::CudaModel gpu(c, params.data(), params.size(), cuda::Precision::F32);
  Hyper h;
  h.lr = 1e-3;
  h.weight_decay = 0.01;
  const std::size_t rows = 256;
  for (int step = 0; step < 10; ++step) {
    const auto x = random_vector(rows * 8, 200 + step);
    const auto t = random_vector(rows * 4, 300 + step);
    LossTarget target;
    target.values = t.data();
    const double lc = cpu.train_step(x.data(), rows, Loss::Mse, 0, target, Optimizer::AdamW, h, 0.5);
    const double lg = gpu.train_step(x.data(), rows, Loss::Mse, 0, target, Optimizer::AdamW, h, 0.5);
    check(std::abs(lg - lc) <= 1e-5 * std::abs(lc), "step " + std::to_string(step) + " loss");
  }
  std::vector<float> pc(params.size()), pg(params.size());
  cpu.get_params(pc.data());
  gpu.get_params(pg.data());
  check_close(pg, pc, 1e-5, "parameters after 10 AdamW steps");
  // optimizer_step returns the norm before clipping.
  const auto x = random_vector(rows * 8, 999);
  const auto t = random_vector(rows * 4, 998);
  LossTarget target;
  target.values = t.data();
  cpu.loss_grad(x.data(), rows, Loss::Mse, 0, target, nullptr);
  gpu.loss_grad(x.data(), rows, Loss::Mse, 0, target, nullptr);
  const double nc = cpu.optimizer_step(Optimizer::Sgd, h, 0.1), ng = gpu.optimizer_step(Optimizer::Sgd, h, 0.1);
  check(std::abs(nc - ng) <= 1e-5 * nc, "gradient norm");
}

void test_determinism_and_batching() {
  for (cuda::Precision prec : {cuda::Precision::F32, cuda::Precision::F16, cuda::Precision::BF16}) {
    const ModelConfig c = make_config(32, {64, 64, 8}, {1, 5, 0});
    const auto params = init_params(c, 9);
    cuda::CudaModel a(c, params.data(), params.size(), prec), b(c, params.data(), params.size(), prec);
    const std::size_t rows = 1000;
    const auto x = random_vector(rows * 32, 10);
    const auto t = random_vector(rows * 8, 11);
    LossTarget target;
    target.values = t.data();
    Hyper h;
    h.lr = 1e-2;
    for (int s = 0; s < 3; ++s) {
      a.train_step(x.data(), rows, Loss::Mse, 0, target, Optimizer::Adam, h, 1.0);
      b.train_step(x.data(), rows, Loss::Mse, 0, target, Optimizer::Adam, h, 1.0);
    }
    std::vector<float> pa(params.size()), pb(params.size());
    a.get_params(pa.data());
    b.get_params(pb.data());
    const std::string tag = cuda::precision_name(prec);
    check_equal(pa, pb, tag + ": two models, same steps, same bits");
    // A row predicts the same bits alone and inside a batch.
    std::vector<float> y(rows * 8), one(8);
    a.predict(x.data(), rows, y.data());
    bool same = true;
    for (std::size_t r = 0; r < rows; r += 111) {
      a.predict(x.data() + r * 32, 1, one.data());
      for (int j = 0; j < 8; ++j) same = same && one[j] == y[r * 8 + j];
    }
    check(same, tag + ": a row predicts the same alone and in a batch");
  }
}

void test_model_errors() {
  const ModelConfig c = make_config(4, {16, 3}, {1, 0});
  const auto params = init_params(c, 1);
  bool threw = false;
  try {
    cuda::CudaModel m(c, params.data(), params.size() - 1, cuda::Precision::F32);
  } catch (const std::length_error&) {
    threw = true;
  }
  check(threw, "wrong parameter count throws std::length_error");
  cuda::CudaModel m(c, params.data(), params.size(), cuda::Precision::F16);
  const auto x = random_vector(2 * 4, 1);
  std::vector<std::int32_t> labels = {0, 3};
  LossTarget t;
  t.labels = labels.data();
  threw = false;
  try {
    m.train_step(x.data(), 2, Loss::SoftmaxCrossEntropy, 0, t, Optimizer::Adam, Hyper{}, 0);
  } catch (const std::out_of_range&) {
    threw = true;
  }
  check(threw, "a label out of range throws std::out_of_range");
  std::vector<float> after(params.size());
  m.get_params(after.data());
  check_equal(after, params, "a rejected step leaves the parameters alone");
}

// ---- quantised GEMV against the CPU QuantModel -------------------------------------------------

struct HostQuantLayer {
  quant::QuantLayerSource src;
  std::vector<std::uint8_t> weights, zeros;
  std::vector<float> scales, bias;
};

HostQuantLayer make_quant_layer(std::size_t k, std::size_t n, quant::Format f, std::size_t group, bool symmetric, int act,
                                std::uint64_t seed) {
  HostQuantLayer h;
  Rng rng(seed);
  quant::QuantLayerSource& s = h.src;
  s.inputs = k;
  s.outputs = n;
  s.format = f;
  s.group = f == quant::Format::Int8 ? k : group;
  s.symmetric = symmetric;
  s.activation = static_cast<Activation>(act);
  s.alpha = 0.05f;
  const std::size_t groups = f == quant::Format::Int8 ? 1 : (k + group - 1) / group;
  if (f == quant::Format::Int8) {
    h.weights.resize(n * k);
    for (auto& b : h.weights) b = static_cast<std::uint8_t>(static_cast<std::int8_t>(static_cast<int>(rng.below(255)) - 127));
  } else {
    h.weights.resize(n * groups * group / 2);
    for (auto& b : h.weights) b = static_cast<std::uint8_t>(rng.below(256));
    if (!symmetric) {
      h.zeros.resize(n * groups);
      for (auto& z : h.zeros) z = static_cast<std::uint8_t>(rng.below(16));
    }
  }
  h.scales.resize(n * groups);
  for (float& v : h.scales) v = static_cast<float>(rng.uniform() * 0.02);
  h.bias.resize(n);
  for (float& v : h.bias) v = rng.sym();
  s.weights = h.weights.data();
  s.scales = h.scales.data();
  s.zeros = h.zeros.empty() ? nullptr : h.zeros.data();
  s.bias = h.bias.data();
  return h;
}

void test_quant_gemv() {
  int seed = 0;
  for (std::size_t k : {1, 3, 17, 64, 100, 1000}) {
    for (std::size_t batch : {1, 3, 17}) {
      for (int fmt = 0; fmt < 4; ++fmt) {
        // int8; int4 g32 symmetric; int4 g64 asymmetric; int4 g128 symmetric
        const quant::Format f = fmt == 0 ? quant::Format::Int8 : quant::Format::Int4;
        const std::size_t group = fmt == 1 ? 32 : fmt == 2 ? 64 : 128;
        const bool symmetric = fmt != 2;
        const int act = kActivations[seed % 9];
        const std::size_t n = 37;
        HostQuantLayer h = make_quant_layer(k, n, f, group, symmetric, act, 500 + seed);
        auto x = random_vector(batch * k, 600 + seed, 2);
        if (batch > 1 && seed % 3 == 0) x[k] = NAN;  // a row with NaN: NaN outputs (relu: 0)
        const std::size_t groups = f == quant::Format::Int8 ? 1 : (k + group - 1) / group;
        const std::size_t kq = f == quant::Format::Int8 ? (k + 3) / 4 * 4 : groups * group;

        // Device layer in the file layout (int8 rows padded to kq).
        std::vector<std::int8_t> w8;
        if (f == quant::Format::Int8) {
          w8.assign(n * kq, 0);
          for (std::size_t j = 0; j < n; ++j)
            for (std::size_t p = 0; p < k; ++p) w8[j * kq + p] = static_cast<std::int8_t>(h.weights[j * k + p]);
        }
        std::vector<std::uint8_t> zeros = h.zeros;
        Dev<std::int8_t> dw8(w8);
        Dev<std::uint8_t> dw4(f == quant::Format::Int4 ? h.weights : std::vector<std::uint8_t>{});
        Dev<float> dscales(h.scales), dbias(h.bias), dx(x), dy(batch * n);
        Dev<std::uint8_t> dzeros(zeros);
        cuda::QuantLayerDevice l;
        l.k = static_cast<int>(k);
        l.n = static_cast<int>(n);
        l.kq = static_cast<int>(kq);
        l.format = f == quant::Format::Int8 ? 0 : 1;
        l.group = static_cast<int>(f == quant::Format::Int8 ? kq : group);
        l.groups = static_cast<int>(groups);
        l.w8 = f == quant::Format::Int8 ? dw8.p : nullptr;
        l.w4 = f == quant::Format::Int4 ? dw4.p : nullptr;
        l.scales = dscales.p;
        l.zeros = zeros.empty() ? nullptr : dzeros.p;
        l.bias = dbias.p;
        l.activation = act;
        l.alpha = 0.05f;
        const std::string what = "k " + std::to_string(k) + " batch " + std::to_string(batch) + " format " +
                                 std::to_string(fmt) + " act " + std::to_string(act);

        // Weight-only.
        {
          quant::QuantModel cpu(EncodingSpec{Encoding::Identity, k, 0, false}, {h.src}, quant::ActMode::Float);
          std::vector<float> want(batch * n);
          cpu.predict(x.data(), batch, want.data());
          cuda::qgemv_wfloat(l, dx.p, static_cast<long long>(batch), dy.p, nullptr);
          check_close(dy.get(), want, 1e-5, "weight-only " + what);
        }
        // W8A8.
        {
          quant::QuantModel cpu(EncodingSpec{Encoding::Identity, k, 0, false}, {h.src}, quant::ActMode::Int8);
          std::vector<float> want(batch * n);
          cpu.predict(x.data(), batch, want.data());
          Dev<std::int8_t> xq(batch * kq);
          Dev<std::int32_t> xsum(batch * groups);
          Dev<float> sx(batch);
          cuda::quantize_rows(dx.p, static_cast<long long>(batch), l.k, l.kq, l.group, l.groups, xq.p, xsum.p, sx.p,
                              nullptr);
          cuda::qgemv_w8a8(l, xq.p, xsum.p, sx.p, static_cast<long long>(batch), dy.p, nullptr);
          if (exact_activation(act)) check_equal(dy.get(), want, "W8A8 " + what);
          else check_close(dy.get(), want, 1e-5, "W8A8 " + what);
        }
        ++seed;
      }
    }
  }
}

// ---- sparse GEMV ------------------------------------------------------------------------------

void test_sparse_gemv() {
  int seed = 0;
  for (int k : {1, 17, 1000, 3000}) {
    for (std::size_t batch : {1, 3, 16}) {
      for (double density : {0.0, 0.05, 0.5, 1.0}) {
        const int n = 300;
        Rng rng(700 + seed);
        std::vector<float> x(batch * k, 0.0f);
        // Inputs active in a row with probability `density` (after a ReLU: zero or positive).
        for (float& v : x) v = rng.uniform() < density ? static_cast<float>(rng.uniform()) : 0.0f;
        const auto w = random_vector(static_cast<std::size_t>(n) * k, 800 + seed);  // W [n x k]
        std::vector<float> wt(static_cast<std::size_t>(k) * n);
        for (int j = 0; j < n; ++j)
          for (int p = 0; p < k; ++p) wt[static_cast<std::size_t>(p) * n + j] = w[static_cast<std::size_t>(j) * k + p];
        const auto bias = random_vector(n, 900 + seed);
        const int act = seed % 2 ? 1 : 0;
        Dev<float> dx(x), dwt(wt), dbias(bias), dy(batch * n);
        Dev<int> idx(k), count(1);
        cuda::active_inputs(dx.p, static_cast<long long>(batch), k, idx.p, count.p, nullptr);
        cuda::sparse_gemv(dx.p, static_cast<long long>(batch), k, idx.p, count.p, dwt.p, n, dbias.p, act, 0, dy.p, nullptr);
        std::vector<int> want_idx;
        for (int p = 0; p < k; ++p) {
          bool any = false;
          for (std::size_t r = 0; r < batch; ++r) any = any || x[r * k + p] != 0.0f;
          if (any) want_idx.push_back(p);
        }
        const int got_count = count.get()[0];
        const std::vector<int> got_idx = idx.get();
        const std::string what = "k " + std::to_string(k) + " batch " + std::to_string(batch) + " density " +
                                 std::to_string(density);
        check(got_count == static_cast<int>(want_idx.size()) &&
                  std::equal(want_idx.begin(), want_idx.end(), got_idx.begin()),
              what + ": active list");
        // The dense chain: every p, zeros included.
        std::vector<float> want(batch * n);
        for (std::size_t r = 0; r < batch; ++r) {
          for (int j = 0; j < n; ++j) {
            float acc = bias[j];
            for (int p = 0; p < k; ++p) acc = std::fma(x[r * k + p], w[static_cast<std::size_t>(j) * k + p], acc);
            want[r * n + j] = act ? (acc > 0 ? acc : 0.0f) : acc;
          }
        }
        check_equal(dy.get(), want, what + ": sparse equals dense");
        ++seed;
      }
    }
  }
}

}  // namespace

int main() {
  const cuda::Status status = cuda::query_status();
  if (!status.error.empty()) {
    std::printf("SKIPPED: no CUDA device (%s)\n", status.error.c_str());
    return 77;
  }
  for (const cuda::DeviceInfo& d : status.devices) {
    std::printf("device %d: %s, compute capability %d.%d, %.1f GiB, %d SMs%s\n", d.index, d.name.c_str(), d.major,
                d.minor, static_cast<double>(d.memory_bytes) / (1u << 30), d.multiprocessors,
                d.supported ? "" : " (unsupported)");
  }
  std::printf("CUDA runtime %d, driver %d, architectures %s\n", status.runtime_version, status.driver_version,
              cuda::compiled_architectures());
  run("fp32 GEMM: every epilogue against the host fma chain", test_gemm_f32);
  run("fp32 GEMM: derivative gate, split-K weight gradient, column sums", test_gemm_f32_gate_and_split);
  run("losses against core/loss.cpp", test_losses);
  run("SGD / Adam / AdamW and clipping against core/optimizer.cpp, bit for bit", test_optimizers);
  run("CudaModel fp32 against the CPU Model", test_model_fp32);
  run("CudaModel fused fp16 against the CPU Model", [] { test_model_fused(cuda::Precision::F16); });
  run("CudaModel fused bf16 against the CPU Model", [] { test_model_fused(cuda::Precision::BF16); });
  run("ten AdamW steps with clipping: same trajectory as the CPU", test_training_matches_cpu);
  run("determinism: same steps same bits; a row alone or in a batch", test_determinism_and_batching);
  run("errors: bad sizes and labels throw and change nothing", test_model_errors);
  run("int8 / int4 GEMV (weight-only and W8A8) against the CPU QuantModel", test_quant_gemv);
  run("sparse GEMV and the active-input list against the dense chain", test_sparse_gemv);
  std::printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

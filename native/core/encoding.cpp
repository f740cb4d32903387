#include "core/encoding.h"

#include <cmath>

namespace mlpkit {
namespace {

constexpr double kPi = 3.14159265358979323846;

// The argument 2^k * pi * x is formed and reduced in double: in float its rounding error grows
// with 2^k and would dominate sin/cos at high octaves. The encoding is O(inputs * octaves) per
// row, negligible next to the first layer's GEMM, so the extra precision is free.
inline double frequency(std::size_t k) { return std::ldexp(kPi, static_cast<int>(k)); }

// sin and cos of 2^k pi x for k = 0, 1, ..., octaves-1, from one sin/cos pair and the double-
// angle formulas (sin 2u = 2 sin u cos u, cos 2u = cos^2 u - sin^2 u), which are ~10x cheaper
// than a libm call per octave (the encoding dominated predict time for small networks). Each
// doubling at most doubles the absolute error; restarting from libm every kRestart octaves
// keeps it below 2^kRestart * 1e-16 ~ 3e-14, far under float32's 6e-8.
constexpr std::size_t kRestart = 8;

template <class Visit>
inline void octave_sin_cos(double x, std::size_t octaves, Visit visit) {
  double s = 0, c = 1;
  for (std::size_t k = 0; k < octaves; ++k) {
    if (k % kRestart == 0) {
      const double u = frequency(k) * x;
      s = std::sin(u);
      c = std::cos(u);
    } else {
      const double s2 = 2 * s * c;
      c = (c - s) * (c + s);
      s = s2;
    }
    visit(k, s, c);
  }
}

}  // namespace

std::size_t EncodingSpec::width() const {
  if (type == Encoding::Identity) return inputs;
  return (include_input ? inputs : 0) + 2 * octaves * inputs;
}

void encode_forward(const EncodingSpec& spec, const float* x, std::size_t batch, float* enc) {
  const std::size_t d = spec.inputs;
  if (spec.type == Encoding::Identity) {
    for (std::size_t i = 0; i < batch * d; ++i) enc[i] = x[i];
    return;
  }
  const std::size_t width = spec.width();
  for (std::size_t r = 0; r < batch; ++r) {
    const float* xr = x + r * d;
    float* o = enc + r * width;
    if (spec.include_input) {
      for (std::size_t i = 0; i < d; ++i) o[i] = xr[i];
      o += d;
    }
    for (std::size_t i = 0; i < d; ++i) {
      octave_sin_cos(static_cast<double>(xr[i]), spec.octaves, [&](std::size_t k, double sn, double cs) {
        o[k * 2 * d + i] = static_cast<float>(sn);
        o[k * 2 * d + d + i] = static_cast<float>(cs);
      });
    }
  }
}

void encode_backward(const EncodingSpec& spec, const float* x, std::size_t batch, const float* grad_enc,
                     float* grad_x) {
  const std::size_t d = spec.inputs;
  if (spec.type == Encoding::Identity) {
    for (std::size_t i = 0; i < batch * d; ++i) grad_x[i] = grad_enc[i];
    return;
  }
  const std::size_t width = spec.width();
  for (std::size_t r = 0; r < batch; ++r) {
    const float* xr = x + r * d;
    const float* g = grad_enc + r * width;
    float* gx = grad_x + r * d;
    for (std::size_t i = 0; i < d; ++i) {
      // Sum every feature's contribution in double and round once, as the reference does.
      double sum = spec.include_input ? static_cast<double>(g[i]) : 0.0;
      const float* go = g + (spec.include_input ? d : 0);
      octave_sin_cos(static_cast<double>(xr[i]), spec.octaves, [&](std::size_t k, double sn, double cs) {
        const float* gk = go + k * 2 * d;
        sum += frequency(k) * (static_cast<double>(gk[i]) * cs - static_cast<double>(gk[d + i]) * sn);
      });
      gx[i] = static_cast<float>(sum);
    }
  }
}

}  // namespace mlpkit

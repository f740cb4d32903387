#include "core/encoding.h"

#include <cmath>

namespace mlpkit {
namespace {

constexpr double kPi = 3.14159265358979323846;

// The argument 2^k * pi * x is formed and reduced in double: in float its rounding error grows
// with 2^k and would dominate sin/cos at high octaves. The encoding is O(inputs * octaves) per
// row, negligible next to the first layer's GEMM, so the extra precision is free.
inline double frequency(std::size_t k) { return std::ldexp(kPi, static_cast<int>(k)); }

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
    for (std::size_t k = 0; k < spec.octaves; ++k) {
      const double f = frequency(k);
      for (std::size_t i = 0; i < d; ++i) {
        const double u = f * static_cast<double>(xr[i]);
        o[i] = static_cast<float>(std::sin(u));
        o[d + i] = static_cast<float>(std::cos(u));
      }
      o += 2 * d;
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
      for (std::size_t k = 0; k < spec.octaves; ++k) {
        const double f = frequency(k);
        const double u = f * static_cast<double>(xr[i]);
        sum += f * (static_cast<double>(go[i]) * std::cos(u) - static_cast<double>(go[d + i]) * std::sin(u));
        go += 2 * d;
      }
      gx[i] = static_cast<float>(sum);
    }
  }
}

}  // namespace mlpkit

// Pointwise activations of a layer, evaluated from the pre-activation z so that backward only
// needs the z kept by the forward pass.
#pragma once

#include <cstddef>

namespace mlpkit {

// Codes are ABI: they index ACTIVATIONS in lib/backend/types.ts.
enum class Activation : int {
  None = 0,
  Relu,
  LeakyRelu,
  Gelu,
  GeluTanh,
  Silu,
  Sigmoid,
  Tanh,
  Softplus,
};
constexpr int kActivationCount = 9;

const char* activation_name(Activation a);

// y[i] = f(z[i]). y may alias z (predict runs in place).
void activation_forward(Activation a, float alpha, const float* z, float* y, std::size_t n);

// grad_z[i] = grad_y[i] * f'(z[i]). grad_z may alias grad_y.
void activation_backward(Activation a, float alpha, const float* z, const float* grad_y, float* grad_z,
                         std::size_t n);

// Double-precision scalar forms of the same formulas, for the C++ tests' finite differences.
double activation_value(Activation a, double z, double alpha);
double activation_derivative(Activation a, double z, double alpha);

}  // namespace mlpkit

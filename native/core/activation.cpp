#include "core/activation.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace mlpkit {
namespace {

// One template per formula, instantiated for float (the kernels) and double (the tests), so
// the two can never disagree on a branch or a constant.
template <class T>
inline T sigmoid(T z) {
  // Split on the sign so exp never overflows: for z < 0, e^z / (1 + e^z) is the same value.
  if (z >= T(0)) return T(1) / (T(1) + std::exp(-z));
  const T e = std::exp(z);
  return e / (T(1) + e);
}

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluC = 0.044715;
// PyTorch's Softplus(beta=1, threshold=20): above it log1p(exp(z)) == z in float anyway.
constexpr double kSoftplusThreshold = 20.0;

template <Activation A, class T>
inline T value(T z, T alpha) {
  if constexpr (A == Activation::None) {
    return z;
  } else if constexpr (A == Activation::Relu) {
    return z > T(0) ? z : T(0);
  } else if constexpr (A == Activation::LeakyRelu) {
    return z > T(0) ? z : alpha * z;
  } else if constexpr (A == Activation::Gelu) {
    return T(0.5) * z * (T(1) + std::erf(z * T(kInvSqrt2)));
  } else if constexpr (A == Activation::GeluTanh) {
    return T(0.5) * z * (T(1) + std::tanh(T(kSqrt2OverPi) * (z + T(kGeluC) * z * z * z)));
  } else if constexpr (A == Activation::Silu) {
    return z * sigmoid(z);
  } else if constexpr (A == Activation::Sigmoid) {
    return sigmoid(z);
  } else if constexpr (A == Activation::Tanh) {
    return std::tanh(z);
  } else {
    static_assert(A == Activation::Softplus);
    return z > T(kSoftplusThreshold) ? z : std::log1p(std::exp(z));
  }
}

template <Activation A, class T>
inline T derivative(T z, T alpha) {
  if constexpr (A == Activation::None) {
    return T(1);
  } else if constexpr (A == Activation::Relu) {
    return z > T(0) ? T(1) : T(0);  // PyTorch: relu'(0) = 0
  } else if constexpr (A == Activation::LeakyRelu) {
    return z > T(0) ? T(1) : alpha;
  } else if constexpr (A == Activation::Gelu) {
    return T(0.5) * (T(1) + std::erf(z * T(kInvSqrt2))) + z * std::exp(T(-0.5) * z * z) * T(kInvSqrt2Pi);
  } else if constexpr (A == Activation::GeluTanh) {
    const T t = std::tanh(T(kSqrt2OverPi) * (z + T(kGeluC) * z * z * z));
    return T(0.5) * (T(1) + t) +
           T(0.5) * z * (T(1) - t * t) * T(kSqrt2OverPi) * (T(1) + T(3 * kGeluC) * z * z);
  } else if constexpr (A == Activation::Silu) {
    const T s = sigmoid(z);
    return s * (T(1) + z * (T(1) - s));
  } else if constexpr (A == Activation::Sigmoid) {
    const T s = sigmoid(z);
    return s * (T(1) - s);
  } else if constexpr (A == Activation::Tanh) {
    const T t = std::tanh(z);
    return T(1) - t * t;
  } else {
    static_assert(A == Activation::Softplus);
    return z > T(kSoftplusThreshold) ? T(1) : sigmoid(z);
  }
}

template <Activation A>
void forward_loop(float alpha, const float* z, float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) y[i] = value<A>(z[i], alpha);
}

template <Activation A>
void backward_loop(float alpha, const float* z, const float* gy, float* gz, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) gz[i] = gy[i] * derivative<A>(z[i], alpha);
}

using ForwardFn = void (*)(float, const float*, float*, std::size_t);
using BackwardFn = void (*)(float, const float*, const float*, float*, std::size_t);

// Indexed by code: the switch on the activation happens once per layer, not per element.
constexpr ForwardFn kForward[kActivationCount] = {
    forward_loop<Activation::None>,     forward_loop<Activation::Relu>,    forward_loop<Activation::LeakyRelu>,
    forward_loop<Activation::Gelu>,     forward_loop<Activation::GeluTanh>, forward_loop<Activation::Silu>,
    forward_loop<Activation::Sigmoid>,  forward_loop<Activation::Tanh>,    forward_loop<Activation::Softplus>,
};
constexpr BackwardFn kBackward[kActivationCount] = {
    backward_loop<Activation::None>,    backward_loop<Activation::Relu>,    backward_loop<Activation::LeakyRelu>,
    backward_loop<Activation::Gelu>,    backward_loop<Activation::GeluTanh>, backward_loop<Activation::Silu>,
    backward_loop<Activation::Sigmoid>, backward_loop<Activation::Tanh>,    backward_loop<Activation::Softplus>,
};

int checked_code(Activation a) {
  const int code = static_cast<int>(a);
  if (code < 0 || code >= kActivationCount) throw std::out_of_range("unknown activation code " + std::to_string(code));
  return code;
}

}  // namespace

const char* activation_name(Activation a) {
  static constexpr const char* kNames[kActivationCount] = {
      "none", "relu", "leaky_relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "softplus",
  };
  return kNames[checked_code(a)];
}

void activation_forward(Activation a, float alpha, const float* z, float* y, std::size_t n) {
  if (a == Activation::None) {
    if (y != z) for (std::size_t i = 0; i < n; ++i) y[i] = z[i];
    return;
  }
  kForward[checked_code(a)](alpha, z, y, n);
}

void activation_backward(Activation a, float alpha, const float* z, const float* grad_y, float* grad_z,
                         std::size_t n) {
  kBackward[checked_code(a)](alpha, z, grad_y, grad_z, n);
}

double activation_value(Activation a, double z, double alpha) {
  switch (a) {
    case Activation::None: return value<Activation::None>(z, alpha);
    case Activation::Relu: return value<Activation::Relu>(z, alpha);
    case Activation::LeakyRelu: return value<Activation::LeakyRelu>(z, alpha);
    case Activation::Gelu: return value<Activation::Gelu>(z, alpha);
    case Activation::GeluTanh: return value<Activation::GeluTanh>(z, alpha);
    case Activation::Silu: return value<Activation::Silu>(z, alpha);
    case Activation::Sigmoid: return value<Activation::Sigmoid>(z, alpha);
    case Activation::Tanh: return value<Activation::Tanh>(z, alpha);
    case Activation::Softplus: return value<Activation::Softplus>(z, alpha);
  }
  throw std::out_of_range("unknown activation code " + std::to_string(static_cast<int>(a)));
}

double activation_derivative(Activation a, double z, double alpha) {
  switch (a) {
    case Activation::None: return derivative<Activation::None>(z, alpha);
    case Activation::Relu: return derivative<Activation::Relu>(z, alpha);
    case Activation::LeakyRelu: return derivative<Activation::LeakyRelu>(z, alpha);
    case Activation::Gelu: return derivative<Activation::Gelu>(z, alpha);
    case Activation::GeluTanh: return derivative<Activation::GeluTanh>(z, alpha);
    case Activation::Silu: return derivative<Activation::Silu>(z, alpha);
    case Activation::Sigmoid: return derivative<Activation::Sigmoid>(z, alpha);
    case Activation::Tanh: return derivative<Activation::Tanh>(z, alpha);
    case Activation::Softplus: return derivative<Activation::Softplus>(z, alpha);
  }
  throw std::out_of_range("unknown activation code " + std::to_string(static_cast<int>(a)));
}

}  // namespace mlpkit

// The activations of core/activation.cpp as device functions: the same formulas, branches and
// constants, in float with CUDA's libm (expf, erff, tanhf, log1pf: within a few ulps of glibc's,
// so results agree with the CPU to ~1e-6 relative, not bit for bit; none, relu and leaky_relu
// are exact). Codes are core/activation.h's.
#pragma once

#include <cuda_runtime.h>

namespace mlpkit::cuda {

__device__ __forceinline__ float sigmoid_f(float z) {
  // Split on the sign so expf never overflows, as the CPU does.
  if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
  const float e = expf(z);
  return e / (1.0f + e);
}

__device__ __forceinline__ float act_value(int activation, float z, float alpha) {
  constexpr float kInvSqrt2 = 0.70710678118654752440f;
  constexpr float kSqrt2OverPi = 0.79788456080286535588f;
  constexpr float kGeluC = 0.044715f;
  switch (activation) {
    case 1: return z > 0.0f ? z : 0.0f;  // NaN -> 0, as on the CPU
    case 2: return z > 0.0f ? z : alpha * z;
    case 3: return 0.5f * z * (1.0f + erff(z * kInvSqrt2));
    case 4: return 0.5f * z * (1.0f + tanhf(kSqrt2OverPi * (z + kGeluC * z * z * z)));
    case 5: return z * sigmoid_f(z);
    case 6: return sigmoid_f(z);
    case 7: return tanhf(z);
    case 8: return z > 20.0f ? z : log1pf(expf(z));
    default: return z;
  }
}

__device__ __forceinline__ float act_derivative(int activation, float z, float alpha) {
  constexpr float kInvSqrt2 = 0.70710678118654752440f;
  constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
  constexpr float kSqrt2OverPi = 0.79788456080286535588f;
  constexpr float kGeluC = 0.044715f;
  constexpr float kGeluC3 = static_cast<float>(3 * 0.044715);  // rounded once, as the CPU's T(3 * kGeluC)
  switch (activation) {
    case 1: return z > 0.0f ? 1.0f : 0.0f;  // relu'(0) = 0, as PyTorch
    case 2: return z > 0.0f ? 1.0f : alpha;
    case 3: return 0.5f * (1.0f + erff(z * kInvSqrt2)) + z * expf(-0.5f * z * z) * kInvSqrt2Pi;
    case 4: {
      const float t = tanhf(kSqrt2OverPi * (z + kGeluC * z * z * z));
      return 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * kSqrt2OverPi * (1.0f + kGeluC3 * z * z);
    }
    case 5: {
      const float s = sigmoid_f(z);
      return s * (1.0f + z * (1.0f - s));
    }
    case 6: {
      const float s = sigmoid_f(z);
      return s * (1.0f - s);
    }
    case 7: {
      const float t = tanhf(z);
      return 1.0f - t * t;
    }
    case 8: return z > 20.0f ? 1.0f : sigmoid_f(z);
    default: return 1.0f;
  }
}

}  // namespace mlpkit::cuda

// Activations and their derivatives, evaluated from the pre-activation z in float64.
// Conventions follow PyTorch: relu'(0) = 0, leaky_relu'(0) = alpha, softplus(beta=1, threshold=20).

import { erf, sigmoid } from './math.js';

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_C = 0.044715;

// Codes are the indices of ACTIVATIONS in ../types.ts.
export function activate(code: number, z: number, alpha: number): number {
  switch (code) {
    case 0: return z;
    case 1: return z > 0 ? z : 0;
    case 2: return z > 0 ? z : alpha * z;
    case 3: return 0.5 * z * (1 + erf(z * SQRT1_2));
    case 4: return 0.5 * z * (1 + Math.tanh(SQRT_2_OVER_PI * (z + GELU_C * z * z * z)));
    case 5: return z * sigmoid(z);
    case 6: return sigmoid(z);
    case 7: return Math.tanh(z);
    case 8: return z > 20 ? z : Math.log1p(Math.exp(z));
    default: throw new RangeError(`unknown activation code ${code}`);
  }
}

export function activateDerivative(code: number, z: number, alpha: number): number {
  switch (code) {
    case 0: return 1;
    case 1: return z > 0 ? 1 : 0;
    case 2: return z > 0 ? 1 : alpha;
    case 3: return 0.5 * (1 + erf(z * SQRT1_2)) + z * Math.exp(-0.5 * z * z) * INV_SQRT_2PI;
    case 4: {
      const t = Math.tanh(SQRT_2_OVER_PI * (z + GELU_C * z * z * z));
      return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_C * z * z);
    }
    case 5: {
      const s = sigmoid(z);
      return s * (1 + z * (1 - s));
    }
    case 6: {
      const s = sigmoid(z);
      return s * (1 - s);
    }
    case 7: {
      const t = Math.tanh(z);
      return 1 - t * t;
    }
    case 8: return z > 20 ? 1 : sigmoid(z);
    default: throw new RangeError(`unknown activation code ${code}`);
  }
}

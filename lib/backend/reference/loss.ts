// Losses with mean reduction (PyTorch's default) and their gradient with respect to the output.

import { rangeError } from '../../errors.js';
import { sigmoid } from './math.js';

/**
 * Returns the loss and writes dLoss/dy into dy. y and dy are batch x outputs.
 * Codes are the indices of LOSSES in ../types.ts.
 */
export function lossAndGradient(
  code: number,
  param: number,
  y: Float64Array,
  target: ArrayLike<number>,
  batch: number,
  outputs: number,
  dy: Float64Array,
): number {
  const n = batch * outputs;
  let total = 0;
  switch (code) {
    case 0: // mse
      for (let i = 0; i < n; i++) {
        const d = y[i] - target[i];
        total += d * d;
        dy[i] = (2 * d) / n;
      }
      return total / n;
    case 1: // l1
      for (let i = 0; i < n; i++) {
        const d = y[i] - target[i];
        total += Math.abs(d);
        dy[i] = Math.sign(d) / n;
      }
      return total / n;
    case 2: { // huber
      const delta = param;
      for (let i = 0; i < n; i++) {
        const d = y[i] - target[i];
        const a = Math.abs(d);
        if (a < delta) {
          total += 0.5 * d * d;
          dy[i] = d / n;
        } else {
          total += delta * (a - 0.5 * delta);
          dy[i] = (delta * Math.sign(d)) / n;
        }
      }
      return total / n;
    }
    case 3: // softmax cross-entropy over integer labels
      for (let r = 0; r < batch; r++) {
        const o = r * outputs;
        let max = -Infinity;
        for (let j = 0; j < outputs; j++) if (y[o + j] > max) max = y[o + j];
        let sum = 0;
        for (let j = 0; j < outputs; j++) sum += Math.exp(y[o + j] - max);
        const label = target[r];
        // Checked here too, as native/core/loss.cpp's checked_label: an unchecked label would read
        // another row's logit (or undefined) and return a wrong loss instead of an error.
        if (!(Number.isInteger(label) && label >= 0 && label < outputs)) {
          throw rangeError(`lossAndGradient: label ${r} must be in [0, ${outputs}), got ${label}`);
        }
        // (max - z_label) first, as native/core/loss.cpp: max + log(sum) - z_label cancels log(sum)
        // away for huge logits.
        total += max - y[o + label] + Math.log(sum);
        for (let j = 0; j < outputs; j++) {
          dy[o + j] = (Math.exp(y[o + j] - max) / sum - (j === label ? 1 : 0)) / batch;
        }
      }
      return total / batch;
    case 4: // binary cross-entropy on logits
      for (let i = 0; i < n; i++) {
        const z = y[i];
        const t = target[i];
        total += Math.max(z, 0) - z * t + Math.log1p(Math.exp(-Math.abs(z)));
        dy[i] = (sigmoid(z) - t) / n;
      }
      return total / n;
    default:
      throw new RangeError(`unknown loss code ${code}`);
  }
}

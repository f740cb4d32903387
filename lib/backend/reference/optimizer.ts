// Optimizer updates over the flat parameter vector, with PyTorch's exact update formulas
// (torch.optim.SGD / Adam / AdamW, default non-foreach semantics), evaluated in float64 and
// stored back at the storage precision.

import { rangeError } from '../../errors.js';

export type FloatArray = Float32Array | Float64Array;

export interface OptimizerState {
  m: FloatArray; // SGD momentum buffer, or Adam's first moment
  v: FloatArray; // Adam's second moment
  t: number; // steps taken
}

/** Global-norm clipping as torch.nn.utils.clip_grad_norm_. Returns the norm before clipping. */
export function clipGradients(grads: FloatArray, clipNorm: number): number {
  let sq = 0;
  for (let i = 0; i < grads.length; i++) sq += grads[i] * grads[i];
  const norm = Math.sqrt(sq);
  if (clipNorm > 0 && Number.isFinite(clipNorm)) {
    const coef = clipNorm / (norm + 1e-6);
    if (coef < 1) for (let i = 0; i < grads.length; i++) grads[i] *= coef;
  }
  return norm;
}

/**
 * hyper: [lr, weightDecay, momentum, dampening, nesterov, beta1, beta2, eps]. Codes index
 * OPTIMIZERS. The update is computed into copies at the storage precision and committed only
 * when every parameter and moment stays finite (finite gradients can still overflow it: a huge
 * learning rate, or g * g in Adam's second moment); otherwise it throws a RangeError and
 * nothing changes, as native/core/model.cpp.
 */
export function optimizerUpdate(
  code: number,
  hyper: ArrayLike<number>,
  params: FloatArray,
  grads: FloatArray,
  state: OptimizerState,
): void {
  const [lr, wd, momentum, dampening, nesterov, beta1, beta2, eps] = Array.from(hyper);
  if (code !== 0 && code !== 1 && code !== 2) throw new RangeError(`unknown optimizer code ${code}`);
  const t = state.t + 1;
  const n = params.length;
  const next = params.slice();
  const m = state.m.slice();
  const v = state.v.slice();
  if (code === 0) {
    for (let i = 0; i < n; i++) {
      let g = grads[i] + wd * params[i];
      if (momentum !== 0) {
        const buf = t === 1 ? g : momentum * m[i] + (1 - dampening) * g;
        m[i] = buf;
        g = nesterov ? g + momentum * buf : buf;
      }
      next[i] = params[i] - lr * g;
    }
  } else {
    const decoupled = code === 2;
    const bc1 = 1 - beta1 ** t;
    const bc2 = 1 - beta2 ** t;
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    for (let i = 0; i < n; i++) {
      let p = params[i];
      let g = grads[i];
      if (decoupled) p = p * (1 - lr * wd);
      else g = g + wd * p;
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      next[i] = p - (stepSize * m[i]) / (Math.sqrt(v[i]) / sqrtBc2 + eps);
    }
  }
  if (![next, m, v].every((a) => a.every(Number.isFinite))) {
    throw rangeError('the update overflowed float32 (a parameter or optimizer moment would be NaN or infinite): lower the ' +
      'learning rate, or clip the gradients; the parameters were not updated');
  }
  params.set(next);
  state.m.set(m);
  state.v.set(v);
  state.t = t;
}

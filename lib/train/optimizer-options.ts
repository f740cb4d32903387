// Optimizer options with PyTorch's defaults, packed into the hyper vector both backends read:
// [lr, weightDecay, momentum, dampening, nesterov, beta1, beta2, eps].

import { OPTIMIZERS, type OptimizerName } from '../backend/types.js';
import { describe, rangeError, typeError } from '../errors.js';
import { FLT_MAX, expectBoolean, expectNumber, expectObject, expectOneOf, isArray, rejectUnknownKeys } from '../validate.js';

/**
 * torch.optim.SGD / Adam / AdamW with PyTorch's defaults and update order. There are no param
 * groups: `weightDecay` applies to every parameter, biases included, as torch's does for an
 * optimizer built from model.parameters() (exclude biases from decay there and the two differ).
 */
export type OptimizerOptions =
  | { type: 'sgd'; lr: number; momentum?: number; dampening?: number; nesterov?: boolean; weightDecay?: number }
  | { type: 'adam' | 'adamw'; lr: number; betas?: readonly [number, number]; eps?: number; weightDecay?: number };

export interface OptimizerSpec {
  name: OptimizerName;
  code: number;
  hyper: Float64Array;
}

/** The names each optimizer type takes. */
export const OPTIMIZER_KEYS: Record<OptimizerName, readonly string[]> = {
  sgd: ['type', 'lr', 'momentum', 'dampening', 'nesterov', 'weightDecay'],
  adam: ['type', 'lr', 'betas', 'eps', 'weightDecay'],
  adamw: ['type', 'lr', 'betas', 'eps', 'weightDecay'],
};

// The kernels take the hyperparameters as float32 constants: larger ones are refused (FLT_MAX),
// as the addon does, and eps must be a normal float32 (training flushes denormals to 0, and an
// eps of 0 divides 0 by 0 for a parameter whose gradients were all 0).
const FLT_MIN = 1.1754943508222875e-38;
export function normalizeOptimizer(value: unknown): OptimizerSpec {
  const o = expectObject('options.optimizer', value);
  const name = expectOneOf('options.optimizer.type', o.type, OPTIMIZERS);
  rejectUnknownKeys('options.optimizer', o, OPTIMIZER_KEYS[name], `optimizer type '${name}'`);
  const lr = expectNumber('options.optimizer.lr', o.lr, { min: 0, max: FLT_MAX });
  const hyper = new Float64Array(8);
  hyper[0] = lr;
  if (name === 'sgd') {
    const momentum = o.momentum === undefined ? 0 : expectNumber('options.optimizer.momentum', o.momentum, { min: 0, max: FLT_MAX });
    const dampening = o.dampening === undefined ? 0 : expectNumber('options.optimizer.dampening', o.dampening, { min: 0, max: 1 });
    const nesterov = o.nesterov === undefined ? false : expectBoolean('options.optimizer.nesterov', o.nesterov);
    if (nesterov && (momentum <= 0 || dampening !== 0)) {
      throw rangeError(`Nesterov momentum needs momentum > 0 and dampening 0 (as torch.optim.SGD) but received momentum ${momentum}, dampening ${dampening}`);
    }
    hyper[1] = o.weightDecay === undefined ? 0 : expectNumber('options.optimizer.weightDecay', o.weightDecay, { min: 0, max: FLT_MAX });
    hyper[2] = momentum;
    hyper[3] = dampening;
    hyper[4] = nesterov ? 1 : 0;
  } else {
    let betas: [number, number] = [0.9, 0.999];
    const given = o.betas; // read once: a getter may answer differently each time
    if (given !== undefined) {
      // isArray: Array.isArray throws V8's own, uncoded TypeError on a revoked Proxy.
      if (!isArray(given) || given.length !== 2) {
        throw typeError(`Expected [beta1, beta2] for options.optimizer.betas but received ${describe(given)}`);
      }
      betas = [
        expectNumber('options.optimizer.betas[0]', given[0], { min: 0, max: 1 }),
        expectNumber('options.optimizer.betas[1]', given[1], { min: 0, max: 1 }),
      ];
      if (betas[0] >= 1 || betas[1] >= 1) throw rangeError(`Expected betas in [0, 1) for options.optimizer.betas but received [${betas.join(', ')}]`);
    }
    hyper[1] = o.weightDecay === undefined ? (name === 'adamw' ? 0.01 : 0) : expectNumber('options.optimizer.weightDecay', o.weightDecay, { min: 0, max: FLT_MAX });
    hyper[5] = betas[0];
    hyper[6] = betas[1];
    hyper[7] = o.eps === undefined ? 1e-8 : expectNumber('options.optimizer.eps', o.eps, { min: FLT_MIN, max: FLT_MAX });
  }
  return { name, code: OPTIMIZERS.indexOf(name), hyper };
}

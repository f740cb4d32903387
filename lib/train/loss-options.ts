// Loss names and their targets, checked once for both backends.

import { LOSSES, type LossName } from '../backend/types.js';
import { describe, rangeError, typeError } from '../errors.js';
import { expectAllFinite, expectLabels, expectNumber, expectObject, expectOneOf, expectOutputBuffer, rejectUnknownKeys } from '../validate.js';

export interface LossSpec {
  name: LossName;
  code: number;
  /** huber's delta; 0 for the others. */
  param: number;
}

export type LossOption = LossName | { type: LossName; delta?: number };

export function normalizeLoss(value: unknown, delta: unknown = undefined, name = 'options.loss'): LossSpec {
  let type: unknown = value;
  let d: unknown = delta;
  // Where delta came from, for messages: the loss object's own field, or the sibling option
  // (gradients' request.delta beside request.loss).
  let deltaName = name.replace(/loss$/, 'delta');
  if (typeof value === 'object' && value !== null) {
    const obj = expectObject(name, value);
    rejectUnknownKeys(name, obj, ['type', 'delta']);
    type = obj.type;
    if (obj.delta !== undefined) {
      // Two deltas (gradients' request.delta beside request.loss.delta): one would be ignored.
      if (d !== undefined) {
        throw rangeError(`${deltaName} and ${name}.delta were both given; pass the huber delta once`);
      }
      d = obj.delta;
      deltaName = `${name}.delta`;
    }
    name = `${name}.type`;
  } else if (typeof value !== 'string') {
    throw typeError(`Expected a loss name (${LOSSES.map((l) => `'${l}'`).join(', ')}) or { type, delta } for ${name} but received ${describe(value)}`);
  }
  const lossName = expectOneOf(name, type, LOSSES);
  if (lossName !== 'huber' && d !== undefined) {
    throw rangeError(`${deltaName} applies only to the 'huber' loss, but the loss is '${lossName}'`);
  }
  const param = lossName === 'huber' ? (d === undefined ? 1 : expectNumber(deltaName, d, { min: 0, minExclusive: true })) : 0;
  return { name: lossName, code: LOSSES.indexOf(lossName), param };
}

/**
 * Targets: class labels (Int32Array or number[], one per row) for softmax-cross-entropy,
 * otherwise a Float32Array of batch x outputs. Non-finite targets are rejected because one
 * NaN would poison every weight in the update.
 */
export function checkTarget(loss: LossName, target: unknown, batch: number, outputs: number, name = 'target'): Float32Array | Int32Array {
  if (loss === 'softmax-cross-entropy') return expectLabels(name, target, batch, outputs);
  const t = expectOutputBuffer(name, target, batch * outputs);
  expectAllFinite(name, t);
  return t;
}

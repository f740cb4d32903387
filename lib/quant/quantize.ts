// Float32 weights to a QuantLayer, following the rules of lib/quant/format.ts operation by
// operation (each float32 operation is one Math.fround of the float64 result, which for float32
// operands is exactly the IEEE float32 operation), and back (dequantizeLayer) for error reports.
// Only this file quantises weights: the native backend receives layers already quantised.

import type { ActivationName } from '../backend/types.js';
import { rangeError } from '../errors.js';
import { checkQuantLayer } from './check.js';
import { expectAllFinite, expectFloat32Array, expectInteger, expectNumber } from '../validate.js';
import { packNibbles, unpackCodes } from './codes.js';
import { groupsPerRow, paddedInputs, type QuantLayer } from './format.js';
import { activationCode, normalizeLayerFormat, type LayerFormat, type LayerFormatOptions } from './options.js';
import { clamp, roundHalfEven } from './rounding.js';

const f32 = Math.fround;

/**
 * Quantise one Linear layer (+ activation). weight: [outputs x inputs] row-major (nn.Linear's
 * layout); bias: [outputs] or null; activation: a name or its index in ACTIVATIONS; alpha: the
 * leaky_relu slope. The weights must be finite.
 */
export function quantizeLayer(
  weight: Float32Array,
  bias: Float32Array | null,
  inputs: number,
  outputs: number,
  activation: ActivationName | number,
  alpha: number,
  options: LayerFormatOptions,
): QuantLayer {
  const k = expectInteger('inputs', inputs, 1);
  const n = expectInteger('outputs', outputs, 1);
  expectFloat32Array('weight', weight);
  if (weight.length !== n * k) {
    throw rangeError(`Expected weight to hold outputs x inputs = ${n} x ${k} = ${n * k} floats but received ${weight.length}`);
  }
  if (bias !== null) {
    expectFloat32Array('bias', bias);
    if (bias.length !== n) throw rangeError(`Expected bias to hold ${n} floats (one per output) but received ${bias.length}`);
  }
  const act = activationCode('activation', activation);
  const slope = expectNumber('alpha', alpha);
  expectAllFinite('weight', weight);
  return quantizeChecked(weight, bias, k, n, act, slope, normalizeLayerFormat(options));
}

/** quantizeLayer after its checks (lib/quant/model.ts calls it with a model's own weights). */
export function quantizeChecked(
  weight: Float32Array,
  bias: Float32Array | null,
  k: number,
  n: number,
  activation: number,
  alpha: number,
  format: LayerFormat,
): QuantLayer {
  const common = { inputs: k, outputs: n, activation, alpha, bias: bias ? Float32Array.from(bias) : null };
  if (format.format === 'int8') {
    const { weights, scales } = quantizeInt8(weight, k, n);
    return { ...common, format: 'int8', groupSize: k, symmetric: true, weights, scales, zeros: null };
  }
  const groupSize = format.groupSize ?? 32;
  const { weights, scales, zeros } = quantizeInt4(weight, k, n, groupSize, format.symmetric);
  return { ...common, format: 'int4', groupSize, symmetric: format.symmetric, weights, scales, zeros };
}

/** Largest |w| of row j over inputs [p0, p1). */
function maxAbs(w: Float32Array, k: number, j: number, p0: number, p1: number): number {
  let m = 0;
  for (let p = p0; p < p1; p++) {
    const a = Math.abs(w[j * k + p]);
    if (a > m) m = a;
  }
  return m;
}

// A scale of 0 means the group is all zeros, or its largest |w| is a denormal so small that
// the division by 7 (or 127) underflows to 0: every q of the group is then 0 (format.ts).

function quantizeInt8(w: Float32Array, k: number, n: number): { weights: Int8Array; scales: Float32Array } {
  const weights = new Int8Array(n * k);
  const scales = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const scale = f32(maxAbs(w, k, j, 0, k) / 127);
    scales[j] = scale;
    if (scale === 0) continue;
    for (let p = 0; p < k; p++) weights[j * k + p] = clamp(roundHalfEven(f32(w[j * k + p] / scale)), -127, 127);
  }
  return { weights, scales };
}

function quantizeInt4(
  w: Float32Array,
  k: number,
  n: number,
  groupSize: number,
  symmetric: boolean,
): { weights: Uint8Array; scales: Float32Array; zeros: Uint8Array | null } {
  const kp = paddedInputs({ inputs: k, groupSize });
  const groups = groupsPerRow({ inputs: k, groupSize });
  const codes = new Uint8Array(n * kp); // unsigned nibbles u, padded positions included
  const scales = new Float32Array(n * groups);
  const zeros = symmetric ? null : new Uint8Array(n * groups);
  for (let j = 0; j < n; j++) {
    for (let g = 0; g < groups; g++) {
      const p0 = g * groupSize;
      const p1 = Math.min(p0 + groupSize, k); // real inputs; [p1, p0 + groupSize) is padding (w = 0)
      const at = j * groups + g;
      if (symmetric) {
        const scale = f32(maxAbs(w, k, j, p0, p1) / 7);
        scales[at] = scale;
        for (let p = p0; p < p0 + groupSize; p++) {
          const v = p < p1 ? w[j * k + p] : 0;
          codes[j * kp + p] = scale === 0 ? 8 : clamp(roundHalfEven(f32(v / scale)), -8, 7) + 8;
        }
      } else {
        let lo = 0;
        let hi = 0;
        for (let p = p0; p < p1; p++) {
          const v = w[j * k + p];
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        // hi - lo in float64, rounded once with the division (format.ts): a float32 subtraction
        // would overflow to Infinity for groups spanning more than FLT_MAX.
        const scale = f32((hi - lo) / 15);
        scales[at] = scale;
        const zero = scale === 0 ? 0 : clamp(roundHalfEven(f32(-lo / scale)), 0, 15);
        zeros![at] = zero;
        for (let p = p0; p < p0 + groupSize; p++) {
          const v = p < p1 ? w[j * k + p] : 0;
          codes[j * kp + p] = scale === 0 ? 0 : clamp(roundHalfEven(f32(v / scale)) + zero, 0, 15);
        }
      }
    }
  }
  return { weights: packNibbles(codes), scales, zeros };
}

/** w ~= f32(scale * q) for every real (unpadded) input: Float32Array [outputs x inputs]. */
export function dequantizeLayer(value: QuantLayer): Float32Array {
  const layer = checkQuantLayer(value, 'layer');
  const { inputs: k, outputs: n, groupSize } = layer;
  const kp = paddedInputs(layer);
  const groups = groupsPerRow(layer);
  const q = unpackCodes(layer);
  const out = new Float32Array(n * k);
  for (let j = 0; j < n; j++) {
    for (let p = 0; p < k; p++) out[j * k + p] = f32(layer.scales[j * groups + Math.floor(p / groupSize)] * q[j * kp + p]);
  }
  return out;
}

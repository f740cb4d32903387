// GPTQ rounding (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers"): the codes of a row are chosen one input at a time, and
// each one's rounding error is pushed onto the inputs not yet rounded, weighted by how those
// inputs co-vary with it on the calibration rows. Rounding to nearest makes each weight's error
// as small as it can be; this makes the error of the layer's outputs on inputs like the
// calibration rows smaller, which is what a model is judged by. The format is unchanged: the
// same codes, scales and zero points, chosen differently, so every kernel and file reads them.
//
// It gains where a layer's inputs are correlated (hidden layers after ReLU, encoded inputs of
// a neural field), and nothing on inputs that are independent with equal variance, where the
// matrix below is a multiple of the identity and nothing is pushed (then the codes are exactly
// those of rounding to nearest). For row j, inputs p in order:
//
//   q_p   = the format's code of the current w_p (lib/quant/format.ts; int4 scales, and zero
//           points, are searched at each group's first input over the group's current values)
//   e     = (w_p - scale * q_p) / U[p][p]
//   w_t  -= e * U[p][t]         for every t > p
//
// where U is upper triangular with U^T U = (X^T X + lambda I)^-1 over the layer's calibration
// inputs X (lib/quant/hessian.ts). Rows are independent: the cost is k^2 / 2 per row.

import { clamp, roundHalfEven } from './rounding.js';
import { packNibbles } from './codes.js';
import { groupsPerRow, paddedInputs, type QuantLayer } from './format.js';
import { gramUpper, inverseFactor } from './hessian.js';
import { asymmetricScale, symmetricScale } from './quantize.js';

const f32 = Math.fround;

/**
 * The layer re-rounded with GPTQ: `layer` is the same weights rounded to nearest (its format,
 * group size, symmetry and input scales are kept; its bias is copied unchanged), `weight` the
 * float weights [outputs x inputs] it was made from, `input` the calibration inputs the layer
 * reads [rows x inputs] (before its input scales). null when the inputs carry nothing to learn
 * from (all zero): the caller keeps the nearest rounding.
 */
export function gptqLayer(layer: QuantLayer, weight: Float32Array, input: Float32Array): QuantLayer | null {
  const { inputs: k, outputs: n, inputScales } = layer;
  let w = weight;
  let x = input;
  if (inputScales) {
    // The layer reads f32(x_p * c_p) and holds the codes of f32(W_jp / c_p) (format.ts).
    w = new Float32Array(n * k);
    for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) w[j * k + p] = f32(weight[j * k + p] / inputScales[p]);
    x = new Float32Array(input.length);
    for (let i = 0; i < input.length; i++) x[i] = f32(input[i] * inputScales[i % k]);
  }
  const u = inverseFactor(gramUpper(x, k), k);
  if (!u) return null;
  const bias = layer.bias ? Float32Array.from(layer.bias) : null;
  if (layer.format === 'int8') {
    const { weights, scales } = roundInt8(w, k, n, u);
    return { ...layer, bias, weights, scales };
  }
  const { weights, scales, zeros } = roundInt4(w, k, n, layer.groupSize, layer.symmetric, u);
  return { ...layer, bias, weights, scales, zeros };
}

/** Pushes the error of input p's code onto inputs p + 1 ... k - 1 of `row`. */
function propagate(row: Float64Array, u: Float64Array, k: number, p: number, dequantized: number): void {
  const up = p * k;
  const e = (row[p] - dequantized) / u[up + p];
  if (e === 0) return;
  for (let t = p + 1; t < k; t++) row[t] -= e * u[up + t];
}

function roundInt8(w: Float32Array, k: number, n: number, u: Float64Array): { weights: Int8Array; scales: Float32Array } {
  const weights = new Int8Array(n * k);
  const scales = new Float32Array(n);
  const row = new Float64Array(k);
  for (let j = 0; j < n; j++) {
    // The scale of the float row, as rounding to nearest has it: weights pushed past it clamp.
    let amax = 0;
    for (let p = 0; p < k; p++) amax = Math.max(amax, Math.abs(w[j * k + p]));
    const scale = f32(amax / 127);
    scales[j] = scale;
    if (scale === 0) continue; // all q = 0: nothing to round, nothing pushed that could be coded
    for (let p = 0; p < k; p++) row[p] = w[j * k + p];
    for (let p = 0; p < k; p++) {
      const q = clamp(roundHalfEven(f32(f32(row[p]) / scale)), -127, 127);
      weights[j * k + p] = q;
      propagate(row, u, k, p, f32(scale * q));
    }
  }
  return { weights, scales };
}

function roundInt4(
  w: Float32Array,
  k: number,
  n: number,
  groupSize: number,
  symmetric: boolean,
  u: Float64Array,
): { weights: Uint8Array; scales: Float32Array; zeros: Uint8Array | null } {
  const kp = paddedInputs({ inputs: k, groupSize });
  const groups = groupsPerRow({ inputs: k, groupSize });
  const scales = new Float32Array(n * groups);
  const zeros = symmetric ? null : new Uint8Array(n * groups);
  const codes = new Uint8Array(n * kp);
  const row = new Float64Array(k);
  const current = new Float32Array(k); // a group's current values, as float32, for the scale search
  for (let j = 0; j < n; j++) {
    for (let p = 0; p < k; p++) row[p] = w[j * k + p];
    for (let g = 0; g < groups; g++) {
      const p0 = g * groupSize;
      const p1 = Math.min(p0 + groupSize, k); // [p1, p0 + groupSize) is padding: q = 0
      for (let p = p0; p < p1; p++) current[p] = f32(row[p]);
      const at = j * groups + g;
      let scale: number;
      let zero: number;
      if (symmetric) {
        scale = symmetricScale(current, k, 0, p0, p1);
        zero = 8;
      } else {
        ({ scale, zero } = asymmetricScale(current, 0, p0, p1));
        zeros![at] = zero;
      }
      scales[at] = scale;
      // The padding codes of rounding to nearest: u = 8 (symmetric), u = zero (asymmetric,
      // which is 0 with a zero scale).
      codes.fill(zero, j * kp + p0, j * kp + p0 + groupSize);
      for (let p = p0; p < p1; p++) {
        let q = 0;
        if (scale !== 0) {
          const r = roundHalfEven(f32(f32(row[p]) / scale));
          q = symmetric ? clamp(r, -8, 7) : clamp(r + zero, 0, 15) - zero;
        }
        codes[j * kp + p] = q + zero;
        propagate(row, u, k, p, f32(scale * q));
      }
    }
  }
  return { weights: packNibbles(codes), scales, zeros };
}

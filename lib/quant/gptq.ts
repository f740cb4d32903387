// GPTQ rounding (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers"): the codes of a row are chosen one input at a time, and
// each one's rounding error is pushed onto the inputs not yet rounded, weighted by how those
// inputs co-vary with it on the calibration rows. Rounding to nearest makes each weight's error
// as small as it can be; this makes the error of the layer's outputs on inputs like the
// calibration rows smaller, which is what a model is judged by. The format is unchanged: the
// same codes, scales and zero points, chosen differently, so every kernel and file reads them.
//
// It gains where a layer's inputs are correlated (hidden layers after ReLU). Where no two inputs
// co-vary on the calibration rows (X^T X diagonal) nothing is pushed and the codes are exactly
// those of rounding to nearest; inputs independent in truth still co-vary a little in a finite
// sample, and there GPTQ fits that noise, which is why rounding 'auto' checks it on held-back
// rows (lib/quant/calibrate.ts). For row j, inputs p in order:
//
//   q_p   = the format's code of the current w_p (lib/quant/format.ts; int4 scales, and zero
//           points, are searched at each group's first input over the group's current values)
//   e     = (w_p - scale * q_p) / U[p][p]
//   w_t  -= e * U[p][t]         for every t > p
//
// where U is upper triangular with U^T U = (X^T X + lambda I)^-1 over the layer's calibration
// inputs X (lib/quant/hessian.ts). Rows are independent: the cost is k^2 / 2 per row.

import { clamp, int8Scale, roundHalfEven } from './rounding.js';
import { packNibbles } from './codes.js';
import { groupsPerRow, paddedInputs, type QuantLayer } from './format.js';
import { gramUpper, inverseFactor } from './hessian.js';
import { asymmetricScale, nativeWeightQuantizer, symmetricScale, weightsOverInputScales, type NativeWeightQuantizer } from './quantize.js';

const f32 = Math.fround;

/**
 * The layer re-rounded with GPTQ: `layer` is the same weights rounded to nearest (its format,
 * group size, symmetry and input scales are kept; its bias is copied unchanged), `weight` the
 * float weights [outputs x inputs] it was made from, `input` the calibration inputs the layer
 * reads [rows x inputs] (before its input scales). null when the inputs carry nothing to learn
 * from (all zero, or not finite) or an error pushed goes past float64: the caller keeps the
 * nearest rounding.
 */
export function gptqLayer(layer: QuantLayer, weight: Float32Array, input: Float32Array): QuantLayer | null {
  const { inputs: k, outputs: n, inputScales } = layer;
  let w = weight;
  let x = input;
  if (inputScales) {
    // The layer reads f32(x_p * c_p) and holds the codes of f32(W_jp / c_p) (format.ts).
    w = weightsOverInputScales(weight, k, n, inputScales);
    x = new Float32Array(input.length);
    for (let i = 0; i < input.length; i++) x[i] = f32(input[i] * inputScales[i % k]);
  }
  const native = nativeWeightQuantizer();
  const rounded = native?.gptqFactor && native.gptqRound ? nativeRounding(native, layer, w, x) : roundRows(layer, w, x);
  if (!rounded) return null;
  return { ...layer, bias: layer.bias ? Float32Array.from(layer.bias) : null, ...rounded };
}

type Rounded = { weights: Int8Array | Uint8Array; scales: Float32Array; zeros?: Uint8Array | null };

function roundRows(layer: QuantLayer, w: Float32Array, x: Float32Array): Rounded | null {
  const { inputs: k, outputs: n } = layer;
  const u = inverseFactor(gramUpper(x, k), k);
  if (!u) return null;
  return layer.format === 'int8' ? roundInt8(w, k, n, u) : roundInt4(w, k, n, layer.groupSize, layer.symmetric, u);
}

/**
 * The same bits from the addon (native/core/quant/gptq.cpp), on the thread pool, with the inner
 * loops vectorised and blocked: a 1024 -> 4096 layer with 1024 calibration rows in 0.22 s
 * instead of 3.9 s here (node bench/gptq.mjs).
 */
function nativeRounding(native: NativeWeightQuantizer, layer: QuantLayer, w: Float32Array, x: Float32Array): Rounded | null {
  const { inputs: k, outputs: n } = layer;
  const u = new Float64Array(k * k);
  if (!native.gptqFactor!(x, k, u)) return null;
  if (layer.format === 'int8') {
    const weights = new Int8Array(n * k);
    const scales = new Float32Array(n);
    return native.gptqRound!(w, k, n, 0, u, weights, scales, null) ? { weights, scales } : null;
  }
  const groups = groupsPerRow(layer);
  const weights = new Uint8Array((n * paddedInputs(layer)) / 2);
  const scales = new Float32Array(n * groups);
  const zeros = layer.symmetric ? null : new Uint8Array(n * groups);
  return native.gptqRound!(w, k, n, layer.groupSize, u, weights, scales, zeros) ? { weights, scales, zeros } : null;
}

/**
 * Pushes the error of input p's code onto inputs p + 1 ... k - 1 of `row`; false when the error
 * is not finite. The row's values are float64 and may be pushed past float32's range while
 * still finite: each is checked as float32 at its turn (roundInt8, roundInt4), before its code,
 * since it would otherwise code as an infinite scale or, asymmetric, a zero scale that drops the
 * weight. Either way the layer is left to the nearest rounding (gptqLayer gives null): only a
 * badly conditioned layer with weights near FLT_MAX gets there.
 */
function propagate(row: Float64Array, u: Float64Array, k: number, p: number, dequantized: number): boolean {
  const up = p * k;
  const e = (row[p] - dequantized) / u[up + p];
  if (e === 0) return true;
  if (!Number.isFinite(e)) return false;
  for (let t = p + 1; t < k; t++) row[t] -= e * u[up + t];
  return true;
}

function roundInt8(w: Float32Array, k: number, n: number, u: Float64Array): { weights: Int8Array; scales: Float32Array } | null {
  const weights = new Int8Array(n * k);
  const scales = new Float32Array(n);
  const row = new Float64Array(k);
  for (let j = 0; j < n; j++) {
    // The scale of the float row, as rounding to nearest has it: weights pushed past it clamp.
    let amax = 0;
    for (let p = 0; p < k; p++) amax = Math.max(amax, Math.abs(w[j * k + p]));
    const scale = int8Scale(amax);
    scales[j] = scale;
    if (scale === 0) continue; // all q = 0: nothing to round, nothing pushed that could be coded
    for (let p = 0; p < k; p++) row[p] = w[j * k + p];
    for (let p = 0; p < k; p++) {
      const v = f32(row[p]);
      if (!Number.isFinite(v)) return null; // pushed past float32: see propagate
      const q = clamp(roundHalfEven(f32(v / scale)), -127, 127);
      weights[j * k + p] = q;
      if (!propagate(row, u, k, p, f32(scale * q))) return null;
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
): { weights: Uint8Array; scales: Float32Array; zeros: Uint8Array | null } | null {
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
        const v = f32(row[p]);
        if (!Number.isFinite(v)) return null; // pushed past float32 (its group's scale is already off): see propagate
        let q = 0;
        if (scale !== 0) {
          const r = roundHalfEven(f32(v / scale));
          q = symmetric ? clamp(r, -8, 7) : clamp(r + zero, 0, 15) - zero;
        }
        codes[j * kp + p] = q + zero;
        if (!propagate(row, u, k, p, f32(scale * q))) return null;
      }
    }
  }
  return { weights: packNibbles(codes), scales, zeros };
}

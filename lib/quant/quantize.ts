// Float32 weights to a QuantLayer, following the rules of lib/quant/format.ts operation by
// operation (each float32 operation is one Math.fround of the float64 result, which for float32
// operands is exactly the IEEE float32 operation), and back (dequantizeLayer) for error reports.
// Only this file quantises weights: the native backend receives layers already quantised.

import type { ActivationName } from '../backend/types.js';
import { rangeError } from '../errors.js';
import { checkQuantLayer } from './check.js';
import { expectAllFinite, expectFloat32Array, expectInteger, expectNumber } from '../validate.js';
import { nibbleAt, packNibbles } from './codes.js';
import { groupsPerRow, paddedInputs, type QuantLayer } from './format.js';
import { activationCode, normalizeLayerFormat, type LayerFormat, type LayerFormatOptions } from './options.js';
import { ROUNDING_SHIFT, clamp, int8Scale, roundHalfEven, roundToBf16 } from './rounding.js';

const f32 = Math.fround;

/**
 * @internal The addon's weight quantisers (native/core/quant/quantize.h): the bits of
 * quantizeInt8 / quantizeInt4 below, on the thread pool: a 4096 -> 16384 layer in 0.16 s (int8)
 * and 0.73 s (int4 g32; since 2026-12-06 its search is ~1.3x faster: 16M weights on one Zen 1
 * core 0.31 -> 0.24 s) on 2 Zen 1 cores, against ~1 s and ~3.2 s here. lib/backend/native.ts
 * installs them when it loads the addon; without it the loops below run.
 * tests/91.quant-quantize.test.ts holds the two to the same bytes.
 */
export interface NativeWeightQuantizer {
  quantizeInt8(weight: Float32Array, inputs: number, outputs: number, codes: Int8Array, scales: Float32Array): void;
  quantizeInt4(weight: Float32Array, inputs: number, outputs: number, groupSize: number, packed: Uint8Array, scales: Float32Array, zeros: Uint8Array | null): void;
  /** equalizationScales' column maxima (absent from addons built before it). */
  columnAbsMax?(weight: Float32Array, inputs: number, outputs: number, out: Float32Array): void;
  /** GPTQ (lib/quant/gptq.ts): inverseFactor(gramUpper(x)) into u; false where that is null. */
  gptqFactor?(x: Float32Array, inputs: number, u: Float64Array): boolean;
  /** GPTQ's rows (groupSize 0: int8); false where gptq.ts gives null. */
  gptqRound?(weight: Float32Array, inputs: number, outputs: number, groupSize: number, u: Float64Array,
    codes: Int8Array | Uint8Array, scales: Float32Array, zeros: Uint8Array | null): boolean;
}

let nativeQuantizer: NativeWeightQuantizer | null = null;

let nativeLoader: (() => void) | null = null;

/** @internal lib/backend/index.ts: loads the addon (once, at the first quantisation), which installs the quantisers. */
export function setNativeQuantizerLoader(load: (() => void) | null): void {
  nativeLoader = load;
}

/** @internal The native quantisers installed, if any (lib/quant/gptq.ts uses its GPTQ loops). */
export function nativeWeightQuantizer(): NativeWeightQuantizer | null {
  return nativeQuantizer;
}

/** @internal Installs (or, with null, removes) the native quantisers; returns the previous ones. */
export function setNativeWeightQuantizer(quantizer: NativeWeightQuantizer | null): NativeWeightQuantizer | null {
  const previous = nativeQuantizer;
  nativeQuantizer = quantizer;
  return previous;
}

/**
 * Quantise one Linear layer (+ activation). weight: [outputs x inputs] row-major (nn.Linear's
 * layout); bias: [outputs] or null; activation: a name or its index in ACTIVATIONS; alpha: the
 * leaky_relu slope. The weights and the bias must be finite.
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
  if (bias !== null) expectAllFinite('bias', bias);
  const format = normalizeLayerFormat(options);
  return quantizeChecked(weight, bias, k, n, act, slope, format, format.equalize ? equalizationScales(weight, k, n) : null);
}

/**
 * quantizeLayer after its checks (lib/quant/model.ts calls it with a model's own weights). With
 * inputScales (format.ts), the weights quantised are W_jp / inputScales_p.
 */
export function quantizeChecked(
  weight: Float32Array,
  bias: Float32Array | null,
  k: number,
  n: number,
  activation: number,
  alpha: number,
  format: LayerFormat,
  inputScales: Float32Array | null = null,
): QuantLayer {
  if (nativeLoader) {
    const load = nativeLoader;
    nativeLoader = null;
    load();
  }
  const common = { inputs: k, outputs: n, activation, alpha, bias: bias ? Float32Array.from(bias) : null, inputScales };
  if (inputScales) weight = weightsOverInputScales(weight, k, n, inputScales);
  if (format.format === 'int8') {
    const { weights, scales } = quantizeInt8(weight, k, n);
    return { ...common, format: 'int8', groupSize: k, symmetric: true, weights, scales, zeros: null };
  }
  const groupSize = format.groupSize ?? 32;
  const { weights, scales, zeros } = quantizeInt4(weight, k, n, groupSize, format.symmetric);
  return { ...common, format: 'int4', groupSize, symmetric: format.symmetric, weights, scales, zeros };
}

/** f32(W_jp / inputScales_p): the weights an equalised layer codes (format.ts, "input scales"). */
export function weightsOverInputScales(weight: Float32Array, k: number, n: number, inputScales: Float32Array): Float32Array {
  const scaled = new Float32Array(n * k);
  for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) scaled[j * k + p] = f32(weight[j * k + p] / inputScales[p]);
  return scaled;
}

/**
 * Per-input equalisation scales for W [n x k] (format.ts, "input scales"): the power of two
 * nearest each input column's largest |w| (1 for an all-zero column), so every column of
 * W / scales has its largest |w| within a factor sqrt(2) of 1. null when that changes nothing,
 * all columns already within a factor 2 of each other.
 */
export function equalizationScales(w: Float32Array, k: number, n: number): Float32Array | null {
  // Each maximum is one of the float32 |w|, so the native pass gives the same values: on a
  // 67M-weight layer 23 ms on 2 Zen 4 cores, where this loop took ~115 ms of quantize.
  const colMax = new Float32Array(k);
  if (nativeQuantizer?.columnAbsMax) {
    nativeQuantizer.columnAbsMax(w, k, n, colMax);
  } else {
    for (let j = 0; j < n; j++) {
      for (let p = 0; p < k; p++) {
        const a = Math.abs(w[j * k + p]);
        if (a > colMax[p]) colMax[p] = a;
      }
    }
  }
  let lo = Infinity;
  let hi = 0;
  for (const c of colMax) {
    if (c === 0) continue;
    lo = Math.min(lo, c);
    hi = Math.max(hi, c);
  }
  if (hi === 0 || hi <= 2 * lo) return null;
  // 2^-126 .. 2^127: normal floats, so w / s and x * s stay exact (barring under- and overflow
  // of the results themselves).
  return Float32Array.from(colMax, (c) => (c === 0 ? 1 : 2 ** Math.min(127, Math.max(-126, Math.round(Math.log2(c))))));
}

/**
 * Relative error at which an input column counts as lost: its quantised weights are further
 * from the float ones than half their size (L2 over the column). Ordinary layers are nowhere
 * near: ~1% per column for int8, ~9% for int4 g32 on Gaussian weights; a column whose weights
 * sit below half a quantisation step of their rows (most codes 0) is near 100%.
 */
export const LOST_COLUMN_ERROR = 0.5;

/**
 * The first input column of a quantised layer (without input scales) whose weights came out
 * further than LOST_COLUMN_ERROR from the float weights, relatively: an input the layer all
 * but stopped reading. -1 when there is none.
 */
export function lostInput(weight: Float32Array, layer: QuantLayer): number {
  const k = layer.inputs;
  const err2 = new Float64Array(k);
  const ref2 = new Float64Array(k);
  forEachDequantizedRow(layer, (j, dq, at) => {
    for (let p = 0; p < k; p++) {
      const w = weight[j * k + p];
      const d = dq[at + p] - w;
      err2[p] += d * d;
      ref2[p] += w * w;
    }
  });
  for (let p = 0; p < k; p++) if (ref2[p] > 0 && err2[p] > LOST_COLUMN_ERROR * LOST_COLUMN_ERROR * ref2[p]) return p;
  return -1;
}

/**
 * visit(j, dq, at) for every row j of a layer (as checked), dq[at, at + inputs) holding the row's
 * dequantised weights; dequantizeRows fills dq ~64K weights (256 KiB, in L2) at a time.
 */
export function forEachDequantizedRow(layer: QuantLayer, visit: (j: number, dq: Float32Array, at: number) => void): void {
  const { inputs: k, outputs: n } = layer;
  const block = Math.max(1, Math.floor(65536 / k));
  const dq = new Float32Array(Math.min(n, block) * k);
  for (let j0 = 0; j0 < n; j0 += block) {
    const j1 = Math.min(n, j0 + block);
    dequantizeRows(layer, j0, j1, dq);
    for (let j = j0; j < j1; j++) visit(j, dq, (j - j0) * k);
  }
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
  if (nativeQuantizer) {
    nativeQuantizer.quantizeInt8(w, k, n, weights, scales);
    return { weights, scales };
  }
  for (let j = 0; j < n; j++) {
    const scale = int8Scale(maxAbs(w, k, j, 0, k));
    scales[j] = scale;
    if (scale === 0) continue;
    // roundHalfEven and clamp spelled out: |w / scale| is at most a hair over 127, inside the
    // shift trick's range, and the inlined loop is ~2x faster on a 67M-weight layer.
    const base = j * k;
    for (let p = 0; p < k; p++) {
      const q = f32(w[base + p] / scale) + ROUNDING_SHIFT - ROUNDING_SHIFT;
      weights[base + p] = q < -127 ? -127 : q > 127 ? 127 : q;
    }
  }
  return { weights, scales };
}

// int4 scales are chosen by search, not by the range alone: for Gaussian groups of 32 the
// scale that maps max|w| to 7 spends most of the 16 levels on the rare tails. Each candidate is
// scored by its squared rounding error over the group (float64), the least wins, and a tie keeps
// the earlier candidate, so the plain range rule (the first) stands whenever nothing beats it.
// Relative RMS error on Gaussian weights, g32: symmetric 9.6% -> 8.7%, asymmetric 8.1% -> 7.9%
// (docs/QUANTIZATION.md).

// Every int4 scale is a bfloat16 value (roundToBf16: 8 significant bits, a relative step of at
// most 2^-8, which the search's own candidates are spaced far wider than): the native kernels
// then keep it in 2 bytes, exactly, and a g32 layer reads 10% fewer bytes (qlayer.h).

/** Symmetric candidates: s = bf16(max|w| / d). d > 7 clips the largest |w| to 7 (or to -8). */
const SYMMETRIC_DIVISORS = [7, 7.5, 8, 8.5, 9];
/** Asymmetric candidates: s = bf16((hi - lo) * f / 15), the range shrunk by f. */
const RANGE_FACTORS = [1, 0.95, 0.9, 0.85, 0.8];

/**
 * Squared error of group [p0, p1) of the row at `base` coded with scale s and zero point z, or
 * any value >= limit once it reaches limit (the candidate has lost: most stop early).
 */
function groupError(w: Float32Array, base: number, p0: number, p1: number, s: number, z: number, qmin: number, qmax: number, limit: number): number {
  // Only a score, so cheaper than the exact float32 rule: a multiplication instead of the
  // division, and rounding by adding and subtracting 1.5 * 2^52 (ties to even, |x| < 2^51),
  // which here is 3x faster than Math.round. The codes that win are recomputed by the rule.
  const inv = 1 / s;
  let e = 0;
  for (let p = p0; p < p1 && e < limit; p++) {
    const v = w[base + p];
    const d = v - s * (clamp(v * inv + ROUNDING_SHIFT - ROUNDING_SHIFT + z, qmin, qmax) - z);
    e += d * d;
  }
  return e;
}

/**
 * Whether the codes of a group whose values lie in [lo, hi] (lo <= 0 <= hi) all dequantise to
 * finite float32 values with scale s and zero point z (symmetric: qmin -8, qmax 7, z 0). Codes
 * grow with the value, so the ends decide. Only a group with some |w| within 1/16 of FLT_MAX
 * has candidates that fail; they are skipped, as a code of Infinity would turn every output it
 * reaches into Infinity or NaN. (d = 9 and f = 0.8 always pass.)
 */
function finiteCodes(lo: number, hi: number, s: number, z: number, qmin: number, qmax: number): boolean {
  const qlo = clamp(roundHalfEven(f32(lo / s)) + z, qmin, qmax) - z;
  const qhi = clamp(roundHalfEven(f32(hi / s)) + z, qmin, qmax) - z;
  return f32(s * Math.max(-qlo, qhi)) !== Infinity;
}

/** The symmetric scale of group [p0, p1) of row j: 0 for an all-zero group. */
export function symmetricScale(w: Float32Array, k: number, j: number, p0: number, p1: number): number {
  const amax = maxAbs(w, k, j, p0, p1);
  let best = 0;
  let bestError = Infinity;
  for (let i = 0; i < SYMMETRIC_DIVISORS.length; i++) {
    const s = roundToBf16(amax / SYMMETRIC_DIVISORS[i]);
    if (s === 0) break; // a zero or denormal range: nothing smaller can help
    if (!finiteCodes(-amax, amax, s, 0, -8, 7)) continue;
    const e = groupError(w, j * k, p0, p1, s, 0, -8, 7, bestError);
    if (e < bestError) {
      best = s;
      bestError = e;
    }
  }
  return best;
}

/** The asymmetric scale and zero point of group [p0, p1) of the row at `base`. */
export function asymmetricScale(w: Float32Array, base: number, p0: number, p1: number): { scale: number; zero: number } {
  let lo = 0;
  let hi = 0;
  for (let p = p0; p < p1; p++) {
    const v = w[base + p];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  let bestScale = 0;
  let bestZero = 0;
  let bestError = Infinity;
  for (const f of RANGE_FACTORS) {
    // hi - lo in float64, rounded once at the end (format.ts): a float32 subtraction would
    // overflow to Infinity for groups spanning more than FLT_MAX.
    const s = roundToBf16(((hi - lo) * f) / 15);
    if (s === 0) break; // an all-zero (or denormal) range: scale 0, zero 0, or nothing smaller helps
    // Anchored at lo (the plain rule), then at hi: a shrunk range clips one end or the other.
    const fromLo = clamp(roundHalfEven(f32(-lo / s)), 0, 15);
    const fromHi = clamp(15 - roundHalfEven(f32(hi / s)), 0, 15);
    for (let anchor = 0; anchor < 2; anchor++) {
      const z = anchor === 0 ? fromLo : fromHi;
      if (anchor === 1 && z === fromLo) break;
      if (!finiteCodes(lo, hi, s, z, 0, 15)) continue;
      const e = groupError(w, base, p0, p1, s, z, 0, 15, bestError);
      if (e < bestError) {
        bestScale = s;
        bestZero = z;
        bestError = e;
      }
    }
  }
  return { scale: bestScale, zero: bestZero };
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
  const scales = new Float32Array(n * groups);
  const zeros = symmetric ? null : new Uint8Array(n * groups);
  if (nativeQuantizer) {
    const packed = new Uint8Array((n * kp) / 2);
    nativeQuantizer.quantizeInt4(w, k, n, groupSize, packed, scales, zeros);
    return { weights: packed, scales, zeros };
  }
  const codes = new Uint8Array(n * kp); // unsigned nibbles u, padded positions included
  for (let j = 0; j < n; j++) {
    for (let g = 0; g < groups; g++) {
      const p0 = g * groupSize;
      const p1 = Math.min(p0 + groupSize, k); // real inputs; [p1, p0 + groupSize) is padding (w = 0)
      const at = j * groups + g;
      if (symmetric) {
        const scale = symmetricScale(w, k, j, p0, p1);
        scales[at] = scale;
        // Padding (w = 0) and an all-zero group code q = 0, u = 8. Otherwise roundHalfEven and
        // clamp spelled out: a scale is at least max|w| / 9, so |w / scale| <= 9.
        codes.fill(8, j * kp + p0, j * kp + p0 + groupSize);
        if (scale !== 0) {
          for (let p = p0; p < p1; p++) {
            const q = f32(w[j * k + p] / scale) + ROUNDING_SHIFT - ROUNDING_SHIFT;
            codes[j * kp + p] = (q < -8 ? -8 : q > 7 ? 7 : q) + 8;
          }
        }
      } else {
        const { scale, zero } = asymmetricScale(w, j * k, p0, p1);
        scales[at] = scale;
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

/**
 * The weights the layer stands for, for every real (unpadded) input: Float32Array [outputs x
 * inputs], w ~= f32(scale * q), times the input's scale for a layer with input scales
 * (f32(f32(scale * q) * inputScales_p), which the layer computes as x * inputScales first).
 */
export function dequantizeLayer(value: QuantLayer): Float32Array {
  const layer = checkQuantLayer(value, 'layer');
  const out = new Float32Array(layer.outputs * layer.inputs);
  dequantizeRows(layer, 0, layer.outputs, out);
  return out;
}

/**
 * Rows [j0, j1) of dequantizeLayer's result into out[0 .. (j1 - j0) x inputs), the layer taken
 * as checked. The loops over a whole large layer (biasCorrected, lostInput) go a block of rows
 * at a time through it (forEachDequantizedRow): the whole float copy of a 4096 x 16384 layer
 * is 268 MB, and allocating and first touching it cost more than the arithmetic over it.
 * Unchecked: for layers this module made (dequantizeLayer checks what callers pass).
 */
function dequantizeRows(layer: QuantLayer, j0: number, j1: number, out: Float32Array): void {
  const { inputs: k, groupSize, inputScales } = layer;
  const kp = paddedInputs(layer);
  const groups = groupsPerRow(layer);
  const rowBytes = kp >> 1;
  for (let j = j0; j < j1; j++) {
    const at = (j - j0) * k;
    for (let g = 0; g < groups; g++) {
      const scale = layer.scales[j * groups + g];
      const p0 = g * groupSize;
      const p1 = Math.min(p0 + groupSize, k);
      if (layer.format === 'int8') {
        // int8 codes are q itself, read in place.
        const q = layer.weights as Int8Array;
        for (let p = p0; p < p1; p++) out[at + p] = f32(scale * q[j * kp + p]);
      } else {
        const zero = layer.zeros ? layer.zeros[j * groups + g] : 8;
        const packed = layer.weights as Uint8Array;
        for (let p = p0; p < p1; p++) out[at + p] = f32(scale * (nibbleAt(packed, rowBytes, j, p) - zero));
      }
      if (inputScales) for (let p = p0; p < p1; p++) out[at + p] = f32(out[at + p] * inputScales[p]);
    }
  }
}

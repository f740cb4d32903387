// The quantised layer formats, their exact byte layout and rounding rules: the contract between
// the quantiser (lib/quant/quantize.ts), the reference kernels (lib/quant/reference.ts), the
// native kernels (native/core/quant/) and the safetensors files. Everything here is ABI.
//
// Weights of a Linear layer W [n x k] (n outputs, k inputs, PyTorch layout) are stored row by
// row, each row cut along k into groups of `groupSize` inputs. A row's last group is padded
// with zero weights when k is not a multiple of the group size, so every row holds
// kPadded = ceil(k / groupSize) * groupSize quantised values.
//
// int8 (per output channel): groupSize === kPadded === k (one group per row), symmetric.
//   q = clamp(roundHalfEven(f32(w / scale)), -127, 127), scale = f32(max_p |w[j][p]| / 127)
//   (one float32 step lower where f32(127 * scale) would be Infinity: max |w| = FLT_MAX only);
//   a row of zeros has scale 0 and q = 0. Stored as Int8Array [n * k], row-major.
//   w ~= scale * q.
// int4 (groups of 32, 64 or 128 along k), two weights per byte:
//   byte b of a row holds value 2b in its low nibble and value 2b + 1 in its high nibble; a
//   nibble u is in [0, 15]. Stored as Uint8Array [n * kPadded / 2], row-major.
//   symmetric:  u = clamp(roundHalfEven(f32(w / scale)), -8, 7) + 8; w ~= scale * (u - 8).
//               A group of zeros has scale 0 and u = 8.
//   asymmetric: u = clamp(roundHalfEven(f32(w / scale)) + zero, 0, 15); w ~= scale * (u - zero).
//               A group of zeros has scale 0, zero 0 and u = 0.
//   The quantiser chooses scale (and zero) per group by error search (lib/quant/quantize.ts):
//   symmetric scale = bf16(max |w| / d), d in 7 ... 9; asymmetric, with lo = min(min w, 0) and
//   hi = max(max w, 0), scale = bf16((hi - lo) * f / 15), f in 1 ... 0.8, and
//   zero = clamp(roundHalfEven(f32(-lo / scale)), 0, 15) or clamp(15 - roundHalfEven(f32(hi / scale)), 0, 15),
//   where bf16 rounds the float32 value to bfloat16 (roundToBf16: still stored as float32).
//   Any finite scale >= 0 and zero in [0, 15] is valid: the codes above are what the ABI fixes.
//   (Layers whose scales are all bfloat16 values run with 2-byte scales natively, exactly.)
// Scales: Float32Array [n * groups] (groups = kPadded / groupSize), row-major. Zero points
// (asymmetric int4 only): Uint8Array [n * groups].
//
// Activations:
//   'float' (weight-only): y = x . dequant(W)^T + b, accumulated in float32 in an order of the
//     backend's choosing (native and reference agree within float rounding).
//   'int8' (W8A8, dynamic): each input row x is quantised on the fly, symmetric per row:
//     sx = f32(max_p |x_p| / 127); xq_p = clamp(roundHalfEven(f32(x_p / sx)), -127, 127)
//     (a row of zeros: sx = 0, xq = 0). Then, per output j and group g, an exact int32 dot
//     product acc_g = sum_p xq_p * q_jp (int4: q = u - 8, or u - zero), and
//       y_j = f32(... f32(f32(f32(sx * scale_j0) * f32(acc_0)) + f32(f32(sx * scale_j1) * f32(acc_1))) ...)
//     summed over groups in order starting from the first term, then + bias_j (one f32 add), then
//     the activation. f32(acc) rounds the int32 to float32, nearest-even. Every step is one
//     float32 operation, so native and reference agree bit for bit up to the activation.
//
// Decisions where the text above was silent (issue #4, made with the TypeScript quantiser and
// reference, lib/quant/quantize.ts and lib/quant/reference.ts; loaders enforce them):
//   - f32(expr) evaluates expr exactly and rounds once to float32 (roundTiesToEven). For one
//     operation on float32 operands that is the IEEE float32 operation (Math.fround(a / b) in
//     JS). The one compound expression, the asymmetric f32((hi - lo) * f / 15), computes it in
//     float64 (lo <= 0 <= hi, so hi - lo cannot overflow there as a float32 subtraction could),
//     then rounds once. Only lib/quant/quantize.ts quantises weights.
//   - A scale of 0 means q = 0 for the whole group: also when the group is not all zeros but its
//     max |w| / 7 (or / 127, or (hi - lo) / 15) underflows to 0 (|w| of a few denormal ulps).
//     Symmetric int4 then stores u = 8, asymmetric u = 0 and zero = 0. Likewise sx = 0 means
//     xq = 0 for the row, also for a nonzero row whose max |x| / 127 underflows.
//   - xq_p uses a true float32 division x_p / sx (not x_p * (1 / sx), which rounds differently).
//   - W8A8 with a non-finite input (NaN or +-Infinity anywhere in the row): sx = NaN and xq = 0,
//     so every term f32(sx * scale) * f32(acc), and every y_j of the row, is NaN before the bias
//     add (then + bias, then the activation: relu maps NaN to 0). Note that a max computed as
//     std::max(m, |x|) skips NaN, so the check must look at every |x_p| <= FLT_MAX.
//   - The group sum starts from the first term itself (y = t_0, then y = f32(y + t_1), ...), and a
//     layer without bias adds a bias of +0 all the same (one f32 add): a sum of -0 (a t_0 of
//     f32(sx * scale) underflowed to 0, times a negative acc) therefore comes out +0 either way.
//     Bitwise agreement includes the sign of zero.
//   - int8 codes are in [-127, 127]; -128 never comes out of the quantiser and loaders reject it.
//   - Padding positions of int4 rows (p >= k) hold q = 0: u = 8 symmetric, u = zero asymmetric
//     (the quantiser pads with w = 0); loaders reject other padding nibbles. acc sums p < k only,
//     which is the same sum since padded q are 0 (and padded inputs are 0 in any case).
//   - int32 acc cannot overflow for int4 (|q| <= 15, groups <= 128) but can for int8 weights, whose
//     one group is the whole row: W8A8 with int8 weights needs inputs <= MAX_W8A8_INT8_INPUTS
//     (127 * 127 * k <= 2^31 - 1); wider layers are rejected with a RangeError.
//   - 'float' activations: dequant(W) is f32(scale * q) per weight. The reference accumulates
//     x . dequant(W) + b in float64 and rounds once per output; native accumulates in float32.
//   - Between layers (and after the input encoding) values are float32: each layer reads the
//     float32 outputs of the previous layer's activation.
//
// Input scales (optional, any format and activations): Float32Array [k], each finite and > 0.
// A layer with them reads x'_p = f32(x_p * inputScales_p) in place of x_p, and everything above
// applies to x' (W8A8 quantises x', weight-only multiplies x' by dequant(W)). The quantiser
// stores W'_jp = W_jp / inputScales_p, so W' x' = W x up to rounding: per-input equalisation,
// for layers whose input columns differ in scale by orders of magnitude (a first layer with the
// input standardisation folded in: a feature in metres next to one in millions), where one
// scale per output row would round every weight of the small columns to 0. The quantiser
// picks powers of two (lib/quant/quantize.ts: equalizationScales), so the division and the
// multiplication are exact for normal floats.

import { typedArrayLength } from '../errors.js';

export const QUANT_FORMATS = ['int8', 'int4'] as const;
export type QuantFormat = (typeof QUANT_FORMATS)[number];
export const QUANT_ACTIVATIONS = ['float', 'int8'] as const;
export type QuantActivations = (typeof QUANT_ACTIVATIONS)[number];
export const INT4_GROUP_SIZES = [32, 64, 128] as const;
/** Widest int8-weight layer W8A8 accepts: 127 * 127 * inputs must fit an int32 accumulator. */
export const MAX_W8A8_INT8_INPUTS = Math.floor((2 ** 31 - 1) / (127 * 127)); // 133144

/** One quantised Linear layer (+ activation), as both backends and the files hold it. */
export interface QuantLayer {
  inputs: number; // k
  outputs: number; // n
  format: QuantFormat;
  /** int4: 32, 64 or 128. int8: equals inputs (one group per row). */
  groupSize: number;
  /** int8: always true. */
  symmetric: boolean;
  /** int8: Int8Array [n * k]. int4: Uint8Array [n * kPadded / 2]. */
  weights: Int8Array | Uint8Array;
  /** [n * groups] */
  scales: Float32Array;
  /** Asymmetric int4 only: [n * groups], each in [0, 15]. Otherwise null. */
  zeros: Uint8Array | null;
  bias: Float32Array | null;
  /** Optional [inputs]: the layer reads f32(x_p * inputScales_p) (see above). Absent or null: none. */
  inputScales?: Float32Array | null;
  activation: number; // index into ACTIVATIONS (lib/backend/types.ts)
  alpha: number; // leaky_relu slope
}

export function paddedInputs(layer: Pick<QuantLayer, 'inputs' | 'groupSize'>): number {
  return Math.ceil(layer.inputs / layer.groupSize) * layer.groupSize;
}

export function groupsPerRow(layer: Pick<QuantLayer, 'inputs' | 'groupSize'>): number {
  return Math.ceil(layer.inputs / layer.groupSize);
}

/** Bytes of weights + scales + zero points + bias: what the layer costs to store and to read. */
export function layerBytes(layer: QuantLayer): number {
  return layer.weights.byteLength + layer.scales.byteLength + (layer.zeros?.byteLength ?? 0) + (layer.bias?.byteLength ?? 0) +
    (layer.inputScales?.byteLength ?? 0);
}

type CodeArray = Int8Array | Uint8Array | Float32Array;

// A copy made by the engine alone: a fresh array of the intrinsic type, filled by set() from the
// source's own bytes. Not slice(), which a subclass or a Symbol.species constructor may replace
// with code of the caller's (that could change the source after it was checked).
function ownCopy<T extends CodeArray>(Type: new (length: number) => T, source: T): T {
  const copy = new Type(typedArrayLength(source));
  copy.set(source);
  return copy;
}

/** A deep copy: a model keeps layers that the caller can no longer change under it. */
export function copyLayer(layer: QuantLayer): QuantLayer {
  return {
    ...layer,
    weights: layer.format === 'int8' ? ownCopy(Int8Array, layer.weights as Int8Array) : ownCopy(Uint8Array, layer.weights as Uint8Array),
    scales: ownCopy(Float32Array, layer.scales),
    zeros: layer.zeros ? ownCopy(Uint8Array, layer.zeros) : null,
    bias: layer.bias ? ownCopy(Float32Array, layer.bias) : null,
    inputScales: layer.inputScales ? ownCopy(Float32Array, layer.inputScales) : null,
  };
}

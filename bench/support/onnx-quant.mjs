// Quantised Linear layers for the quant bench (bench/quant.mjs): a JavaScript twin of mlpkit's
// layer format (lib/quant/format.ts: quantise, dequantise, the W8A8 float order), and in-memory
// ONNX models of one Linear layer y = x W^T + b for onnxruntime's quantised operators, built from
// those same quantised bytes:
//
//   int8  : DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul (x_scale * w_scale[n]) -> Add b
//   int4  : com.microsoft MatMulNBits (bits 4, block_size 32/64/128, accuracy_level 0 or 4)
//   float : Gemm (transB), from onnx-model.mjs
//
// MatMulNBits layout (onnxruntime docs/ContribOperators.md, com.microsoft.MatMulNBits):
//   B            uint8 [N, k_blocks, blob_size], k_blocks = ceil(K / block_size),
//                blob_size = block_size * bits / 8; along K, value 2i in the low nibble of byte i
//                of a block and value 2i + 1 in the high nibble.
//   scales       float [N, k_blocks]
//   zero_points  optional; packed uint8 [N, ceil(k_blocks * bits / 8)], the same nibble order;
//                absent: 2^(bits - 1), i.e. 8 for 4 bits.
//   bias         optional float [N] (input 5; inputs 3 and 4, zero_points and the deprecated
//                g_idx, are passed as '' when absent).
//   dequantised weight = (q - zero_point) * scale.
// mlpkit's int4 rows (format.ts) are the same bytes: a row holds kPadded / 2 bytes, group after
// group, low nibble first, and symmetric weights are scale * (u - 8). So B is mlpkit's weight
// buffer as is, scales are mlpkit's scales, and the default zero point 8 is mlpkit's symmetric
// offset; asymmetric layers add their zero points packed two per byte.

import { bytesField, encode, intField, message, stringField } from './protobuf.mjs';
import { mlpToOnnx } from './onnx-model.mjs';

// ---- mlpkit's layer format in JavaScript (lib/quant/format.ts) -------------------------------

const f32 = Math.fround;

/** Round to nearest, ties to even (format.ts roundHalfEven). */
export function roundHalfEven(v) {
  const floor = Math.floor(v);
  const d = v - floor;
  if (d < 0.5) return floor;
  if (d > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

const clamp = (v, lo, hi) => (v < lo ? lo : v > hi ? hi : v);

const bfView = new DataView(new ArrayBuffer(4));
/** f32(v) rounded to bfloat16, to nearest, ties to even, as a number (format.ts / rounding.ts roundToBf16). */
export function bf16(v) {
  bfView.setFloat32(0, v);
  const bits = bfView.getUint32(0);
  const low = bits & 0xffff;
  let high = bits >>> 16;
  if ((high & 0x7f80) !== 0x7f80 && (low > 0x8000 || (low === 0x8000 && (high & 1) === 1))) high += 1;
  bfView.setUint32(0, high * 65536);
  return bfView.getFloat32(0);
}

/**
 * quantizeLinear(weight [n*k] row-major, bias | null, n, k, { format, groupSize, symmetric })
 * -> a QuantLayer (format.ts) without the activation fields.
 */
export function quantizeLinear(weight, bias, n, k, { format, groupSize = 32, symmetric = true }) {
  if (weight.length !== n * k) throw new RangeError(`quantizeLinear: weight has ${weight.length} values, expected ${n} x ${k}`);
  if (format === 'int8') return quantizeInt8(weight, bias, n, k);
  if (format === 'int4') return quantizeInt4(weight, bias, n, k, groupSize, symmetric);
  throw new RangeError(`quantizeLinear: unknown format '${format}'`);
}

function quantizeInt8(weight, bias, n, k) {
  const q = new Int8Array(n * k);
  const scales = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const row = j * k;
    let amax = 0;
    for (let p = 0; p < k; p++) amax = Math.max(amax, Math.abs(weight[row + p]));
    const scale = f32(amax / 127);
    scales[j] = scale;
    if (scale === 0) continue;
    for (let p = 0; p < k; p++) q[row + p] = clamp(roundHalfEven(f32(weight[row + p] / scale)), -127, 127);
  }
  return { inputs: k, outputs: n, format: 'int8', groupSize: k, symmetric: true, weights: q, scales, zeros: null, bias };
}

// int4 scales by search (lib/quant/quantize.ts): the candidates below (each rounded to
// bfloat16), scored by the group's
// squared rounding error in float64 (w * (1 / s) rounded half to even by adding and subtracting
// 1.5 * 2^52); the least wins, ties keep the earlier one.
const SHIFT = 6755399441055744;
function squaredError(weight, row, p0, p1, s, z, qmin, qmax) {
  const inv = 1 / s;
  let e = 0;
  for (let p = p0; p < p1; p++) {
    const w = weight[row + p];
    const d = w - s * (clamp(w * inv + SHIFT - SHIFT + z, qmin, qmax) - z);
    e += d * d;
  }
  return e;
}

function searchSymmetric(weight, row, p0, p1) {
  let amax = 0;
  for (let p = p0; p < p1; p++) amax = Math.max(amax, Math.abs(weight[row + p]));
  let best = 0;
  let bestError = Infinity;
  for (const d of [7, 7.5, 8, 8.5, 9]) {
    const s = bf16(amax / d);
    if (s === 0) break;
    const e = squaredError(weight, row, p0, p1, s, 0, -8, 7);
    if (e < bestError) [best, bestError] = [s, e];
  }
  return best;
}

function searchAsymmetric(weight, row, p0, p1) {
  let lo = 0;
  let hi = 0;
  for (let p = p0; p < p1; p++) {
    lo = Math.min(lo, weight[row + p]);
    hi = Math.max(hi, weight[row + p]);
  }
  let best = { scale: 0, zero: 0 };
  let bestError = Infinity;
  for (const f of [1, 0.95, 0.9, 0.85, 0.8]) {
    const s = bf16(((hi - lo) * f) / 15);
    if (s === 0) break;
    for (const z of [clamp(roundHalfEven(f32(-lo / s)), 0, 15), clamp(15 - roundHalfEven(f32(hi / s)), 0, 15)]) {
      const e = squaredError(weight, row, p0, p1, s, z, 0, 15);
      if (e < bestError) [best, bestError] = [{ scale: s, zero: z }, e];
    }
  }
  return best;
}

function quantizeInt4(weight, bias, n, k, groupSize, symmetric) {
  if (![32, 64, 128].includes(groupSize)) throw new RangeError(`quantizeLinear: int4 group size must be 32, 64 or 128, got ${groupSize}`);
  const groups = Math.ceil(k / groupSize);
  const kPadded = groups * groupSize;
  const rowBytes = kPadded / 2;
  const packed = new Uint8Array(n * rowBytes);
  const scales = new Float32Array(n * groups);
  const zeros = symmetric ? null : new Uint8Array(n * groups);
  const u = new Uint8Array(kPadded);
  for (let j = 0; j < n; j++) {
    const row = j * k;
    for (let g = 0; g < groups; g++) {
      const p0 = g * groupSize;
      const p1 = Math.min(k, p0 + groupSize);
      let scale;
      let zero;
      if (symmetric) {
        scale = searchSymmetric(weight, row, p0, p1);
        zero = 8;
        for (let p = p0; p < p0 + groupSize; p++) {
          const w = p < k ? weight[row + p] : 0; // the padding of the last group is zero weights
          u[p] = scale === 0 ? 8 : clamp(roundHalfEven(f32(w / scale)), -8, 7) + 8;
        }
      } else {
        ({ scale, zero } = searchAsymmetric(weight, row, p0, p1));
        for (let p = p0; p < p0 + groupSize; p++) {
          const w = p < k ? weight[row + p] : 0;
          u[p] = scale === 0 ? 0 : clamp(roundHalfEven(f32(w / scale)) + zero, 0, 15);
        }
        zeros[j * groups + g] = zero;
      }
      scales[j * groups + g] = scale;
    }
    const out = j * rowBytes;
    for (let b = 0; b < rowBytes; b++) packed[out + b] = u[2 * b] | (u[2 * b + 1] << 4);
  }
  return { inputs: k, outputs: n, format: 'int4', groupSize, symmetric, weights: packed, scales, zeros, bias };
}

export const groupsPerRow = (layer) => Math.ceil(layer.inputs / layer.groupSize);
export const paddedInputs = (layer) => groupsPerRow(layer) * layer.groupSize;

/** Bytes a call reads for the weights: quantised values + scales + zero points (format.ts layerBytes without the bias). */
export function weightBytes(layer) {
  return layer.weights.byteLength + layer.scales.byteLength + (layer.zeros?.byteLength ?? 0);
}

const isBf16Value = (v) => bf16(v) === v;

/**
 * Bytes mlpkit's native kernels read per call for this layer's weights, in the layout they
 * repack it into (native/core/quant/qlayer.h): an int4 W8A8 layer whose scales are all bfloat16
 * values keeps them in 2 bytes; zero points are 4-byte lanes, read by asymmetric W8A8 layers
 * and by every weight-only int4 layer; int8 W8A8 also reads a 4-byte weight sum per output.
 */
export function nativeWeightBytes(layer, activations) {
  const w8a8 = activations === 'int8';
  if (layer.format === 'int8') return layer.weights.byteLength + layer.scales.length * 4 + (w8a8 ? layer.outputs * 4 : 0);
  const bf16Scales = w8a8 && layer.scales.every(isBf16Value);
  // Zero points are 4-byte lanes; symmetric layers' (all 8) are not read by the x86 kernels.
  const zeros = layer.symmetric ? 0 : layer.scales.length * 4;
  return layer.weights.byteLength + layer.scales.length * (bf16Scales ? 2 : 4) + zeros;
}

/** The integer code of weight (j, p), zero point removed: int8 q, int4 u - 8 or u - zero. */
function codeReader(layer) {
  const { inputs: k, weights } = layer;
  if (layer.format === 'int8') return (j, p) => weights[j * k + p];
  const groups = groupsPerRow(layer);
  const rowBytes = paddedInputs(layer) / 2;
  const gs = layer.groupSize;
  return (j, p) => {
    const byte = weights[j * rowBytes + (p >> 1)];
    const u = p & 1 ? byte >> 4 : byte & 15;
    return u - (layer.zeros ? layer.zeros[j * groups + Math.floor(p / gs)] : 8);
  };
}

/** Dequantised weights [n*k] (float32 values scale * code, as the kernels see them). */
export function dequantize(layer) {
  const { inputs: k, outputs: n, groupSize } = layer;
  const groups = groupsPerRow(layer);
  const code = codeReader(layer);
  const w = new Float32Array(n * k);
  for (let j = 0; j < n; j++) {
    for (let p = 0; p < k; p++) w[j * k + p] = f32(layer.scales[j * groups + Math.floor(p / groupSize)] * code(j, p));
  }
  return w;
}

/** y = x W^T + b accumulated in float64 (the float reference of every check). */
export function linearF64(x, batch, weight, bias, n, k) {
  const y = new Float32Array(batch * n);
  for (let r = 0; r < batch; r++) {
    const xr = r * k;
    for (let j = 0; j < n; j++) {
      const wr = j * k;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let p = 0;
      for (; p + 3 < k; p += 4) {
        s0 += x[xr + p] * weight[wr + p];
        s1 += x[xr + p + 1] * weight[wr + p + 1];
        s2 += x[xr + p + 2] * weight[wr + p + 2];
        s3 += x[xr + p + 3] * weight[wr + p + 3];
      }
      for (; p < k; p++) s0 += x[xr + p] * weight[wr + p];
      y[r * n + j] = s0 + s1 + s2 + s3 + (bias ? bias[j] : 0);
    }
  }
  return y;
}

/**
 * W8A8 / W4A8 as format.ts defines it, every float step in float32: symmetric per-row int8 x,
 * exact int32 dot products per group, y_j = sum_g f32(f32(sx * scale_jg) * f32(acc_g)) in group
 * order, + bias. No activation (the caller applies it).
 */
export function linearW8A8(x, batch, layer) {
  const { inputs: k, outputs: n, groupSize, bias } = layer;
  const groups = groupsPerRow(layer);
  const codes = new Int32Array(n * k); // unpacked once: the loop below is the hot one
  const code = codeReader(layer);
  for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) codes[j * k + p] = code(j, p);
  const y = new Float32Array(batch * n);
  const xq = new Int32Array(k);
  for (let r = 0; r < batch; r++) {
    let amax = 0;
    for (let p = 0; p < k; p++) amax = Math.max(amax, Math.abs(x[r * k + p]));
    const sx = f32(amax / 127);
    for (let p = 0; p < k; p++) xq[p] = sx === 0 ? 0 : clamp(roundHalfEven(f32(x[r * k + p] / sx)), -127, 127);
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let g = 0; g < groups; g++) {
        let acc = 0;
        const p1 = Math.min(k, (g + 1) * groupSize);
        for (let p = g * groupSize; p < p1; p++) acc += xq[p] * codes[j * k + p];
        const term = f32(f32(sx * layer.scales[j * groups + g]) * f32(acc));
        sum = g === 0 ? term : f32(sum + term);
      }
      y[r * n + j] = bias ? f32(sum + bias[j]) : sum;
    }
  }
  return y;
}

/**
 * What the int8 ONNX model computes, emulated: DynamicQuantizeLinear (asymmetric uint8 over the
 * whole tensor, ONNX's definition), MatMulInteger with the zero points, then the float scaling.
 * The integer part is exact; ORT may order the final float products differently.
 */
export function linearOrtInt8(x, batch, layer) {
  const { inputs: k, outputs: n, bias } = layer;
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < batch * k; i++) {
    lo = Math.min(lo, x[i]);
    hi = Math.max(hi, x[i]);
  }
  const xs = f32(f32(hi - lo) / 255);
  const xz = xs === 0 ? 0 : clamp(roundHalfEven(f32(0 - f32(lo / xs))), 0, 255);
  const xq = new Int32Array(batch * k);
  for (let i = 0; i < batch * k; i++) xq[i] = xs === 0 ? 0 : clamp(roundHalfEven(f32(x[i] / xs)) + xz, 0, 255) - xz;
  const y = new Float32Array(batch * n);
  for (let r = 0; r < batch; r++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += xq[r * k + p] * layer.weights[j * k + p];
      const v = f32(f32(acc) * f32(xs * layer.scales[j]));
      y[r * n + j] = bias ? f32(v + bias[j]) : v;
    }
  }
  return y;
}

// ---- ONNX protobuf pieces (onnx/onnx.proto field numbers) ------------------------------------

const IR_VERSION = 8;
const OPSET = 17;
const MS_DOMAIN = 'com.microsoft';
const MS_OPSET = 1;
const DTYPE = { float: 1, uint8: 2, int8: 3, int32: 6 }; // TensorProto.DataType
const ATTRIBUTE_INT = 2;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Little-endian bytes of a typed array (ONNX raw_data is little-endian whatever the host). */
function rawBytes(values) {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (LITTLE_ENDIAN || values.BYTES_PER_ELEMENT === 1) return bytes;
  const out = new Uint8Array(bytes.length);
  const w = values.BYTES_PER_ELEMENT;
  for (let i = 0; i < bytes.length; i += w) for (let b = 0; b < w; b++) out[i + b] = bytes[i + w - 1 - b];
  return out;
}

/** TensorProto initializer: dims (empty for a scalar), data_type, name, raw_data. */
function tensor(name, dtype, dims, values) {
  return message(
    dims.map((d) => intField(1, d)),
    intField(2, DTYPE[dtype]),
    stringField(8, name),
    bytesField(9, rawBytes(values)),
  );
}

/** ValueInfoProto of a float tensor [batch, width] with a symbolic batch dimension. */
function batchedFloat(name, width) {
  const dims = message(bytesField(1, stringField(2, 'batch')), bytesField(1, intField(1, width)));
  const tensorType = message(intField(1, DTYPE.float), bytesField(2, dims));
  return message(stringField(1, name), bytesField(2, bytesField(1, tensorType)));
}

function intAttribute(name, value) {
  return message(stringField(1, name), intField(3, value), intField(20, ATTRIBUTE_INT));
}

/** NodeProto; '' in inputs is an absent optional input. */
function node(opType, name, inputs, outputs, { attributes = [], domain } = {}) {
  return message(
    inputs.map((s) => stringField(1, s)),
    outputs.map((s) => stringField(2, s)),
    stringField(3, name),
    stringField(4, opType),
    attributes.map((a) => bytesField(5, a)),
    domain === undefined ? undefined : stringField(7, domain),
  );
}

function model({ nodes, initializers, k, n, microsoft = false }) {
  const graph = message(
    nodes.map((nd) => bytesField(1, nd)),
    stringField(2, 'mlpkit_quant_linear'),
    initializers.map((t) => bytesField(5, t)),
    bytesField(11, batchedFloat('x', k)),
    bytesField(12, batchedFloat('y', n)),
  );
  return encode(message(
    intField(1, IR_VERSION),
    stringField(2, 'mlpkit-bench'),
    bytesField(7, graph),
    bytesField(8, message(stringField(1, ''), intField(2, OPSET))),
    microsoft ? bytesField(8, message(stringField(1, MS_DOMAIN), intField(2, MS_OPSET))) : undefined,
  ));
}

// ---- the three models --------------------------------------------------------------------------

/** Float baseline: one Gemm (transB), the exporter the peer bench uses. */
export function gemmOnnx(weight, bias, n, k) {
  return mlpToOnnx(
    { inputs: k, encoding: { type: 'identity' }, layers: [{ units: n, activation: 'none' }] },
    [{ inputs: k, outputs: n, weight, bias }],
  );
}

/**
 * int8 W8A8 with onnxruntime's own dynamic activation quantisation, from an mlpkit int8 layer:
 * the int8 codes transposed to MatMulInteger's B [k, n], w_zero 0, w_scale per output channel.
 */
export function matMulIntegerOnnx(layer) {
  if (layer.format !== 'int8') throw new Error(`matMulIntegerOnnx: expected an int8 layer, got ${layer.format}`);
  const { inputs: k, outputs: n } = layer;
  const bt = new Int8Array(k * n);
  for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) bt[p * n + j] = layer.weights[j * k + p];
  const initializers = [
    tensor('w_q', 'int8', [k, n], bt),
    tensor('w_zero', 'int8', [], new Int8Array(1)),
    tensor('w_scale', 'float', [n], layer.scales),
  ];
  const last = layer.bias ? 'y_nobias' : 'y';
  const nodes = [
    node('DynamicQuantizeLinear', 'quantize_x', ['x'], ['x_q', 'x_scale', 'x_zero']),
    node('MatMulInteger', 'matmul', ['x_q', 'w_q', 'x_zero', 'w_zero'], ['acc']),
    node('Cast', 'acc_float', ['acc'], ['acc_f'], { attributes: [intAttribute('to', DTYPE.float)] }),
    node('Mul', 'scale_product', ['x_scale', 'w_scale'], ['xw_scale']),
    node('Mul', 'rescale', ['acc_f', 'xw_scale'], [last]),
  ];
  if (layer.bias) {
    initializers.push(tensor('bias', 'float', [n], layer.bias));
    nodes.push(node('Add', 'add_bias', [last, 'bias'], ['y']));
  }
  return model({ nodes, initializers, k, n });
}

/** Zero points packed for MatMulNBits: uint8 [n, ceil(groups / 2)], low nibble first. */
function packZeroPoints(zeros, n, groups) {
  const rowBytes = Math.ceil(groups / 2);
  const out = new Uint8Array(n * rowBytes);
  for (let j = 0; j < n; j++) {
    for (let g = 0; g < groups; g++) out[j * rowBytes + (g >> 1)] |= zeros[j * groups + g] << (g & 1 ? 4 : 0);
  }
  return out;
}

/**
 * int4 through com.microsoft MatMulNBits from an mlpkit int4 layer (same bytes, see the top of
 * this file). accuracyLevel 0: float activations; 4: activations quantised to int8 per block
 * inside the operator.
 */
export function matMulNBitsOnnx(layer, { accuracyLevel = 0 } = {}) {
  if (layer.format !== 'int4') throw new Error(`matMulNBitsOnnx: expected an int4 layer, got ${layer.format}`);
  const { inputs: k, outputs: n, groupSize } = layer;
  const groups = groupsPerRow(layer);
  const blob = groupSize / 2;
  const initializers = [
    tensor('w_q4', 'uint8', [n, groups, blob], layer.weights),
    tensor('w_scales', 'float', [n, groups], layer.scales),
  ];
  const inputs = ['x', 'w_q4', 'w_scales', '', '', ''];
  if (layer.zeros) {
    initializers.push(tensor('w_zero_points', 'uint8', [n, Math.ceil(groups / 2)], packZeroPoints(layer.zeros, n, groups)));
    inputs[3] = 'w_zero_points';
  }
  if (layer.bias) {
    initializers.push(tensor('bias', 'float', [n], layer.bias));
    inputs[5] = 'bias';
  }
  while (inputs[inputs.length - 1] === '') inputs.pop();
  const attributes = [
    intAttribute('K', k),
    intAttribute('N', n),
    intAttribute('bits', 4),
    intAttribute('block_size', groupSize),
    intAttribute('accuracy_level', accuracyLevel),
  ];
  const nodes = [node('MatMulNBits', 'matmul_nbits', inputs, ['y'], { attributes, domain: MS_DOMAIN })];
  return model({ nodes, initializers, k, n, microsoft: true });
}

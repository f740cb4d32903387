// Checks that a QuantLayer is one lib/quant/format.ts allows, before any kernel reads it: a
// layer a user built by hand (qmatmul) and a layer read from a file go through the same value
// checks, so a bad scale or a stray padding nibble is an error here, never a wrong answer or an
// out-of-bounds read in a kernel.

import { ACTIVATIONS } from '../backend/types.js';
import { types } from 'node:util';
import { describe, rangeError, typeError, typedArrayLength } from '../errors.js';
import { expectObject, rejectUnknownKeys } from '../validate.js';
import { nibbleAt } from './codes.js';
import { INT4_GROUP_SIZES, QUANT_FORMATS, copyLayer, groupsPerRow, paddedInputs, type QuantLayer } from './format.js';

/** Widest layer a model may have (lib/spec.ts uses the same bound). */
export const MAX_QUANT_WIDTH = 1 << 20;

/** A value problem in one field of a layer; the caller names the layer (or tensor) in front. */
export interface LayerProblem {
  field: 'weights' | 'scales' | 'zeros' | 'inputScales' | 'bias';
  message: string;
}

/**
 * The first value that breaks the format, given that shapes and array types are right:
 * int8 codes in [-127, 127] (-128 would break the kernels' sign tricks), scales finite and
 * >= 0, zero points <= 15, int4 padding nibbles that decode to q = 0, and finite biases.
 */
export function layerValueProblem(layer: QuantLayer): LayerProblem | null {
  const n = layer.outputs;
  const groups = groupsPerRow(layer);
  if (layer.inputScales) {
    for (let p = 0; p < layer.inputScales.length; p++) {
      const s = layer.inputScales[p];
      if (!(s > 0 && s < Infinity)) return { field: 'inputScales', message: `input scale [${p}] is ${s}; input scales must be finite and > 0` };
    }
  }
  if (layer.bias) {
    // As Mlp.load refuses non-finite parameters: a NaN bias (a flipped bit in a file) would
    // otherwise load and turn every output of its unit into NaN.
    for (let j = 0; j < layer.bias.length; j++) {
      const b = layer.bias[j];
      if (!Number.isFinite(b)) return { field: 'bias', message: `bias [${j}] is ${b}; biases must be finite` };
    }
  }
  for (let i = 0; i < layer.scales.length; i++) {
    const s = layer.scales[i];
    if (!(s >= 0 && s < Infinity)) {
      return { field: 'scales', message: `scale [${Math.floor(i / groups)}, ${i % groups}] is ${s}; scales must be finite and >= 0` };
    }
  }
  if (layer.format === 'int8') {
    // Buffer.indexOf is memchr: 1 MB of codes in 10 us, where Int8Array.indexOf took 310 us
    // (and a JavaScript loop ~10x that), a cost every load, fromLayers and qmatmul pays.
    const w = layer.weights as Int8Array;
    const i = Buffer.from(w.buffer, w.byteOffset, w.byteLength).indexOf(0x80);
    if (i >= 0) return { field: 'weights', message: `value -128 at [${Math.floor(i / layer.inputs)}, ${i % layer.inputs}] is outside [-127, 127]` };
    return null;
  }
  if (layer.zeros) {
    for (let i = 0; i < layer.zeros.length; i++) {
      if (layer.zeros[i] > 15) {
        return { field: 'zeros', message: `zero point [${Math.floor(i / groups)}, ${i % groups}] is ${layer.zeros[i]}; zero points must be in [0, 15]` };
      }
    }
  }
  const kp = paddedInputs(layer);
  for (let j = 0; j < n; j++) {
    const zero = layer.zeros ? layer.zeros[j * groups + groups - 1] : 8;
    for (let p = layer.inputs; p < kp; p++) {
      const u = nibbleAt(layer.weights as Uint8Array, kp >> 1, j, p);
      if (u !== zero) {
        return { field: 'weights', message: `padding nibble [${j}, ${p}] is ${u}, expected ${zero} (q = 0) past input ${layer.inputs}` };
      }
    }
  }
  return null;
}

const LAYER_KEYS: readonly (keyof QuantLayer)[] = [
  'inputs', 'outputs', 'format', 'groupSize', 'symmetric', 'weights', 'scales', 'zeros', 'bias', 'inputScales', 'activation', 'alpha',
];

// Real typed arrays only (util.types: not a Proxy of one, not an object inheriting from the
// prototype), with the length read through the intrinsic getter.
const IS_ARRAY_OF = { Int8Array: types.isInt8Array, Uint8Array: types.isUint8Array, Float32Array: types.isFloat32Array };

function expectCount(name: string, value: unknown, kind: keyof typeof IS_ARRAY_OF, length: number, shape: string): void {
  if (!IS_ARRAY_OF[kind](value)) throw typeError(`Expected a ${kind} for ${name} but received ${describe(value)}`);
  const actual = typedArrayLength(value as Int8Array);
  if ((value as Int8Array).length !== actual) throw typeError(`Expected a ${kind} for ${name} but received one whose length property is not its element count`);
  if (actual !== length) throw rangeError(`Expected ${name} to hold ${shape} = ${length} values but received ${actual}`);
}

/**
 * The layer, checked field by field (TypeError for wrong types, RangeError for wrong values).
 * Returns a snapshot: each field is read once, so a getter cannot show the check one value and
 * the kernels another. Callers use the returned layer, not the one they passed. With `copy`, its
 * arrays are the layer's own copies (copyLayer), made before the values are checked, so what
 * was checked is what is kept whatever the caller changes afterwards.
 */
export function checkQuantLayer(value: unknown, name = 'layer', options: { copy?: boolean } = {}): QuantLayer {
  if (typeof value !== 'object' || value === null) throw typeError(`Expected a QuantLayer object for ${name} but received ${describe(value)}`);
  const o = expectObject(name, value); // refuses arrays and revoked Proxies
  // A misspelt field (inputscales, input_scales as the file names it) would otherwise be ignored
  // and the layer run without it.
  rejectUnknownKeys(name, o, LAYER_KEYS, 'a QuantLayer');
  const layer = {
    inputs: o.inputs, outputs: o.outputs, format: o.format, groupSize: o.groupSize, symmetric: o.symmetric,
    weights: o.weights, scales: o.scales, zeros: o.zeros, bias: o.bias, activation: o.activation, alpha: o.alpha,
    inputScales: o.inputScales ?? null,
  } as QuantLayer;
  for (const key of ['inputs', 'outputs'] as const) {
    const v = layer[key];
    if (typeof v !== 'number') throw typeError(`Expected an integer between 1 and ${MAX_QUANT_WIDTH} for ${name}.${key} but received ${describe(v)}`);
    if (!Number.isInteger(v) || v < 1 || v > MAX_QUANT_WIDTH) {
      throw rangeError(`Expected an integer between 1 and ${MAX_QUANT_WIDTH} for ${name}.${key} but received ${describe(v)}`);
    }
  }
  if (typeof layer.format !== 'string') {
    throw typeError(`Expected one of ${QUANT_FORMATS.map((f) => `'${f}'`).join(', ')} for ${name}.format but received ${describe(layer.format)}`);
  }
  if (!(QUANT_FORMATS as readonly unknown[]).includes(layer.format)) {
    throw rangeError(`Expected one of ${QUANT_FORMATS.map((f) => `'${f}'`).join(', ')} for ${name}.format but received ${describe(layer.format)}`);
  }
  const { inputs: k, outputs: n } = layer;
  if (layer.format === 'int8') {
    if (layer.groupSize !== k) throw rangeError(`Expected ${name}.groupSize to equal inputs (${k}) for int8 weights but received ${describe(layer.groupSize)}`);
    if (layer.symmetric !== true) throw rangeError(`Expected ${name}.symmetric to be true for int8 weights but received ${describe(layer.symmetric)}`);
    expectCount(`${name}.weights`, layer.weights, 'Int8Array', n * k, `outputs x inputs = ${n} x ${k}`);
  } else {
    if (typeof layer.groupSize !== 'number') {
      throw typeError(`Expected one of ${INT4_GROUP_SIZES.join(', ')} for ${name}.groupSize but received ${describe(layer.groupSize)}`);
    }
    if (!(INT4_GROUP_SIZES as readonly unknown[]).includes(layer.groupSize)) {
      throw rangeError(`Expected one of ${INT4_GROUP_SIZES.join(', ')} for ${name}.groupSize but received ${describe(layer.groupSize)}`);
    }
    if (typeof layer.symmetric !== 'boolean') throw typeError(`Expected a boolean for ${name}.symmetric but received ${describe(layer.symmetric)}`);
    const kp = paddedInputs(layer);
    expectCount(`${name}.weights`, layer.weights, 'Uint8Array', (n * kp) / 2, `outputs x paddedInputs / 2 = ${n} x ${kp} / 2`);
  }
  const groups = groupsPerRow(layer);
  expectCount(`${name}.scales`, layer.scales, 'Float32Array', n * groups, `outputs x groups = ${n} x ${groups}`);
  if (layer.format === 'int4' && !layer.symmetric) {
    expectCount(`${name}.zeros`, layer.zeros, 'Uint8Array', n * groups, `outputs x groups = ${n} x ${groups}`);
  } else if (layer.zeros !== null) {
    throw typeError(`Expected null for ${name}.zeros (zero points belong to asymmetric int4 only) but received ${describe(layer.zeros)}`);
  }
  if (layer.bias === undefined) throw typeError(`Expected a Float32Array or null (no bias) for ${name}.bias but received undefined`);
  if (layer.bias !== null) expectCount(`${name}.bias`, layer.bias, 'Float32Array', n, 'outputs');
  if (layer.inputScales !== null) expectCount(`${name}.inputScales`, layer.inputScales, 'Float32Array', k, 'inputs');
  if (typeof layer.activation !== 'number') {
    const index = (ACTIVATIONS as readonly unknown[]).indexOf(layer.activation);
    const hint = index >= 0 ? ` (a layer holds the index: ACTIVATIONS.indexOf('${String(layer.activation)}') = ${index})` : '';
    throw typeError(`Expected an activation index between 0 and ${ACTIVATIONS.length - 1} for ${name}.activation but received ${describe(layer.activation)}${hint}`);
  }
  if (!Number.isInteger(layer.activation) || layer.activation < 0 || layer.activation >= ACTIVATIONS.length) {
    throw rangeError(`Expected an activation index between 0 and ${ACTIVATIONS.length - 1} for ${name}.activation but received ${describe(layer.activation)}`);
  }
  if (typeof layer.alpha !== 'number') throw typeError(`Expected a finite number for ${name}.alpha but received ${describe(layer.alpha)}`);
  if (!Number.isFinite(layer.alpha)) {
    throw rangeError(`Expected a finite number for ${name}.alpha but received ${describe(layer.alpha)}`);
  }
  const checked = options.copy ? copyLayer(layer) : layer;
  const problem = layerValueProblem(checked);
  if (problem) throw rangeError(`${name}.${problem.field}: ${problem.message}`);
  return checked;
}

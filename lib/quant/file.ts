// A quantised model as safetensors tensors and back. Layout (also in docs/QUANTIZATION.md):
//
//   layers.<i>.qweight  int8: I8 [outputs, inputs]; int4: U8 [outputs, kPadded / 2], two codes
//                       per byte (lib/quant/format.ts: low nibble first, rows padded to whole groups)
//   layers.<i>.scales   F32 [outputs, groups]
//   layers.<i>.zeros    U8 [outputs, groups], asymmetric int4 only
//   layers.<i>.bias     F32 [outputs], layers with a bias only
//   layers.<i>.input_scales  F32 [inputs], equalised layers only (format.ts: input scales)
//   metadata 'mlpkit.quant' = JSON {
//     version: 1, inputs, encoding: { type: 'identity' } | { type: 'frequency', octaves, includeInput },
//     activations: 'float' | 'int8',                      (what was asked for the whole model)
//     layers: [{ inputs, outputs, format: 'int8' | 'int4', groupSize, symmetric,
//                activation: <name>, alpha, bias: boolean,
//                activations: 'float' | 'int8',           (what this layer runs; optional, default above)
//                inputScales: boolean }]                  (optional, default false)
//   }
//   plus 'mlpkit.version' and format: 'pt', as float model files have.
//
// Loading checks every field of the metadata and every tensor's dtype and shape against it, then
// the values (lib/quant/check.ts), and throws FileFormatError naming the tensor and the problem.

import { ACTIVATIONS, type ActivationName } from '../backend/types.js';
import { FileFormatError } from '../errors.js';
import { QUANT_METADATA_KEY, SPARSE_METADATA_KEY, VERSION_METADATA_KEY } from '../io/model-file.js';
import { clip, parseFileJson, preview, type Dtype, type ParsedSafetensors, type ParsedTensor, type TensorInput } from '../io/safetensors.js';
import { normalizeEncoding, type NormalizedSpec } from '../spec.js';
import { layerValueProblem, MAX_QUANT_WIDTH } from './check.js';
import {
  INT4_GROUP_SIZES, MAX_W8A8_INT8_INPUTS, QUANT_ACTIVATIONS, QUANT_FORMATS, groupsPerRow, paddedInputs,
  type QuantActivations, type QuantFormat, type QuantLayer,
} from './format.js';

export const QUANT_FILE_VERSION = 1;
/** Most layers a quantised model may have (a file, or QuantizedMlp.fromLayers). */
export const MAX_QUANT_LAYERS = 1024;

/** Everything a quantised model is, apart from where it runs. */
export interface QuantModelDescription {
  inputs: number;
  encoding: NormalizedSpec['encoding'];
  /** What was asked for the whole model. */
  activations: QuantActivations;
  layers: QuantLayer[];
  /** What each layer runs (calibration may keep some layers on float activations). */
  layerActivations: QuantActivations[];
}

export function encodedInputs(inputs: number, encoding: NormalizedSpec['encoding']): number {
  if (encoding.type === 'identity') return inputs;
  return (encoding.includeInput ? inputs : 0) + 2 * encoding.octaves * inputs;
}

export function quantToTensors(
  model: QuantModelDescription,
  version: string,
): { tensors: Record<string, TensorInput>; metadata: Record<string, string> } {
  const tensors: Record<string, TensorInput> = {};
  const layers = model.layers.map((l, i) => {
    const groups = groupsPerRow(l);
    tensors[`layers.${i}.qweight`] = l.format === 'int8'
      ? { shape: [l.outputs, l.inputs], data: l.weights as Int8Array, dtype: 'I8' }
      : { shape: [l.outputs, paddedInputs(l) / 2], data: l.weights as Uint8Array, dtype: 'U8' };
    tensors[`layers.${i}.scales`] = { shape: [l.outputs, groups], data: l.scales, dtype: 'F32' };
    if (l.zeros) tensors[`layers.${i}.zeros`] = { shape: [l.outputs, groups], data: l.zeros, dtype: 'U8' };
    if (l.bias) tensors[`layers.${i}.bias`] = { shape: [l.outputs], data: l.bias, dtype: 'F32' };
    if (l.inputScales) tensors[`layers.${i}.input_scales`] = { shape: [l.inputs], data: l.inputScales, dtype: 'F32' };
    return {
      inputs: l.inputs,
      outputs: l.outputs,
      format: l.format,
      groupSize: l.groupSize,
      symmetric: l.symmetric,
      activation: ACTIVATIONS[l.activation],
      alpha: l.alpha,
      bias: l.bias !== null,
      activations: model.layerActivations[i],
      // Written only when set: files of unequalised models stay readable by earlier versions.
      ...(l.inputScales ? { inputScales: true } : {}),
    };
  });
  const meta = { version: QUANT_FILE_VERSION, inputs: model.inputs, encoding: model.encoding, activations: model.activations, layers };
  return { tensors, metadata: { format: 'pt', [QUANT_METADATA_KEY]: JSON.stringify(meta), [VERSION_METADATA_KEY]: version } };
}

function fail(message: string): never {
  throw new FileFormatError(`safetensors: ${message}`);
}

/** A metadata field: `check` returns the value or null when it is not acceptable. */
function field<T>(where: string, obj: Record<string, unknown>, key: string, what: string, check: (v: unknown) => T | null): T {
  const value = check(obj[key]);
  if (value === null) fail(`metadata '${QUANT_METADATA_KEY}': ${where}${key} must be ${what} but is ${obj[key] === undefined ? 'missing' : preview(obj[key])}`);
  return value;
}

const integerIn = (lo: number, hi: number) => (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi ? v : null);
const oneOf = <T extends string>(allowed: readonly T[]) => (v: unknown) => ((allowed as readonly unknown[]).includes(v) ? (v as T) : null);
const isBoolean = (v: unknown) => (typeof v === 'boolean' ? v : null);
const isObject = (v: unknown) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null);

interface LayerMeta {
  inputs: number;
  outputs: number;
  format: QuantFormat;
  groupSize: number;
  symmetric: boolean;
  activation: number;
  alpha: number;
  bias: boolean;
  activations: QuantActivations;
  inputScales: boolean;
}

function parseLayerMeta(raw: unknown, i: number, expectedInputs: number, modelActivations: QuantActivations): LayerMeta {
  const where = `layers[${i}].`;
  const o = isObject(raw) ?? fail(`metadata '${QUANT_METADATA_KEY}': layers[${i}] is not an object`);
  const inputs = field(where, o, 'inputs', `an integer in [1, ${MAX_QUANT_WIDTH}]`, integerIn(1, MAX_QUANT_WIDTH));
  if (inputs !== expectedInputs) fail(`metadata '${QUANT_METADATA_KEY}': layers[${i}] takes ${inputs} inputs but receives ${expectedInputs}`);
  const outputs = field(where, o, 'outputs', `an integer in [1, ${MAX_QUANT_WIDTH}]`, integerIn(1, MAX_QUANT_WIDTH));
  const format = field(where, o, 'format', `one of ${QUANT_FORMATS.join(', ')}`, oneOf(QUANT_FORMATS));
  const groupSize = format === 'int8'
    ? field(where, o, 'groupSize', `${inputs} (int8: one group per row)`, (v) => (v === inputs ? inputs : null))
    : field(where, o, 'groupSize', `one of ${INT4_GROUP_SIZES.join(', ')}`, (v) => ((INT4_GROUP_SIZES as readonly unknown[]).includes(v) ? (v as number) : null));
  const symmetric = format === 'int8'
    ? field(where, o, 'symmetric', 'true (int8 is symmetric)', (v) => (v === true ? true : null))
    : field(where, o, 'symmetric', 'a boolean', isBoolean);
  const activation = ACTIVATIONS.indexOf(field(where, o, 'activation', `one of ${ACTIVATIONS.join(', ')}`, oneOf<ActivationName>(ACTIVATIONS)));
  const alpha = field(where, o, 'alpha', 'a finite number', (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null));
  const bias = field(where, o, 'bias', 'a boolean', isBoolean);
  const activations = o.activations === undefined ? modelActivations : field(where, o, 'activations', `one of ${QUANT_ACTIVATIONS.join(', ')}`, oneOf(QUANT_ACTIVATIONS));
  if (activations === 'int8' && format === 'int8' && inputs > MAX_W8A8_INT8_INPUTS) {
    fail(`metadata '${QUANT_METADATA_KEY}': layers[${i}] runs int8 activations with int8 weights on ${inputs} inputs, more than the ${MAX_W8A8_INT8_INPUTS} an int32 accumulator allows`);
  }
  const inputScales = o.inputScales === undefined ? false : field(where, o, 'inputScales', 'a boolean', isBoolean);
  return { inputs, outputs, format, groupSize, symmetric, activation, alpha, bias, activations, inputScales };
}

function expectTensor(file: ParsedSafetensors, name: string, dtype: Dtype, shape: number[], bytesPer: number): ParsedTensor {
  const t = file.tensors[name];
  const want = `${dtype} [${shape.join(', ')}] (${shape.reduce((a, b) => a * b, 1) * bytesPer} bytes)`;
  if (!t) fail(`${name}: missing; expected ${want}`);
  const same = t.dtype === dtype && t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
  if (!same) fail(`${name}: expected ${want}, got ${t.dtype} ${preview(t.shape).replace(/,/g, ', ')}`);
  return t;
}

const TENSOR_OF_FIELD = { weights: 'qweight', scales: 'scales', zeros: 'zeros', inputScales: 'input_scales', bias: 'bias' } as const;

/** The quantised model a file holds, every tensor checked against the metadata. */
export function tensorsToQuant(file: ParsedSafetensors): QuantModelDescription {
  const stored = file.metadata[QUANT_METADATA_KEY];
  if (stored === undefined) {
    if (file.metadata[SPARSE_METADATA_KEY] !== undefined) {
      fail(`this file holds a sparse model (metadata '${SPARSE_METADATA_KEY}'), not a quantised one; load it with SparseMlp.load`);
    }
    fail(`no '${QUANT_METADATA_KEY}' metadata: not a quantised mlpkit model (a float model loads with Mlp.load)`);
  }
  const parsed = parseFileJson(stored, `metadata '${QUANT_METADATA_KEY}'`);
  const meta = isObject(parsed) ?? fail(`metadata '${QUANT_METADATA_KEY}' is not a JSON object`);
  field('', meta, 'version', `${QUANT_FILE_VERSION} (this mlpkit reads version ${QUANT_FILE_VERSION} files)`, (v) => (v === QUANT_FILE_VERSION ? v : null));
  const inputs = field('', meta, 'inputs', `an integer in [1, ${MAX_QUANT_WIDTH}]`, integerIn(1, MAX_QUANT_WIDTH));
  let encoding: NormalizedSpec['encoding'];
  try {
    // Fields this version does not know are the file format's business: ignored, as they always were.
    encoding = normalizeEncoding(meta.encoding, 'encoding', { allowUnknownKeys: true });
  } catch (err) {
    fail(`metadata '${QUANT_METADATA_KEY}': ${(err as Error).message}`);
  }
  const activations = field('', meta, 'activations', `one of ${QUANT_ACTIVATIONS.join(', ')}`, oneOf(QUANT_ACTIVATIONS));
  const rawLayers = field('', meta, 'layers', `a list of 1 to ${MAX_QUANT_LAYERS} layers`, (v) => (Array.isArray(v) && v.length >= 1 && v.length <= MAX_QUANT_LAYERS ? (v as unknown[]) : null));

  const used = new Set<string>();
  const layers: QuantLayer[] = [];
  const layerActivations: QuantActivations[] = [];
  let width = encodedInputs(inputs, encoding);
  rawLayers.forEach((raw, i) => {
    const m = parseLayerMeta(raw, i, width, activations);
    const n = m.outputs;
    const groups = groupsPerRow(m);
    const name = (t: string) => {
      used.add(`layers.${i}.${t}`);
      return `layers.${i}.${t}`;
    };
    const qweight = m.format === 'int8'
      ? expectTensor(file, name('qweight'), 'I8', [n, m.inputs], 1)
      : expectTensor(file, name('qweight'), 'U8', [n, paddedInputs(m) / 2], 1);
    const scales = expectTensor(file, name('scales'), 'F32', [n, groups], 4);
    const zeros = m.format === 'int4' && !m.symmetric ? expectTensor(file, name('zeros'), 'U8', [n, groups], 1) : null;
    const bias = m.bias ? expectTensor(file, name('bias'), 'F32', [n], 4) : null;
    const inputScales = m.inputScales ? expectTensor(file, name('input_scales'), 'F32', [m.inputs], 4) : null;
    const layer: QuantLayer = {
      inputs: m.inputs,
      outputs: n,
      format: m.format,
      groupSize: m.groupSize,
      symmetric: m.symmetric,
      // readSafetensors widens I8 to Int32Array (parseSafetensors with `int8` does not); every
      // value fits an int8 by the dtype. (A set, not Int8Array.from: that walks the iterator,
      // seconds for a large layer.)
      weights: m.format === 'int8' ? asInt8(qweight.data as Int32Array | Int8Array) : (qweight.data as Uint8Array),
      scales: scales.data as Float32Array,
      zeros: zeros ? (zeros.data as Uint8Array) : null,
      bias: bias ? (bias.data as Float32Array) : null,
      inputScales: inputScales ? (inputScales.data as Float32Array) : null,
      activation: m.activation,
      alpha: m.alpha,
    };
    const problem = layerValueProblem(layer);
    if (problem) fail(`layers.${i}.${TENSOR_OF_FIELD[problem.field]}: ${problem.message}`);
    layers.push(layer);
    layerActivations.push(m.activations);
    width = n;
  });
  const extra = Object.keys(file.tensors).filter((t) => !used.has(t));
  if (extra.length) {
    fail(`tensors ${extra.slice(0, 5).map((t) => `'${clip(t)}'`).join(', ')} are not part of the quantised model the metadata describes`);
  }
  return { inputs, encoding, activations, layers, layerActivations };
}

function asInt8(values: Int32Array | Int8Array): Int8Array {
  if (values instanceof Int8Array) return values;
  const out = new Int8Array(values.length);
  out.set(values);
  return out;
}

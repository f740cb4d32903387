// A sparse model as safetensors tensors and back. Layout:
//
//   layers.<i>.weight             F32 [rows, inputs]  rows = units, or 2 * units for a gated layer
//   layers.<i>.bias               F32 [rows]          layers with a bias only
//                                 (both exactly as an Mlp file writes them, spec included)
//   layers.<i>.weight_scale       F32 [rows]          int8 layers only: every weight of row o is
//                                                     f32(weight_scale[o] * q), q an int8 code in
//                                                     [-127, 127] (the weights stay float32, so
//                                                     Mlp.load gives the dequantised model)
//   layers.<i>.predictor.a        F32 [rank, inputs]  predictor layers only: score = B (A x + a) + b
//   layers.<i>.predictor.a_bias   F32 [rank]
//   layers.<i>.predictor.b        F32 [units, rank]
//   layers.<i>.predictor.b_bias   F32 [units]
//   metadata 'mlpkit.spec'     = the float model's spec, as in an Mlp file
//   metadata 'mlpkit.sparsity' = JSON {
//     version: 1,
//     layers: [{ mode: 'dense' | 'exact' | 'threshold' | 'topk' | 'predictor',
//                threshold: number | null, k: number | null, rank: number | null,
//                denseFromRows?: number,     (predictor layers: integer in [0, 16]; absent = 0, never)
//                weights?: 'float' | 'int8' }],                     (one per spec layer; default float)
//     stats: SparseStats | null                        (net.sparsify's calibration report)
//   }
//   plus 'mlpkit.version' and format: 'pt', as float model files have.
//
// 'mlpkit.sparsity' marks the file as a sparse model. The float model stays whole in it, so
// Mlp.load of a sparse file gives the dense model (lib/io/model-file.ts leaves the predictor
// tensors out), and SparseMlp.load of a plain Mlp file says it is not sparse.
//
// Loading checks the spec and every weight as Mlp.load does, then every field of the sparsity
// metadata against the spec (modes, k, thresholds, residual and output layers, exact mode on
// ReLU only) and every predictor tensor's dtype, shape and values, and throws FileFormatError
// naming the layer or tensor and the problem.

import { ACTIVATIONS, type SparseLayer } from '../backend/types.js';
import { FileFormatError } from '../errors.js';
import { offerHugePages } from '../huge-pages.js';
import { PREDICTOR_TENSOR, QUANT_METADATA_KEY, SPARSE_METADATA_KEY, SPEC_METADATA_KEY, WEIGHT_SCALE_TENSOR, modelToTensors, tensorsToModel } from '../io/model-file.js';
import { parseFileJson, preview, type SafetensorsFile, type Tensor, type TensorInput } from '../io/safetensors.js';
import { parameterLayout, type NormalizedSpec } from '../spec.js';
import { FLT_MAX } from '../validate.js';
import type { SparseLayerStats, SparseStats } from './calibrate.js';
import { SPARSE_MODES, SPARSE_MODE_CODES, SPARSE_TILE_ROWS, SPARSIFY_MODES, type SparseModeName } from './format.js';

export const SPARSE_FILE_VERSION = 1;
/** Largest predictor rank a file may hold (options.rank's bound). */
const MAX_RANK = 1 << 16;

/** Everything a sparse model is, apart from where it runs. */
export interface SparseModelDescription {
  spec: NormalizedSpec;
  /** One per spec layer, in the backends' form. */
  layers: SparseLayer[];
  stats: SparseStats | null;
}

/** The layers of a float model as dense sparse layers (mode 'dense'), over the given arrays. */
export function denseSparseLayers(spec: NormalizedSpec, parts: { weight: Float32Array; bias: Float32Array | null }[]): SparseLayer[] {
  const { slots } = parameterLayout(spec);
  return slots.map((s, i) => ({
    inputs: s.inputs,
    outputs: s.outputs,
    activation: ACTIVATIONS.indexOf(spec.layers[i].activation),
    alpha: spec.layers[i].alpha,
    weight: parts[i].weight,
    bias: parts[i].bias,
    gated: spec.layers[i].gated,
    residual: spec.layers[i].residual,
    mode: SPARSE_MODE_CODES.dense,
    threshold: 0,
    k: 0,
    rank: 0,
    predictorA: null,
    predictorABias: null,
    predictorB: null,
    predictorBBias: null,
    denseFromRows: 0,
    scales: null,
  }));
}

const MODE_NAMES = Object.keys(SPARSE_MODE_CODES) as SparseModeName[];

// JSON has no NaN or Infinity (JSON.stringify writes null): the stats' numbers keep them as strings.
const NON_FINITE = ['NaN', 'Infinity', '-Infinity'] as const;
const statsReplacer = (_key: string, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v);

export function sparseToTensors(
  model: SparseModelDescription,
  version: string,
): { tensors: Record<string, TensorInput>; metadata: Record<string, string> } {
  const { spec, layers } = model;
  const { slots, count } = parameterLayout(spec);
  const params = offerHugePages(new Float32Array(count));
  layers.forEach((l, i) => {
    params.set(l.weight, slots[i].weightOffset);
    if (l.bias) params.set(l.bias, slots[i].biasOffset);
  });
  const float = modelToTensors(spec, params, version);
  const tensors = float.tensors;
  const meta = layers.map((l, i) => {
    const mode = MODE_NAMES[l.mode];
    if (mode === 'predictor') {
      tensors[`layers.${i}.predictor.a`] = { shape: [l.rank, l.inputs], data: l.predictorA! };
      tensors[`layers.${i}.predictor.a_bias`] = { shape: [l.rank], data: l.predictorABias ?? new Float32Array(l.rank) };
      tensors[`layers.${i}.predictor.b`] = { shape: [l.outputs, l.rank], data: l.predictorB! };
      tensors[`layers.${i}.predictor.b_bias`] = { shape: [l.outputs], data: l.predictorBBias ?? new Float32Array(l.outputs) };
    }
    if (l.scales) tensors[`layers.${i}.weight_scale`] = { shape: [l.scales.length], data: l.scales };
    return {
      mode,
      threshold: mode === 'threshold' ? l.threshold : null,
      k: mode === 'topk' || mode === 'predictor' ? l.k : null,
      rank: mode === 'predictor' ? l.rank : null,
      ...(mode === 'predictor' ? { denseFromRows: l.denseFromRows } : {}),
      // Written for int8 layers only, so float files stay as they were.
      ...(l.scales ? { weights: 'int8' } : {}),
    };
  });
  const sparsity = JSON.stringify({ version: SPARSE_FILE_VERSION, layers: meta, stats: model.stats }, statsReplacer);
  return { tensors, metadata: { ...float.metadata, [SPARSE_METADATA_KEY]: sparsity } };
}

function fail(message: string): never {
  throw new FileFormatError(`safetensors: ${message}`);
}

function failMeta(message: string): never {
  fail(`metadata '${SPARSE_METADATA_KEY}': ${message}`);
}

/** A metadata field: `check` returns the value or undefined when it is not acceptable. */
function field<T>(where: string, obj: Record<string, unknown>, key: string, what: string, check: (v: unknown) => T | undefined): T {
  const value = check(obj[key]);
  if (value === undefined) failMeta(`${where}${key} must be ${what} but is ${key in obj ? preview(obj[key]) : 'missing'}`);
  return value;
}

const isObject = (v: unknown) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
const integerIn = (lo: number, hi: number) => (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi ? v : undefined);
const isNull = (v: unknown) => (v === null || v === undefined ? null : undefined);
const oneOf = <T extends string>(allowed: readonly T[]) => (v: unknown) => ((allowed as readonly unknown[]).includes(v) ? (v as T) : undefined);
/**
 * A number of the stats in [lo, hi]; where nonFinite, also NaN or an infinity in range, written
 * as a string (an output error measured against an all-zero or overflowing model).
 */
const statNumber = (lo: number, hi: number, nonFinite = false) => (v: unknown) => {
  if (typeof v === 'number' && v >= lo && v <= hi) return v;
  if (!nonFinite || !(NON_FINITE as readonly unknown[]).includes(v)) return undefined;
  const n = Number(v);
  return Number.isNaN(n) || (n >= lo && n <= hi) ? n : undefined;
};

function parseLayerMeta(raw: unknown, i: number, spec: NormalizedSpec): { mode: SparseModeName; threshold: number; k: number; rank: number; denseFromRows: number; int8: boolean } {
  const where = `layers[${i}].`;
  const o = isObject(raw) ?? failMeta(`layers[${i}] is not an object`);
  const layer = spec.layers[i];
  const mode = field(where, o, 'mode', `one of ${SPARSE_MODES.join(', ')}`, oneOf(SPARSE_MODES));
  if (mode !== 'dense') {
    if (i === spec.layers.length - 1) failMeta(`layers[${i}] is the output layer, whose outputs are the model's: it cannot run ${mode} mode`);
    if (layer.residual) failMeta(`layers[${i}] is residual (its outputs are a sum with the block input): it cannot run ${mode} mode`);
    if (mode === 'exact' && layer.activation !== 'relu') failMeta(`layers[${i}] runs exact mode, which needs relu, but the layer uses ${layer.activation}`);
  }
  const threshold = mode === 'threshold'
    ? field(where, o, 'threshold', 'a finite number >= 0', (v) => (typeof v === 'number' && v >= 0 && v <= FLT_MAX ? v : undefined))
    : field(where, o, 'threshold', `null in ${mode} mode`, isNull) ?? 0;
  const usesK = mode === 'topk' || mode === 'predictor';
  const k = usesK
    ? field(where, o, 'k', `an integer in [1, ${layer.units}] (the layer's units)`, integerIn(1, layer.units))
    : field(where, o, 'k', `null in ${mode} mode`, isNull) ?? 0;
  const rank = mode === 'predictor'
    ? field(where, o, 'rank', `an integer in [1, ${MAX_RANK}]`, integerIn(1, MAX_RANK))
    : field(where, o, 'rank', `null in ${mode} mode`, isNull) ?? 0;
  // Absent in files written before tiles could fall back: they never did.
  const denseFromRows = mode === 'predictor' && o.denseFromRows !== undefined
    ? field(where, o, 'denseFromRows', `an integer in [0, ${SPARSE_TILE_ROWS}]`, integerIn(0, SPARSE_TILE_ROWS))
    : field(where, o, 'denseFromRows', 'absent outside predictor mode', (v) => (v === undefined ? 0 : undefined));
  const weights = o.weights === undefined ? 'float' : field(where, o, 'weights', "'float' or 'int8'", oneOf(['float', 'int8'] as const));
  return { mode, threshold, k, rank, denseFromRows, int8: weights === 'int8' };
}

/**
 * The scales of an int8 layer, checked against its weights: each must be f32(scale * q) for
 * an int8 code q (a corrupt scale or weight tensor would otherwise load as some other model).
 */
function weightScales(file: SafetensorsFile, name: string, weight: Float32Array, rows: number, inputs: number): Float32Array {
  const t: Tensor | undefined = file.tensors[name];
  if (!t) fail(`${name}: missing; layer metadata says int8 weights, which need F32 [${rows}] scales`);
  if (t.dtype !== 'F32' || t.shape.length !== 1 || t.shape[0] !== rows) fail(`${name}: expected F32 [${rows}], got ${t.dtype} [${t.shape.join(', ')}]`);
  const scales = t.data as Float32Array;
  for (let o = 0; o < rows; o++) {
    const s = scales[o];
    if (!(s >= 0 && s < Infinity)) fail(`${name}: scale ${s} of row ${o} is not a finite number >= 0`);
    for (let p = 0; p < inputs; p++) {
      const w = weight[o * inputs + p];
      const q = s === 0 ? 0 : Math.round(w / s);
      if (!(Math.abs(q) <= 127) || Math.fround(s * q) !== w) {
        fail(`${name}: weight [${o}, ${p}] = ${w} is not an int8 code times the row's scale ${s} (a corrupt scale or weight tensor)`);
      }
    }
  }
  return scales;
}

function predictorTensor(file: SafetensorsFile, name: string, shape: number[]): Float32Array {
  const t: Tensor | undefined = file.tensors[name];
  const want = `F32 [${shape.join(', ')}]`;
  if (!t) fail(`${name}: missing; a predictor layer needs it as ${want}`);
  const same = t.dtype === 'F32' && t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
  if (!same) fail(`${name}: expected ${want}, got ${t.dtype} [${t.shape.join(', ')}]`);
  const data = t.data as Float32Array;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) fail(`${name}: value ${data[i]} at ${i} is not finite`);
  }
  return data;
}

function parseStats(raw: unknown, spec: NormalizedSpec): SparseStats | null {
  if (raw === null || raw === undefined) return null;
  const o = isObject(raw) ?? failMeta(`stats must be an object or null but is ${preview(raw)}`);
  const hidden = spec.layers.length - 2;
  const samples = field('stats.', o, 'samples', 'an integer >= 1', integerIn(1, Number.MAX_SAFE_INTEGER));
  const rawLayers = field('stats.', o, 'layers', 'a list', (v) => (Array.isArray(v) ? (v as unknown[]) : undefined));
  const layers = rawLayers.map((rl, j): SparseLayerStats => {
    const where = `stats.layers[${j}].`;
    const l = isObject(rl) ?? failMeta(`stats.layers[${j}] is not an object`);
    const layer = field(where, l, 'layer', `a hidden-layer index in [0, ${hidden}]`, integerIn(0, hidden));
    const units = field(where, l, 'units', `${spec.layers[layer].units} (layer ${layer}'s units)`, (v) => (v === spec.layers[layer].units ? v : undefined));
    const mode = field(where, l, 'mode', `one of ${SPARSIFY_MODES.join(', ')}`, oneOf(SPARSIFY_MODES));
    const threshold = field(where, l, 'threshold', 'a number >= 0 or null', (v) => (v === null ? null : statNumber(0, FLT_MAX)(v)));
    const k = field(where, l, 'k', `an integer in [1, ${units}] or null`, (v) => (v === null ? null : integerIn(1, units)(v)));
    const density = field(where, l, 'density', 'a number in [0, 1]', statNumber(0, 1));
    const recall = field(where, l, 'recall', 'a number in [0, 1] or null', (v) => (v === null ? null : statNumber(0, 1)(v)));
    return { layer, units, mode, threshold, k, density, recall };
  });
  const out = isObject(o.output) ?? failMeta(`stats.output must be an object but is ${'output' in o ? preview(o.output) : 'missing'}`);
  const relativeRms = field('stats.output.', out, 'relativeRms', 'a number >= 0', statNumber(0, Infinity, true));
  const relativeMax = field('stats.output.', out, 'relativeMax', 'a number >= 0', statNumber(0, Infinity, true));
  return { samples, layers, output: { relativeRms, relativeMax } };
}

/** The sparse model a file holds, every tensor and setting checked against the spec. */
export function tensorsToSparse(file: SafetensorsFile): SparseModelDescription {
  const stored = file.metadata[SPARSE_METADATA_KEY];
  if (stored === undefined) {
    if (file.metadata[QUANT_METADATA_KEY] !== undefined) {
      fail(`this file holds a quantised model (metadata '${QUANT_METADATA_KEY}'), not a sparse one; load it with QuantizedMlp.load`);
    }
    fail(`no '${SPARSE_METADATA_KEY}' metadata: not a sparse mlpkit model ` +
      `(a float model loads with Mlp.load; net.sparsify(...) makes a sparse one)`);
  }
  if (file.metadata[SPEC_METADATA_KEY] === undefined) fail(`no '${SPEC_METADATA_KEY}' metadata: a sparse model file carries its float model's spec`);
  const parsed = parseFileJson(stored, `metadata '${SPARSE_METADATA_KEY}'`);
  const meta = isObject(parsed) ?? fail(`metadata '${SPARSE_METADATA_KEY}' is not a JSON object`);
  field('', meta, 'version', `${SPARSE_FILE_VERSION} (this mlpkit reads version ${SPARSE_FILE_VERSION} files)`, (v) => (v === SPARSE_FILE_VERSION ? v : undefined));

  // The float model, checked as Mlp.load checks it (tensorsToModel leaves the predictor tensors out).
  const { spec, params } = tensorsToModel(file);
  const rawLayers = field('', meta, 'layers', `a list of ${spec.layers.length} layers (one per spec layer)`,
    (v) => (Array.isArray(v) && v.length === spec.layers.length ? (v as unknown[]) : undefined));
  const { slots } = parameterLayout(spec);
  const layers = denseSparseLayers(spec, slots.map((s) => ({
    weight: params.subarray(s.weightOffset, s.weightOffset + s.rows * s.inputs),
    bias: s.biasOffset >= 0 ? params.subarray(s.biasOffset, s.biasOffset + s.rows) : null,
  })));

  const used = new Set<string>();
  rawLayers.forEach((raw, i) => {
    const m = parseLayerMeta(raw, i, spec);
    const l = layers[i];
    Object.assign(l, { mode: SPARSE_MODE_CODES[m.mode], threshold: m.threshold, k: m.k, rank: m.rank, denseFromRows: m.denseFromRows });
    const scaleName = `layers.${i}.weight_scale`;
    if (m.int8) {
      used.add(scaleName);
      l.scales = weightScales(file, scaleName, l.weight, l.weight.length / l.inputs, l.inputs);
    }
    if (m.mode === 'predictor') {
      const name = (t: string) => {
        used.add(`layers.${i}.predictor.${t}`);
        return `layers.${i}.predictor.${t}`;
      };
      l.predictorA = predictorTensor(file, name('a'), [m.rank, l.inputs]);
      l.predictorABias = predictorTensor(file, name('a_bias'), [m.rank]);
      l.predictorB = predictorTensor(file, name('b'), [l.outputs, m.rank]);
      l.predictorBBias = predictorTensor(file, name('b_bias'), [l.outputs]);
    }
  });
  const strayScale = Object.keys(file.tensors).find((t) => WEIGHT_SCALE_TENSOR.test(t) && !used.has(t));
  if (strayScale) fail(`tensor '${strayScale}' belongs to no int8 layer (the layer's metadata says float weights, or the layer does not exist)`);
  const stray = Object.keys(file.tensors).filter((t) => PREDICTOR_TENSOR.test(t) && !used.has(t));
  if (stray.length) {
    const i = Number(PREDICTOR_TENSOR.exec(stray[0])![1]);
    const mode = i < layers.length ? `runs ${MODE_NAMES[layers[i].mode]} mode` : 'does not exist';
    fail(`tensor '${stray[0]}' belongs to no predictor: layer ${i} ${mode}`);
  }
  const stats = parseStats(meta.stats, spec);
  for (const [j, s] of (stats?.layers ?? []).entries()) {
    // The stats describe the layers as they are: a file whose stats say otherwise was edited.
    const l = layers[s.layer];
    const same = MODE_NAMES[l.mode] === s.mode &&
      s.threshold === (s.mode === 'threshold' ? l.threshold : null) &&
      s.k === (s.mode === 'topk' || s.mode === 'predictor' ? l.k : null);
    if (!same) failMeta(`stats.layers[${j}] describes layer ${s.layer} as ${s.mode} mode (threshold ${s.threshold}, k ${s.k}), but the layer runs ${MODE_NAMES[l.mode]} mode (threshold ${l.threshold}, k ${l.k})`);
  }
  return { spec, layers, stats };
}

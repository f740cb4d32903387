// SparseMlp: a sparse-activation copy of an Mlp for inference (net.sparsify(), or
// SparseMlp.load). It predicts like any model, with the same argument checks and errors as
// Mlp.predict, and saves to safetensors (layout: lib/sparse/file.ts).

import { readWholeFile, readWholeFileSync, writeWholeFile, writeWholeFileSync } from '../io/whole-file.js';
import { BACKEND_CHOICES, selectBackend, type BackendChoice } from '../backend/index.js';
import { referenceBackend } from '../backend/reference/index.js';
import type { Backend, BackendSparseModel, SparseLayer } from '../backend/types.js';
import { ERR_NATIVE_UNAVAILABLE, disposedError } from '../errors.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import type { Mlp } from '../mlp.js';
import { encodingConfig, type NormalizedSpec } from '../spec.js';
import { expectBatch, expectObject, expectOneOf, expectOutputBuffer, expectPath, rejectUnknownKeys } from '../validate.js';
import { VERSION } from '../version.js';
import { errorStats, keptFraction, selectionValues, thresholdForDensity, trainPredictor, type PredictorWeights, type SparseStats } from './calibrate.js';
import { denseSparseLayers, sparseToTensors, tensorsToSparse } from './file.js';
import { SPARSE_MODE_CODES, type SparseModeName } from './format.js';
import { defaultPredictorRank, normalizeSparsifyOptions, type SparseWeights, type SparsifyOptions } from './options.js';
import { quantizeChecked } from '../quant/quantize.js';

/** What one layer keeps of its outputs. */
export interface SparseLayerInfo {
  inputs: number;
  outputs: number;
  mode: SparseModeName;
  threshold: number | null;
  k: number | null;
  /** predictor mode: the predictor's inner width. */
  rank: number | null;
  /** predictor mode: tiles of at least this many rows run the layer exactly (0: never; see SparsifyOptions.denseFromRows). */
  denseFromRows: number | null;
  /** 'int8': int8 codes times a scale per row (see SparsifyOptions.weights). */
  weights: SparseWeights;
}

export interface SparseLoadOptions {
  /** 'auto' (default), 'native' or 'reference'. */
  backend?: BackendChoice;
}

function normalizeLoadOptions(value: unknown): BackendChoice {
  const o = expectObject('options', value);
  rejectUnknownKeys('options', o, ['backend']);
  return o.backend === undefined ? 'auto' : expectOneOf('options.backend', o.backend, BACKEND_CHOICES);
}

/** The layers whose rows a sparse model reads sparsely: int8 weights pay there. */
function int8Layers(layers: SparseLayer[], chosen: Set<number>): number[] {
  const out = new Set<number>();
  for (const li of chosen) {
    if (layers[li].mode === SPARSE_MODE_CODES.predictor || layers[li].gated) out.add(li);
    if (li + 1 < layers.length) out.add(li + 1);
  }
  return [...out].sort((a, b) => a - b);
}

/** A layer's weights to int8 codes times a scale per row (net.quantize's int8 rule), kept dequantised. */
function quantizeRows(layer: SparseLayer): void {
  const rows = layer.weight.length / layer.inputs;
  const q = quantizeChecked(layer.weight, null, layer.inputs, rows, 0, 0, { format: 'int8', groupSize: null, symmetric: true });
  const w = new Float32Array(rows * layer.inputs);
  for (let o = 0; o < rows; o++) {
    const s = q.scales[o];
    for (let p = 0; p < layer.inputs; p++) w[o * layer.inputs + p] = Math.fround(s * q.weights[o * layer.inputs + p]);
  }
  layer.weight = w;
  layer.scales = Float32Array.from(q.scales);
}

/** Stats are handed out as they are kept (and saved): read-only all the way down. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

let warned = false;

/** The backend for a sparse model: native or reference (the CUDA backend has no sparse model). */
function sparseBackend(choice: BackendChoice): Backend & { name: 'native' | 'reference' } {
  const backend = selectBackend(choice);
  if (backend.createSparseModel && backend.name !== 'cuda') return backend as Backend & { name: 'native' | 'reference' };
  if (choice === 'native') {
    const err = new Error('mlpkit: this build of the native addon has no sparse kernels (rebuild it: `npm rebuild mlpkit`, or `npm run build` in a checkout of mlpkit), or use backend \'reference\' or \'auto\'.');
    Object.defineProperty(err, 'code', { value: ERR_NATIVE_UNAVAILABLE, enumerable: true });
    throw err;
  }
  if (!warned) {
    warned = true;
    process.emitWarning('this build of the addon has no sparse kernels; sparse models run on the pure-TypeScript reference backend, which is much slower.', {
      code: 'MLPKIT_SPARSE_REFERENCE_FALLBACK',
    });
  }
  return referenceBackend as Backend & { name: 'reference' };
}

/**
 * A backend model's outputs for rows x, in batches short enough that no predictor layer falls
 * back to the exact layer (SparseLayer.denseFromRows): what stats report is the
 * sparsification's, not that of whatever mix of tiles one batch of the calibration rows makes.
 */
function predictedRows(model: BackendSparseModel, layers: readonly SparseLayer[], inputs: number, x: Float32Array): Float32Array {
  const fallbacks = layers.map((l) => l.denseFromRows).filter((d) => d > 1);
  const rows = x.length / inputs;
  const outputs = layers[layers.length - 1].outputs;
  const chunk = fallbacks.length > 0 ? Math.min(...fallbacks) - 1 : rows;
  const out = new Float32Array(rows * outputs);
  for (let r = 0; r < rows; r += chunk) {
    const end = Math.min(rows, r + chunk);
    model.predict(x.subarray(r * inputs, end * inputs), end - r, out.subarray(r * outputs, end * outputs));
  }
  return out;
}

/**
 * Rows x through the first `count` layers as they stand (sparse ones included): the inputs a
 * layer is calibrated on, or, ending with a sparse layer, that layer's kept outputs.
 */
function throughLayers(backend: Backend, spec: NormalizedSpec, layers: readonly SparseLayer[], count: number, x: Float32Array): Float32Array {
  const part = layers.slice(0, count);
  const model = backend.createSparseModel!(encodingConfig(spec), part);
  try {
    return predictedRows(model, part, spec.inputs, x);
  } finally {
    model.dispose();
  }
}

export class SparseMlp {
  readonly inputs: number;
  readonly outputs: number;
  readonly backend: 'native' | 'reference';
  readonly layers: readonly Readonly<SparseLayerInfo>[];
  /** 'int8' when some layer holds int8 weights (options.weights), else 'float'. */
  readonly weights: SparseWeights;
  private model: BackendSparseModel | null;
  private measured: SparseStats | null;
  /** The float model's spec and the layers as given to the backend (kept for toSafetensors). */
  private readonly spec: NormalizedSpec;
  private readonly sparseLayers: SparseLayer[];

  /** @internal Use net.sparsify() or SparseMlp.load(). `layers`: one per spec layer, not copied. */
  constructor(spec: NormalizedSpec, layers: SparseLayer[], backend: BackendChoice, stats: SparseStats | null = null) {
    const b = sparseBackend(backend);
    this.model = b.createSparseModel!(encodingConfig(spec), layers);
    this.backend = b.name;
    this.spec = spec;
    this.sparseLayers = layers;
    this.measured = stats && deepFreeze(stats);
    this.inputs = spec.inputs;
    this.outputs = layers[layers.length - 1].outputs;
    const names = Object.keys(SPARSE_MODE_CODES) as SparseModeName[];
    this.layers = Object.freeze(layers.map((l) => Object.freeze({
      inputs: l.inputs,
      outputs: l.outputs,
      mode: names[l.mode],
      threshold: l.mode === SPARSE_MODE_CODES.threshold ? l.threshold : null,
      k: l.mode === SPARSE_MODE_CODES.topk || l.mode === SPARSE_MODE_CODES.predictor ? l.k : null,
      rank: l.mode === SPARSE_MODE_CODES.predictor ? l.rank : null,
      denseFromRows: l.mode === SPARSE_MODE_CODES.predictor ? l.denseFromRows : null,
      weights: l.scales ? 'int8' : 'float',
    })));
    this.weights = layers.some((l) => l.scales) ? 'int8' : 'float';
  }

  /**
   * Sparsify a float model (see SparsifyOptions): fit thresholds or predictors on
   * options.calibration where the mode needs them, one layer after another on what the layers
   * before pass on once sparsified, and measure density, recall and output error there (stats).
   */
  static async fromMlp(source: Mlp, options: SparsifyOptions): Promise<SparseMlp> {
    source.handle('sparsify');
    const o = normalizeSparsifyOptions(options, source.spec);
    // Only predictor training awaits; across those awaits the caller may dispose or retrain the
    // model, so that mode works on a copy taken now (the other modes finish before returning).
    const net = o.mode === 'predictor' ? source.snapshot('sparsify') : source;
    try {
      return await SparseMlp.sparsifyFrom(net, o);
    } finally {
      if (net !== source) net.dispose();
    }
  }

  /** fromMlp on a model nobody else changes meanwhile, with normalized options. */
  private static async sparsifyFrom(net: Mlp, o: ReturnType<typeof normalizeSparsifyOptions>): Promise<SparseMlp> {
    const spec = net.spec;
    const floatLayers = net.getLayers();
    const chosen = new Set(o.layers);
    const layers = denseSparseLayers(spec, floatLayers);
    const stats: SparseStats['layers'] = [];
    const backend = sparseBackend(o.backend);
    const x = o.calibration;
    for (const li of o.layers) {
      const layer = layers[li];
      const n = layer.outputs;
      layer.mode = SPARSE_MODE_CODES[o.mode];
      const k = o.k ?? (o.targetDensity !== null ? Math.max(1, Math.round(o.targetDensity * n)) : 0);
      const input = x && li > 0 ? throughLayers(backend, spec, layers, li, x) : x;
      const h = input ? selectionValues(net, li, input, o.backend) : null;
      let recall: number | null = null;
      if (o.mode === 'threshold') {
        layer.threshold = o.threshold ?? thresholdForDensity(h!, o.targetDensity!, n);
      } else if (o.mode === 'topk') {
        layer.k = k;
      } else if (o.mode === 'predictor') {
        layer.k = k;
        const rank = o.rank ?? defaultPredictorRank(layer.inputs, n);
        const trained = await trainPredictor(net, li, input!, h!, k, rank, o.epochs, o.seed, o.backend);
        const w: PredictorWeights = trained.weights;
        Object.assign(layer, { rank: w.rank, predictorA: w.a, predictorABias: w.aBias, predictorB: w.b, predictorBBias: w.bBias });
        layer.denseFromRows = o.denseFromRows === 'auto' ? trained.denseFromRows : o.denseFromRows;
        recall = trained.recall;
      }
      if (h) {
        stats.push({
          layer: li,
          units: n,
          mode: o.mode,
          threshold: o.mode === 'threshold' ? layer.threshold : null,
          k: o.mode === 'topk' || o.mode === 'predictor' ? layer.k : null,
          density: 0, // measured below, in the finished model
          recall,
        });
      }
    }
    if (o.weights === 'int8') {
      for (const li of int8Layers(layers, chosen)) quantizeRows(layers[li]);
    }
    const model = new SparseMlp(spec, layers, o.backend);
    if (x) {
      for (const entry of stats) entry.density = keptFraction(throughLayers(backend, spec, layers, entry.layer + 1, x));
      const output = errorStats(predictedRows(model.handle('sparsify'), layers, spec.inputs, x), net.predict(x));
      model.measured = deepFreeze({ samples: x.length / net.inputs, layers: stats, output });
    }
    return model;
  }

  /**
   * The model as safetensors bytes: the float model's tensors and spec as an Mlp file has them,
   * the predictors' tensors, and the per-layer modes and stats (layout: lib/sparse/file.ts).
   * Mlp.load of these bytes gives the dense model back.
   */
  toSafetensors(): Uint8Array {
    this.handle('toSafetensors');
    const { tensors, metadata } = sparseToTensors({ spec: this.spec, layers: this.sparseLayers, stats: this.measured }, VERSION);
    return writeSafetensors(tensors, metadata);
  }

  async save(path: string): Promise<void> {
    expectPath('path', path);
    await writeWholeFile(path, this.toSafetensors());
  }

  saveSync(path: string): void {
    expectPath('path', path);
    writeWholeFileSync(path, this.toSafetensors());
  }

  /** A sparse model from safetensors bytes written by toSafetensors / save (stats included). */
  static fromSafetensors(bytes: Uint8Array, options: SparseLoadOptions = {}): SparseMlp {
    const backend = normalizeLoadOptions(options);
    const { spec, layers, stats } = tensorsToSparse(readSafetensors(bytes));
    return new SparseMlp(spec, layers, backend, stats);
  }

  static async load(path: string, options: SparseLoadOptions = {}): Promise<SparseMlp> {
    expectPath('path', path);
    normalizeLoadOptions(options);
    return SparseMlp.fromSafetensors(await readWholeFile(path), options);
  }

  static loadSync(path: string, options: SparseLoadOptions = {}): SparseMlp {
    expectPath('path', path);
    normalizeLoadOptions(options);
    return SparseMlp.fromSafetensors(readWholeFileSync(path), options);
  }

  /** Density, recall and output error on the calibration rows (kept by save / load); null without calibration. */
  get stats(): SparseStats | null {
    return this.measured;
  }

  private handle(what: string): BackendSparseModel {
    if (!this.model) throw disposedError(what);
    return this.model;
  }

  get disposed(): boolean {
    return this.model === null;
  }

  /** Outputs for a batch: x is batch x inputs row-major; returns (or fills `out`) batch x outputs. */
  predict(x: Float32Array, out?: Float32Array): Float32Array {
    const model = this.handle('predict');
    const batch = expectBatch('x', x, this.inputs);
    const y = out === undefined ? new Float32Array(batch * this.outputs) : expectOutputBuffer('out', out, batch * this.outputs);
    model.predict(x, batch, y);
    return y;
  }

  /**
   * predict off the event loop. x is copied (or read) when the call is made, so it may be
   * changed or reused at once; the result is in `out` (or the returned array) by the time the
   * promise resolves: do not read or write `out` before then.
   */
  async predictAsync(x: Float32Array, out?: Float32Array): Promise<Float32Array> {
    const model = this.handle('predictAsync');
    const batch = expectBatch('x', x, this.inputs);
    const y = out === undefined ? new Float32Array(batch * this.outputs) : expectOutputBuffer('out', out, batch * this.outputs);
    await model.predictAsync(x, batch, y);
    return y;
  }

  /** Frees native memory now. Later calls throw ERR_MLPKIT_DISPOSED. Idempotent. */
  dispose(): void {
    this.model?.dispose();
    this.model = null;
  }
}

// QuantizedMlp: a quantised copy of an Mlp (or one read from a file) that predicts like any
// model, with the same argument checks and errors as Mlp.predict. Inference only.
//
// A backend quantised model runs one activations mode for all its layers (QuantModelConfig),
// while calibration may choose per layer; consecutive layers with the same mode therefore share
// one backend model ("segment"), and a model with mixed modes runs a few of them in a row.

import { readWholeFile, readWholeFileSync, writeWholeFile, writeWholeFileSync } from '../io/whole-file.js';
import { BACKEND_CHOICES, nativeAvailable, type BackendChoice } from '../backend/index.js';
import { ACTIVATIONS, type ActivationName, type BackendName, type BackendQuantModel, type QuantModelConfig } from '../backend/types.js';
import { encodingConfig, parameterLayout, type NormalizedSpec } from '../spec.js';
import { describe, disposedError, rangeError, typeError, typedArrayLength } from '../errors.js';
import { parseSafetensors, writeSafetensors } from '../io/safetensors.js';
import type { Mlp } from '../mlp.js';
import { allocFloat32, expectAllFinite, expectBatch, expectInteger, expectObject, expectOneOf, expectOutputBuffer, expectPath, isArray, rejectUnknownKeys } from '../validate.js';
import { VERSION } from '../version.js';
import { selectQuantBackend } from './backend.js';
import { calibrateLayers, chooseCandidates, errorStats, type QuantStats } from './calibrate.js';
import { checkQuantLayer } from './check.js';
import { MAX_QUANT_LAYERS, quantToTensors, tensorsToQuant, type QuantModelDescription } from './file.js';
import { QUANT_ACTIVATIONS, copyLayer, layerBytes, type QuantActivations, type QuantFormat, type QuantLayer } from './format.js';
import { normalizeQuantizeOptions, type QuantizeOptions } from './options.js';
import { quantizeSteps } from './progress.js';
import { equalizationScales, lostInput, quantizeChecked } from './quantize.js';
import { checkW8A8Width } from './reference.js';

/** What one layer is and costs (read-only copies; the weights stay inside the model). */
export interface QuantLayerInfo {
  inputs: number;
  outputs: number;
  format: QuantFormat;
  /** int4: 32, 64 or 128; int8: the layer's input width (one scale per output). */
  groupSize: number;
  symmetric: boolean;
  /** What the layer's inputs are: 'float' (weight-only) or 'int8' (W8A8). */
  activations: QuantActivations;
  activation: ActivationName;
  bias: boolean;
  /** The layer scales its inputs per column before the matmul (per-input equalisation; docs/QUANTIZATION.md). */
  equalized: boolean;
  /** Weights + scales + zero points + bias (+ input scales). */
  bytes: number;
}

export interface QuantLoadOptions {
  /** 'auto' (default), 'native' or 'reference'. */
  backend?: BackendChoice;
}

export interface QuantFromLayersOptions {
  /** What the layers' inputs are: 'float' (default, weight-only) or 'int8' (W8A8), for all layers or one per layer. */
  activations?: QuantActivations | readonly QuantActivations[];
  /** 'auto' (default), 'native' or 'reference'. */
  backend?: BackendChoice;
}

interface Segment {
  model: BackendQuantModel;
  outputs: number;
}

// Set while this module constructs a QuantizedMlp: the constructor takes an already checked
// description, so it refuses to run for anyone else.
let constructing = false;

// int8 weights as an Int8Array straight from the file (not widened to int32 and narrowed back).
// Bytes the loader read itself (`owned`) are nobody else's: the model's arrays are views into
// them, not copies (the model keeps its description, and getLayers hands out copies).
function fromFileBytes(bytes: Uint8Array, backend: BackendChoice, owned: boolean): QuantizedMlp {
  return construct(tensorsToQuant(parseSafetensors(bytes, { int8: true, views: owned })), backend);
}

function construct(description: QuantModelDescription, backend: BackendChoice): QuantizedMlp {
  constructing = true;
  try {
    return new QuantizedMlp(description, backend);
  } finally {
    constructing = false;
  }
}

let setStats: (model: QuantizedMlp, stats: QuantStats | null) => void;
let descriptionOf: (model: QuantizedMlp) => QuantModelDescription;
let quantizeWith: (net: QuantizeSource, options: QuantizeOptions, floatOutputs: Float32Array | null) => QuantizedMlp;

/**
 * @internal What quantize reads of the float model: an Mlp, or quantizeAsync's worker's copy
 * (lib/quant/quantize-worker.ts), which holds only the parameters. getParameters' array is only
 * read; predict is called only on a cuda model, for its own outputs on the calibration rows.
 */
export interface QuantizeSource {
  handle(what: string): unknown;
  readonly inputs: number;
  readonly spec: NormalizedSpec;
  readonly backend: BackendName;
  getParameters(): Float32Array;
  predict(x: Float32Array): Float32Array;
}

/**
 * @internal The model's description (its own arrays, not copies): quantizeAsync's worker sends
 * it to the main thread. Not exported from the package.
 */
export function quantizedDescription(model: QuantizedMlp): QuantModelDescription {
  return descriptionOf(model);
}

/**
 * @internal A model from the description quantizeAsync's worker built with fromMlp's code, with
 * that model's calibration stats. The description is trusted as fromMlp's own is (no file
 * checks): it comes from this module's code in the worker. Not exported from the package.
 */
export function quantizedFromDescription(description: QuantModelDescription, backend: BackendChoice, stats: QuantStats | null): QuantizedMlp {
  const model = construct(description, backend);
  setStats(model, stats);
  return model;
}

/**
 * @internal net.quantize(options) (QuantizedMlp.fromMlp), with the float model's outputs on the
 * calibration rows given instead of computed (null: computed, exactly fromMlp). Not exported
 * from the package.
 */
export function quantizeMlp(net: QuantizeSource, options: QuantizeOptions, floatOutputs: Float32Array | null): QuantizedMlp {
  return quantizeWith(net, options, floatOutputs);
}

/** quantize's refusal of layers it cannot quantise yet (shared with quantizeAsync's checks). */
export function checkQuantizableSpec(spec: NormalizedSpec): void {
  spec.layers.forEach((l, i) => {
    if (l.gated || l.residual) throw rangeError(`quantize does not support ${l.gated ? 'gated' : 'residual'} layers yet (spec.layers[${i}])`);
  });
}

function normalizeLoadOptions(value: unknown): BackendChoice {
  const o = expectObject('options', value);
  rejectUnknownKeys('options', o, ['backend']);
  return o.backend === undefined ? 'auto' : expectOneOf('options.backend', o.backend, BACKEND_CHOICES);
}

export class QuantizedMlp {
  readonly inputs: number;
  readonly outputs: number;
  /** The backend that runs this model. */
  readonly backend: 'native' | 'reference';
  /** The input encoding in front of the first layer, as the float model's spec has it. */
  readonly encoding: QuantModelDescription['encoding'];
  /** The activations mode asked for; per-layer choices are in `layers`. */
  readonly activations: QuantActivations;
  /**
   * Bytes the stored layers take (the file's tensors): weights, scales, zero points, biases and
   * input scales of every layer. Native int4 may read less per predict (bf16 scales, see
   * docs/QUANTIZATION.md).
   */
  readonly sizeBytes: number;
  /** Bytes the float32 model's weights and biases take. */
  readonly floatBytes: number;
  readonly layers: readonly Readonly<QuantLayerInfo>[];
  private readonly description: QuantModelDescription;
  private segments: Segment[] | null;
  // predictAsync calls in flight, and the segments dispose() retired while some were: a call of
  // several segments starts each after the one before, so freeing them at dispose() would fail
  // the rest of the call (the README: dispose during an async call lets it finish).
  private pending = 0;
  private retired: Segment[] | null = null;
  private calibrationStats: QuantStats | null = null;

  static {
    // Internal access for lib/quant/quantize-async.ts (module functions below), not API.
    setStats = (model, stats) => {
      model.calibrationStats = stats;
    };
    descriptionOf = (model) => model.description;
    quantizeWith = (net, options, floatOutputs) => QuantizedMlp.quantizeFloat(net, options, floatOutputs);
  }

  /** @internal Use net.quantize(), QuantizedMlp.fromMlp() or QuantizedMlp.load(). */
  constructor(description: QuantModelDescription, backend: BackendChoice) {
    if (!constructing) {
      throw typeError('QuantizedMlp has no public constructor: use net.quantize(options), QuantizedMlp.fromSafetensors(bytes) or QuantizedMlp.load(path)');
    }
    constructing = false; // nested constructions (none today) would each need their own flag
    const { layers, layerActivations } = description;
    layers.forEach((l, i) => {
      if (layerActivations[i] === 'int8') checkW8A8Width(l, `layers[${i}]`);
    });
    const quantBackend = selectQuantBackend(backend);
    this.description = description;
    this.backend = quantBackend.name;
    this.inputs = description.inputs;
    this.outputs = layers[layers.length - 1].outputs;
    this.encoding = description.encoding;
    this.activations = description.activations;
    this.sizeBytes = layers.reduce((sum, l) => sum + layerBytes(l), 0);
    this.floatBytes = layers.reduce((sum, l) => sum + 4 * (l.inputs * l.outputs + (l.bias ? l.outputs : 0)), 0);
    this.layers = Object.freeze(layers.map((l, i) => Object.freeze({
      inputs: l.inputs,
      outputs: l.outputs,
      format: l.format,
      groupSize: l.groupSize,
      symmetric: l.symmetric,
      equalized: !!l.inputScales,
      activations: layerActivations[i],
      activation: ACTIVATIONS[l.activation],
      bias: l.bias !== null,
      bytes: layerBytes(l),
    })));
    const segments: Segment[] = [];
    for (let start = 0; start < layers.length;) {
      let end = start + 1;
      while (end < layers.length && layerActivations[end] === layerActivations[start]) end++;
      const config: QuantModelConfig = start === 0
        ? { ...encodingConfig(description), activations: QUANT_ACTIVATIONS.indexOf(layerActivations[start]) }
        : { inputs: layers[start].inputs, encoding: 0, octaves: 0, includeInput: false, activations: QUANT_ACTIVATIONS.indexOf(layerActivations[start]) };
      try {
        segments.push({ model: quantBackend.createQuantModel(config, layers.slice(start, end)), outputs: layers[end - 1].outputs });
      } catch (err) {
        for (const s of segments) s.model.dispose();
        throw err;
      }
      start = end;
    }
    this.segments = segments;
  }

  /**
   * Quantise a float model: every layer in options.weights' format (or each in its own). With options.calibration
   * the model reports its error on those rows (stats) and, for activations 'int8', keeps float
   * activations on layers whose inputs int8 would hurt (lib/quant/calibrate.ts).
   */
  static fromMlp(net: Mlp, options: QuantizeOptions): QuantizedMlp {
    return QuantizedMlp.quantizeFloat(net, options, null);
  }

  // fromMlp's work. floatOutputs: the float model's outputs on the calibration rows when the
  // caller has them already (quantizeAsync's worker, for a cuda model whose copy in the worker
  // runs on a CPU backend: the stats then stay those of the cuda model's own outputs); null
  // takes them from net.predict for a cuda model, and from the calibration's float layers for a
  // CPU one.
  private static quantizeFloat(net: QuantizeSource, options: QuantizeOptions, floatOutputs: Float32Array | null): QuantizedMlp {
    net.handle('quantize');
    const normalized = normalizeQuantizeOptions(options, net.inputs, net.spec.layers.length);
    checkQuantizableSpec(net.spec);
    normalized.signal?.throwIfAborted(); // before the copy of the parameters, as quantizeAsync
    const spec = net.spec;
    const steps = quantizeSteps(normalized, spec.layers.length);
    // onProgress runs the caller's code mid-call, and the calibration rows are read after it:
    // read from a copy, a callback that changes them changes nothing (as with quantizeAsync).
    const opts = normalized.onProgress && normalized.calibration ? { ...normalized, calibration: new Float32Array(normalized.calibration) } : normalized;
    // One copy of the parameters, read through views: net.getLayers() copies every weight twice
    // (its flat copy, then a slice per layer), which was ~1 s of a 4096 -> 16384 layer's quantize.
    const params = net.getParameters();
    const floatLayers = parameterLayout(spec).slots.map((s) => ({
      inputs: s.inputs,
      outputs: s.outputs,
      weight: params.subarray(s.weightOffset, s.weightOffset + s.rows * s.inputs),
      bias: s.biasOffset >= 0 ? params.subarray(s.biasOffset, s.biasOffset + s.rows) : null,
    }));
    // A NaN or Infinity has no code (the native quantiser refuses one too): say which layer.
    floatLayers.forEach((l, i) => {
      expectAllFinite(`quantize: layer ${i}'s weights`, l.weight);
      if (l.bias) expectAllFinite(`quantize: layer ${i}'s biases`, l.bias);
    });
    // The float model's outputs on the calibration rows, which the stats compare against. A cuda
    // model's come from the GPU (quantizeAsync passes them in), taken here, before onProgress runs
    // any of the caller's code, so a callback that changes or disposes the model changes nothing.
    // A CPU model's are the float copy's last layer outputs from calibrateLayers, which runs every
    // float layer on the rows anyway: one float pass over them fewer (27.0 s -> 23.4 s for a
    // 4096 -> 16384 int4 layer with 8192 rows), from the copy, as immune.
    const gpuOutputs = opts.calibration ? floatOutputs ?? (net.backend === 'cuda' ? net.predict(opts.calibration) : null) : null;
    // Per layer, the plain quantisation first, then (where options.equalize allows and it would
    // change anything) the per-input equalised one: calibration bias-corrects and measures both
    // and keeps the equalised one for a clear gain that holds end to end; without calibration,
    // 'auto' equalises only the first layer, and only where its plain quantisation would lose an
    // input column (lostInput: most of its weights rounded to 0). The first layer's inputs are the user's features, in whatever units they come; later
    // layers read activations the network scaled itself, where a column of small weights (in an
    // output layer of one unit, a single small weight) is usually a small contribution, not a
    // lost one, and equalising without data could move error to where it costs more.
    const candidates = floatLayers.map((l, i) => {
      const quantize = (scales: Float32Array | null) =>
        quantizeChecked(l.weight, l.bias, l.inputs, l.outputs, ACTIVATIONS.indexOf(spec.layers[i].activation), spec.layers[i].alpha, opts.layerFormats[i], scales);
      const chosen = (): QuantLayer[] => {
        const plain = quantize(null);
        const scales = opts.equalize === false ? null : equalizationScales(l.weight, l.inputs, l.outputs);
        if (!scales) return [plain];
        if (opts.equalize === true) return [quantize(scales)];
        if (opts.calibration) return [plain, quantize(scales)];
        return [i === 0 && lostInput(l.weight, plain) >= 0 ? quantize(scales) : plain];
      };
      const layerCandidates = chosen();
      steps.done('quantize', i);
      return layerCandidates;
    });
    const layers = candidates.map((c) => c[0]);
    if (opts.activations === 'int8') layers.forEach((l, i) => checkW8A8Width(l, `layers[${i}]`));
    if (opts.calibration) {
      const quantBackend = selectQuantBackend(opts.backend);
      // The float layers of the calibration run one at a time on a CPU backend (a cuda model's too).
      const floatBackend = net.backend === 'cuda' ? (nativeAvailable() ? 'native' : 'reference') : net.backend;
      const measured = calibrateLayers(spec, floatLayers, candidates, opts.activations, opts.calibration, floatBackend, quantBackend, opts.rounding,
        (i) => steps.done('calibrate', i));
      const want = gpuOutputs ?? measured.floatOutputs;
      const pick = (choice: number[]) => ({
        layers: choice.map((c, i) => measured.layers[i][c]),
        stats: choice.map((c, i) => measured.stats[i][c]),
      });
      // The models built here are freed at once if the call then throws (an output too large to
      // allocate, an abort or a throw from onProgress): nobody holds them, and their native
      // memory would wait for the collector.
      const orDispose = <T>(models: QuantizedMlp[], work: () => T): T => {
        try {
          return work();
        } catch (err) {
          for (const m of models) m.dispose();
          throw err;
        }
      };
      const build = (p: ReturnType<typeof pick>) => {
        const d: QuantModelDescription = {
          inputs: net.inputs, encoding: spec.encoding, activations: opts.activations, layers: p.layers, layerActivations: p.stats.map((s) => s.activations),
        };
        const model = construct(d, opts.backend);
        const output = orDispose([model], () => errorStats(model.predict(opts.calibration!), want));
        model.calibrationStats = { samples: opts.calibration!.length / net.inputs, layers: p.stats, output, equalizationReverted: [] };
        return model;
      };
      // The last step, reported once the model is built and measured.
      const measuredModel = (model: QuantizedMlp) => orDispose([model], () => {
        steps.done('measure', null);
        return model;
      });
      const choice = chooseCandidates(measured.stats);
      const chosen = build(pick(choice));
      if (choice.every((c) => c === 0)) return measuredModel(chosen);
      // Layers measured alone, each fed the float model's input: equalising one can still cost
      // the whole model more than it saves. Keep the all-plain model when it is as good end to end.
      const plain = orDispose([chosen], () => build(pick(choice.map(() => 0))));
      const keepPlain = plain.calibrationStats!.output.relativeRms <= chosen.calibrationStats!.output.relativeRms;
      (keepPlain ? chosen : plain).dispose();
      if (keepPlain) plain.calibrationStats!.equalizationReverted = choice.flatMap((c, i) => (c > 0 ? [i] : []));
      return measuredModel(keepPlain ? plain : chosen);
    }
    const description: QuantModelDescription = {
      inputs: net.inputs, encoding: spec.encoding, activations: opts.activations, layers, layerActivations: layers.map(() => opts.activations),
    };
    return construct(description, opts.backend);
  }

  /**
   * Errors against the float model on the calibration data, per layer (each fed the float
   * model's input to it) and for the whole model; null without calibration (and after load).
   */
  get stats(): QuantStats | null {
    return this.calibrationStats;
  }

  private live(what: string): Segment[] {
    if (!this.segments) throw disposedError(what);
    return this.segments;
  }

  /** True once dispose() has been called. */
  get disposed(): boolean {
    return this.segments === null;
  }

  /** Outputs for a batch: x is batch x inputs row-major; returns (or fills `out`) batch x outputs. */
  predict(x: Float32Array, out?: Float32Array): Float32Array {
    const segments = this.live('predict');
    const batch = expectBatch('x', x, this.inputs);
    const y = out === undefined ? allocFloat32('the output', batch * this.outputs) : expectOutputBuffer('out', out, batch * this.outputs);
    let a = x;
    segments.forEach((s, i) => {
      const target = i === segments.length - 1 ? y : allocFloat32(`the outputs of segment ${i}`, batch * s.outputs);
      s.model.predict(a, batch, target);
      a = target;
    });
    return y;
  }

  /**
   * predict off the event loop (native: on the libuv thread pool; reference: in chunks between
   * macrotasks). x is copied when the call is made, so it may be changed or reused at once; the
   * result is written into `out` (or the returned array) by the time the promise resolves: do
   * not read or write `out` before then.
   */
  async predictAsync(x: Float32Array, out?: Float32Array): Promise<Float32Array> {
    const segments = this.live('predictAsync');
    const batch = expectBatch('x', x, this.inputs);
    const y = out === undefined ? allocFloat32('the output', batch * this.outputs) : expectOutputBuffer('out', out, batch * this.outputs);
    let a = x;
    this.pending++;
    try {
      for (let i = 0; i < segments.length; i++) {
        const s = segments[i];
        const last = i === segments.length - 1;
        // Only the last segment writes into out: a caller who detached or resized it during the
        // earlier ones gets the same error as a one-segment model gives.
        if (last && typedArrayLength(y) !== batch * this.outputs) {
          throw rangeError(`predictAsync: out was detached or resized while the call was in flight (expected ${batch * this.outputs} elements, found ${typedArrayLength(y)})`);
        }
        const target = last ? y : allocFloat32(`the outputs of segment ${i}`, batch * s.outputs);
        await s.model.predictAsync(a, batch, target);
        a = target;
      }
    } finally {
      if (--this.pending === 0 && this.retired) {
        for (const s of this.retired) s.model.dispose();
        this.retired = null;
      }
    }
    return y;
  }

  /** Copies of the quantised layers (for qmatmul, or to inspect the codes). */
  getLayers(): QuantLayer[] {
    this.live('getLayers');
    return this.description.layers.map(copyLayer);
  }

  /** The model as safetensors bytes (layout: lib/quant/file.ts, docs/QUANTIZATION.md). */
  toSafetensors(): Uint8Array {
    this.live('toSafetensors');
    const { tensors, metadata } = quantToTensors(this.description, VERSION);
    return writeSafetensors(tensors, metadata);
  }

  async save(path: string): Promise<void> {
    this.live('save');
    expectPath('path', path);
    await writeWholeFile(path, this.toSafetensors());
  }

  saveSync(path: string): void {
    this.live('saveSync');
    expectPath('path', path);
    writeWholeFileSync(path, this.toSafetensors());
  }

  /**
   * A model made of quantised layers in order (from quantizeLayer, getLayers() or a quantiser of
   * your own): layer i + 1 reads layer i's outputs, and the model has no input encoding. Each
   * layer is copied, then checked as qmatmul checks it, so later changes to the caller's arrays
   * do not reach the model. `activations` is one mode for every layer or one per layer; the
   * model's own `activations` is then 'int8' when any layer runs W8A8 (as quantize reports a
   * calibrated model that kept some layers on float inputs). This is qmatmul without its per-call
   * repack (bench/qmatmul.mjs, a 1024 -> 1024 layer at batch 1: 9-17 us a call instead of
   * 0.7-1.4 ms), with predictAsync, save and dispose.
   */
  static fromLayers(layers: readonly QuantLayer[], options: QuantFromLayersOptions = {}): QuantizedMlp {
    // isArray: Array.isArray throws V8's own, uncoded TypeError on a revoked Proxy. Each list is
    // read once, entry by entry, so a Proxy cannot answer one length here and another below.
    if (!isArray(layers)) throw typeError(`Expected an array of QuantLayer objects for layers but received ${describe(layers)}`);
    const count = expectInteger('layers.length', layers.length, 1, MAX_QUANT_LAYERS);
    const given = Array.from({ length: count }, (_, i) => layers[i]);
    const o = expectObject('options', options);
    rejectUnknownKeys('options', o, ['activations', 'backend']);
    const backend = o.backend === undefined ? 'auto' : expectOneOf('options.backend', o.backend, BACKEND_CHOICES);
    let layerActivations: QuantActivations[];
    const activations = o.activations; // read once: a getter may answer differently each time
    if (isArray(activations)) {
      const length = activations.length;
      if (length !== count) throw rangeError(`Expected options.activations to list one mode per layer (${count}) but received ${length}`);
      layerActivations = Array.from({ length }, (_, i) => expectOneOf(`options.activations[${i}]`, activations[i], QUANT_ACTIVATIONS));
    } else {
      const all = activations === undefined ? 'float' : expectOneOf('options.activations', activations, QUANT_ACTIVATIONS);
      layerActivations = given.map(() => all);
    }
    const checked: QuantLayer[] = [];
    for (let i = 0; i < count; i++) {
      // checkQuantLayer's snapshot with copied arrays, not the caller's object, is what the rest reads.
      const layer = checkQuantLayer(given[i], `layers[${i}]`, { copy: true });
      if (i > 0 && layer.inputs !== checked[i - 1].outputs) {
        throw rangeError(`Expected layers[${i}].inputs to equal layers[${i - 1}].outputs (${checked[i - 1].outputs}) but received ${layer.inputs}`);
      }
      checked.push(layer);
    }
    return construct({
      inputs: checked[0].inputs,
      encoding: { type: 'identity' },
      activations: layerActivations.includes('int8') ? 'int8' : 'float',
      layers: checked,
      layerActivations,
    }, backend);
  }

  /** A quantised model from safetensors bytes written by toSafetensors / save. */
  static fromSafetensors(bytes: Uint8Array, options: QuantLoadOptions = {}): QuantizedMlp {
    return fromFileBytes(bytes, normalizeLoadOptions(options), false);
  }

  static async load(path: string, options: QuantLoadOptions = {}): Promise<QuantizedMlp> {
    expectPath('path', path);
    const backend = normalizeLoadOptions(options);
    return fromFileBytes(await readWholeFile(path), backend, true);
  }

  static loadSync(path: string, options: QuantLoadOptions = {}): QuantizedMlp {
    expectPath('path', path);
    const backend = normalizeLoadOptions(options);
    return fromFileBytes(readWholeFileSync(path), backend, true);
  }

  /** Free the model's memory now. Idempotent; any later call throws ERR_MLPKIT_DISPOSED. */
  dispose(): void {
    if (!this.segments) return;
    if (this.pending > 0) this.retired = this.segments;
    else for (const s of this.segments) s.model.dispose();
    this.segments = null;
  }
}

// The model: a checked spec, its parameters on a backend, and the user-facing operations.
// Everything a caller passes is validated here (shared by both backends) before it reaches one.

import { readWholeFile, readWholeFileSync, writeWholeFile, writeWholeFileSync } from './io/whole-file.js';
import { MODEL_BACKEND_CHOICES, selectModelBackend, type ModelBackendChoice } from './backend/index.js';
import { PRECISIONS, type BackendModel, type BackendName, type LossName, type PrecisionName } from './backend/types.js';
import { disposedError, rangeError } from './errors.js';
import { initParameters } from './init.js';
import { parseSafetensors, writeSafetensors, type SafetensorsFile } from './io/safetensors.js';
import { modelToTensors, rejectUnknownLoadOptions, tensorsToModel, type ForeignModelOptions } from './io/model-file.js';
import { QuantizedMlp } from './quant/model.js';
import type { QuantizeOptions } from './quant/options.js';
import { quantizeInWorker } from './quant/quantize-async.js';
import { SparseMlp } from './sparse/model.js';
import type { SparsifyOptions } from './sparse/options.js';
import { normalizeSpec, parameterLayout, toModelConfig, type LayerSlot, type MlpSpec, type NormalizedSpec } from './spec.js';
import { Trainer, type TrainerOptions } from './train/trainer.js';
import { checkTarget, normalizeLoss } from './train/loss-options.js';
import {
  allocFloat32, expectAllFinite, expectBatch, expectObject, expectOneOf, expectOutputBuffer, expectPath, rejectUnknownKeys,
} from './validate.js';
import { VERSION } from './version.js';

export interface MlpOptions {
  /**
   * 'auto' (default: MLPKIT_BACKEND, else cuda when a usable GPU and the CUDA addon are present,
   * else native when it loads, else the reference), 'native', 'reference' or 'cuda'.
   */
  backend?: ModelBackendChoice;
  /**
   * cuda only: 'fp32' (default), or 'fp16' / 'bf16' products with fp32 master weights and
   * accumulation (the fused tensor-core kernels, for widths up to 128). The CPU backends
   * always compute in float32 (native) or float64 (reference) and ignore it.
   */
  precision?: PrecisionName;
  /** Flat parameters to start from instead of the initialiser (layout: see getParameters). */
  parameters?: Float32Array;
}

export interface LayerParameters {
  inputs: number;
  outputs: number;
  /** [outputs x inputs] row-major, as torch.nn.Linear.weight; a gated layer's is [2 * outputs x inputs], gate rows first. */
  weight: Float32Array;
  bias: Float32Array | null;
  /** True for a gated layer (spec.layers[i].gated). */
  gated: boolean;
}

export type GradientRequest =
  | { loss: LossName | { type: 'huber'; delta?: number }; target: Float32Array | Int32Array | number[]; delta?: number }
  | { gradOutput: Float32Array };

export interface Gradients {
  /** The loss value, when a loss was given. */
  loss?: number;
  /** dL/dparameters, flat, in the getParameters layout. */
  parameters: Float32Array;
  /** The same gradients split per layer (views into `parameters`). */
  layers: { weight: Float32Array; bias: Float32Array | null }[];
  /** dL/dx, batch x inputs. */
  input: Float32Array;
}

export type LoadOptions = ForeignModelOptions & { backend?: ModelBackendChoice; precision?: PrecisionName };

/** Load options are an object of known names (checked before a file is read). */
function checkLoadOptions(options: unknown): void {
  rejectUnknownLoadOptions(expectObject('options', options), ['backend', 'precision']);
}

export class Mlp {
  /** The spec with every default filled in (plain JSON). */
  readonly spec: NormalizedSpec;
  readonly inputs: number;
  readonly outputs: number;
  /** Number of trainable floats. */
  readonly parameterCount: number;
  /** The backend that runs this model. */
  readonly backend: BackendName;
  private readonly slots: LayerSlot[];
  private model: BackendModel | null;

  constructor(spec: MlpSpec, options: MlpOptions = {}) {
    this.spec = normalizeSpec(spec);
    rejectUnknownKeys('options', expectObject('options', options), ['backend', 'precision', 'parameters']);
    const choice = options.backend === undefined ? 'auto' : expectOneOf('options.backend', options.backend, MODEL_BACKEND_CHOICES);
    const precision = options.precision === undefined ? 'fp32' : expectOneOf('options.precision', options.precision, PRECISIONS);
    const { slots, count } = parameterLayout(this.spec);
    this.slots = slots;
    this.parameterCount = count;
    this.inputs = this.spec.inputs;
    this.outputs = slots[slots.length - 1].outputs;
    let params: Float32Array;
    if (options.parameters !== undefined) {
      params = expectOutputBuffer('options.parameters', options.parameters, count);
      // As setParameters: a NaN weight would only show up later, as NaN outputs or a failed step.
      expectAllFinite('options.parameters', params);
    } else params = initParameters(this.spec);
    const backend = selectModelBackend(choice);
    this.backend = backend.name;
    this.model = backend.createModel(toModelConfig(this.spec), params, { precision });
  }

  /** @internal The backend model, for the trainer. Throws once disposed. */
  handle(what: string): BackendModel {
    if (!this.model) throw disposedError(what);
    return this.model;
  }

  /**
   * @internal A separate model with this one's spec, backend and current parameters: for work
   * that awaits between its reads of the model (sparsify's predictor training), so a dispose()
   * or setParameters() made meanwhile changes neither its result nor its success. It holds its
   * own parameters (and the backend's packed copy) while in use, and runs at fp32 (a CUDA
   * model's fp16 / bf16 precision is not carried over).
   */
  snapshot(what: string): Mlp {
    this.handle(what);
    return new Mlp(this.spec, { backend: this.backend, parameters: this.getParameters() });
  }

  /** True once dispose() has been called. */
  get disposed(): boolean {
    return this.model === null;
  }

  /** Outputs for a batch: x is batch x inputs row-major; returns (or fills `out`) batch x outputs. */
  predict(x: Float32Array, out?: Float32Array): Float32Array {
    const model = this.handle('predict');
    const batch = expectBatch('x', x, this.inputs);
    const y = out === undefined ? allocFloat32('the output', batch * this.outputs) : expectOutputBuffer('out', out, batch * this.outputs);
    model.predict(x, batch, y);
    return y;
  }

  /**
   * predict off the event loop (native: on the libuv thread pool). x is copied when the call is
   * made, so it may be changed or reused at once; the result is written into `out` (or the
   * returned array) by the time the promise resolves: do not read or write `out` before then.
   */
  async predictAsync(x: Float32Array, out?: Float32Array): Promise<Float32Array> {
    const model = this.handle('predictAsync');
    const batch = expectBatch('x', x, this.inputs);
    const y = out === undefined ? allocFloat32('the output', batch * this.outputs) : expectOutputBuffer('out', out, batch * this.outputs);
    await model.predictAsync(x, batch, y);
    return y;
  }

  /** A copy of every parameter: per layer W [out x in] row-major, then b [out] if present. */
  getParameters(): Float32Array {
    const out = new Float32Array(this.parameterCount);
    this.handle('getParameters').getParams(out);
    return out;
  }

  setParameters(params: Float32Array): void {
    const model = this.handle('setParameters');
    expectOutputBuffer('params', params, this.parameterCount);
    expectAllFinite('params', params);
    model.setParams(params);
  }

  /** Copies of each layer's weight and bias. */
  getLayers(): LayerParameters[] {
    this.handle('getLayers');
    return this.split(this.getParameters()).map((l, i) => ({
      inputs: this.slots[i].inputs,
      outputs: this.slots[i].outputs,
      weight: l.weight.slice(),
      bias: l.bias ? l.bias.slice() : null,
      gated: this.spec.layers[i].gated,
    }));
  }

  private split(flat: Float32Array): { weight: Float32Array; bias: Float32Array | null }[] {
    return this.slots.map((s) => ({
      weight: flat.subarray(s.weightOffset, s.weightOffset + s.inputs * s.rows),
      bias: s.biasOffset >= 0 ? flat.subarray(s.biasOffset, s.biasOffset + s.rows) : null,
    }));
  }

  /**
   * Gradients of a loss (or of a given dL/doutput) with respect to every parameter and to the
   * input, without changing the model: for custom losses (physics, SDF eikonal terms) and checks.
   */
  gradients(x: Float32Array, request: GradientRequest): Gradients {
    const model = this.handle('gradients');
    const batch = expectBatch('x', x, this.inputs);
    const req = expectObject('request', request);
    const input = new Float32Array(batch * this.inputs);
    let loss: number | undefined;
    if ('gradOutput' in req) {
      for (const key of ['loss', 'target', 'delta']) {
        if (key in req) throw rangeError(`request.${key} does not apply with request.gradOutput (pass either { gradOutput } or { loss, target, delta? })`);
      }
      rejectUnknownKeys('request', req, ['gradOutput']);
      const g = expectOutputBuffer('request.gradOutput', req.gradOutput, batch * this.outputs);
      model.backward(x, batch, g, input);
    } else {
      rejectUnknownKeys('request', req, ['loss', 'target', 'delta']);
      const spec = normalizeLoss(req.loss, req.delta, 'request.loss');
      const target = checkTarget(spec.name, req.target, batch, this.outputs, 'request.target');
      loss = model.lossGrad(x, batch, spec.code, spec.param, target, input);
    }
    const parameters = new Float32Array(this.parameterCount);
    model.getGrads(parameters);
    return { ...(loss === undefined ? {} : { loss }), parameters, layers: this.split(parameters), input };
  }

  /**
   * A trainer bound to this model. It starts the optimizer fresh (no moments, step 0), as a new
   * torch optimizer does; the moments then live with the model's parameters, so train a model
   * with one trainer at a time.
   */
  trainer(options: TrainerOptions): Trainer {
    this.handle('trainer');
    return new Trainer(this, options);
  }

  /**
   * A quantised copy for inference: weights int8 (one scale per output) or int4 (groups of 32,
   * 64 or 128 inputs), activations float or int8 (W8A8), optional calibration rows for an
   * error report and per-layer choices. See docs/QUANTIZATION.md. This model is unchanged.
   * options.onProgress is called after each step (QuantizeProgress.stage: each layer quantised;
   * with calibration, also each layer calibrated and the quantised model measured last); an
   * options.signal aborted from it stops the call with the signal's reason.
   */
  quantize(options: QuantizeOptions): QuantizedMlp {
    return QuantizedMlp.fromMlp(this, options);
  }

  /**
   * quantize(options) off the event loop: the same model, bit for bit (stats included). What
   * blocks where: on the calling thread, the option checks, a copy of the parameters
   * (getParameters, taken when the call is made) and, once the worker is done, building the
   * quantised model from the worker's arrays (the kernels' repack); for one 4096 -> 16384 layer
   * on a 2-core Zen 5 VM, 0.04 s for the copy (268 MB; 0.28 s the first time in a process, page
   * faults) and 0.13 s (int4) to 0.38 s (int8) for the build, so the longest stall is 0.12-0.30 s
   * against quantize's 0.35-0.50 s, or 1.4-1.7 s with 64 calibration rows
   * (bench/quantize-async.mjs, 2026-12-07). The quantisation and the calibration run in a worker
   * thread (worker_threads) on the copy: disposing or training this model meanwhile does not
   * change the result. Bad options reject with the errors quantize throws. A cuda model's copy
   * runs on a CPU backend, as quantize's calibration does; its own outputs on the calibration
   * rows come from this model (predictAsync). The worker holds the copy of the parameters (and,
   * with calibration, one float layer at a time) besides the quantised model while it runs.
   * options.onProgress is called on this thread after each of the worker's steps, as quantize
   * calls it; aborting options.signal terminates the worker and rejects with the signal's reason.
   */
  quantizeAsync(options: QuantizeOptions): Promise<QuantizedMlp> {
    return quantizeInWorker(this, options);
  }

  /**
   * A sparse-activation copy for inference: after the chosen hidden layers only some units are
   * kept per row (ReLU zeros exactly, a calibrated threshold, top-k, or a trained low-rank
   * predictor), and the next layer reads only their weights. See SparsifyOptions.
   */
  sparsify(options: SparsifyOptions): Promise<SparseMlp> {
    return SparseMlp.fromMlp(this, options);
  }

  /** The model as safetensors bytes: `layers.<i>.weight` [out, in], `layers.<i>.bias`, spec in metadata. */
  toSafetensors(): Uint8Array {
    this.handle('toSafetensors');
    const { tensors, metadata } = modelToTensors(this.spec, this.getParameters(), VERSION);
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

  /**
   * A model from safetensors bytes: ours (spec in metadata) or a PyTorch nn.Sequential
   * state_dict (pass the activations: { activation: 'relu' } or { activations: [...] }).
   * F16 and BF16 weights are widened to float32. A sparse model's file (SparseMlp.save) gives
   * the dense model it was made from: its sparsity settings and predictors are ignored.
   */
  static fromSafetensors(bytes: Uint8Array, options: LoadOptions = {}): Mlp {
    checkLoadOptions(options);
    // Views, not copies: tensorsToModel copies the tensors into one parameter array.
    const { spec, params } = tensorsToModel(parseSafetensors(bytes, { views: true }) as SafetensorsFile, options);
    return new Mlp(spec, { backend: options.backend, precision: options.precision, parameters: params });
  }

  static async load(path: string, options: LoadOptions = {}): Promise<Mlp> {
    expectPath('path', path);
    checkLoadOptions(options);
    return Mlp.fromSafetensors(await readWholeFile(path), options);
  }

  static loadSync(path: string, options: LoadOptions = {}): Mlp {
    expectPath('path', path);
    checkLoadOptions(options);
    return Mlp.fromSafetensors(readWholeFileSync(path), options);
  }

  /** Free the model's memory now (native memory is also freed by GC otherwise). Idempotent. */
  dispose(): void {
    this.model?.dispose();
    this.model = null;
  }
}


// User options for quantisation, checked once with the messages lib/validate.ts uses: which
// option, what was expected, what was received. Unknown option names are rejected too, since a
// misspelt `groupsize: 128` would otherwise quietly quantise with the default group size.

import { BACKEND_CHOICES, type BackendChoice } from '../backend/index.js';
import { ACTIVATIONS, type ActivationName } from '../backend/types.js';
import { describe, rangeError, typeError } from '../errors.js';
import { expectAllFinite, expectBatch, expectBoolean, expectObject, expectOneOf, isArray, isInstanceOf, rejectUnknownKeys } from '../validate.js';
import { INT4_GROUP_SIZES, QUANT_ACTIVATIONS, QUANT_FORMATS, type QuantActivations, type QuantFormat } from './format.js';

/** How one layer's weights are stored (quantizeLayer's options). */
export interface LayerFormatOptions {
  format: QuantFormat;
  /** int4 only: 32 (default), 64 or 128 inputs per scale. */
  groupSize?: 32 | 64 | 128;
  /** int4 only: true (default) for scale only, false for scale + zero point per group. */
  symmetric?: boolean;
  /**
   * quantizeLayer only: per-input equalisation (docs/QUANTIZATION.md), the layer then carrying
   * inputScales. Default false; with true a layer whose columns' peaks are within 2x of each
   * other is left plain.
   */
  equalize?: boolean;
}

/** The checked form: groupSize is null for int8 (one group per row, whatever the width). */
export interface LayerFormat {
  format: QuantFormat;
  groupSize: number | null;
  symmetric: boolean;
}

/** Options of net.quantize(). */
export interface QuantizeOptions {
  /**
   * Weight format of every layer, or of each layer in order (one per layer, e.g. ['int8',
   * 'int4', 'int4', 'int8']: a small first or last layer whose error counts most kept in int8).
   */
  weights: QuantFormat | readonly QuantFormat[];
  /** int4 only: 32 (default), 64 or 128. */
  groupSize?: 32 | 64 | 128;
  /** int4 only: default true. */
  symmetric?: boolean;
  /** 'float' (default): weight-only; 'int8': inputs of each layer quantised per row (W8A8). */
  activations?: QuantActivations;
  /** 'auto' (default), 'native' or 'reference'. */
  backend?: BackendChoice;
  /**
   * Rows of typical inputs (batch x inputs, row-major): the model then reports its error
   * against the float model on them (`stats`), with activations 'int8' keeps float activations
   * for layers that quantised inputs would hurt, and with 16 rows or more bias-corrects each
   * layer on them (see lib/quant/calibrate.ts). The stats are measured on these same rows.
   */
  calibration?: Float32Array;
  /**
   * Per-input equalisation (docs/QUANTIZATION.md): a layer's input columns scaled by powers of
   * two so that each column's largest weight is near 1, the inverse applied to the inputs. It
   * saves layers whose columns differ in scale by orders of magnitude (a first layer with the
   * input standardisation folded in), where one scale per output rounds the small columns to 0.
   * 'auto' (default): with calibration, per layer the equalised one where its error is below
   * 0.8x the plain one's, if the whole model then beats the all-plain one; without, only a
   * first layer whose plain quantisation would lose an input column (its weights off by more
   * than half their size: lib/quant/quantize.ts, lostInput).
   * true: every layer whose columns differ by more than 2x; false: never.
   */
  equalize?: boolean | 'auto';
  /**
   * How codes are chosen. 'nearest' rounds each weight to its nearest code. 'gptq' (GPTQ,
   * lib/quant/gptq.ts) rounds one input at a time and pushes each rounding error onto the
   * inputs not yet rounded, weighted by how they co-vary on the calibration rows, so that the
   * layer's outputs, not its weights, stay close; it needs calibration. 'auto' (default):
   * GPTQ is tried on each layer with at least GPTQ_ROWS_PER_INPUT calibration rows per input
   * whose work is at most GPTQ_AUTO_MAX_WORK multiply-adds (GPTQ_AUTO_MAX_WORK_NATIVE where the
   * addon runs it: seconds either way), and kept where it beats the nearest rounding on
   * calibration rows held back from its fit (lib/quant/calibrate.ts, GPTQ_KEEP_RATIO); 'nearest'
   * elsewhere.
   */
  rounding?: QuantRounding | 'auto';
  /**
   * Called after each step of the work (QuantizeProgress.stage: a layer quantised; with
   * calibration, also each layer calibrated, and the quantised model measured last), on the
   * calling thread, quantizeAsync's too. A throw stops the call with that error; what it returns
   * is ignored (an async callback's rejection is not seen).
   */
  onProgress?: (progress: QuantizeProgress) => void;
  /**
   * Aborting stops the call with the signal's reason (an AbortError unless given another).
   * quantizeAsync rejects at once and terminates its worker; quantize holds the thread, so it
   * sees only an abort made before the call or from onProgress, and stops right after that call.
   */
  signal?: AbortSignal;
}

/** What onProgress is told after each step of quantize or quantizeAsync. */
export interface QuantizeProgress {
  /**
   * In the order they come:
   * - 'quantize': a layer's codes chosen by nearest rounding (each layer in turn);
   * - 'calibrate', with calibration only: a layer calibrated (GPTQ where tried, bias correction,
   *   its error measured on the rows, the float layer's outputs included: most of the time of a
   *   calibrated call);
   * - 'measure', with calibration only: the quantised model built and run end to end on the
   *   rows for stats.output, twice where an equalised layer is set against the plain model
   *   (one step, the last: the call returns right after it).
   * Without calibration, the last 'quantize' step is followed only by building the kernels'
   * layout (0.1-0.3 s for a 4096 -> 16384 layer).
   */
  stage: 'quantize' | 'calibrate' | 'measure';
  /** The layer just done, 0-based; null for 'measure', which spans the model. */
  layer: number | null;
  /** Layers in the model. */
  layers: number;
  /** Steps done, 1-based, out of steps: one per layer; with calibration, 2 * layers + 1. */
  step: number;
  steps: number;
  /** Seconds since the call began. */
  elapsedSeconds: number;
}

/** The ways quantize chooses codes (QuantizeOptions.rounding). */
export const QUANT_ROUNDINGS = ['nearest', 'gptq'] as const;
export type QuantRounding = (typeof QUANT_ROUNDINGS)[number];

/**
 * 'auto' tries GPTQ on a layer with at least this many calibration rows per input of the layer.
 * Fewer rows span too little of the input space: the errors are pushed along the directions
 * they happen to cover, and rows not among them come out worse. On a 64-256-256-16 classifier
 * (int4 g32, GPTQ on every layer, relative RMS error on 4096 held-out rows; nearest 4.1%): 64
 * rows 5.4%, 128 rows 4.1%, 256 rows 3.9%, 1024 rows 3.6%, 4096 rows 3.6% (the calibration rows'
 * own error read 2.8% at 64 rows: in-sample it always looks better). Above it, the held-back
 * check decides.
 */
export const GPTQ_ROWS_PER_INPUT = 2;

/**
 * The most work (multiply-adds, gptqWork) of one GPTQ fit 'auto' tries on a layer (it runs two
 * when it keeps GPTQ: the trial and the refit on every row; and per equalisation candidate), on the
 * TypeScript loops (lib/quant/hessian.ts, gptq.ts: float64 at ~0.6-1e9 per second in V8, so a
 * few seconds: GPTQ for a 1024 -> 4096 layer with 1024 calibration rows took 3.9 s) and on the addon's
 * (native/core/quant/gptq.cpp, the same bits, blocked, on the thread pool: ~2e10 per second on 2
 * Zen 5 cores, so up to ~3 s a fit: that layer 0.22 s, 2048 -> 8192 with 1024 rows, 2.5e10,
 * 1.4 s, and 4096 -> 16384, 1.9e11, 9.4 s; node bench/gptq.mjs). Above it
 * 'auto' rounds to nearest and 'gptq' asks for it anyway.
 */
export const GPTQ_AUTO_MAX_WORK = 4e9;
export const GPTQ_AUTO_MAX_WORK_NATIVE = 6e10;

/** GPTQ's multiply-adds for a layer: the Gram matrix, its inverse factor, the rows. */
export function gptqWork(inputs: number, outputs: number, rows: number): number {
  return (rows * inputs * inputs) / 2 + (2 * inputs ** 3) / 3 + (outputs * inputs * inputs) / 2;
}

export interface NormalizedQuantizeOptions {
  /** One per layer. */
  layerFormats: LayerFormat[];
  activations: QuantActivations;
  backend: BackendChoice;
  calibration: Float32Array | null;
  equalize: boolean | 'auto';
  rounding: QuantRounding | 'auto';
  onProgress: ((progress: QuantizeProgress) => void) | null;
  signal: AbortSignal | null;
}

function layerFormatFrom(name: string, o: Record<string, unknown>, formatKey: string): LayerFormat {
  const format = expectOneOf(`${name}.${formatKey}`, o[formatKey], QUANT_FORMATS);
  if (format === 'int8') {
    if (o.groupSize !== undefined) {
      throw rangeError(`${name}.groupSize applies to int4 weights only (int8 has one scale per output channel) but received ${describe(o.groupSize)}`);
    }
    if (o.symmetric !== undefined && expectBoolean(`${name}.symmetric`, o.symmetric) !== true) {
      throw rangeError(`${name}.symmetric must be true for int8 weights (int8 is symmetric only) but received false`);
    }
    return { format, groupSize: null, symmetric: true };
  }
  let groupSize = 32;
  if (o.groupSize !== undefined) {
    if (typeof o.groupSize !== 'number') {
      throw typeError(`Expected one of ${INT4_GROUP_SIZES.join(', ')} for ${name}.groupSize but received ${describe(o.groupSize)}`);
    }
    if (!(INT4_GROUP_SIZES as readonly number[]).includes(o.groupSize)) {
      throw rangeError(`Expected one of ${INT4_GROUP_SIZES.join(', ')} for ${name}.groupSize but received ${o.groupSize}`);
    }
    groupSize = o.groupSize;
  }
  const symmetric = o.symmetric === undefined ? true : expectBoolean(`${name}.symmetric`, o.symmetric);
  return { format, groupSize, symmetric };
}

/**
 * net.quantize()'s weights, one format per layer: a name for every layer, or a list of them
 * (groupSize and symmetric then describe its int4 layers; where it has none, a groupSize or
 * symmetric: false is refused as for 'int8').
 */
function layerFormatsFrom(name: string, o: Record<string, unknown>, layerCount: number): LayerFormat[] {
  // Read once (a getter may answer differently each time); isArray, because Array.isArray throws
  // V8's own, uncoded TypeError on a revoked Proxy.
  const weights = o.weights;
  if (!isArray(weights)) {
    if (typeof weights !== 'string') {
      throw typeError(`Expected ${QUANT_FORMATS.map((f) => `'${f}'`).join(' or ')}, or a list of them (one per layer), for ${name}.weights but received ${describe(weights)}`);
    }
    const format = layerFormatFrom(name, { weights, groupSize: o.groupSize, symmetric: o.symmetric }, 'weights');
    return Array.from({ length: layerCount }, () => format);
  }
  const list = weights;
  const length = list.length; // read once: a Proxy may answer differently each time
  if (length !== layerCount) {
    throw rangeError(`Expected ${name}.weights to list one format per layer (${layerCount}) but received ${length}`);
  }
  // By index, as quantizeAsync copies it: a hole is an entry of undefined, not one skipped.
  const formats: QuantFormat[] = [];
  for (let i = 0; i < length; i++) formats.push(expectOneOf(`${name}.weights[${i}]`, list[i], QUANT_FORMATS));
  // groupSize and symmetric read as for one format (own or inherited, like every option).
  const shared = { weights: formats.includes('int4') ? 'int4' : 'int8', groupSize: o.groupSize, symmetric: o.symmetric };
  const int4 = layerFormatFrom(name, shared, 'weights');
  return formats.map((f): LayerFormat => (f === 'int8' ? { format: 'int8', groupSize: null, symmetric: true } : int4));
}

/** quantizeLayer's options: { format, groupSize?, symmetric?, equalize? }. */
export function normalizeLayerFormat(value: unknown, name = 'options'): LayerFormat & { equalize: boolean } {
  const o = expectObject(name, value);
  rejectUnknownKeys(name, o, ['format', 'groupSize', 'symmetric', 'equalize']);
  const equalize = o.equalize === undefined ? false : expectBoolean(`${name}.equalize`, o.equalize);
  return { ...layerFormatFrom(name, o, 'format'), equalize };
}

/** A layer activation given by name or by its index in ACTIVATIONS; returns the index. */
export function activationCode(name: string, value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value >= ACTIVATIONS.length) {
      throw rangeError(`Expected an activation name or an index between 0 and ${ACTIVATIONS.length - 1} for ${name} but received ${value}`);
    }
    return value;
  }
  return ACTIVATIONS.indexOf(expectOneOf<ActivationName>(name, value, ACTIVATIONS));
}

/** The option names net.quantize() knows. */
export const QUANTIZE_OPTION_KEYS: readonly (keyof QuantizeOptions)[] = [
  'weights', 'groupSize', 'symmetric', 'activations', 'backend', 'calibration', 'equalize', 'rounding', 'onProgress', 'signal',
];

/** net.quantize()'s options, for a model taking `inputs` inputs through `layerCount` layers. */
export function normalizeQuantizeOptions(value: unknown, inputs: number, layerCount: number, name = 'options'): NormalizedQuantizeOptions {
  const o = expectObject(name, value);
  rejectUnknownKeys(name, o, QUANTIZE_OPTION_KEYS);
  const layerFormats = layerFormatsFrom(name, o, layerCount);
  const activations = o.activations === undefined ? 'float' : expectOneOf(`${name}.activations`, o.activations, QUANT_ACTIVATIONS);
  const backend = o.backend === undefined ? 'auto' : expectOneOf(`${name}.backend`, o.backend, BACKEND_CHOICES);
  let calibration: Float32Array | null = null;
  if (o.calibration !== undefined) {
    expectBatch(`${name}.calibration`, o.calibration, inputs);
    calibration = o.calibration as Float32Array;
    expectAllFinite(`${name}.calibration`, calibration);
  }
  let equalize: boolean | 'auto' = 'auto';
  if (o.equalize !== undefined && o.equalize !== 'auto') {
    if (typeof o.equalize !== 'boolean') throw typeError(`Expected true, false or 'auto' for ${name}.equalize but received ${describe(o.equalize)}`);
    equalize = o.equalize;
  }
  const rounding = o.rounding === undefined ? 'auto' : expectOneOf(`${name}.rounding`, o.rounding, ['auto', ...QUANT_ROUNDINGS] as const);
  if (rounding === 'gptq' && !calibration) {
    throw rangeError(`${name}.rounding 'gptq' chooses codes from calibration rows: pass ${name}.calibration (rows of typical inputs) or use rounding 'nearest'`);
  }
  const onProgress = o.onProgress;
  if (onProgress !== undefined && typeof onProgress !== 'function') {
    throw typeError(`Expected a function for ${name}.onProgress but received ${describe(onProgress)}`);
  }
  const signal = o.signal;
  if (signal !== undefined && !isInstanceOf(signal, AbortSignal)) {
    throw typeError(`Expected an AbortSignal for ${name}.signal but received ${describe(signal)}`);
  }
  return {
    layerFormats, activations, backend, calibration, equalize, rounding,
    onProgress: (onProgress as NormalizedQuantizeOptions['onProgress']) ?? null, signal: signal ?? null,
  };
}

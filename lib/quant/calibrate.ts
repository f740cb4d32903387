// Calibration: how far a quantised model's outputs are from the float model's on the caller's
// data, and the one per-layer setting worth choosing from it: whether a layer quantises its
// inputs (W8A8) or keeps them float. Quantising inputs costs little accuracy on most layers,
// but a layer whose inputs have outliers (a few large features beside many small ones) loses
// the small ones to the per-row scale; its error then dwarfs the weight-only error.
//
// Each layer is measured alone: fed the float model's input to that layer, its quantised output
// is compared with the float layer's output, so one layer's error does not blame the next. The
// whole model is then measured end to end on the same rows.

import { selectBackend } from '../backend/index.js';
import { encode, encodedWidthOf } from '../backend/reference/encoding.js';
import type { BackendQuantModel, ModelConfig, QuantModelConfig } from '../backend/types.js';
import { ACTIVATIONS, ENCODINGS } from '../backend/types.js';
import type { NormalizedSpec } from '../spec.js';
import type { QuantBackend } from './backend.js';
import type { QuantActivations, QuantLayer } from './format.js';
import { gptqLayer } from './gptq.js';
import { GPTQ_AUTO_MAX_WORK, GPTQ_AUTO_MAX_WORK_NATIVE, GPTQ_ROWS_PER_INPUT, gptqWork, type QuantRounding } from './options.js';
import { forEachDequantizedRow, nativeWeightQuantizer } from './quantize.js';

/** Relative errors of quantised outputs q against float outputs f over a set of rows. */
export interface QuantErrorStats {
  /** sqrt(sum (q - f)^2) / sqrt(sum f^2): the RMS error relative to the RMS output. */
  relativeRms: number;
  /** max |q - f| / max |f|: the worst error relative to the output scale. */
  relativeMax: number;
}

export interface QuantLayerStats extends QuantErrorStats {
  /** What the layer runs; relativeRms and relativeMax above are for this choice. */
  activations: QuantActivations;
  /** The layer's error with float inputs. */
  weightOnly: QuantErrorStats;
  /** The layer's error with int8 inputs; null when int8 activations were not asked for. */
  w8a8: QuantErrorStats | null;
  /** The layer scales its inputs per column (per-input equalisation; lib/quant/format.ts). */
  equalized: boolean;
  /** The error of the other candidate (equalised or not) that calibration measured and turned down; null when there was none. */
  rejected: QuantErrorStats | null;
  /** How the layer's codes were chosen (QuantizeOptions.rounding; 'nearest' also where GPTQ found every input zero). */
  rounding: QuantRounding;
  /**
   * rounding 'auto''s trial of GPTQ, when it ran: the weight-only relative RMS errors of the
   * nearest rounding and of GPTQ fitted on the other rows, on `rows` calibration rows held back
   * from that fit. GPTQ is kept where it is below GPTQ_KEEP_RATIO x nearest. null where it was
   * not tried, or the trial fit found nothing to fit (every input zero).
   */
  gptqCheck: GptqCheck | null;
}

export interface GptqCheck {
  rows: number;
  nearest: number;
  gptq: number;
}

export interface QuantStats {
  /** Calibration rows measured. */
  samples: number;
  layers: QuantLayerStats[];
  /** The whole model's outputs against the float model's. */
  output: QuantErrorStats;
  /**
   * Layers whose equalised candidate won measured alone but were left plain because the whole
   * model was more accurate with every layer plain (lib/quant/model.ts); usually empty.
   */
  equalizationReverted: number[];
}

/**
 * A layer keeps int8 activations unless they make its error more than this many times its
 * weight-only error (and more than W8A8_ERROR_FLOOR). For int8 weights the two errors are of
 * the same size on well-behaved inputs (~1.4x together), for int4 weights the weight error
 * dominates (~1x); 3x means the inputs have outliers the per-row scale cannot serve.
 */
export const W8A8_ERROR_RATIO = 3;
/** Below this relative RMS error W8A8 is kept whatever the ratio (exactly representable weights). */
export const W8A8_ERROR_FLOOR = 2e-3;

export function errorStats(q: ArrayLike<number>, f: ArrayLike<number>): QuantErrorStats {
  let err2 = 0;
  let ref2 = 0;
  let errMax = 0;
  let refMax = 0;
  for (let i = 0; i < f.length; i++) {
    const d = q[i] - f[i];
    err2 += d * d;
    ref2 += f[i] * f[i];
    errMax = Math.max(errMax, Math.abs(d));
    refMax = Math.max(refMax, Math.abs(f[i]));
  }
  const ratio = (num: number, den: number) => (num === 0 ? 0 : num / den); // 0/0: no error at all
  return { relativeRms: ratio(Math.sqrt(err2), Math.sqrt(ref2)), relativeMax: ratio(errMax, refMax) };
}

/** One float layer as the float model has it. */
export interface FloatLayer {
  inputs: number;
  outputs: number;
  weight: Float32Array;
  bias: Float32Array | null;
}

/** Runs a throwaway one-layer model on x once, then frees it. */
function predictOnce(model: Pick<BackendQuantModel, 'predict' | 'dispose'>, x: Float32Array, inputs: number, outputs: number): Float32Array {
  try {
    const batch = x.length / inputs;
    const out = new Float32Array(batch * outputs);
    model.predict(x, batch, out);
    return out;
  } finally {
    model.dispose();
  }
}

/**
 * The layer's weights then biases, the parameter layout of a one-layer model. The backends copy
 * what they are given, so a view serves where the two already sit so in one buffer, as in the
 * views quantize takes of net.getParameters(): for a 4096 -> 16384 layer that skips a 268 MB
 * copy (allocation and first-touch page faults included, ~0.2 s).
 */
function layerParameters(layer: FloatLayer): Float32Array {
  const { weight, bias } = layer;
  if (!bias) return weight;
  if (bias.buffer === weight.buffer && bias.byteOffset === weight.byteOffset + weight.byteLength) {
    return new Float32Array(weight.buffer, weight.byteOffset, weight.length + bias.length);
  }
  const params = new Float32Array(weight.length + bias.length);
  params.set(weight);
  params.set(bias, weight.length);
  return params;
}

function floatLayerOutputs(backendName: 'native' | 'reference', layer: FloatLayer, spec: NormalizedSpec['layers'][number], x: Float32Array): Float32Array {
  const config: ModelConfig = {
    inputs: layer.inputs,
    encoding: 0,
    octaves: 0,
    includeInput: false,
    units: Int32Array.of(layer.outputs),
    activations: Int32Array.of(ACTIVATIONS.indexOf(spec.activation)),
    alphas: Float32Array.of(spec.activation === 'leaky_relu' ? spec.alpha : 0),
    bias: Uint8Array.of(layer.bias ? 1 : 0),
    gated: Uint8Array.of(0),
    residual: Uint8Array.of(0),
  };
  const model = selectBackend(backendName).createModel(config, layerParameters(layer));
  return predictOnce(model, x, layer.inputs, layer.outputs);
}

function quantLayerOutputs(backend: QuantBackend, layer: QuantLayer, activations: number, x: Float32Array): Float32Array {
  const config: QuantModelConfig = { inputs: layer.inputs, encoding: 0, octaves: 0, includeInput: false, activations };
  const model: BackendQuantModel = backend.createQuantModel(config, [layer]);
  return predictOnce(model, x, layer.inputs, layer.outputs);
}

/** The calibration rows through the model's input encoding, as float32 (what layer 0 reads). */
export function encodeCalibration(spec: NormalizedSpec, x: Float32Array): Float32Array {
  if (spec.encoding.type === 'identity') return x;
  const config = {
    inputs: spec.inputs,
    encoding: ENCODINGS.indexOf(spec.encoding.type),
    octaves: spec.encoding.octaves,
    includeInput: spec.encoding.includeInput,
  };
  const batch = x.length / spec.inputs;
  const enc = new Float64Array(batch * encodedWidthOf(config));
  encode(config, x, batch, enc);
  return Float32Array.from(enc);
}

/**
 * Bias correction needs this many calibration rows. It is fitted and measured on the same rows,
 * and on a handful it fits them, not the inputs: with one row it cancelled that row's weight
 * error exactly, so the reported error read ~1e-7 while held-out rows were off by 3%, and every
 * layer's W8A8 error, which the correction does not remove, looked 1000x the weight-only one
 * and W8A8 was dropped.
 */
export const BIAS_CORRECTION_MIN_ROWS = 16;

/** One candidate layer measured on its inputs, with the activations choice made for it. */
function measure(layer: QuantLayer, rounding: QuantRounding, requested: QuantActivations, input: Float32Array, reference: Float32Array, quantBackend: QuantBackend) {
  const weightOnly = errorStats(quantLayerOutputs(quantBackend, layer, 0, input), reference);
  let w8a8: QuantErrorStats | null = null;
  let activations: QuantActivations = 'float';
  if (requested === 'int8') {
    w8a8 = errorStats(quantLayerOutputs(quantBackend, layer, 1, input), reference);
    const keep = w8a8.relativeRms <= W8A8_ERROR_RATIO * weightOnly.relativeRms || w8a8.relativeRms <= W8A8_ERROR_FLOOR;
    activations = keep ? 'int8' : 'float';
  }
  const chosen = activations === 'int8' ? w8a8! : weightOnly;
  return { activations, relativeRms: chosen.relativeRms, relativeMax: chosen.relativeMax, weightOnly, w8a8, equalized: !!layer.inputScales, rounding };
}

/**
 * The layer with its bias corrected for the mean of its weight error over the calibration rows
 * (bias correction, Nagel et al. 2019): b_j += sum_p (W_jp - dequant(W)_jp) * mean_p, where mean
 * is the mean of the layer's inputs. The rounding errors of a row of weights do not average out
 * against inputs far from zero: a feature with a large offset (a year, a temperature in kelvin)
 * folded into the first layer turns its column's rounding error into an output shift of about
 * mean / sd times the column's error. A shift is what a bias absorbs; on the calibration rows
 * this takes the mean error out of every output. A layer without a bias is returned as it is.
 */
export function biasCorrected(layer: QuantLayer, weight: Float32Array, input: Float32Array): QuantLayer {
  if (!layer.bias) return layer;
  const k = layer.inputs;
  const rows = input.length / k;
  const mean = new Float64Array(k);
  for (let r = 0; r < rows; r++) for (let p = 0; p < k; p++) mean[p] += input[r * k + p];
  for (let p = 0; p < k; p++) mean[p] /= rows;
  const bias = Float32Array.from(layer.bias);
  forEachDequantizedRow(layer, (j, dq, at) => {
    let shift = 0;
    for (let p = 0; p < k; p++) shift += (weight[j * k + p] - dq[at + p]) * mean[p];
    // A shift past float32 (calibration inputs near FLT_MAX) is no correction: keep the bias.
    const corrected = Math.fround(bias[j] + shift);
    if (Number.isFinite(corrected)) bias[j] = corrected;
  });
  return { ...layer, bias };
}

/** 'auto' keeps GPTQ for a layer only where its held-back error is below this share of the nearest rounding's. */
export const GPTQ_KEEP_RATIO = 0.98;

/** Every GPTQ_HOLD_BACK-th calibration row is held back from 'auto''s trial fit to judge it. */
export const GPTQ_HOLD_BACK = 4;

/** x [rows x k] cut into the rows every-1, 2 every-1, ... (held) and the others (fit), in order. */
function splitRows(x: Float32Array, k: number, every: number): { fit: Float32Array; held: Float32Array; heldRows: number[] } {
  const rows = x.length / k;
  const heldRows: number[] = [];
  for (let r = every - 1; r < rows; r += every) heldRows.push(r);
  const fit = new Float32Array((rows - heldRows.length) * k);
  const held = new Float32Array(heldRows.length * k);
  let f = 0;
  let h = 0;
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * k, r * k + k);
    if (h < heldRows.length && heldRows[h] === r) held.set(row, k * h++);
    else fit.set(row, k * f++);
  }
  return { fit, held, heldRows };
}

/**
 * 'auto''s GPTQ: GPTQ fits the calibration rows, and where the inputs barely co-vary (independent
 * features, a first layer fed standardised columns) a finite sample's X^T X is diagonal plus
 * noise, and the codes it chooses fit that noise: held-out error rises while the calibration rows'
 * own error falls (docs/QUANTIZATION.md). So it is first fitted without every GPTQ_HOLD_BACK-th
 * row and judged, against the nearest rounding, on the rows held back; kept, fitted on every row,
 * only where it wins there.
 */
function checkedGptq(layer: QuantLayer, weight: Float32Array, input: Float32Array, reference: Float32Array, quantBackend: QuantBackend) {
  const { inputs: k, outputs: n } = layer;
  const { fit, held, heldRows } = splitRows(input, k, GPTQ_HOLD_BACK);
  const keepNearest = (gptqCheck: GptqCheck | null) => ({ layer, rounding: 'nearest' as const, gptqCheck });
  const trial = gptqLayer(layer, weight, fit);
  if (!trial) return keepNearest(null);
  const want = new Float32Array(heldRows.length * n);
  heldRows.forEach((r, h) => want.set(reference.subarray(r * n, r * n + n), h * n));
  const check: GptqCheck = {
    rows: heldRows.length,
    nearest: errorStats(quantLayerOutputs(quantBackend, layer, 0, held), want).relativeRms,
    gptq: errorStats(quantLayerOutputs(quantBackend, trial, 0, held), want).relativeRms,
  };
  if (!(check.gptq < GPTQ_KEEP_RATIO * check.nearest)) return keepNearest(check);
  const full = gptqLayer(layer, weight, input);
  return full ? { layer: full, rounding: 'gptq' as const, gptqCheck: check } : keepNearest(check);
}

/**
 * Per layer, every candidate quantisation (the plain one first, maybe an equalised one), with
 * rounding 'gptq' re-rounded on the layer's calibration inputs (lib/quant/gptq.ts), each
 * bias-corrected on the calibration rows (biasCorrected; with at least BIAS_CORRECTION_MIN_ROWS
 * of them) and returned so, with its errors with
 * float and (when asked) int8 inputs and the activations chosen for it; also the float model's
 * outputs on the rows, which the float layers run one after another here give anyway.
 * floatBackend runs the float layers (the float model's backend), quantBackend the quantised.
 */
export function calibrateLayers(
  spec: NormalizedSpec,
  floatLayers: FloatLayer[],
  candidates: QuantLayer[][],
  requested: QuantActivations,
  calibration: Float32Array,
  floatBackend: 'native' | 'reference',
  quantBackend: QuantBackend,
  rounding: QuantRounding | 'auto' = 'nearest',
  onLayerDone: (layer: number) => void = () => {},
): { layers: QuantLayer[][]; stats: QuantLayerStats[][]; floatOutputs: Float32Array } {
  let input = encodeCalibration(spec, calibration);
  const corrected: QuantLayer[][] = [];
  const stats = candidates.map((options, i) => {
    const reference = floatLayerOutputs(floatBackend, floatLayers[i], spec.layers[i], input);
    const rows = input.length / floatLayers[i].inputs;
    const { inputs: k, outputs: n } = floatLayers[i];
    const maxWork = nativeWeightQuantizer()?.gptqRound ? GPTQ_AUTO_MAX_WORK_NATIVE : GPTQ_AUTO_MAX_WORK;
    // rows >= GPTQ_HOLD_BACK: at least one row to hold back (a 1-input layer passes the first test with 2).
    const tryGptq = rounding === 'auto' && rows >= GPTQ_ROWS_PER_INPUT * k && rows >= GPTQ_HOLD_BACK && gptqWork(k, n, rows) <= maxWork;
    const rounded = options.map((layer) => {
      if (rounding === 'gptq') {
        const gptq = gptqLayer(layer, floatLayers[i].weight, input);
        return { layer: gptq ?? layer, rounding: gptq ? 'gptq' as const : 'nearest' as const, gptqCheck: null };
      }
      return tryGptq ? checkedGptq(layer, floatLayers[i].weight, input, reference, quantBackend) : { layer, rounding: 'nearest' as const, gptqCheck: null };
    });
    const layers = rounded.map(({ layer }) => (rows >= BIAS_CORRECTION_MIN_ROWS ? biasCorrected(layer, floatLayers[i].weight, input) : layer));
    corrected.push(layers);
    const measured = layers.map((layer, c) => ({ ...measure(layer, rounded[c].rounding, requested, input, reference, quantBackend), gptqCheck: rounded[c].gptqCheck }));
    input = reference;
    onLayerDone(i);
    return measured.map((m, c) => {
      const other = measured.find((_, o) => o !== c);
      return { ...m, rejected: other ? { relativeRms: other.relativeRms, relativeMax: other.relativeMax } : null };
    });
  });
  // After the last layer, input holds its float outputs: the float model's on the rows.
  return { layers: corrected, stats, floatOutputs: input };
}

/**
 * An equalised candidate replaces the plain one only when its error is below this share of the
 * plain one's: where the two are close (most layers that are not lopsided), the per-layer
 * measure does not predict the whole model's error well enough to be worth a change.
 */
export const EQUALIZE_GAIN = 0.8;

/** Per layer, the candidate calibration keeps: the plain one (0) unless another beats EQUALIZE_GAIN. */
export function chooseCandidates(measured: QuantLayerStats[][]): number[] {
  return measured.map((m) => {
    let best = 0;
    for (let c = 1; c < m.length; c++) if (m[c].relativeRms < EQUALIZE_GAIN * m[best].relativeRms) best = c;
    return best;
  });
}

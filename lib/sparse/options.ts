// User options of net.sparsify(), checked once with the messages lib/validate.ts uses. Unknown
// option names are rejected (a misspelt `targetdensity` would otherwise sparsify nothing).

import { BACKEND_CHOICES, type BackendChoice } from '../backend/index.js';
import { describe, rangeError, typeError } from '../errors.js';
import type { NormalizedSpec } from '../spec.js';
import { FLT_MAX, expectAllFinite, expectBatch, expectFloat32Array, expectInteger, expectNumber, expectObject, expectOneOf, isArray, rejectUnknownKeys } from '../validate.js';
import { SPARSE_TILE_ROWS, SPARSIFY_MODES, type SparsifyMode } from './format.js';

/** Options of net.sparsify(). */
export interface SparsifyOptions {
  /**
   * 'exact': skip the units a ReLU zeroed (no approximation); 'threshold': also zero units with
   * |h| <= threshold; 'topk': keep the k largest |h| per row; 'predictor': a low-rank predictor
   * trained on `calibration` picks k units per row before the layer is computed (those with the
   * largest predicted |act(z)|). Dropping small |h| suits activations whose outputs sit near
   * zero (relu, gelu, silu, tanh); sigmoid and softplus outputs do not, and lose more.
   */
  mode: SparsifyMode;
  /** Fraction of each layer's units to keep per row, in (0, 1] (threshold, topk, predictor). */
  targetDensity?: number;
  /** threshold mode: one cutoff for every sparsified layer, instead of targetDensity. */
  threshold?: number;
  /** topk and predictor modes: units kept per row, instead of targetDensity. */
  k?: number;
  /**
   * Hidden layers to sparsify (indices into spec.layers, never the last, never a residual one).
   * Default: every hidden layer that is not residual (exact: every such ReLU one).
   */
  layers?: readonly number[];
  /**
   * Sample inputs (batch x inputs): thresholds and predictors are fitted on them, layer after
   * layer on what the layers before (as sparsified) pass on, and stats measured. Predictor mode
   * needs at least 10 rows.
   */
  calibration?: Float32Array;
  /**
   * predictor mode: the predictor's inner width (default: min(128, units / 4), and at most what
   * keeps the predictor's work to a quarter of the dense layer's: inputs * units / (4 (inputs + units))).
   * Must be below the units of every sparsified layer.
   */
  rank?: number;
  /** predictor mode: training epochs over the calibration rows (default 20). */
  epochs?: number;
  /** predictor mode: seed of the predictor's initialisation and shuffling (default 0). */
  seed?: number;
  /**
   * predictor mode: a tile of at least this many rows (a batch runs in tiles of 16 rows) skips
   * the predictor and computes the layer exactly, at dense speed: with that many rows the
   * union of the units they pick covers most of the layer anyway. 'auto' (default): the
   * smallest tile whose picks on the held-out calibration rows cover more than half the units
   * (stats and `layers[i].denseFromRows` report it); an integer in [2, 16] sets it; 0 never
   * falls back, so every row gets its predicted units whatever batch it comes in.
   */
  denseFromRows?: number | 'auto';
  /**
   * 'float' (default), or 'int8': the layers whose rows are read sparsely (those a predictor or
   * a gate chooses, and those after a sparsified layer) get int8 weights with one scale per
   * output (net.quantize's int8 rule), and the native kernels read those rows as 1-byte codes.
   */
  weights?: SparseWeights;
  /** 'auto' (default), 'native' or 'reference'. */
  backend?: BackendChoice;
}

export const SPARSE_WEIGHTS = ['float', 'int8'] as const;
export type SparseWeights = (typeof SPARSE_WEIGHTS)[number];

export interface NormalizedSparsifyOptions {
  mode: SparsifyMode;
  layers: number[];
  targetDensity: number | null;
  threshold: number | null;
  k: number | null;
  calibration: Float32Array | null;
  rank: number | null;
  epochs: number;
  seed: number;
  denseFromRows: number | 'auto';
  weights: SparseWeights;
  backend: BackendChoice;
}

/** Below this many calibration rows a predictor would have none held out to measure its recall. */
export const PREDICTOR_MIN_ROWS = 10;

const KNOWN = ['mode', 'targetDensity', 'threshold', 'k', 'layers', 'calibration', 'rank', 'epochs', 'seed', 'denseFromRows', 'weights', 'backend'];

export function normalizeSparsifyOptions(value: unknown, spec: NormalizedSpec): NormalizedSparsifyOptions {
  const o = expectObject('options', value);
  rejectUnknownKeys('options', o, KNOWN);
  const mode = expectOneOf('options.mode', o.mode, SPARSIFY_MODES);
  const hidden = spec.layers.length - 1;
  if (hidden < 1) throw rangeError('sparsify needs a hidden layer: this model has a single layer, whose outputs are the model\'s');

  let layers: number[];
  if (o.layers === undefined) {
    layers = [];
    for (let l = 0; l < hidden; l++) {
      if ((mode !== 'exact' || spec.layers[l].activation === 'relu') && !spec.layers[l].residual) layers.push(l);
    }
    if (layers.length === 0) {
      throw rangeError('exact mode skips the zeros of ReLU layers, but no hidden layer of this model that is not residual uses relu');
    }
  } else {
    if (!isArray(o.layers)) throw typeError(`Expected an array of hidden-layer indices for options.layers but received ${describe(o.layers)}`);
    if (o.layers.length === 0) throw rangeError('options.layers must name at least one hidden layer');
    layers = o.layers.map((v, i) => expectInteger(`options.layers[${i}]`, v, 0, hidden - 1));
    layers = [...new Set(layers)].sort((a, b) => a - b);
    if (mode === 'exact') {
      for (const l of layers) {
        if (spec.layers[l].activation !== 'relu') {
          throw rangeError(`exact mode needs relu on every sparsified layer, but layer ${l} uses ${spec.layers[l].activation}`);
        }
      }
    }
  }
  for (const l of layers) {
    if (spec.layers[l].residual) {
      throw rangeError(`layer ${l} is residual: its outputs (a sum with the block input) are not sparse; sparsify the layer before it`);
    }
  }
  const minUnits = Math.min(...layers.map((l) => spec.layers[l].units));

  const given = (key: string): boolean => o[key] !== undefined;
  const allowed: Record<SparsifyMode, string[]> = {
    exact: [],
    threshold: ['threshold', 'targetDensity'],
    topk: ['k', 'targetDensity'],
    predictor: ['k', 'targetDensity'],
  };
  for (const key of ['threshold', 'targetDensity', 'k']) {
    if (given(key) && !allowed[mode].includes(key)) throw rangeError(`options.${key} does not apply to ${mode} mode`);
  }
  if (mode !== 'exact') {
    const set = allowed[mode].filter(given);
    if (set.length !== 1) {
      throw rangeError(`${mode} mode needs exactly one of ${allowed[mode].map((k) => `options.${k}`).join(' or ')}, received ${set.length === 0 ? 'neither' : 'both'}`);
    }
  }
  const targetDensity = given('targetDensity')
    ? expectNumber('options.targetDensity', o.targetDensity, { min: 0, minExclusive: true, max: 1 })
    : null;
  // Thresholds are float32 in the kernels and the file.
  const threshold = given('threshold') ? expectNumber('options.threshold', o.threshold, { min: 0, max: FLT_MAX }) : null;
  const k = given('k') ? expectInteger('options.k', o.k, 1, minUnits) : null;

  let calibration: Float32Array | null = null;
  if (o.calibration !== undefined) {
    // util.types, not instanceof: instanceof throws an uncoded TypeError on a revoked Proxy.
    calibration = expectFloat32Array('options.calibration', o.calibration);
    expectBatch('options.calibration', calibration, spec.inputs);
    expectAllFinite('options.calibration', calibration);
  }
  if (mode === 'predictor' && !calibration) throw rangeError('predictor mode trains its predictors on options.calibration, which is missing');
  if (mode === 'predictor' && calibration!.length / spec.inputs < PREDICTOR_MIN_ROWS) {
    throw rangeError(`predictor mode needs at least ${PREDICTOR_MIN_ROWS} calibration rows (it trains on four fifths of them and measures recall on the rest), received ${calibration!.length / spec.inputs}`);
  }
  if (mode === 'threshold' && targetDensity !== null && !calibration) {
    throw rangeError('threshold mode with options.targetDensity picks the thresholds from options.calibration, which is missing');
  }
  for (const key of ['rank', 'epochs', 'seed', 'denseFromRows']) {
    if (given(key) && mode !== 'predictor') throw rangeError(`options.${key} applies to predictor mode only`);
  }
  const rank = given('rank') ? expectInteger('options.rank', o.rank, 1, 1 << 16) : null;
  if (rank !== null) {
    // A rank-r predictor costs r (inputs + units) multiply-adds: from r = units on, more than
    // computing the layer it is meant to skip.
    const narrowest = layers.reduce((l, m) => (spec.layers[m].units < spec.layers[l].units ? m : l), layers[0]);
    if (rank >= spec.layers[narrowest].units) {
      throw rangeError(`options.rank ${rank} is not below the ${spec.layers[narrowest].units} units of layer ${narrowest}: ` +
        'such a predictor costs more than the layer it would skip');
    }
  }
  const epochs = given('epochs') ? expectInteger('options.epochs', o.epochs, 1, 1_000_000) : 20;
  const seed = given('seed') ? expectInteger('options.seed', o.seed, 0, 2 ** 32 - 1) : 0;
  const denseFromRows = !given('denseFromRows') || o.denseFromRows === 'auto'
    ? 'auto'
    : expectInteger("options.denseFromRows ('auto' or an integer; 0: never)", o.denseFromRows, 0, SPARSE_TILE_ROWS);
  if (denseFromRows === 1) {
    throw rangeError("options.denseFromRows 1 would run every tile exactly and never the predictor: give 0 (never), 2 to 16, or 'auto'");
  }
  const weights = o.weights === undefined ? 'float' : expectOneOf('options.weights', o.weights, SPARSE_WEIGHTS);
  const backend = o.backend === undefined ? 'auto' : expectOneOf('options.backend', o.backend, BACKEND_CHOICES);
  return { mode, layers, targetDensity, threshold, k, calibration, rank, epochs, seed, denseFromRows, weights, backend };
}

/**
 * The default predictor rank of a layer. A rank-r predictor does r (inputs + units) multiply-adds
 * per row against the dense layer's inputs * units, so on small layers min(128, units / 4) alone
 * made the predictor cost most of what sparsity saves (32 -> 64: rank 16 is 75% of the layer);
 * the second cap keeps it to a quarter. Large layers are unchanged (4096 -> 16384: 128).
 */
export function defaultPredictorRank(inputs: number, units: number): number {
  const budget = Math.floor((inputs * units) / (4 * (inputs + units)));
  return Math.max(1, Math.min(128, Math.floor(units / 4), budget));
}

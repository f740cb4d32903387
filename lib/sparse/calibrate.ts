// Fitting a sparse model to the caller's sample inputs, and measuring it there.
//
// Thresholds and predictors are fitted layer after layer, each on the inputs the layers before
// it pass on once sparsified (lib/sparse/model.ts runs that prefix), so a threshold chosen for
// 30% keeps 30% inside the sparse model too: fitted on the dense model's activations instead, a
// tanh model's third layer kept 0.2% for a target of 10%. The whole sparse model is then
// measured end to end on the same rows.

import type { BackendChoice } from '../backend/index.js';
import { ACTIVATIONS } from '../backend/types.js';
import { Mlp } from '../mlp.js';
import { errorStats, type QuantErrorStats } from '../quant/calibrate.js';
import { SPARSE_TILE_ROWS, UNION_DENSE_FRACTION, type SparsifyMode } from './format.js';
import { predictorKeys, selectTop } from './select.js';

/** A low-rank predictor of one layer's units: score = B (A x + a) + b. */
export interface PredictorWeights {
  rank: number;
  a: Float32Array;
  aBias: Float32Array;
  b: Float32Array;
  bBias: Float32Array;
}

export interface SparseLayerStats {
  /** Index into spec.layers. */
  layer: number;
  units: number;
  mode: SparsifyMode;
  threshold: number | null;
  k: number | null;
  /**
   * Mean fraction of the layer's units kept and nonzero per calibration row, measured in the
   * sparse model (predictor mode: of the k picked, those the activation did not zero).
   */
  density: number;
  /**
   * predictor mode: of the units the dense layer has among its k largest nonzero |h|, the
   * fraction the predictor picked, on calibration rows held out of its training. null otherwise.
   */
  recall: number | null;
}

export interface SparseStats {
  samples: number;
  layers: SparseLayerStats[];
  /**
   * The sparse model's outputs against the dense model's on the calibration rows, predicted in
   * batches below every predictor layer's denseFromRows (so the rows get their predicted units).
   */
  output: QuantErrorStats;
}

/**
 * Layer l's affine map of its inputs (for layer 0 the model's inputs, encoded here), activated
 * or not; for a gated layer its gate half only (the gate chooses the units; the up projection
 * is read only for those kept).
 */
function gateValues(net: Mlp, l: number, input: Float32Array, backend: BackendChoice, activated: boolean): Float32Array {
  const spec = net.spec.layers[l];
  const layer = net.getLayers()[l];
  const u = spec.units;
  const params = new Float32Array(u * layer.inputs + (layer.bias ? u : 0));
  params.set(layer.weight.subarray(0, u * layer.inputs));
  if (layer.bias) params.set(layer.bias.subarray(0, u), u * layer.inputs);
  const gate = new Mlp(
    {
      inputs: l === 0 ? net.inputs : net.spec.layers[l - 1].units,
      ...(l === 0 ? { encoding: net.spec.encoding } : {}),
      layers: [{ units: u, activation: activated ? spec.activation : 'none', alpha: spec.alpha, bias: spec.bias }],
    },
    { backend, parameters: params },
  );
  try {
    return gate.predict(input);
  } finally {
    gate.dispose();
  }
}

/**
 * The values a sparse layer chooses its units on, for its inputs `input` (see gateValues): the
 * layer's output, or for a gated layer act(gate). Never for a residual layer.
 */
export function selectionValues(net: Mlp, l: number, input: Float32Array, backend: BackendChoice): Float32Array {
  return gateValues(net, l, input, backend, true);
}

/** The cutoff t that keeps about `density` of the values (|h| > t), over all rows of `width` units. */
export function thresholdForDensity(h: Float32Array, density: number, width: number): number {
  // A strided sample is plenty for a quantile, and keeps the sort short on big layers. The
  // stride is coprime with the width, so the sample visits every unit: a stride of 2 through
  // rows of 16384 units would see the even units only, whose magnitudes may differ.
  let stride = Math.max(1, Math.floor(h.length / 4_000_000));
  while (gcd(stride, width) !== 1) stride++;
  const sample = new Float32Array(Math.ceil(h.length / stride));
  for (let i = 0, j = 0; i < h.length; i += stride, j++) sample[j] = Math.abs(h[i]);
  sample.sort();
  const keep = Math.round(density * sample.length);
  if (keep >= sample.length) return 0;
  // Halfway between the largest value dropped and the smallest kept: a unit whose |h| is one
  // of the sample's values is then never within float rounding of the cutoff, so the native
  // and reference backends keep the same units on the calibration rows.
  const dropped = sample[sample.length - keep - 1];
  const kept = keep > 0 ? sample[sample.length - keep] : dropped;
  return dropped + (kept - dropped) / 2;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Per row, the dense layer's k largest nonzero |h|: what a predictor should pick. */
function topUnits(h: Float32Array, row: number, n: number, k: number): number[] {
  return selectTop(h, row * n, n, k, true).filter((j) => h[row * n + j] !== 0);
}

/**
 * Trains a predictor for layer l (Deja Vu's low-rank x -> rank -> units map) with mlpkit's own
 * trainer: the layer's inputs in (`input`, as gateValues takes them), its pre-activations (the
 * gate's, when gated) as the MSE target, so the units it ranks first (predictorKeys) are those
 * most likely to come out large. Regressing the
 * pre-activation rather than classifying fired / not fired gives every unit a gradient on every
 * row (a classifier of the top 10% learns mostly from the 90% it should reject) and recovers the
 * ranking among the units that fire. The last fifth of the rows is held out and measures the
 * recall against the dense layer's k largest nonzero |h|.
 */
export async function trainPredictor(
  net: Mlp,
  l: number,
  input: Float32Array,
  h: Float32Array,
  k: number,
  rank: number,
  epochs: number,
  seed: number,
  backend: BackendChoice,
): Promise<{ weights: PredictorWeights; recall: number; denseFromRows: number }> {
  const n = net.spec.layers[l].units;
  const rows = h.length / n;
  const spec = l === 0
    ? { inputs: net.inputs, encoding: net.spec.encoding, layers: [{ units: rank }, { units: n }], seed }
    : { inputs: net.spec.layers[l - 1].units, layers: [{ units: rank }, { units: n }], seed };
  const width = input.length / rows;
  const held = Math.floor(rows / 5); // options.ts asks for 10 rows at least
  const trainRows = rows - held;
  const target = gateValues(net, l, input, backend, false);
  const activation = ACTIVATIONS.indexOf(net.spec.layers[l].activation);
  const alpha = net.spec.layers[l].alpha;

  const predictor = new Mlp(spec, { backend });
  try {
    const trainer = predictor.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 3e-3 } });
    await trainer.fit(input.subarray(0, trainRows * width), target.subarray(0, trainRows * n), {
      epochs,
      batchSize: Math.min(64, trainRows),
      shuffle: true,
      seed,
    });
    const evalRows = held;
    const from = rows - evalRows;
    const scores = predictor.predict(input.subarray(from * width));
    let hit = 0;
    let total = 0;
    const picks: number[][] = [];
    for (let r = 0; r < evalRows; r++) {
      picks.push(selectTop(scores, r * n, n, k, predictorKeys(scores, r * n, n, activation, alpha)));
      const picked = new Set(picks[r]);
      for (const j of topUnits(h, from + r, n, k)) {
        total++;
        if (picked.has(j)) hit++;
      }
    }
    const [first, second] = predictor.getLayers();
    const weights: PredictorWeights = {
      rank,
      a: first.weight,
      aBias: first.bias ?? new Float32Array(rank),
      b: second.weight,
      bBias: second.bias ?? new Float32Array(n),
    };
    return { weights, recall: total > 0 ? hit / total : 1, denseFromRows: denseFromRowsOf(picks, n) };
  } finally {
    predictor.dispose();
  }
}

/**
 * The smallest tile height in [2, SPARSE_TILE_ROWS] whose rows' picks together cover more than
 * UNION_DENSE_FRACTION of the n units, on average over consecutive tiles of the rows given (0:
 * none does). Past that point the native kernels compute every unit of the tile by the GEMM
 * anyway, so the prediction would only add its own cost: such tiles run the layer exactly
 * (SparseLayer.denseFromRows). Heights with no whole tile in the rows are estimated as if each
 * row picked its units independently, an upper bound on the union of correlated picks.
 */
export function denseFromRowsOf(picks: readonly (readonly number[])[], n: number): number {
  if (picks.length === 0) return 0;
  const density = picks.reduce((s, p) => s + p.length, 0) / (picks.length * n);
  const mark = new Uint8Array(n);
  for (let rows = 2; rows <= SPARSE_TILE_ROWS; rows++) {
    const tiles = Math.floor(picks.length / rows);
    let covered: number;
    if (tiles === 0) {
      covered = 1 - (1 - density) ** rows;
    } else {
      let sum = 0;
      for (let t = 0; t < tiles; t++) {
        mark.fill(0);
        let u = 0;
        for (let r = t * rows; r < (t + 1) * rows; r++) {
          for (const j of picks[r]) {
            u += 1 - mark[j];
            mark[j] = 1;
          }
        }
        sum += u / n;
      }
      covered = sum / tiles;
    }
    if (covered > UNION_DENSE_FRACTION) return rows;
  }
  return 0;
}

/** Fraction of nonzero values in a sparse layer's outputs: the units it kept that are not zero. */
export function keptFraction(out: Float32Array): number {
  let kept = 0;
  for (let i = 0; i < out.length; i++) if (out[i] !== 0) kept++;
  return out.length > 0 ? kept / out.length : 0;
}

export { errorStats };

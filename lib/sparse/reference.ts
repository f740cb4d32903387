// The pure-TypeScript sparse model: the oracle of native/core/sparse/sparse_model.cpp. Float64
// arithmetic on the float32 weights, row by row; the same units kept by the same rules
// (./select.ts), so its outputs equal the native ones within float rounding.

import { activate } from '../backend/reference/activation.js';
import { encode, encodedWidthOf } from '../backend/reference/encoding.js';
import type { BackendSparseModel, SparseLayer, SparseModelConfig } from '../backend/types.js';
import { CallQueue, deliver, overlaps, queuedCall, snapshot } from '../backend/reference/calls.js';
import { disposedError } from '../errors.js';
import { SPARSE_MODE_CODES, SPARSE_TILE_ROWS } from './format.js';
import { keepOnly, predictorKeys, selectNonzero, selectThreshold, selectTop } from './select.js';

/** out[o] = b[o] + W[o] . x for the rows o listed (all without a list); W rows start at `first`. */
function affine(w: Float32Array, b: Float32Array | null, first: number, rows: number, cols: number, x: Float64Array, out: Float64Array, only?: readonly number[]): void {
  const each = (o: number): void => {
    let s = b ? b[first + o] : 0;
    const at = (first + o) * cols;
    for (let p = 0; p < cols; p++) s += w[at + p] * x[p];
    out[o] = s;
  };
  if (only) for (const o of only) each(o);
  else for (let o = 0; o < rows; o++) each(o);
}

function copyLayer(l: SparseLayer): SparseLayer {
  return {
    ...l,
    weight: l.weight.slice(),
    bias: l.bias?.slice() ?? null,
    predictorA: l.predictorA?.slice() ?? null,
    predictorABias: l.predictorABias?.slice() ?? null,
    predictorB: l.predictorB?.slice() ?? null,
    predictorBBias: l.predictorBBias?.slice() ?? null,
  };
}

/**
 * One layer on one row of a tile of `tileRows` rows: its output (with the kept units only, when
 * sparsified).
 */
function layerRow(l: SparseLayer, h: Float64Array, block: Float64Array | null, tileRows: number): Float64Array {
  const n = l.outputs;
  const z = new Float64Array(n);
  const gateAct = (j: number): number => activate(l.activation, z[j], l.alpha);
  let kept: number[] | null = null;
  // A predictor layer in a tile of denseFromRows rows or more runs as exact mode.
  const predicted = l.mode === SPARSE_MODE_CODES.predictor && !(l.denseFromRows > 0 && tileRows >= l.denseFromRows);
  if (predicted) {
    const low = new Float64Array(l.rank);
    affine(l.predictorA!, l.predictorABias, 0, l.rank, l.inputs, h, low);
    const score = new Float64Array(n);
    affine(l.predictorB!, l.predictorBBias, 0, n, l.rank, low, score);
    kept = selectTop(score, 0, n, l.k, predictorKeys(score, 0, n, l.activation, l.alpha));
    affine(l.weight, l.bias, 0, n, l.inputs, h, z, kept);
    for (const j of kept) z[j] = gateAct(j);
  } else {
    // The gate (or the whole ungated map) for every unit, activated.
    affine(l.weight, l.bias, 0, n, l.inputs, h, z);
    for (let j = 0; j < n; j++) z[j] = gateAct(j);
    if (l.mode === SPARSE_MODE_CODES.threshold) kept = selectThreshold(z, 0, n, l.threshold);
    else if (l.mode === SPARSE_MODE_CODES.topk) kept = selectTop(z, 0, n, l.k, true);
    else if (l.mode === SPARSE_MODE_CODES.exact || l.mode === SPARSE_MODE_CODES.predictor) kept = selectNonzero(z, 0, n);
  }
  if (kept) keepOnly(z, 0, n, kept);
  if (l.gated) {
    // act(gate) * up, the up rows read only for the kept units.
    const up = new Float64Array(n);
    affine(l.weight, l.bias, n, n, l.inputs, h, up, kept ?? undefined);
    if (kept) for (const j of kept) z[j] *= up[j];
    else for (let j = 0; j < n; j++) z[j] *= up[j];
  }
  if (l.residual && block) for (let j = 0; j < n; j++) z[j] += block[j];
  return z;
}

// Multiply-adds per macrotask in predictAsync (in whole tiles), as the other reference models.
const ASYNC_CHUNK_MACS = 2e6;

export class ReferenceSparseModel implements BackendSparseModel {
  private layers: SparseLayer[] | null;
  private readonly config: SparseModelConfig;

  constructor(config: SparseModelConfig, layers: SparseLayer[]) {
    this.config = { ...config };
    this.layers = layers.map(copyLayer);
  }

  predict(input: Float32Array, batch: number, out: Float32Array): void {
    const layers = this.layers;
    if (!layers) throw disposedError('predict');
    // Rows are written as they are computed: an out that overlaps x (a caller reusing one
    // buffer) would overwrite rows not read yet, so such an x is read from a copy.
    const x = overlaps(input, out) ? snapshot(input) : input;
    this.forward(layers, x, batch, out);
  }

  /**
   * As the float reference model's (../backend/reference/calls.ts): x is copied now, the rows run
   * in slices of whole tiles between macrotasks (so a row sees the same tile as in one call), and
   * out is written at the end if it is still whole. A dispose() meanwhile lets the call finish.
   */
  predictAsync(x: Float32Array, batch: number, out: Float32Array): Promise<void> {
    const layers = this.layers;
    if (!layers) return Promise.reject(disposedError('predictAsync'));
    const inputs = this.config.inputs;
    const outputs = layers[layers.length - 1].outputs;
    const input = snapshot(x);
    const y = new Float32Array(batch * outputs);
    const macsPerRow = layers.reduce((sum, l) => sum + l.inputs * l.outputs, 0);
    const rows = SPARSE_TILE_ROWS * Math.max(1, Math.floor(ASYNC_CHUNK_MACS / (SPARSE_TILE_ROWS * Math.max(1, macsPerRow))));
    let r0 = 0;
    const { call, promise } = queuedCall(
      () => {
        const n = Math.min(rows, batch - r0);
        this.forward(layers, input.subarray(r0 * inputs, (r0 + n) * inputs), n, y.subarray(r0 * outputs, (r0 + n) * outputs));
        r0 += n;
        return r0 >= batch;
      },
      () => deliver('predictAsync', y, out),
    );
    new CallQueue().push(call);
    return promise;
  }

  private forward(layers: readonly SparseLayer[], x: Float32Array, batch: number, out: Float32Array): void {
    const enc = new Float64Array(encodedWidthOf(this.config));
    for (let r = 0; r < batch; r++) {
      const tileRows = Math.min(SPARSE_TILE_ROWS, batch - (r - (r % SPARSE_TILE_ROWS)));
      encode(this.config, x.subarray(r * this.config.inputs, (r + 1) * this.config.inputs), 1, enc);
      let h: Float64Array = enc;
      let block: Float64Array | null = null;
      for (const l of layers) {
        const next = layerRow(l, h, block, tileRows);
        block = h;
        h = next;
      }
      out.set(h, r * h.length);
    }
  }

  dispose(): void {
    this.layers = null;
  }
}

// The pure-TypeScript sparse model: the oracle of native/core/sparse/sparse_model.cpp. Float64
// arithmetic on the float32 weights, row by row; the same units kept by the same rules
// (./select.ts), so its outputs equal the native ones within float rounding.

import { activate } from '../backend/reference/activation.js';
import { encode, encodedWidthOf } from '../backend/reference/encoding.js';
import type { BackendSparseModel, SparseLayer, SparseModelConfig } from '../backend/types.js';
import { disposedError } from '../errors.js';
import { SPARSE_MODE_CODES } from './format.js';
import { keepOnly, selectNonzero, selectThreshold, selectTop } from './select.js';

function affine(w: Float32Array, b: Float32Array | null, rows: number, cols: number, x: Float64Array, out: Float64Array, only?: readonly number[]): void {
  const each = (o: number): void => {
    let s = b ? b[o] : 0;
    const at = o * cols;
    for (let p = 0; p < cols; p++) s += w[at + p] * x[p];
    out[o] = s;
  };
  if (only) for (const o of only) each(o);
  else for (let o = 0; o < rows; o++) each(o);
}

export class ReferenceSparseModel implements BackendSparseModel {
  private layers: SparseLayer[] | null;
  private readonly config: SparseModelConfig;

  constructor(config: SparseModelConfig, layers: SparseLayer[]) {
    this.config = { ...config };
    this.layers = layers.map((l) => ({
      ...l,
      weight: l.weight.slice(),
      bias: l.bias?.slice() ?? null,
      predictorA: l.predictorA?.slice() ?? null,
      predictorABias: l.predictorABias?.slice() ?? null,
      predictorB: l.predictorB?.slice() ?? null,
      predictorBBias: l.predictorBBias?.slice() ?? null,
    }));
  }

  predict(x: Float32Array, batch: number, out: Float32Array): void {
    const layers = this.layers;
    if (!layers) throw disposedError('predict');
    const encW = encodedWidthOf(this.config);
    const enc = new Float64Array(encW);
    for (let r = 0; r < batch; r++) {
      encode(this.config, x.subarray(r * this.config.inputs, (r + 1) * this.config.inputs), 1, enc);
      let h: Float64Array = enc;
      for (const l of layers) {
        const z = new Float64Array(l.outputs);
        if (l.mode === SPARSE_MODE_CODES.predictor) {
          const low = new Float64Array(l.rank);
          affine(l.predictorA!, l.predictorABias, l.rank, l.inputs, h, low);
          const score = new Float64Array(l.outputs);
          affine(l.predictorB!, l.predictorBBias, l.outputs, l.rank, low, score);
          const kept = selectTop(score, 0, l.outputs, l.k, false);
          affine(l.weight, l.bias, l.outputs, l.inputs, h, z, kept);
          for (const j of kept) z[j] = activate(l.activation, z[j], l.alpha);
        } else {
          affine(l.weight, l.bias, l.outputs, l.inputs, h, z);
          for (let j = 0; j < l.outputs; j++) z[j] = activate(l.activation, z[j], l.alpha);
          if (l.mode === SPARSE_MODE_CODES.threshold) keepOnly(z, 0, l.outputs, selectThreshold(z, 0, l.outputs, l.threshold));
          else if (l.mode === SPARSE_MODE_CODES.topk) keepOnly(z, 0, l.outputs, selectTop(z, 0, l.outputs, l.k, true));
          else if (l.mode === SPARSE_MODE_CODES.exact) keepOnly(z, 0, l.outputs, selectNonzero(z, 0, l.outputs));
        }
        h = z;
      }
      out.set(h, r * h.length);
    }
  }

  async predictAsync(x: Float32Array, batch: number, out: Float32Array): Promise<void> {
    this.predict(x, batch, out);
  }

  dispose(): void {
    this.layers = null;
  }
}

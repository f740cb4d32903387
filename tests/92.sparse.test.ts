// Sparse-activation models (net.sparsify, lib/sparse and native/core/sparse): exact mode equals
// the dense model; the approximate modes keep the same units on both backends; settings and
// calibration data are checked.
//
// Tolerances: exact mode skips only exact zeros, so its outputs are the dense products summed in
// another order: within 1e-5 of the output scale (float32 sums of up to ~1000 O(1) terms, as
// tests/40). Native against reference in the approximate modes: same units kept, then float32
// against float64 sums: 1e-4 of the output scale (two chained layers of such sums, and a kept
// unit's value enters the next layer's sum).

import { describe, expect, it } from 'vitest';
import { Mlp, SparseMlp, type SparsifyOptions } from '../lib/index.js';
import { selectBackend } from '../lib/backend/index.js';
import { referenceBackend } from '../lib/backend/reference/index.js';
import type { SparseLayer, SparseModelConfig } from '../lib/backend/types.js';
import { selectTop } from '../lib/sparse/select.js';
import { denseFromRowsOf, thresholdForDensity } from '../lib/sparse/calibrate.js';
import { tensorsToSparse } from '../lib/sparse/file.js';
import { readSafetensors } from '../lib/io/safetensors.js';
import { backendsUnderTest, expectClose, hasNative, randomArray } from './helpers.js';

const nativeSparse = hasNative() && typeof selectBackend('native').createSparseModel === 'function';

function net(inputs: number, hidden: number[], outputs: number, backend: 'native' | 'reference', seed = 1, activation: 'relu' | 'gelu' = 'relu'): Mlp {
  return new Mlp({ inputs, layers: [...hidden.map((units) => ({ units, activation })), { units: outputs }], seed }, { backend });
}

describe.each(backendsUnderTest())('exact mode on %s', (backend) => {
  it.each([
    [1, [3], 1],
    [17, [63], 3],
    [3, [65, 17], 2],
    [63, [1000], 65],
    [65, [64, 1000, 17], 5],
  ])('inputs %i, hidden %j, outputs %i: equals the dense model for batches 1, 3, 17, 40', async (inputs, hidden, outputs) => {
    const dense = net(inputs, hidden, outputs, backend);
    const sparse = await dense.sparsify({ mode: 'exact', backend });
    expect(sparse.backend).toBe(backend);
    for (const batch of [1, 3, 17, 40]) {
      const x = randomArray(batch * inputs, batch + inputs);
      expectClose(sparse.predict(x), dense.predict(x), 1e-5, `batch ${batch}`);
    }
    sparse.dispose();
    dense.dispose();
  });

  it('a ReGLU FFN block (gated relu, residual down projection): the units are chosen on the gate', async () => {
    const dense = new Mlp({ inputs: 33, layers: [{ units: 150, activation: 'relu', gated: true }, { units: 33, residual: true }, { units: 4 }], seed: 4 }, { backend });
    const sparse = await dense.sparsify({ mode: 'exact', backend });
    expect(sparse.layers.map((l) => l.mode)).toEqual(['exact', 'dense', 'dense']);
    for (const batch of [1, 7, 20]) {
      const x = randomArray(batch * 33, batch);
      expectClose(sparse.predict(x), dense.predict(x), 1e-5, `batch ${batch}`);
    }
  });

  it('a frequency-encoded model', async () => {
    const dense = new Mlp({ inputs: 2, encoding: { type: 'frequency', octaves: 4 }, layers: [{ units: 40, activation: 'relu' }, { units: 3 }], seed: 2 }, { backend });
    const sparse = await dense.sparsify({ mode: 'exact', backend });
    const x = randomArray(2 * 9, 4);
    expectClose(sparse.predict(x), dense.predict(x), 1e-5);
  });
});

/** The native and reference sparse models built from the same layers predict the same rows. */
function expectBackendsAgree(config: SparseModelConfig, layers: SparseLayer[], outputs: number, batches: number[], seed: number, tol: number, label: string) {
  const native = selectBackend('native').createSparseModel!(config, layers);
  const reference = referenceBackend.createSparseModel!(config, layers);
  for (const batch of batches) {
    const x = randomArray(batch * config.inputs, seed + batch);
    const a = new Float32Array(batch * outputs);
    const b = new Float32Array(batch * outputs);
    native.predict(x, batch, a);
    reference.predict(x, batch, b);
    expectClose(a, b, tol, `${label} batch ${batch}`);
  }
  native.dispose();
  reference.dispose();
}

describe.runIf(nativeSparse)('native sparse model', () => {
  it('a row gives the same result alone as inside any batch (exact mode: the same bits)', async () => {
    const dense = net(33, [200, 120], 7, 'native', 3);
    const x = randomArray(33 * 37, 9);
    const modes: SparsifyOptions[] = [
      { mode: 'exact' },
      { mode: 'threshold', targetDensity: 0.2, calibration: x },
      { mode: 'topk', k: 30 },
      // denseFromRows 0: every tile predicts (a tile of the default's height or more would
      // compute the layer exactly instead; tested below).
      { mode: 'predictor', targetDensity: 0.25, calibration: x, epochs: 2, denseFromRows: 0 },
    ];
    for (const options of modes) {
      const sparse = await dense.sparsify({ ...options, backend: 'native' });
      const all = sparse.predict(x);
      for (const r of [0, 5, 16, 17, 36]) {
        const one = sparse.predict(x.subarray(r * 33, (r + 1) * 33));
        const inBatch = all.subarray(r * 7, (r + 1) * 7);
        if (options.mode === 'exact') {
          expect(Array.from(one), `${options.mode} row ${r}`).toEqual(Array.from(inBatch));
        } else {
          // The same units; a tile with a dense union computes them by GEMM, one row by dot
          // products: float32 rounding of sums of ~200 terms.
          expectClose(one, inBatch, 1e-5, `${options.mode} row ${r}`);
        }
      }
      expect(Array.from(await sparse.predictAsync(x))).toEqual(Array.from(all));
      sparse.dispose();
    }
  });

  it('a model with a layer over 2 MB runs whole tiles in groups of up to 64 rows: each tile gives what it gives alone', async () => {
    // 64 -> 8192 holds 2.1 MB of weights. Batch 100: six whole tiles, run as two groups of 48
    // rows, then the 4-row tile. Each 16-row tile predicted on its own (and the last 4 rows)
    // must give the same outputs as inside the batch: exact and threshold modes the same bits,
    // the predictor (denseFromRows 5) the dense model's outputs for the whole tiles and the
    // predicted units for the 4-row tile, as for tiles of 16.
    const dense = net(64, [8192], 9, 'native', 5);
    const x = randomArray(64 * 100, 21);
    const want = dense.predict(x);
    const modes: SparsifyOptions[] = [
      { mode: 'exact' },
      { mode: 'threshold', targetDensity: 0.2, calibration: x },
      { mode: 'predictor', targetDensity: 0.1, calibration: x, epochs: 1, rank: 16, denseFromRows: 5 },
    ];
    const tiles = [[0, 16], [16, 32], [32, 48], [48, 64], [64, 80], [80, 96], [96, 100]];
    for (const options of modes) {
      const sparse = await dense.sparsify({ ...options, backend: 'native' });
      const all = sparse.predict(x);
      const pieces = tiles.map(([a, b]) => Array.from(sparse.predict(x.subarray(a * 64, b * 64))));
      expect(Array.from(all), options.mode).toEqual(pieces.flat());
      if (options.mode === 'predictor') {
        expectClose(all.subarray(0, 96 * 9), want.subarray(0, 96 * 9), 1e-5, 'predictor: whole tiles run exactly');
      }
      expect(Array.from(await sparse.predictAsync(x))).toEqual(Array.from(all));
      sparse.dispose();
    }
    dense.dispose();
  });

  it('predictor mode: a tile of denseFromRows rows or more computes the layer exactly, on both backends', async () => {
    const dense = net(33, [200, 120], 7, 'native', 3);
    const x = randomArray(33 * 37, 9);
    const sparse = await dense.sparsify({ mode: 'predictor', targetDensity: 0.1, calibration: x, epochs: 2, denseFromRows: 4, backend: 'native' });
    expect(sparse.layers.map((l) => l.denseFromRows)).toEqual([4, 4, null]);
    // Default ranks: min(128, units / 4, inputs * units / (4 (inputs + units))): 33 -> 200 gets 7, 200 -> 120 gets 18.
    expect(sparse.layers.map((l) => l.rank)).toEqual([7, 18, null]);
    const reference = SparseMlp.fromSafetensors(sparse.toSafetensors(), { backend: 'reference' });
    const want = dense.predict(x);
    // Batch 37: tiles of 16, 16 and 5 rows, all at least 4: the dense model's outputs.
    expectClose(sparse.predict(x), want, 1e-5, 'batch 37, native');
    expectClose(reference.predict(x), want, 1e-5, 'batch 37, reference');
    // Batch 19: rows 16-18 form a tile of 3, below 4, so they get their predicted units, as alone.
    const x19 = x.subarray(0, 19 * 33);
    const got = sparse.predict(x19);
    expectClose(got.subarray(0, 16 * 7), want.subarray(0, 16 * 7), 1e-5, 'batch 19, first tile');
    expectClose(reference.predict(x19), got, 1e-4, 'batch 19, reference');
    for (const r of [16, 18]) {
      const alone = sparse.predict(x.subarray(r * 33, (r + 1) * 33));
      expectClose(got.subarray(r * 7, (r + 1) * 7), alone, 1e-5, `batch 19 row ${r}`);
      // 10% of the units picked by a 2-epoch predictor: far from the dense outputs.
      let off = 0;
      for (let o = 0; o < 7; o++) off = Math.max(off, Math.abs(alone[o] - want[r * 7 + o]));
      expect(off, `row ${r} is predicted, not dense`).toBeGreaterThan(1e-3);
    }
    sparse.dispose();
    reference.dispose();
  });

  it('native and reference keep the same units (threshold, top-k, predictor)', () => {
    // Built from the same layer arrays on both backends, so the predictor weights are shared.
    const inputs = 29, hidden = 301, outputs = 9;
    const w1 = randomArray(hidden * inputs, 1, 0.3);
    const b1 = randomArray(hidden, 2, 0.1);
    const w2 = randomArray(outputs * hidden, 3, 0.1);
    const pa = randomArray(16 * inputs, 4, 0.3);
    const pb = randomArray(hidden * 16, 5, 0.3);
    const base = { gated: false, residual: false, threshold: 0, k: 0, rank: 0, predictorA: null, predictorABias: null, predictorB: null, predictorBBias: null, denseFromRows: 0 };
    const cases: Partial<SparseLayer>[] = [
      { mode: 2, threshold: 0.35 },
      { mode: 3, k: 37 },
      { mode: 4, k: 50, rank: 16, predictorA: pa, predictorABias: null, predictorB: pb, predictorBBias: randomArray(hidden, 6, 0.1) },
      { mode: 4, k: 50, rank: 16, predictorA: pa, predictorABias: null, predictorB: pb, predictorBBias: null, denseFromRows: 5 },
    ];
    const config = { inputs, encoding: 0, octaves: 0, includeInput: false };
    // Every way predictorKeys ranks scores: relu and sigmoid by the score, none and tanh by its
    // magnitude, leaky relu and gelu by |act(score)|.
    for (const activation of [0, 1, 2, 3, 6, 7]) {
      for (const c of cases) {
        const layers: SparseLayer[] = [
          { ...base, inputs, outputs: hidden, activation, alpha: 0.1, weight: w1, bias: b1, mode: 0, ...c } as SparseLayer,
          { ...base, inputs: hidden, outputs, activation: 0, alpha: 0, weight: w2, bias: null, mode: 0 },
        ];
        expectBackendsAgree(config, layers, outputs, [1, 5, 40], 10, 1e-4, `mode ${c.mode} activation ${activation}`);
      }
    }
  });

  it('a sparse last layer (calibration runs prefixes that end with one) gives the same outputs on both backends', () => {
    const inputs = 17, n = 65;
    const w = randomArray(n * inputs, 31, 0.3);
    const pa = randomArray(8 * inputs, 32, 0.3);
    const pb = randomArray(n * 8, 33, 0.3);
    const base = { gated: false, residual: false, threshold: 0, k: 0, rank: 0, predictorA: null, predictorABias: null, predictorB: null, predictorBBias: null, denseFromRows: 0, bias: null };
    const cases: Partial<SparseLayer>[] = [
      { mode: 1 },
      { mode: 2, threshold: 0.3 },
      { mode: 3, k: 9 },
      { mode: 4, k: 9, rank: 8, predictorA: pa, predictorB: pb },
    ];
    const config = { inputs, encoding: 0, octaves: 0, includeInput: false };
    for (const c of cases) {
      const layer = { ...base, inputs, outputs: n, activation: 1, alpha: 0, weight: w, mode: 0, ...c } as SparseLayer;
      expectBackendsAgree(config, [layer], n, [1, 3, 17], 40, 1e-5, `last layer mode ${c.mode}`);
    }
  });

  it('gated layers: native and reference keep the same units on act(gate) and read the same up rows', () => {
    const inputs = 21, hidden = 133, outputs = 21;
    const w1 = randomArray(2 * hidden * inputs, 11, 0.3);
    const b1 = randomArray(2 * hidden, 12, 0.1);
    const w2 = randomArray(outputs * hidden, 13, 0.1);
    const pa = randomArray(8 * inputs, 14, 0.3);
    const pb = randomArray(hidden * 8, 15, 0.3);
    const base = { gated: false, residual: false, threshold: 0, k: 0, rank: 0, predictorA: null, predictorABias: null, predictorB: null, predictorBBias: null, denseFromRows: 0 };
    const cases: Partial<SparseLayer>[] = [
      { mode: 0 },
      { mode: 2, threshold: 0.1 },
      { mode: 3, k: 40 },
      { mode: 4, k: 30, rank: 8, predictorA: pa, predictorB: pb },
      { mode: 4, k: 30, rank: 8, predictorA: pa, predictorB: pb, denseFromRows: 2 },
    ];
    const config = { inputs, encoding: 0, octaves: 0, includeInput: false };
    for (const activation of [5, 3, 1]) {
      for (const c of [...cases, ...(activation === 1 ? [{ mode: 1 }] : [])]) {
        const layers: SparseLayer[] = [
          { ...base, inputs, outputs: hidden, activation, alpha: 0, weight: w1, bias: b1, gated: true, mode: 0, ...c } as SparseLayer,
          { ...base, inputs: hidden, outputs, activation: 0, alpha: 0, weight: w2, bias: null, residual: true, mode: 0 },
        ];
        const native = selectBackend('native').createSparseModel!(config, layers);
        const reference = referenceBackend.createSparseModel!(config, layers);
        for (const batch of [1, 6, 33]) {
          const x = randomArray(batch * inputs, 20 + batch);
          const a = new Float32Array(batch * outputs);
          const b = new Float32Array(batch * outputs);
          native.predict(x, batch, a);
          reference.predict(x, batch, b);
          expectClose(a, b, 1e-4, `gated mode ${c.mode} activation ${activation} batch ${batch}`);
        }
        native.dispose();
        reference.dispose();
      }
    }
  });
});

describe.each(backendsUnderTest())('approximate modes on %s', (backend) => {
  it('threshold mode hits its target density on the calibration rows and reports the error', async () => {
    const dense = net(24, [256], 4, backend, 5, 'gelu');
    const x = randomArray(24 * 64, 6);
    const sparse = await dense.sparsify({ mode: 'threshold', targetDensity: 0.3, calibration: x, backend });
    const s = sparse.stats!;
    expect(s.samples).toBe(64);
    expect(s.layers[0].density).toBeGreaterThan(0.29);
    expect(s.layers[0].density).toBeLessThan(0.31);
    expect(s.layers[0].threshold).toBeGreaterThan(0);
    expect(s.output.relativeRms).toBeGreaterThan(0);
    expect(s.output.relativeRms).toBeLessThan(1);
    expect(sparse.layers[0].mode).toBe('threshold');
    expect(sparse.layers[1].mode).toBe('dense');
  });

  it('top-k keeps k units per row', async () => {
    const dense = net(10, [50], 1, backend, 7, 'gelu');
    // With one output unit weighing every hidden unit 1, the output is the sum of the kept units.
    const p = dense.getParameters();
    p.fill(1, 10 * 50 + 50, 10 * 50 + 50 + 50);
    p[p.length - 1] = 0;
    dense.setParameters(p);
    const hiddenNet = new Mlp({ inputs: 10, layers: [{ units: 50, activation: 'gelu' }] }, { backend, parameters: p.subarray(0, 550) });
    const x = randomArray(10 * 6, 8);
    const h = hiddenNet.predict(x);
    const sparse = await dense.sparsify({ mode: 'topk', k: 7, backend });
    const y = sparse.predict(x);
    for (let r = 0; r < 6; r++) {
      const kept = selectTop(h, r * 50, 50, 7, true);
      const sum = kept.reduce((s, j) => s + h[r * 50 + j], 0);
      expect(y[r]).toBeCloseTo(sum, 4);
    }
  });

  it('predictor mode trains a predictor and reports its recall', async () => {
    const dense = net(16, [128], 4, backend, 9);
    const x = randomArray(16 * 200, 10);
    const sparse = await dense.sparsify({ mode: 'predictor', targetDensity: 0.25, calibration: x, rank: 16, epochs: 60, backend });
    const layer = sparse.stats!.layers[0];
    expect(layer.k).toBe(32);
    expect(layer.recall).toBeGreaterThan(0.5); // a linear model's units are easy to predict
    expect(layer.recall).toBeLessThanOrEqual(1);
    expect(sparse.layers[0]).toMatchObject({ mode: 'predictor', k: 32, rank: 16 });
    // 'auto': 25% per row, so a handful of rows' picks cover more than half the units.
    expect(sparse.layers[0].denseFromRows).toBeGreaterThanOrEqual(2);
    expect(sparse.layers[0].denseFromRows).toBeLessThanOrEqual(16);
    // The output error is the predicted rows' whatever the fallback: the same as with none
    // (within float rounding: the batches differ, so a unit's value may come from a GEMM or a
    // dot product), not the exact layer's ~1e-7.
    const never = await dense.sparsify({ mode: 'predictor', targetDensity: 0.25, calibration: x, rank: 16, epochs: 60, denseFromRows: 0, backend });
    expect(Math.abs(sparse.stats!.output.relativeRms / never.stats!.output.relativeRms - 1)).toBeLessThan(1e-5);
    expect(sparse.stats!.output.relativeRms).toBeGreaterThan(1e-3);
  });

  it('predictor mode ranks units by their predicted |act(z)|: full recall for tanh, none and leaky relu when the predictor can fit the layer', async () => {
    for (const activation of ['tanh', 'none', 'leaky_relu'] as const) {
      // rank 16 >= 8 inputs: the low-rank map can equal the layer's, so recall lost would be the ranking's.
      const dense = new Mlp({ inputs: 8, layers: [{ units: 64, activation, alpha: 0.5 }, { units: 2 }], seed: 2 }, { backend });
      const x = randomArray(8 * 400, 5);
      const sparse = await dense.sparsify({ mode: 'predictor', targetDensity: 0.25, rank: 16, epochs: 40, calibration: x, denseFromRows: 0, backend });
      expect(sparse.stats!.layers[0].recall, activation).toBeGreaterThan(0.95);
    }
  });

  it('each layer is calibrated on what the sparsified layers before it pass on, and its density is measured in the sparse model', async () => {
    const dense = new Mlp({ inputs: 8, layers: [{ units: 64, activation: 'tanh' }, { units: 64, activation: 'tanh' }, { units: 64, activation: 'tanh' }, { units: 3 }], seed: 3 }, { backend });
    const x = randomArray(8 * 300, 6);
    const sparse = await dense.sparsify({ mode: 'threshold', targetDensity: 0.1, calibration: x, backend });
    // Measured here independently: each prefix of the saved layers, ending with a sparse layer, on the reference backend.
    const { spec, layers } = tensorsToSparse(readSafetensors(sparse.toSafetensors()));
    const config = { inputs: spec.inputs, encoding: 0, octaves: 0, includeInput: false };
    for (let l = 0; l < 3; l++) {
      const part = referenceBackend.createSparseModel!(config, layers.slice(0, l + 1));
      const out = new Float32Array(300 * 64);
      part.predict(x, 300, out);
      const kept = out.filter((v) => v !== 0).length / out.length;
      expect(kept, `layer ${l}`).toBeGreaterThan(0.09); // fitted on the dense model's activations, layer 2 kept 0.2%
      expect(kept, `layer ${l}`).toBeLessThan(0.11);
      expect(sparse.stats!.layers[l].density).toBeCloseTo(kept, 6);
    }
  });

  it('predictor density counts the picked units that are not zero, not k / n; stats are read-only', async () => {
    const dense = net(16, [128], 4, backend, 9);
    const p = dense.getParameters();
    p.fill(-1.5, 16 * 128, 16 * 128 + 128); // biases: few units fire
    dense.setParameters(p);
    const x = randomArray(16 * 200, 10);
    const sparse = await dense.sparsify({ mode: 'predictor', targetDensity: 0.25, calibration: x, rank: 16, epochs: 10, denseFromRows: 0, backend });
    const exact = await dense.sparsify({ mode: 'exact', calibration: x, backend });
    const density = sparse.stats!.layers[0].density;
    expect(density).toBeLessThanOrEqual(exact.stats!.layers[0].density + 1e-12);
    expect(density).toBeLessThan(0.2);
    expect(Object.isFrozen(sparse.stats!.layers[0])).toBe(true);
    expect(() => { (sparse.stats!.layers[0] as { density: number }).density = 0.5; }).toThrow(TypeError);
  });

  it('denseFromRowsOf: the smallest tile whose picks cover more than half the units', () => {
    const n = 100;
    const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
    // The same 30 units in every row: the union never grows past 30%.
    expect(denseFromRowsOf(Array.from({ length: 64 }, () => range(0, 30)), n)).toBe(0);
    // Disjoint picks of 10 units: 5 rows cover exactly half (not more), 6 rows 60%.
    expect(denseFromRowsOf(Array.from({ length: 60 }, (_, r) => range((r % 10) * 10, (r % 10) * 10 + 10)), n)).toBe(6);
    // Too few rows to measure a tile of 6: estimated as independent picks of 10%, 1 - 0.9^7 > 0.5.
    expect(denseFromRowsOf([range(0, 10), range(10, 20)], n)).toBe(7);
    expect(denseFromRowsOf([], n)).toBe(0);
  });
});

describe('thresholdForDensity', () => {
  it('samples every unit of a big layer (its stride is coprime with the width)', () => {
    // 8.4M values, so the sample is strided: even units in [0, 1), odd units in [1, 2). Keeping
    // a quarter needs a cutoff near 1.5; a stride of 2 saw the even units only and cut near 0.75.
    const width = 16;
    const h = new Float32Array(width * 525_000);
    for (let i = 0; i < h.length; i++) h[i] = (i % 2) + ((i * 2654435761) % 1000) / 1000;
    const t = thresholdForDensity(h, 0.25, width);
    let kept = 0;
    for (let i = 0; i < h.length; i++) kept += Math.abs(h[i]) > t ? 1 : 0;
    expect(kept / h.length).toBeGreaterThan(0.24);
    expect(kept / h.length).toBeLessThan(0.26);
  });
});

describe('sparsify options are checked', () => {
  const dense = net(4, [8, 8], 2, 'reference');
  const gelu = net(4, [8], 2, 'reference', 1, 'gelu');
  const x = randomArray(4 * 10, 1);
  const bad: [string, unknown, RegExp, string][] = [
    ['no mode', {}, /options\.mode/, 'ERR_INVALID_ARG_TYPE'],
    ['unknown mode', { mode: 'fast' }, /options\.mode/, 'ERR_OUT_OF_RANGE'],
    ['unknown option', { mode: 'exact', targetdensity: 0.1 }, /Unknown option options\.targetdensity/, 'ERR_OUT_OF_RANGE'],
    ['density 0', { mode: 'topk', targetDensity: 0 }, /targetDensity/, 'ERR_OUT_OF_RANGE'],
    ['density above 1', { mode: 'topk', targetDensity: 1.5 }, /targetDensity/, 'ERR_OUT_OF_RANGE'],
    ['k above the layer', { mode: 'topk', k: 9 }, /options\.k/, 'ERR_OUT_OF_RANGE'],
    ['k and density', { mode: 'topk', k: 2, targetDensity: 0.5 }, /exactly one/, 'ERR_OUT_OF_RANGE'],
    ['threshold without setting', { mode: 'threshold' }, /exactly one/, 'ERR_OUT_OF_RANGE'],
    ['negative threshold', { mode: 'threshold', threshold: -1 }, /threshold/, 'ERR_OUT_OF_RANGE'],
    ['threshold past float32', { mode: 'threshold', threshold: 1e39 }, /options\.threshold/, 'ERR_OUT_OF_RANGE'],
    ['predictor with 9 calibration rows', { mode: 'predictor', k: 1, calibration: x.subarray(0, 36) }, /at least 10 calibration rows/, 'ERR_OUT_OF_RANGE'],
    ['denseFromRows 1', { mode: 'predictor', k: 1, calibration: x, denseFromRows: 1 }, /never the predictor/, 'ERR_OUT_OF_RANGE'],
    ['density without calibration', { mode: 'threshold', targetDensity: 0.5 }, /calibration/, 'ERR_OUT_OF_RANGE'],
    ['predictor without calibration', { mode: 'predictor', k: 2 }, /calibration/, 'ERR_OUT_OF_RANGE'],
    ['calibration of the wrong width', { mode: 'threshold', targetDensity: 0.5, calibration: new Float32Array(7) }, /multiple of 4/, 'ERR_OUT_OF_RANGE'],
    ['empty calibration', { mode: 'threshold', targetDensity: 0.5, calibration: new Float32Array(0) }, /calibration/, 'ERR_OUT_OF_RANGE'],
    ['NaN in calibration', { mode: 'threshold', targetDensity: 0.5, calibration: Float32Array.of(1, 2, NaN, 4) }, /calibration/, 'ERR_OUT_OF_RANGE'],
    ['calibration not float32', { mode: 'threshold', targetDensity: 0.5, calibration: [1, 2, 3, 4] }, /Float32Array/, 'ERR_INVALID_ARG_TYPE'],
    ['the output layer', { mode: 'topk', k: 1, layers: [2] }, /options\.layers\[0\]/, 'ERR_OUT_OF_RANGE'],
    ['rank outside predictor mode', { mode: 'topk', k: 1, rank: 4 }, /predictor mode only/, 'ERR_OUT_OF_RANGE'],
    ['rank not below the layer width', { mode: 'predictor', k: 1, calibration: x, rank: 1000 }, /options\.rank 1000 is not below the \d+ units of layer \d/, 'ERR_OUT_OF_RANGE'],
    ['denseFromRows outside predictor mode', { mode: 'topk', k: 1, denseFromRows: 4 }, /predictor mode only/, 'ERR_OUT_OF_RANGE'],
    ['denseFromRows above the tile', { mode: 'predictor', k: 1, calibration: x, denseFromRows: 17 }, /denseFromRows/, 'ERR_OUT_OF_RANGE'],
    ['denseFromRows negative', { mode: 'predictor', k: 1, calibration: x, denseFromRows: -1 }, /denseFromRows/, 'ERR_OUT_OF_RANGE'],
    ['denseFromRows not a number', { mode: 'predictor', k: 1, calibration: x, denseFromRows: 'always' }, /denseFromRows/, 'ERR_INVALID_ARG_TYPE'],
    ['unknown layer index type', { mode: 'topk', k: 1, layers: ['0'] }, /options\.layers\[0\]/, 'ERR_INVALID_ARG_TYPE'],
  ];
  it.each(bad)('%s', async (_, options, message, code) => {
    await expect(dense.sparsify(options as SparsifyOptions)).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
  });

  it('exact mode needs relu', async () => {
    await expect(gelu.sparsify({ mode: 'exact' })).rejects.toThrow(/no hidden layer of this model that is not residual uses relu/);
    await expect(gelu.sparsify({ mode: 'exact', layers: [0] })).rejects.toThrow(/layer 0 uses gelu/);
  });

  it('a residual layer cannot be sparsified', async () => {
    const block = new Mlp({ inputs: 4, layers: [{ units: 8, activation: 'relu' }, { units: 4, residual: true }, { units: 2 }] }, { backend: 'reference' });
    await expect(block.sparsify({ mode: 'topk', k: 2, layers: [1] })).rejects.toThrow(/layer 1 is residual/);
    const sparse = await block.sparsify({ mode: 'topk', k: 2 });
    expect(sparse.layers.map((l) => l.mode)).toEqual(['topk', 'dense', 'dense']);
  });

  it('a model without hidden layers cannot be sparsified', async () => {
    const single = new Mlp({ inputs: 3, layers: [{ units: 2 }] }, { backend: 'reference' });
    await expect(single.sparsify({ mode: 'topk', k: 1 })).rejects.toThrow(/hidden layer/);
  });

  it('predict checks its input and a disposed model says so', async () => {
    const sparse = await dense.sparsify({ mode: 'exact' });
    expect(() => sparse.predict(new Float32Array(3))).toThrow(/multiple of 4/);
    expect(() => sparse.predict(x, new Float32Array(1))).toThrow(RangeError);
    sparse.dispose();
    expect(() => sparse.predict(x)).toThrow(expect.objectContaining({ code: 'ERR_MLPKIT_DISPOSED' }));
    expect(sparse).toBeInstanceOf(SparseMlp);
  });
});

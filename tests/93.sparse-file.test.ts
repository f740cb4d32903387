// Sparse model files (SparseMlp.save / load, lib/sparse/file.ts): a saved model loads back and
// predicts bit for bit as before on each backend, in every mode, with gated and residual layers
// and predictors; its stats come back; Mlp.load reads the dense model out of it; and a corrupt or
// foreign file is a FileFormatError that names the layer or tensor and the problem.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileFormatError, Mlp, QuantizedMlp, SparseMlp, readSafetensors, writeSafetensors, type MlpSpec, type SparsifyOptions, type TensorInput } from '../lib/index.js';
import { backendsUnderTest, randomArray, expectSameBits } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'mlpkit-sparse-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PLAIN: MlpSpec = { inputs: 6, layers: [{ units: 32, activation: 'relu' }, { units: 24, activation: 'relu' }, { units: 3 }], seed: 11 };
// A ReGLU FFN block (gated relu, residual down projection), another hidden layer, the output.
const BLOCK: MlpSpec = {
  inputs: 8,
  layers: [{ units: 24, activation: 'relu', gated: true }, { units: 8, residual: true }, { units: 16, activation: 'relu' }, { units: 3 }],
  seed: 12,
};
const ENCODED: MlpSpec = { inputs: 2, encoding: { type: 'frequency', octaves: 3 }, layers: [{ units: 20, activation: 'gelu' }, { units: 2 }], seed: 13 };

function modes(x: Float32Array): [string, SparsifyOptions][] {
  return [
    ['exact', { mode: 'exact' }],
    ['threshold (calibrated)', { mode: 'threshold', targetDensity: 0.3, calibration: x }],
    ['threshold (given)', { mode: 'threshold', threshold: 0.05 }],
    ['topk', { mode: 'topk', k: 5 }],
    ['predictor', { mode: 'predictor', k: 6, rank: 4, epochs: 3, seed: 2, calibration: x }],
  ];
}

describe.each(backendsUnderTest())('round trip on %s', (backend) => {
  for (const [name, spec] of [['plain', PLAIN], ['gated + residual', BLOCK]] as const) {
    it.each(modes(randomArray(spec.inputs * 60, 3)))(`${name} model, %s: loads back and predicts the same bits`, async (_, options) => {
      const net = new Mlp(spec, { backend });
      const x = randomArray(spec.inputs * 60, 3);
      const sparse = await net.sparsify({ ...options, backend });
      const path = join(dir, `${backend}-${name.replace(/\W+/g, '_')}-${options.mode}.safetensors`);
      await sparse.save(path);
      const loaded = await SparseMlp.load(path, { backend });
      const loadedSync = SparseMlp.loadSync(path, { backend });
      expect(loaded.backend).toBe(backend);
      expect(loaded.inputs).toBe(sparse.inputs);
      expect(loaded.outputs).toBe(sparse.outputs);
      expect(loaded.layers).toEqual(sparse.layers);
      expect(loaded.stats).toEqual(sparse.stats);
      const want = sparse.predict(x);
      expectSameBits(loaded.predict(x), want, 'load');
      expectSameBits(loadedSync.predict(x), want, 'loadSync');
      expectSameBits(await loaded.predictAsync(x), want, 'predictAsync');
      expectSameBits(loaded.predict(x.subarray(0, spec.inputs)), sparse.predict(x.subarray(0, spec.inputs)), 'one row');

      // Saved again, the bytes are the same: nothing is lost or rounded on the way.
      expect(Buffer.from(loaded.toSafetensors()).equals(Buffer.from(sparse.toSafetensors()))).toBe(true);

      // The float model is whole in the file: Mlp.load gives the dense model, bit for bit.
      const dense = await Mlp.load(path, { backend });
      expect(dense.spec).toEqual(net.spec);
      expectSameBits(dense.getParameters(), net.getParameters(), 'dense parameters');
      expectSameBits(dense.predict(x), net.predict(x), 'dense predict');
      for (const m of [net, sparse, loaded, loadedSync, dense]) m.dispose();
    });
  }

  it('a frequency-encoded model, saved with saveSync', async () => {
    const net = new Mlp(ENCODED, { backend });
    const x = randomArray(2 * 30, 5);
    const sparse = await net.sparsify({ mode: 'topk', k: 4, backend });
    const path = join(dir, `${backend}-encoded.safetensors`);
    sparse.saveSync(path);
    const loaded = SparseMlp.loadSync(path, { backend });
    expect(loaded.stats).toBeNull();
    expectSameBits(loaded.predict(x), sparse.predict(x), 'encoded');
  });

  it('only the chosen layers are sparse after loading (--layers)', async () => {
    const net = new Mlp(PLAIN, { backend });
    const sparse = await net.sparsify({ mode: 'topk', k: 4, layers: [1], backend });
    const loaded = SparseMlp.fromSafetensors(sparse.toSafetensors(), { backend });
    expect(loaded.layers.map((l) => l.mode)).toEqual(['dense', 'topk', 'dense']);
    const x = randomArray(6 * 9, 8);
    expectSameBits(loaded.predict(x), sparse.predict(x), 'layers [1]');
  });
});

describe('the other backend reads the file too', () => {
  it.runIf(backendsUnderTest().includes('native'))('saved on native, loaded on reference: the same model within float rounding', async () => {
    const net = new Mlp(BLOCK, { backend: 'native' });
    const x = randomArray(8 * 40, 21);
    const sparse = await net.sparsify({ mode: 'topk', k: 6, backend: 'native' });
    const other = SparseMlp.fromSafetensors(sparse.toSafetensors(), { backend: 'reference' });
    expect(other.backend).toBe('reference');
    const a = sparse.predict(x);
    const b = other.predict(x);
    let diff = 0;
    let scale = 1e-6;
    for (let i = 0; i < a.length; i++) {
      diff = Math.max(diff, Math.abs(a[i] - b[i]));
      scale = Math.max(scale, Math.abs(b[i]));
    }
    expect(diff / scale).toBeLessThan(1e-4); // tests/92: same units kept, float32 against float64 sums
  });
});

describe('corrupt and foreign files', () => {
  const backend = 'reference';
  let predictorBytes: Uint8Array;
  let topkBytes: Uint8Array;
  let blockBytes: Uint8Array;

  /** The file with its sparsity metadata (parsed) and tensors changed by `edit`. */
  function rewrite(bytes: Uint8Array, edit: (meta: Record<string, any>, tensors: Record<string, TensorInput>, metadata: Record<string, string>) => void): Uint8Array {
    const file = readSafetensors(bytes);
    const tensors: Record<string, TensorInput> = {};
    for (const [name, t] of Object.entries(file.tensors)) tensors[name] = { shape: t.shape, data: t.data, dtype: t.dtype as TensorInput['dtype'] };
    const metadata = { ...file.metadata };
    const meta = JSON.parse(metadata['mlpkit.sparsity']);
    edit(meta, tensors, metadata);
    if (metadata['mlpkit.sparsity'] === file.metadata['mlpkit.sparsity']) metadata['mlpkit.sparsity'] = JSON.stringify(meta);
    return writeSafetensors(tensors, metadata);
  }

  function expectFileError(bytes: Uint8Array, message: RegExp): void {
    let caught: unknown;
    try {
      SparseMlp.fromSafetensors(bytes, { backend });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(FileFormatError);
    expect(caught).toMatchObject({ code: 'ERR_MLPKIT_INVALID_FILE', message: expect.stringMatching(message) });
  }

  beforeAll(async () => {
    const x = randomArray(6 * 40, 31);
    const net = new Mlp(PLAIN, { backend });
    predictorBytes = (await net.sparsify({ mode: 'predictor', k: 6, rank: 4, epochs: 2, calibration: x, layers: [0], backend })).toSafetensors();
    topkBytes = (await net.sparsify({ mode: 'topk', k: 4, backend })).toSafetensors();
    blockBytes = (await new Mlp(BLOCK, { backend }).sparsify({ mode: 'exact', backend })).toSafetensors();
  });

  it('the files to corrupt load as they are', () => {
    for (const bytes of [predictorBytes, topkBytes, blockBytes]) expect(SparseMlp.fromSafetensors(bytes, { backend })).toBeInstanceOf(SparseMlp);
    expect(JSON.parse(readSafetensors(predictorBytes).metadata['mlpkit.sparsity']).layers).toEqual([
      { mode: 'predictor', threshold: null, k: 6, rank: 4, denseFromRows: SparseMlp.fromSafetensors(predictorBytes, { backend }).layers[0].denseFromRows },
      { mode: 'dense', threshold: null, k: null, rank: null },
      { mode: 'dense', threshold: null, k: null, rank: null },
    ]);
  });

  it('denseFromRows: kept, absent in older files (never), checked', () => {
    const set = (v: unknown) => rewrite(predictorBytes, (m) => void (m.layers[0].denseFromRows = v));
    expect(SparseMlp.fromSafetensors(set(5), { backend }).layers[0].denseFromRows).toBe(5);
    expect(SparseMlp.fromSafetensors(rewrite(predictorBytes, (m) => void delete m.layers[0].denseFromRows), { backend }).layers[0].denseFromRows).toBe(0);
    expectFileError(set(17), /layers\[0\]\.denseFromRows must be an integer in \[0, 16\] but is 17/);
    expectFileError(set(-1), /layers\[0\]\.denseFromRows must be an integer in \[0, 16\] but is -1/);
    expectFileError(set('auto'), /layers\[0\]\.denseFromRows must be an integer in \[0, 16\] but is "auto"/);
    expectFileError(rewrite(topkBytes, (m) => void (m.layers[0].denseFromRows = 3)), /layers\[0\]\.denseFromRows must be absent outside predictor mode but is 3/);
  });

  it('metadata that is not JSON, not an object, or of another version', () => {
    expectFileError(rewrite(topkBytes, (_m, _t, md) => void (md['mlpkit.sparsity'] = '{"version": 1, "layers": [')), /metadata 'mlpkit.sparsity' is not valid JSON/);
    expectFileError(rewrite(topkBytes, (_m, _t, md) => void (md['mlpkit.sparsity'] = '[1, 2]')), /metadata 'mlpkit.sparsity' is not a JSON object/);
    expectFileError(rewrite(topkBytes, (m) => void (m.version = 2)), /version must be 1 \(this mlpkit reads version 1 files\) but is 2/);
    expectFileError(rewrite(topkBytes, (m) => void m.layers.pop()), /layers must be a list of 3 layers \(one per spec layer\)/);
    expectFileError(rewrite(topkBytes, (m) => void (m.layers[0] = 'topk')), /layers\[0\] is not an object/);
  });

  it('an unknown mode, k out of range, a negative or NaN threshold', () => {
    expectFileError(rewrite(topkBytes, (m) => void (m.layers[0].mode = 'fast')), /layers\[0\]\.mode must be one of dense, exact, threshold, topk, predictor but is "fast"/);
    expectFileError(rewrite(topkBytes, (m) => void (m.layers[1].k = 25)), /layers\[1\]\.k must be an integer in \[1, 24\] \(the layer's units\) but is 25/);
    expectFileError(rewrite(topkBytes, (m) => void (m.layers[0].k = 0)), /layers\[0\]\.k must be an integer in \[1, 32\]/);
    expectFileError(rewrite(topkBytes, (m) => void (m.layers[0].k = 2.5)), /layers\[0\]\.k must be an integer/);
    const threshold = (t: unknown) => rewrite(topkBytes, (m) => void (m.layers[0] = { mode: 'threshold', threshold: t, k: null, rank: null }));
    expect(SparseMlp.fromSafetensors(threshold(0.25), { backend }).layers[0]).toMatchObject({ mode: 'threshold', threshold: 0.25 });
    expectFileError(threshold(-0.5), /layers\[0\]\.threshold must be a finite number >= 0 but is -0.5/);
    expectFileError(threshold('NaN'), /layers\[0\]\.threshold must be a finite number >= 0 but is "NaN"/);
    expectFileError(threshold(null), /layers\[0\]\.threshold must be a finite number >= 0 but is null/);
    expectFileError(threshold(1e39), /layers\[0\]\.threshold must be a finite number >= 0/);
    expectFileError(rewrite(topkBytes, (m) => void (m.layers[0].threshold = 0.5)), /layers\[0\]\.threshold must be null in topk mode but is 0.5/);
  });

  it('a sparsified output layer, residual layer, or exact mode on a layer that is not relu', () => {
    expectFileError(rewrite(topkBytes, (m) => void (m.layers[2] = { mode: 'topk', k: 1, threshold: null, rank: null })), /layers\[2\] is the output layer/);
    expectFileError(rewrite(blockBytes, (m) => void (m.layers[1] = { mode: 'topk', k: 2, threshold: null, rank: null })), /layers\[1\] is residual .* cannot run topk mode/);
    const gelu = new Mlp(ENCODED, { backend });
    return gelu.sparsify({ mode: 'topk', k: 3, backend }).then((s) => {
      expectFileError(rewrite(s.toSafetensors(), (m) => void (m.layers[0] = { mode: 'exact', threshold: null, k: null, rank: null })),
        /layers\[0\] runs exact mode, which needs relu, but the layer uses gelu/);
    });
  });

  it('a missing, misshapen, mistyped, non-finite or stray predictor tensor', () => {
    expectFileError(rewrite(predictorBytes, (_m, t) => void delete t['layers.0.predictor.b']), /layers\.0\.predictor\.b: missing; a predictor layer needs it as F32 \[32, 4\]/);
    expectFileError(rewrite(predictorBytes, (_m, t) => void (t['layers.0.predictor.a'] = { shape: [4, 5], data: new Float32Array(20) })),
      /layers\.0\.predictor\.a: expected F32 \[4, 6\], got F32 \[4, 5\]/);
    expectFileError(rewrite(predictorBytes, (_m, t) => void (t['layers.0.predictor.b_bias'] = { shape: [32], data: new Float64Array(32) })),
      /layers\.0\.predictor\.b_bias: expected F32 \[32\], got F64 \[32\]/);
    expectFileError(rewrite(predictorBytes, (m) => void (m.layers[0].rank = 5)), /layers\.0\.predictor\.a: expected F32 \[5, 6\], got F32 \[4, 6\]/);
    expectFileError(rewrite(predictorBytes, (m) => void (m.layers[0].rank = null)), /layers\[0\]\.rank must be an integer in \[1, 65536\] but is null/);
    expectFileError(rewrite(predictorBytes, (_m, t) => {
      const a = Float32Array.from(t['layers.0.predictor.a'].data as Float32Array);
      a[7] = NaN;
      t['layers.0.predictor.a'] = { shape: [4, 6], data: a };
    }), /layers\.0\.predictor\.a: value NaN at 7 is not finite/);
    expectFileError(rewrite(predictorBytes, (m) => void (m.layers[0] = { mode: 'topk', k: 6, threshold: null, rank: null })),
      /tensor 'layers\.0\.predictor\.a' belongs to no predictor: layer 0 runs topk mode/);
  });

  it('a truncated file, a misshapen weight, a tensor that is not the model\'s', () => {
    expectFileError(predictorBytes.subarray(0, predictorBytes.length - 10), /truncated/);
    expectFileError(rewrite(topkBytes, (_m, t) => void (t['layers.1.weight'] = { shape: [24, 31], data: new Float32Array(24 * 31) })),
      /tensor 'layers\.1\.weight' has shape \[24, 31\], expected \[24, 32\]/);
    expectFileError(rewrite(topkBytes, (_m, t) => void (t['extra'] = { shape: [1], data: new Float32Array(1) })), /'extra'/);
    expectFileError(rewrite(topkBytes, (_m, _t, md) => void delete md['mlpkit.spec']), /no 'mlpkit.spec' metadata/);
  });

  it('stats: kept as written, non-finite numbers included; malformed ones are errors', () => {
    const withStats = (stats: unknown) => rewrite(topkBytes, (m) => void (m.stats = stats));
    const good = { samples: 40, layers: [{ layer: 0, units: 32, mode: 'topk', threshold: null, k: 4, density: 0.125, recall: null }], output: { relativeRms: 0.01, relativeMax: 'Infinity' } };
    const loaded = SparseMlp.fromSafetensors(withStats(good), { backend });
    expect(loaded.stats).toEqual({ ...good, output: { relativeRms: 0.01, relativeMax: Infinity } });
    // ... and written back the same way.
    expect(JSON.parse(readSafetensors(loaded.toSafetensors()).metadata['mlpkit.sparsity']).stats).toEqual(good);
    expectFileError(withStats({ ...good, samples: 0 }), /stats\.samples must be an integer >= 1 but is 0/);
    expectFileError(withStats({ ...good, layers: [{ ...good.layers[0], layer: 2 }] }), /stats\.layers\[0\]\.layer must be a hidden-layer index in \[0, 1\]/);
    expectFileError(withStats({ ...good, layers: [{ ...good.layers[0], density: 2 }] }), /stats\.layers\[0\]\.density must be a number in \[0, 1\]/);
    expectFileError(withStats({ ...good, output: null }), /stats\.output must be an object/);
    expectFileError(withStats(7), /stats must be an object or null but is 7/);
    expectFileError(withStats({ ...good, layers: [{ ...good.layers[0], density: 'Infinity' }] }), /stats\.layers\[0\]\.density must be a number in \[0, 1\]/);
    // Stats that describe other settings than the layer's were edited by hand.
    expectFileError(withStats({ ...good, layers: [{ ...good.layers[0], mode: 'threshold', threshold: 0.5, k: null }] }), /stats\.layers\[0\] describes layer 0 as threshold mode .* but the layer runs topk mode/);
    expectFileError(withStats({ ...good, layers: [{ ...good.layers[0], k: 5 }] }), /describes layer 0 as topk mode \(threshold null, k 5\)/);
  });

  it('metadata JSON with a key twice, and long values clipped in messages', () => {
    const text = (m: string) => rewrite(topkBytes, (_m, _t, md) => void (md['mlpkit.sparsity'] = m));
    const stored = JSON.parse(readSafetensors(topkBytes).metadata['mlpkit.sparsity']);
    const twice = JSON.stringify(stored).replace('"mode":"topk"', '"mode":"dense","mode":"topk"');
    expect(twice).not.toBe(JSON.stringify(stored));
    expectFileError(text(twice), /metadata 'mlpkit.sparsity' has the key 'mode' twice/);
    let message = '';
    try {
      SparseMlp.fromSafetensors(rewrite(topkBytes, (m) => void (m.layers[0].mode = 'x'.repeat(100_000))), { backend });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/layers\[0\]\.mode must be one of/);
    expect(message.length).toBeLessThan(400);
  });

  it('a float or quantised file is not sparse, and the quantised loader says what a sparse file is', () => {
    const net = new Mlp(PLAIN, { backend });
    expectFileError(net.toSafetensors(), /no 'mlpkit.sparsity' metadata: not a sparse mlpkit model \(a float model loads with Mlp.load; net.sparsify\(\.\.\.\) makes a sparse one\)/);
    expectFileError(net.quantize({ weights: 'int8', backend }).toSafetensors(), /holds a quantised model .* load it with QuantizedMlp.load/);
    expect(() => QuantizedMlp.fromSafetensors(topkBytes, { backend })).toThrow(/holds a sparse model .* load it with SparseMlp.load/);
  });

  it('load options and a disposed model are checked like the other models\'', async () => {
    expect(() => SparseMlp.fromSafetensors(topkBytes, { backend: 'gpu' as 'native' })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => SparseMlp.fromSafetensors('bytes' as unknown as Uint8Array)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    await expect(SparseMlp.load(join(dir, 'missing.safetensors'))).rejects.toMatchObject({ code: 'ENOENT' });
    const sparse = SparseMlp.fromSafetensors(topkBytes, { backend });
    sparse.dispose();
    expect(() => sparse.toSafetensors()).toThrow(expect.objectContaining({ code: 'ERR_MLPKIT_DISPOSED' }));
    await expect(sparse.save(join(dir, 'disposed.safetensors'))).rejects.toMatchObject({ code: 'ERR_MLPKIT_DISPOSED' });
  });
});

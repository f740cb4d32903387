// Sparse models with int8 weights (net.sparsify({ weights: 'int8' })): the layers read sparsely
// hold net.quantize's int8 codes times a scale per row. The reference computes with the
// dequantised floats, the native kernels with the codes (each output's scale applied after its
// sum), so the two agree within float32 rounding of the sums; the units chosen are the same.
// The file keeps the dequantised weights plus the scales, checked on load.

import { describe, expect, it } from 'vitest';
import { FileFormatError, Mlp, SparseMlp, readSafetensors, writeSafetensors, type MlpSpec, type SparsifyOptions, type TensorInput } from '../lib/index.js';
import { selectBackend } from '../lib/backend/index.js';
import { backendsUnderTest, expectClose, hasNative, randomArray } from './helpers.js';

const nativeSparse = hasNative() && typeof selectBackend('native').createSparseModel === 'function';

const RELU: MlpSpec = { inputs: 17, layers: [{ units: 63, activation: 'relu' }, { units: 65, activation: 'relu' }, { units: 3 }], seed: 5 };
const SWIGLU: MlpSpec = { inputs: 33, layers: [{ units: 100, activation: 'silu', gated: true }, { units: 33, residual: true }, { units: 4 }], seed: 6 };

/** Options for each mode on a model with `inputs` inputs (calibration rows included). */
function modes(inputs: number, relu: boolean): SparsifyOptions[] {
  const calibration = randomArray(48 * inputs, 21);
  const all: SparsifyOptions[] = [
    { mode: 'threshold', targetDensity: 0.4, calibration },
    { mode: 'topk', targetDensity: 0.3 },
    { mode: 'predictor', targetDensity: 0.3, calibration, epochs: 2, rank: 8 },
  ];
  return relu ? [{ mode: 'exact' }, ...all] : all;
}

/** Relative error of a against b, the largest |b| as the scale. */
function maxRelative(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 1e-30;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

describe.each(backendsUnderTest())('int8 weights on %s', (backend) => {
  it('the layers read sparsely get int8 weights: the codes of net.quantize, kept dequantised', async () => {
    const net = new Mlp(RELU, { backend });
    const sparse = await net.sparsify({ mode: 'exact', layers: [0], weights: 'int8', backend });
    expect(sparse.weights).toBe('int8');
    expect(sparse.layers.map((l) => l.weights)).toEqual(['float', 'int8', 'float']);
    // The file's weights are the dequantised ones: layer 1 is exactly f32(scale * q) of the
    // quantised model's int8 layer 1, the others are the float model's.
    const file = readSafetensors(sparse.toSafetensors());
    const quant = net.quantize({ weights: 'int8', backend: 'reference' }).toSafetensors();
    const q = readSafetensors(quant);
    const codes = q.tensors['layers.1.qweight'].data as Int8Array;
    const scales = q.tensors['layers.1.scales'].data; // [outputs, 1]: one group per row
    const w1 = file.tensors['layers.1.weight'].data as Float32Array;
    const s1 = file.tensors['layers.1.weight_scale'].data as Float32Array;
    expect(Array.from(s1)).toEqual(Array.from(scales as Float32Array));
    for (let i = 0; i < w1.length; i++) expect(w1[i]).toBe(Math.fround(s1[Math.floor(i / 63)] * codes[i]));
    expect(Array.from(file.tensors['layers.0.weight'].data as Float32Array)).toEqual(Array.from(net.getLayers()[0].weight));
    sparse.dispose();
    net.dispose();
  });

  it('exact mode with int8 weights equals the dequantised dense model (Mlp.load of its file)', async () => {
    const net = new Mlp(RELU, { backend });
    const sparse = await net.sparsify({ mode: 'exact', weights: 'int8', backend });
    const dequantized = Mlp.fromSafetensors(sparse.toSafetensors(), { backend });
    for (const batch of [1, 3, 17, 40]) {
      const x = randomArray(batch * RELU.inputs, 40 + batch);
      expectClose(sparse.predict(x), dequantized.predict(x), 1e-5, `batch ${batch}`);
    }
    sparse.dispose();
    dequantized.dispose();
    net.dispose();
  });

  it('saves and loads: the same outputs, bit for bit, and the int8 layers stay int8', async () => {
    const net = new Mlp(SWIGLU, { backend });
    for (const options of modes(SWIGLU.inputs, false)) {
      const sparse = await net.sparsify({ ...options, weights: 'int8', backend });
      const loaded = SparseMlp.fromSafetensors(sparse.toSafetensors(), { backend });
      expect(loaded.layers).toEqual(sparse.layers);
      const x = randomArray(5 * SWIGLU.inputs, 3);
      expect(Array.from(loaded.predict(x)), options.mode).toEqual(Array.from(sparse.predict(x)));
      sparse.dispose();
      loaded.dispose();
    }
    net.dispose();
  });
});

describe.runIf(nativeSparse)('int8 weights: native against the reference', () => {
  it.each([
    ['relu', RELU],
    ['swiglu', SWIGLU],
  ] as const)('%s: every mode, batches 1, 3, 17, 40, within float32 rounding of the sums', async (name, spec) => {
    const netN = new Mlp(spec, { backend: 'native' });
    const netR = new Mlp(spec, { backend: 'reference' });
    for (const options of modes(spec.inputs, name === 'relu')) {
      // The predictor is trained once, then the same layers run on both backends.
      const native = await netN.sparsify({ ...options, weights: 'int8', backend: 'native' });
      const reference = SparseMlp.fromSafetensors(native.toSafetensors(), { backend: 'reference' });
      for (const batch of [1, 3, 17, 40]) {
        const x = randomArray(batch * spec.inputs, 60 + batch);
        // Sums of up to ~100 products in float32 (native: scale * sum of codes; reference:
        // float64 sums of the dequantised weights): ~1e-6 relative, 1e-5 leaves room for
        // the rare unit within rounding of a cutoff.
        expect(maxRelative(native.predict(x), reference.predict(x)), `${options.mode} batch ${batch}`).toBeLessThan(1e-5);
      }
      native.dispose();
      reference.dispose();
    }
    netN.dispose();
    netR.dispose();
  });

  it('layers wide enough for the thread pool: every mode, dense-union tiles included', async () => {
    // 64 x 600 x 16 rows is over the work a layer runs on the calling thread, so the dense
    // fallback of a tile splits its columns over the pool (int8 layers add no bias in the GEMM).
    for (const spec of [
      { inputs: 64, layers: [{ units: 600, activation: 'relu' as const }, { units: 64 }], seed: 3 },
      { inputs: 64, layers: [{ units: 600, activation: 'silu' as const, gated: true }, { units: 64 }], seed: 4 },
    ]) {
      const net = new Mlp(spec, { backend: 'native' });
      for (const options of modes(spec.inputs, !spec.layers[0].gated)) {
        const native = await net.sparsify({ ...options, weights: 'int8', backend: 'native' });
        const reference = SparseMlp.fromSafetensors(native.toSafetensors(), { backend: 'reference' });
        for (const batch of [1, 16, 40]) {
          const x = randomArray(batch * spec.inputs, 80 + batch);
          expect(maxRelative(native.predict(x), reference.predict(x)), `${options.mode} batch ${batch}`).toBeLessThan(1e-5);
        }
        native.dispose();
        reference.dispose();
      }
      net.dispose();
    }
  });

  it('int8 rows cost a quarter of the float rows\' bytes', async () => {
    const net = new Mlp({ inputs: 64, layers: [{ units: 512, activation: 'relu' }, { units: 64 }], seed: 2 }, { backend: 'native' });
    const x = randomArray(64 * 64, 8);
    const f = await net.sparsify({ mode: 'predictor', targetDensity: 0.1, calibration: x, epochs: 1, backend: 'native' });
    const q = await net.sparsify({ mode: 'predictor', targetDensity: 0.1, calibration: x, epochs: 1, weights: 'int8', backend: 'native' });
    const b = (m: SparseMlp) => (m as unknown as { model: { bytes: number } }).model.bytes;
    // Both hold the dense panels for batch fallbacks (floats) and the predictor; the int8 model's
    // row copies of both layers (2 x 512 x 64 weights) take 1 byte each instead of 4.
    expect(b(f) - b(q)).toBeGreaterThanOrEqual(3 * 2 * 512 * 64 - 4 * 2 * 512);
    f.dispose();
    q.dispose();
    net.dispose();
  });
});

describe('int8 sparse files and options are checked', () => {
  const backend = 'reference';

  async function int8Bytes(): Promise<Uint8Array> {
    const net = new Mlp(RELU, { backend });
    return (await net.sparsify({ mode: 'topk', k: 10, layers: [0], weights: 'int8', backend })).toSafetensors();
  }

  function rewrite(bytes: Uint8Array, edit: (meta: Record<string, any>, tensors: Record<string, TensorInput>) => void): Uint8Array {
    const file = readSafetensors(bytes);
    const tensors: Record<string, TensorInput> = {};
    for (const [name, t] of Object.entries(file.tensors)) tensors[name] = { shape: t.shape, data: Float32Array.from(t.data as Float32Array), dtype: t.dtype as TensorInput['dtype'] };
    const meta = JSON.parse(file.metadata['mlpkit.sparsity']);
    edit(meta, tensors);
    return writeSafetensors(tensors, { ...file.metadata, 'mlpkit.sparsity': JSON.stringify(meta) });
  }

  function expectFileError(bytes: Uint8Array, message: RegExp): void {
    let caught: unknown;
    try {
      SparseMlp.fromSafetensors(bytes, { backend });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(FileFormatError);
    expect((caught as Error).message).toMatch(message);
  }

  it('the metadata names the int8 layers, and a float file has no weights field', async () => {
    const bytes = await int8Bytes();
    expect(JSON.parse(readSafetensors(bytes).metadata['mlpkit.sparsity']).layers.map((l: { weights?: string }) => l.weights)).toEqual([undefined, 'int8', undefined]);
    expect(SparseMlp.fromSafetensors(bytes, { backend }).weights).toBe('int8');
  });

  it('a corrupt, missing, misshapen or stray scale tensor, or a weight that is not a code times its scale', async () => {
    const bytes = await int8Bytes();
    expectFileError(rewrite(bytes, (_m, t) => void delete t['layers.1.weight_scale']), /layers\.1\.weight_scale: missing; layer metadata says int8 weights/);
    expectFileError(rewrite(bytes, (_m, t) => void (t['layers.1.weight_scale'] = { shape: [64], data: new Float32Array(64) })),
      /layers\.1\.weight_scale: expected F32 \[65\], got F32 \[64\]/);
    expectFileError(rewrite(bytes, (_m, t) => void ((t['layers.1.weight_scale'].data as Float32Array)[3] *= 1.5)),
      /layers\.1\.weight_scale: weight \[3, \d+\] = .* is not an int8 code times the row's scale/);
    expectFileError(rewrite(bytes, (_m, t) => void ((t['layers.1.weight_scale'].data as Float32Array)[0] = NaN)), /scale NaN of row 0 is not a finite number >= 0/);
    expectFileError(rewrite(bytes, (_m, t) => void ((t['layers.1.weight_scale'].data as Float32Array)[0] = -1)), /scale -1 of row 0/);
    expectFileError(rewrite(bytes, (_m, t) => void ((t['layers.1.weight'].data as Float32Array)[5] += 1e-3)), /weight \[0, 5\] = .* is not an int8 code/);
    expectFileError(rewrite(bytes, (m) => void delete m.layers[1].weights), /tensor 'layers\.1\.weight_scale' belongs to no int8 layer/);
    expectFileError(rewrite(bytes, (m) => void (m.layers[1].weights = 'int4')), /layers\[1\]\.weights must be 'float' or 'int8' but is "int4"/);
  });

  it('options.weights takes float or int8', async () => {
    const net = new Mlp(RELU, { backend });
    await expect(net.sparsify({ mode: 'exact', weights: 'int4' as 'int8', backend })).rejects.toThrow(/options\.weights/);
    const plain = await net.sparsify({ mode: 'exact', weights: 'float', backend });
    expect(plain.weights).toBe('float');
    expect(plain.layers.every((l) => l.weights === 'float')).toBe(true);
  });

  it('the native backend refuses weights that are not codes times the scales it is given', () => {
    if (!nativeSparse) return;
    const create = selectBackend('native').createSparseModel!;
    const layer = (weight: Float32Array, scales: Float32Array | null, mode: number) => ({
      inputs: 2, outputs: 2, activation: 1, alpha: 0, weight, bias: null, scales, gated: false, residual: false, mode,
      threshold: 0, k: 0, rank: 0, predictorA: null, predictorABias: null, predictorB: null, predictorBBias: null, denseFromRows: 0,
    });
    const config = { inputs: 2, encoding: 0, octaves: 0, includeInput: false };
    const good = create(config, [layer(new Float32Array([1, 2, 3, 4]), null, 1), layer(new Float32Array([0.5, 1, -63.5, 0]), new Float32Array([0.5, 0.5]), 0)]);
    good.dispose();
    expect(() => create(config, [layer(new Float32Array([1, 2, 3, 4]), null, 1), layer(new Float32Array([0.3, 1, 2, 0]), new Float32Array([0.5, 0.5]), 0)]))
      .toThrow(/weight \[0, 0\] = 0\.3\d* is not an int8 code times its row's scale 0\.5/);
    expect(() => create(config, [layer(new Float32Array([1, 2, 3, 4]), null, 1), layer(new Float32Array([0.5, 1, 2, 0]), new Float32Array([0.5, 0.5, 1]), 0)]))
      .toThrow(/scales/);
  });
});

// Native quantised kernels against the reference (tests/90 checks the reference itself), on
// every format, group size, odd widths and batch sizes, and on extreme values chosen to break
// integer kernels (saturating 16-bit pair sums, int32 accumulators at their documented limit,
// the u8 x s8 compensation term, float32 rounding of large accumulators).
//
// 'int8' activations (W8A8) must agree bit for bit before the activation function: the integer
// dot products are exact and every float step is one float32 operation in the order of
// lib/quant/format.ts, so these cases use activation 'none' and compare bits (sign of zero
// included). 'float' activations (weight-only) agree within 1e-5 relative to the output scale:
// the reference accumulates in float64 and rounds once, the native kernels accumulate in float32
// in their own order (per group, then scaled); for dot products of up to ~1000 O(1) terms,
// float32 accumulation error stays near 1e-6 of the output scale (the same tolerance as
// tests/40 for the float kernels).

import { describe, expect, it } from 'vitest';
import { Mlp, QuantizedMlp, qmatmul, quantizeLayer, type ActivationName, type LayerFormatOptions, type QuantLayer } from '../lib/index.js';
import { selectBackend } from '../lib/backend/index.js';
import { expectClose, hasNative, gaussian, expectSameBits, LAYER_FORMATS } from './helpers.js';

const nativeQuant = hasNative() && typeof selectBackend('native').createQuantModel === 'function';
const FLOAT_TOL = 1e-5;

const FORMATS = LAYER_FORMATS;
const WIDTHS = [1, 3, 17, 63, 65, 1000];
const BATCHES = [1, 3, 64, 257];
const OUTPUTS = 33; // two full blocks of 16 output lanes and one lane of a third

const run = (x: Float32Array, layer: QuantLayer, activations: 'float' | 'int8', backend: 'native' | 'reference') =>
  qmatmul(x, layer, { activations, backend });

function layerFor(k: number, format: LayerFormatOptions, seed: number, bias = true, activation: ActivationName = 'none'): QuantLayer {
  return quantizeLayer(gaussian(OUTPUTS * k, seed, 1 / Math.sqrt(k)), bias ? gaussian(OUTPUTS, seed + 1, 0.1) : null, k, OUTPUTS, activation, 0.1, format);
}

/** 257 rows of N(0, 4), with a zero row, a one-hot row and a row of exact ties (x = m + 0.5 when sx = 1). */
function inputs(k: number, seed: number): Float32Array {
  const x = gaussian(257 * k, seed, 2);
  x.fill(0, 1 * k, 2 * k);
  x.fill(0, 2 * k, 3 * k);
  x[2 * k + Math.floor(k / 2)] = -5;
  if (k > 1) for (let p = 0; p < k; p++) x[4 * k + p] = p === 0 ? 127 : ((p * 37) % 253) - 126 + 0.5;
  return x;
}

describe.runIf(nativeQuant)('quantised layers: native vs reference', () => {
  it.each(FORMATS)('%s: W8A8 bit for bit, weight-only within 1e-5, widths 1..1000, batches 1..257', (name, format) => {
    for (const k of WIDTHS) {
      const layer = layerFor(k, format, k * 13 + name.length, k % 2 === 1);
      const x = inputs(k, k + 100);
      for (const batch of BATCHES) {
        const xb = x.subarray(0, batch * k);
        const what = `${name} k ${k} batch ${batch}`;
        expectSameBits(run(xb, layer, 'int8', 'native'), run(xb, layer, 'int8', 'reference'), `${what} int8`);
        expectClose(run(xb, layer, 'float', 'native'), run(xb, layer, 'float', 'reference'), FLOAT_TOL, `${what} float`);
      }
    }
  });

  // Batched weight-only rows run over a float panel of the block's codes (AVX2) where one row runs
  // straight from the codes: the same chains in the same order, so the same bits (README,
  // "Determinism"). Widths past the 256-input panel, and batches past the 8 rows of one pass.
  it.each(FORMATS)('%s: weight-only and W8A8 rows give the same bits alone and in any batch', (name, format) => {
    for (const k of [17, 300, 1000]) {
      const layer = layerFor(k, format, k * 7 + name.length, k % 2 === 0);
      const x = inputs(k, k + 9);
      for (const activations of ['float', 'int8'] as const) {
        const alone = Array.from({ length: 20 }, (_, r) => run(x.subarray(r * k, (r + 1) * k), layer, activations, 'native'));
        for (const batch of [2, 3, 8, 9, 10, 19, 20]) {
          const together = run(x.subarray(0, batch * k), layer, activations, 'native');
          for (let r = 0; r < batch; r++) expectSameBits(together.subarray(r * 33, (r + 1) * 33), alone[r], `${name} ${activations} k ${k} row ${r} of ${batch}`);
        }
      }
    }
  });

  it.each(FORMATS.filter(([name]) => name.startsWith('int4')))('%s: scales that are not bfloat16 values (files from before the quantiser rounded them) run on float32 scales, bit for bit', (name, format) => {
    // quantizeLayer makes every int4 scale a bfloat16 value, which native keeps in 2 bytes
    // (native/core/quant/qlayer.h); any other finite scale must still work, on float32 scales.
    for (const k of [17, 1000]) {
      const layer = layerFor(k, format, k + 3);
      const scales = layer.scales.map((v) => (v === 0 ? 0 : Math.fround(v * (1 + 2 ** -20))));
      expect(scales.some((v, i) => v !== layer.scales[i])).toBe(true);
      const legacy = { ...layer, scales };
      const x = inputs(k, k + 5);
      for (const batch of [1, 3, 64]) {
        const xb = x.subarray(0, batch * k);
        expectSameBits(run(xb, legacy, 'int8', 'native'), run(xb, legacy, 'int8', 'reference'), `${name} k ${k} batch ${batch} float32 scales`);
      }
    }
  });

  it.each(FORMATS)('%s: relu and leaky_relu epilogues (exact after an exact pre-activation)', (name, format) => {
    for (const activation of ['relu', 'leaky_relu'] as const) {
      const layer = layerFor(65, format, 7, true, activation);
      const x = inputs(65, 8).subarray(0, 64 * 65);
      expectSameBits(run(x, layer, 'int8', 'native'), run(x, layer, 'int8', 'reference'), `${name} ${activation}`);
    }
  });
});

describe.runIf(nativeQuant)('quantised layers: extreme values, native vs reference bit for bit', () => {
  /** A layer from explicit weights (n x k), no bias, activation 'none'. */
  const exact = (w: Float32Array, k: number, n: number, format: LayerFormatOptions) => quantizeLayer(w, null, k, n, 'none', 0, format);
  const same = (x: Float32Array, layer: QuantLayer, what: string) => {
    const nat = run(x, layer, 'int8', 'native');
    expectSameBits(nat, run(x, layer, 'int8', 'reference'), what);
    return nat;
  };

  it('int8: every product at +-127 x +-127, the longest rows an int32 holds, large accumulators rounded to float32', () => {
    for (const k of [64, 1000, 4096, 133_144]) {
      // Rows of all +1, all -1 and alternating signs: q = +-127 everywhere. Inputs likewise,
      // so the sums reach +-127 * 127 * k (2^31 - 1 - 4071 at k = 133144), far past where a
      // 16-bit pair sum (vpmaddubsw) saturates, and past 2^24 where float32(acc) rounds.
      const n = 3;
      const w = new Float32Array(n * k);
      for (let p = 0; p < k; p++) {
        w[p] = 1;
        w[k + p] = -1;
        w[2 * k + p] = p % 2 ? -1 : 1;
      }
      const layer = exact(w, k, n, { format: 'int8' });
      const x = new Float32Array(4 * k);
      for (let p = 0; p < k; p++) {
        x[p] = 1;
        x[k + p] = -1;
        x[2 * k + p] = p % 2 ? -1 : 1;
        x[3 * k + p] = p % 3 === 0 ? -0.5 : 127; // sx = 1: xq = 0 (the tie -0.5) or 127
      }
      const y = same(x, layer, `int8 k ${k}`);
      const s = Math.fround(Math.fround(1 / 127) * Math.fround(1 / 127));
      expect(y[0]).toBe(Math.fround(s * Math.fround(127 * 127 * k)));
      expect(y[1]).toBe(-y[0]);
    }
  });

  it.each(FORMATS.filter(([, f]) => f.format === 'int4'))('%s: extreme nibbles and zero points (all-positive, all-negative groups) against +-127 inputs', (name, format) => {
    const k = 300; // not a multiple of any group size
    const n = 4;
    const w = new Float32Array(n * k);
    for (let p = 0; p < k; p++) {
      w[p] = 1; // all positive: asym zero 0, u 15
      w[k + p] = -1; // all negative: asym zero 15, u 0
      w[2 * k + p] = p % 2 ? -1 : 1; // sym q = +-7
      w[3 * k + p] = p % 5 === 0 ? 3 : -0.001; // a few large, many tiny
    }
    const layer = exact(w, k, n, format);
    const x = new Float32Array(4 * k);
    for (let p = 0; p < k; p++) {
      x[p] = 127;
      x[k + p] = -127;
      x[2 * k + p] = p % 2 ? -127 : 127;
      x[3 * k + p] = p % 7 === 0 ? 127 : -126.5; // ties at -126.5 round to -126
    }
    same(x, layer, name);
  });

  it('huge, tiny and denormal magnitudes, overflow to Infinity, zero and one-hot rows', () => {
    for (const [, format] of FORMATS) {
      const k = 70;
      const n = 17;
      // [x scale, w scale]: products past FLT_MAX (Infinity, and NaN from Infinity - Infinity),
      // f32(sx * scale) underflowing, denormal inputs and weights, all-zero inputs or weights.
      const rows: [number, number][] = [[1e30, 1e-30], [5e37, 5e37], [1e-40, 1], [1, 1e-40], [1e-20, 1e-20], [0, 1], [1, 0]];
      for (const [xs, ws] of rows) {
        const layer = exact(gaussian(n * k, 3, ws), k, n, format);
        const x = gaussian(5 * k, 4, xs);
        x.fill(0, k, 2 * k);
        x.fill(0, 2 * k, 3 * k);
        x[2 * k + 5] = xs || 1;
        same(x, layer, `${format.format} ${format.groupSize ?? ''} x ${xs} w ${ws}`);
      }
    }
  });

  it('rows holding NaN or Infinity give NaN outputs (format.ts), then bias and activation', () => {
    for (const [name, format] of FORMATS) {
      const k = 40;
      const base = layerFor(k, format, 5);
      const x = gaussian(4 * k, 6);
      x[k + 3] = NaN;
      x[2 * k] = Infinity;
      x[3 * k + 39] = -Infinity;
      same(x, { ...base, bias: null }, `${name} no bias`);
      same(x, base, `${name} bias`);
      expectSameBits(run(x, { ...base, activation: 1 }, 'int8', 'native'), run(x, { ...base, activation: 1 }, 'int8', 'reference'), `${name} relu`);
    }
  });
});

describe.runIf(nativeQuant)('quantised models: native vs reference', () => {
  const spec = (activation: ActivationName) => ({
    inputs: 17,
    layers: [{ units: 65, activation }, { units: 33, activation }, { units: 5 }],
    seed: 2,
  });
  const x = gaussian(257 * 17, 30);

  it.each(FORMATS)('%s: a relu MLP, W8A8 bit for bit through every layer, weight-only within 1e-5', async (name, format) => {
    const net = new Mlp(spec('relu'), { backend: 'reference' });
    const options = { weights: format.format, groupSize: format.groupSize, symmetric: format.symmetric };
    for (const activations of ['int8', 'float'] as const) {
      const nat = net.quantize({ ...options, activations, backend: 'native' });
      const ref = net.quantize({ ...options, activations, backend: 'reference' });
      expect(nat.backend).toBe('native');
      for (const batch of [1, 3, 64, 257]) {
        const xb = x.subarray(0, batch * 17);
        const what = `${name} ${activations} batch ${batch}`;
        if (activations === 'int8') expectSameBits(nat.predict(xb), ref.predict(xb), what);
        else expectClose(nat.predict(xb), ref.predict(xb), FLOAT_TOL, what);
      }
      expectSameBits(await nat.predictAsync(x), nat.predict(x), `${name} ${activations} async`);
      nat.dispose();
      ref.dispose();
    }
  });

  it('weight-only through a frequency encoding and smooth activations, within 1e-5', () => {
    for (const activation of ['gelu', 'silu', 'tanh'] as const) {
      const net = new Mlp({ inputs: 3, encoding: { type: 'frequency', octaves: 4 }, layers: [{ units: 64, activation }, { units: 4 }], seed: 3 }, { backend: 'reference' });
      for (const [, format] of FORMATS) {
        const options = { weights: format.format, groupSize: format.groupSize, symmetric: format.symmetric };
        const nat = net.quantize({ ...options, backend: 'native' });
        const ref = net.quantize({ ...options, backend: 'reference' });
        const xs = gaussian(100 * 3, 31);
        expectClose(nat.predict(xs), ref.predict(xs), FLOAT_TOL, `${activation} ${format.format} ${format.groupSize ?? ''}`);
      }
    }
  });

  it('the same bytes load on either backend and agree', () => {
    const net = new Mlp(spec('relu'), { backend: 'reference' });
    const bytes = net.quantize({ weights: 'int4', groupSize: 64, symmetric: false, activations: 'int8' }).toSafetensors();
    const xb = x.subarray(0, 64 * 17);
    expectSameBits(QuantizedMlp.fromSafetensors(bytes, { backend: 'native' }).predict(xb), QuantizedMlp.fromSafetensors(bytes, { backend: 'reference' }).predict(xb), 'loaded');
  });
});

describe.runIf(nativeQuant)("the addon's quantMatmul (qmatmul's native path)", () => {
  const backend = selectBackend('native');
  const layer = layerFor(65, LAYER_FORMATS[1][1], 90);
  const config = { inputs: 65, encoding: 0, octaves: 0, includeInput: false, activations: 1 };

  it('gives the bits of a model made, run and disposed, and is what qmatmul calls', () => {
    expect(typeof backend.quantMatmul).toBe('function');
    const x = gaussian(3 * 65, 91);
    const model = backend.createQuantModel!(config, [layer]);
    const want = new Float32Array(3 * OUTPUTS);
    model.predict(x, 3, want);
    model.dispose();
    const got = new Float32Array(3 * OUTPUTS);
    backend.quantMatmul!(config, [layer], x, 3, got);
    expectSameBits(got, want, 'quantMatmul');
    expectSameBits(qmatmul(x, layer, { activations: 'int8', backend: 'native' }), want, 'qmatmul');
  });

  it('checks what crosses into it itself', () => {
    const call = (...args: unknown[]) => () => (backend.quantMatmul as (...a: unknown[]) => void)(...args);
    const x = new Float32Array(2 * 65);
    const out = new Float32Array(2 * OUTPUTS);
    expect(call(config, [layer], x, 2)).toThrow(/quantMatmul: out must be a Float32Array/);
    expect(call(config, [layer], new Float64Array(130), 2, out)).toThrow(TypeError);
    expect(call(config, [layer], x.subarray(1), 2, out)).toThrow(RangeError);
    expect(call(config, [layer], x, 2, out.subarray(1))).toThrow(RangeError);
    expect(call(config, [layer], x, 0, out)).toThrow(RangeError);
    expect(call(config, [{ ...layer, scales: layer.scales.subarray(1) }], x, 2, out)).toThrow(/layers\[0\]/);
    expect(call(config, [], x, 2, out)).toThrow(/layers must hold 1/);
    expect(call({ ...config, activations: 7 }, [layer], x, 2, out)).toThrow(RangeError);
  });
});

// The native weight quantisers (native/core/quant/quantize.cpp) against lib/quant/quantize.ts's
// own loops: the same codes, scales and zero points, byte for byte, on every format and group
// size, odd widths, and weights chosen to hit the rules' edges: exact rounding ties, clipped
// scale candidates, all-zero and one-weight groups, denormals, and magnitudes near FLT_MAX.
// Both compute every float32 and float64 step in the same order, so no tolerance applies.

import { afterAll, describe, expect, it } from 'vitest';
import { dequantizeLayer, quantizeLayer, type LayerFormatOptions, type QuantLayer } from '../lib/index.js';
import { selectBackend } from '../lib/backend/index.js';
import { loadNative } from '../lib/backend/native.js';
import { equalizationScales, setNativeWeightQuantizer, type NativeWeightQuantizer } from '../lib/quant/quantize.js';
import { gaussian, hasNative, LAYER_FORMATS } from './helpers.js';

// Creating the native backend installs the native quantisers.
const native: NativeWeightQuantizer | null = (() => {
  if (!hasNative()) return null;
  selectBackend('native');
  const installed = setNativeWeightQuantizer(null);
  setNativeWeightQuantizer(installed);
  return installed;
})();
afterAll(() => setNativeWeightQuantizer(native));

const FORMATS = LAYER_FORMATS;
const FLT_MAX = 3.4028234663852886e38;

function quantizeWith(quantizer: NativeWeightQuantizer | null, w: Float32Array, k: number, n: number, format: LayerFormatOptions): QuantLayer {
  setNativeWeightQuantizer(quantizer);
  try {
    return quantizeLayer(w, null, k, n, 'none', 0, format);
  } finally {
    setNativeWeightQuantizer(native);
  }
}

function expectSameLayer(w: Float32Array, k: number, n: number, format: LayerFormatOptions, what: string): void {
  const js = quantizeWith(null, w, k, n, format);
  const cpp = quantizeWith(native, w, k, n, format);
  const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  expect(cpp.weights.constructor, `${what}: weights type`).toBe(js.weights.constructor);
  expect(Buffer.compare(bytes(cpp.weights), bytes(js.weights)), `${what}: codes`).toBe(0);
  expect(Buffer.compare(bytes(cpp.scales), bytes(js.scales)), `${what}: scales`).toBe(0);
  expect(cpp.zeros === null, `${what}: zeros present`).toBe(js.zeros === null);
  if (js.zeros && cpp.zeros) expect(Buffer.compare(bytes(cpp.zeros), bytes(js.zeros)), `${what}: zeros`).toBe(0);
}

// Weights of n rows x k inputs built per row by `row`, which gets the row index and its length.
function rows(k: number, n: number, row: (j: number, k: number) => ArrayLike<number>): Float32Array {
  const w = new Float32Array(n * k);
  for (let j = 0; j < n; j++) w.set(row(j, k), j * k);
  return w;
}

const CASES: [string, (k: number, n: number, seed: number) => Float32Array][] = [
  ['gaussian', (k, n, seed) => gaussian(n * k, seed, 1 / Math.sqrt(k))],
  ['heavy tails (cubed gaussian)', (k, n, seed) => gaussian(n * k, seed).map((v) => v * v * v)],
  // Integers and halves under a largest |w| of 127 (int8) or 7 / 15 (int4): the scale comes out
  // 1 (or 2, 0.5), so w / scale lands on exact ties that only ties-to-even settles.
  ['exact ties', (k, n, seed) => rows(k, n, (j) => Float32Array.from({ length: k }, (_, p) => {
    const peak = [127, 7, 15, 7.5][(j + seed) % 4];
    return p % 9 === 0 ? peak * (p % 2 ? -1 : 1) : ((p * 7 + j * 3 + seed) % 15) * 0.5 - 3.5;
  }))],
  ['zero rows, zero groups and single weights', (k, n, seed) => rows(k, n, (j) => {
    const r = new Float32Array(k);
    if (j % 3 === 1) r[(j * 13 + seed) % k] = j % 2 ? -0.75 : 2.5;
    if (j % 3 === 2) for (let p = 0; p < k; p += 40) r[p] = Math.sin(p + seed);
    return r;
  })],
  ['one-signed groups', (k, n, seed) => gaussian(n * k, seed).map((v, i) => (Math.floor(i / 32) % 2 ? Math.abs(v) : -Math.abs(v)))],
  ['denormals', (k, n, seed) => gaussian(n * k, seed, 1e-41)],
  ['near FLT_MAX', (k, n, seed) => gaussian(n * k, seed).map((v) => Math.max(-3.4e38, Math.min(3.4e38, v * 1.5e38)))],
  // FLT_MAX itself: f32(FLT_MAX / 127) rounds up, so int8 steps its scale down (rounding.ts).
  ['FLT_MAX itself', (k, n, seed) => gaussian(n * k, seed).map((v, i) => (i % 5 === 0 ? Math.sign(v) * FLT_MAX : v))],
  ['mixed magnitudes', (k, n, seed) => gaussian(n * k, seed).map((v, i) => v * 10 ** ((i * 7 + seed) % 61 - 30))],
];

describe.skipIf(!native)('native weight quantisers vs quantize.ts', () => {
  for (const [name, format] of FORMATS) {
    it(`${name}: the same codes, scales and zero points, widths 1..1000`, () => {
      let seed = 1;
      // 96, 160 and 192 end in a short group of exactly 32 or 64 under g64 / g128.
      for (const k of [1, 3, 17, 63, 65, 96, 128, 160, 192, 1000]) {
        for (const n of [1, 3, 17]) {
          for (const [caseName, make] of CASES) expectSameLayer(make(k, n, seed++), k, n, format, `${caseName}, ${n} x ${k}`);
        }
      }
    });
  }

  it('a weight of FLT_MAX dequantises to a finite value in every format, from either quantiser', () => {
    const w = gaussian(3 * 40, 9);
    w[0] = FLT_MAX;
    w[41] = -FLT_MAX;
    for (const [name, format] of FORMATS) {
      for (const quantizer of [null, native]) {
        const layer = quantizeWith(quantizer, w, 40, 3, format);
        const back = dequantizeLayer(layer);
        expect(back.every(Number.isFinite), `${name}, ${quantizer ? 'native' : 'TypeScript'}`).toBe(true);
        if (format.format === 'int8') {
          expect(back[0], `${name}: FLT_MAX comes back within one step`).toBeGreaterThan(FLT_MAX * (1 - 2 ** -22));
          expect(back[41]).toBe(-back[0]);
        }
      }
    }
  });

  it('a layer large enough to use the thread pool: the same bytes', () => {
    const k = 1000;
    const n = 300; // 300k weights: several tasks of ~64k
    const w = gaussian(n * k, 77, 0.03);
    for (const [name, format] of FORMATS) expectSameLayer(w, k, n, format, name);
  });

  it('checks its arguments itself: types, lengths, group size, finite weights, aliasing', () => {
    const addon = loadNative() as unknown as NativeWeightQuantizer;
    const w = new Float32Array(6).fill(0.5);
    expect(() => addon.quantizeInt8(w, 3, 2, new Int8Array(6), new Float32Array(2))).not.toThrow();
    expect(() => addon.quantizeInt8(new Float64Array(6) as never, 3, 2, new Int8Array(6), new Float32Array(2))).toThrow(TypeError);
    expect(() => addon.quantizeInt8(w, 3, 2, new Uint8Array(6) as never, new Float32Array(2))).toThrow(/codes must be an Int8Array/);
    expect(() => addon.quantizeInt8(w, 4, 2, new Int8Array(8), new Float32Array(2))).toThrow(/weight must have outputs \* inputs = 8 elements, got 6/);
    expect(() => addon.quantizeInt8(w, 3, 2, new Int8Array(5), new Float32Array(2))).toThrow(RangeError);
    expect(() => addon.quantizeInt8(w, 1.5, 2, new Int8Array(6), new Float32Array(2))).toThrow(/inputs must be an integer/);
    expect(() => addon.quantizeInt8(Float32Array.of(1, NaN, 0), 3, 1, new Int8Array(3), new Float32Array(1))).toThrow(/weight\[1\] must be finite, got NaN/);
    expect(() => addon.quantizeInt8(w, 3, 2, new Int8Array(w.buffer, 0, 6), new Float32Array(2))).toThrow(/must not share memory/);
    expect(() => addon.quantizeInt4(w, 3, 2, 16, new Uint8Array(32), new Float32Array(2), null)).toThrow(/groupSize must be 32, 64 or 128, got 16/);
    expect(() => addon.quantizeInt4(w, 3, 2, 32, new Uint8Array(31), new Float32Array(2), null)).toThrow(/packed must have/);
    expect(() => addon.quantizeInt4(w, 3, 2, 32, new Uint8Array(32), new Float32Array(2), new Uint8Array(1))).toThrow(/zeros must have/);
    expect(() => addon.quantizeInt4(w, 3, 2, 32, new Uint8Array(32), new Float32Array(2), new Uint8Array(2))).not.toThrow();
    expect(() => (addon.quantizeInt4 as unknown as (...a: unknown[]) => void)(w, 3, 2)).toThrow(TypeError);
    const colMax = addon.columnAbsMax!.bind(addon);
    expect(() => colMax(w, 3, 2, new Float32Array(3))).not.toThrow();
    expect(() => colMax(w, 3, 2, new Float32Array(2))).toThrow(/out must have inputs \* 1 = 3 elements, got 2/);
    expect(() => colMax(w, 2, 2, new Float32Array(2))).toThrow(/weight must have outputs \* inputs = 4 elements, got 6/);
    expect(() => colMax(w, 3, 2, new Float64Array(3) as never)).toThrow(TypeError);
    expect(() => colMax(w, 3, 2, w.subarray(3))).toThrow(/must not share memory/);
    expect(() => colMax(w, 0, 2, new Float32Array(0))).toThrow(/inputs must be an integer/);
    expect(() => (colMax as unknown as (...a: unknown[]) => void)(w, 3)).toThrow(TypeError);
  });

  it('column maxima (equalizationScales): the values of the TypeScript loop, NaN passed over as there', () => {
    const addon = loadNative() as unknown as Required<NativeWeightQuantizer>;
    let seed = 500;
    let equalized = 0;
    // 512 columns per native task: widths below, at and across that edge.
    for (const k of [1, 3, 17, 511, 512, 513, 1100]) {
      for (const n of [1, 3, 17]) {
        for (const [caseName, make] of CASES) {
          const w = make(k, n, seed++);
          if (seed % 3 === 0) {
            w[(seed * 7) % w.length] = NaN;
            w[(seed * 13) % w.length] = -Infinity;
          }
          const expected = new Float32Array(k);
          for (let j = 0; j < n; j++) {
            for (let p = 0; p < k; p++) if (Math.abs(w[j * k + p]) > expected[p]) expected[p] = Math.abs(w[j * k + p]);
          }
          const got = new Float32Array(k).fill(-1);
          addon.columnAbsMax(w, k, n, got);
          expect(Buffer.compare(Buffer.from(got.buffer), Buffer.from(expected.buffer)), `${caseName}, ${n} x ${k}: maxima`).toBe(0);
          if (w.some((v) => !Number.isFinite(v))) continue;
          setNativeWeightQuantizer(null);
          const js = equalizationScales(w, k, n);
          setNativeWeightQuantizer(native);
          expect(equalizationScales(w, k, n), `${caseName}, ${n} x ${k}: scales`).toEqual(js);
          if (js) equalized++;
        }
      }
    }
    expect(equalized, 'cases whose columns differ enough to be equalised').toBeGreaterThan(20);
  });

});

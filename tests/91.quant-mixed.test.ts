// Per-layer weight formats (net.quantize({ weights: ['int8', 'int4', ...] })): each layer gets
// the codes its format alone would give it, the model runs the same on both backends, saves and
// loads, quantizeAsync agrees, and a bad list is refused with what was expected.

import { afterAll, describe, expect, it } from 'vitest';
import { Mlp, QuantizedMlp, type QuantFormat } from '../lib/index.js';
import { selectBackend } from '../lib/backend/index.js';
import { expectSameBits, gaussian, hasNative } from './helpers.js';

const nativeQuant = hasNative() && typeof selectBackend('native').createQuantModel === 'function';

const spec = {
  inputs: 34,
  layers: [{ units: 40, activation: 'relu' as const }, { units: 65, activation: 'relu' as const }, { units: 3 }],
  seed: 5,
};
const X = gaussian(17 * 34, 70);

function sameCodes(a: QuantizedMlp, i: number, b: QuantizedMlp, what: string): void {
  const la = a.getLayers()[i];
  const lb = b.getLayers()[i];
  expect(la.format, what).toBe(lb.format);
  expect(Buffer.from(la.weights.buffer, la.weights.byteOffset, la.weights.byteLength).equals(Buffer.from(lb.weights.buffer, lb.weights.byteOffset, lb.weights.byteLength)), `${what}: codes`).toBe(true);
  expectSameBits(la.scales, lb.scales, `${what}: scales`);
}

describe('per-layer weight formats', () => {
  const net = new Mlp(spec);
  afterAll(() => net.dispose());

  it('each layer holds the codes its own format gives it; sizes add up', () => {
    const list: QuantFormat[] = ['int8', 'int4', 'int8'];
    const mixed = net.quantize({ weights: list, groupSize: 64, symmetric: false });
    const all8 = net.quantize({ weights: 'int8' });
    const all4 = net.quantize({ weights: 'int4', groupSize: 64, symmetric: false });
    expect(mixed.layers.map((l) => l.format)).toEqual(list);
    expect(mixed.layers[1].groupSize).toBe(64);
    expect(mixed.layers[1].symmetric).toBe(false);
    list.forEach((f, i) => sameCodes(mixed, i, f === 'int8' ? all8 : all4, `layer ${i}`));
    expect(mixed.sizeBytes).toBe(all8.layers[0].bytes + all4.layers[1].bytes + all8.layers[2].bytes);
    for (const q of [mixed, all8, all4]) q.dispose();
  });

  it.runIf(nativeQuant)('runs the same on both backends (W8A8 bit for bit), and saves and loads', () => {
    for (const activations of ['int8', 'float'] as const) {
      const native = net.quantize({ weights: ['int4', 'int8', 'int4'], activations, backend: 'native' });
      const reference = net.quantize({ weights: ['int4', 'int8', 'int4'], activations, backend: 'reference' });
      const want = reference.predict(X);
      if (activations === 'int8') expectSameBits(native.predict(X), want, 'W8A8');
      else native.predict(X).forEach((v, i) => expect(Math.abs(v - want[i])).toBeLessThan(1e-5 * (1 + Math.abs(want[i]))));
      const back = QuantizedMlp.fromSafetensors(native.toSafetensors());
      expect(back.layers.map((l) => l.format)).toEqual(['int4', 'int8', 'int4']);
      expectSameBits(back.predict(X), native.predict(X), `${activations}: file round trip`);
      for (const q of [native, reference, back]) q.dispose();
    }
  });

  it('with calibration, each layer is measured in its own format', () => {
    const q = net.quantize({ weights: ['int8', 'int4', 'int4'], calibration: gaussian(200 * 34, 71) });
    expect(q.stats!.layers).toHaveLength(3);
    // int8 layers land near 1%, int4 near 10% (docs/QUANTIZATION.md).
    expect(q.stats!.layers[0].relativeRms).toBeLessThan(0.03);
    expect(q.stats!.layers[1].relativeRms).toBeGreaterThan(0.03);
    q.dispose();
  });

  it('groupSize and symmetric are read as for one format, inherited ones included; quantizeAsync agrees', async () => {
    const withInherited = (weights: QuantFormat | QuantFormat[]) => Object.assign(Object.create({ groupSize: 64, symmetric: false }), { weights });
    const single = net.quantize(withInherited('int4'));
    const list = net.quantize(withInherited(['int4', 'int4', 'int8']));
    const async = await net.quantizeAsync(withInherited(['int4', 'int4', 'int8']));
    for (const q of [single, list, async]) {
      expect(q.layers[0].groupSize).toBe(64);
      expect(q.layers[0].symmetric).toBe(false);
    }
    expect(Buffer.compare(Buffer.from(async.toSafetensors()), Buffer.from(list.toSafetensors()))).toBe(0);
    for (const q of [single, list, async]) q.dispose();
  });

  it('quantizeAsync gives the same model, and reads the list at the call', async () => {
    const list: QuantFormat[] = ['int4', 'int4', 'int8'];
    const want = net.quantize({ weights: list });
    const pending = net.quantizeAsync({ weights: list });
    list[0] = 'int8';
    const got = await pending;
    expect(got.layers.map((l) => l.format)).toEqual(['int4', 'int4', 'int8']);
    expect(Buffer.compare(Buffer.from(got.toSafetensors()), Buffer.from(want.toSafetensors()))).toBe(0);
    want.dispose();
    got.dispose();
  });

  it('refuses a list of the wrong length or with an unknown format, and int4 options without an int4 layer', () => {
    expect(() => net.quantize({ weights: ['int8', 'int4'] })).toThrow(RangeError);
    expect(() => net.quantize({ weights: ['int8', 'int4'] })).toThrow(/Expected options\.weights to list one format per layer \(3\) but received 2/);
    expect(() => net.quantize({ weights: ['int8', 'int3', 'int4'] as never })).toThrow(/options\.weights\[1\]/);
    expect(() => net.quantize({ weights: ['int8', 'int8', 'int8'], groupSize: 64 })).toThrow(/groupSize applies to int4 weights only/);
    expect(() => net.quantize({ weights: ['int8', 'int8', 'int8'], symmetric: false })).toThrow(/symmetric must be true for int8/);
    expect(() => net.quantize({ weights: [] as never })).toThrow(/one format per layer \(3\) but received 0/);
    expect(() => net.quantize({ weights: 8 as never })).toThrow(TypeError);
    expect(() => net.quantize({ weights: 8 as never })).toThrow(/Expected 'int8' or 'int4', or a list of them \(one per layer\), for options\.weights but received number 8/);
    expect(() => net.quantize({ weights: 'int5' as never })).toThrow(/Expected one of 'int8', 'int4' for options\.weights but received 'int5'/);
    // A hole is an entry of undefined, named, as quantizeAsync's copy of the list sees it too.
    expect(() => net.quantize({ weights: ['int8', , 'int4'] as never })).toThrow(/options\.weights\[1\] but received undefined/);
    expect(() => net.quantize({ weights: new Array(3) as never })).toThrow(/options\.weights\[0\] but received undefined/);
  });
});

// QuantizedMlp.fromLayers: a model assembled from quantised layers (quantizeLayer, getLayers(),
// or a quantiser of the caller's own) must compute what qmatmul computes on the same layers,
// bit for bit, keep its own copy of them, save and load like any quantised model, and refuse
// what qmatmul refuses, with the layer named.

import { describe, expect, it } from 'vitest';
import { Mlp, QuantizedMlp, qmatmul, quantizeLayer, type QuantLayer } from '../lib/index.js';
import { LAYER_FORMATS, backendsUnderTest, expectSameBits, gaussian } from './helpers.js';

describe.each(backendsUnderTest())('QuantizedMlp.fromLayers on %s', (backend) => {
  // Awkward widths: below a group, one past a SIMD block, not a multiple of any group size.
  const SHAPES: [number, number][] = [[1, 1], [3, 17], [17, 3], [65, 63], [1000, 33]];

  describe.each(LAYER_FORMATS)('%s', (_name, format) => {
    it.each(['float', 'int8'] as const)('one layer, activations %s: the same bits as qmatmul, batch 1 and 5, sync and async', async (activations) => {
      for (const [k, n] of SHAPES) {
        const layer = quantizeLayer(gaussian(n * k, k + n), gaussian(n, 7), k, n, 'relu', 0, format);
        const model = QuantizedMlp.fromLayers([layer], { activations, backend });
        try {
          expect(model.backend).toBe(backend);
          expect([model.inputs, model.outputs]).toEqual([k, n]);
          for (const batch of [1, 5]) {
            const x = gaussian(batch * k, batch + k);
            const want = qmatmul(x, layer, { activations, backend });
            expectSameBits(model.predict(x), want, `${k} -> ${n}, batch ${batch}`);
            expectSameBits(await model.predictAsync(x), want, `${k} -> ${n}, batch ${batch}, async`);
          }
        } finally {
          model.dispose();
        }
      }
    });
  });

  it('several layers with a mode each: the same bits as qmatmul layer after layer', () => {
    const widths = [40, 70, 33, 9];
    const formats = [LAYER_FORMATS[0][1], LAYER_FORMATS[2][1], LAYER_FORMATS[5][1]];
    const layers = formats.map((f, i) => quantizeLayer(gaussian(widths[i + 1] * widths[i], 30 + i), gaussian(widths[i + 1], 40 + i), widths[i], widths[i + 1], i < 2 ? 'gelu' : 'none', 0, f));
    const modes = ['int8', 'float', 'int8'] as const;
    const model = QuantizedMlp.fromLayers(layers, { activations: modes, backend });
    expect(model.layers.map((l) => l.activations)).toEqual(modes);
    expect(model.activations).toBe('int8');
    const x = gaussian(6 * 40, 50);
    let want = x;
    layers.forEach((l, i) => {
      want = qmatmul(want, l, { activations: modes[i], backend });
    });
    expectSameBits(model.predict(x), want);
    // Through a file and back, per-layer modes included.
    const back = QuantizedMlp.fromSafetensors(model.toSafetensors(), { backend });
    expect(back.layers).toEqual(model.layers);
    expectSameBits(back.predict(x), want);
    back.dispose();
    model.dispose();
  });

  it('several segments: an out detached while predictAsync runs gets the in-flight error a one-segment model gives', async () => {
    const a = quantizeLayer(gaussian(20 * 12, 1), null, 12, 20, 'relu', 0, LAYER_FORMATS[0][1]);
    const b = quantizeLayer(gaussian(5 * 20, 2), null, 20, 5, 'none', 0, LAYER_FORMATS[0][1]);
    for (const layers of [[a, b], [a]]) {
      const model = QuantizedMlp.fromLayers(layers, { activations: layers.length === 2 ? ['int8', 'float'] : 'int8', backend });
      const out = new Float32Array(3 * model.outputs);
      const pending = model.predictAsync(gaussian(3 * 12, 3), out);
      structuredClone(out.buffer, { transfer: [out.buffer] });
      await expect(pending, `${layers.length} layers`).rejects.toThrow(`predictAsync: out was detached or resized while the call was in flight (expected ${3 * model.outputs} elements, found 0)`);
      model.dispose();
    }
  });

  it("a quantised model's getLayers() make a model that predicts as it does", () => {
    const net = new Mlp({ inputs: 12, layers: [{ units: 20, activation: 'relu' }, { units: 20, activation: 'tanh' }, { units: 4 }], seed: 3 }, { backend });
    for (const activations of ['float', 'int8'] as const) {
      const q = net.quantize({ weights: ['int8', 'int4', 'int4'], activations, backend });
      const again = QuantizedMlp.fromLayers(q.getLayers(), { activations: q.layers.map((l) => l.activations), backend });
      expect(again.layers).toEqual(q.layers);
      expect(again.sizeBytes).toBe(q.sizeBytes);
      const x = gaussian(7 * 12, 9);
      expectSameBits(again.predict(x), q.predict(x));
      again.dispose();
      q.dispose();
    }
    net.dispose();
  });

  it("keeps its own copy: changing the caller's arrays afterwards changes nothing", () => {
    const layer = quantizeLayer(gaussian(8 * 16, 1), gaussian(8, 2), 16, 8, 'none', 0, { format: 'int4', groupSize: 32, symmetric: false });
    const model = QuantizedMlp.fromLayers([layer], { backend });
    const x = gaussian(16 * 2, 3);
    const before = model.predict(x);
    const file = model.toSafetensors();
    layer.scales.fill(7);
    layer.bias!.fill(-1);
    (layer.weights as Uint8Array).fill(0x11);
    layer.zeros!.fill(0);
    expectSameBits(model.predict(x), before);
    // The layers it reports and saves are its own too (the kernels' repacked copy is not enough).
    expect(model.toSafetensors()).toEqual(file);
    expect(model.getLayers()[0].scales).not.toEqual(layer.scales);
    model.dispose();
  });

  it("copies with the engine's own copy, then checks: an array subclass whose slice() changes its source cannot slip a value past the checks", () => {
    const layer = quantizeLayer(gaussian(8 * 16, 1), gaussian(8, 2), 16, 8, 'relu', 0, { format: 'int4', groupSize: 32 });
    const clean = qmatmul(gaussian(16, 3), layer, { backend });
    class Sneaky extends Float32Array {
      override slice(start?: number, end?: number): Float32Array {
        this.fill(NaN); // after the checks, were slice() the copy
        return new Float32Array(this).slice(start, end);
      }
    }
    const bias = new Sneaky(layer.bias!.length);
    bias.set(layer.bias!);
    const model = QuantizedMlp.fromLayers([{ ...layer, bias }], { backend });
    try {
      expectSameBits(model.predict(gaussian(16, 3)), clean);
    } finally {
      model.dispose();
    }
  });

  it('refuses bad layers, chains and options with errors that say what was expected', () => {
    const a = quantizeLayer(gaussian(6 * 4, 1), null, 4, 6, 'none', 0, { format: 'int8' });
    const b = quantizeLayer(gaussian(3 * 5, 2), null, 5, 3, 'none', 0, { format: 'int4' });
    expect(() => QuantizedMlp.fromLayers(a as unknown as QuantLayer[])).toThrow(TypeError);
    expect(() => QuantizedMlp.fromLayers(a as unknown as QuantLayer[])).toThrow('Expected an array of QuantLayer objects for layers');
    expect(() => QuantizedMlp.fromLayers([])).toThrow(RangeError);
    expect(() => QuantizedMlp.fromLayers([a, b], { backend })).toThrow('Expected layers[1].inputs to equal layers[0].outputs (6) but received 5');
    expect(() => QuantizedMlp.fromLayers([a, null as unknown as QuantLayer], { backend })).toThrow('Expected a QuantLayer object for layers[1]');
    expect(() => QuantizedMlp.fromLayers([{ ...a, scales: new Float32Array(5) }], { backend })).toThrow('Expected layers[0].scales to hold outputs x groups = 6 x 1 = 6 values but received 5');
    const nan = a.scales.slice();
    nan[2] = NaN;
    expect(() => QuantizedMlp.fromLayers([{ ...a, scales: nan }], { backend })).toThrow('layers[0].scales: scale [2, 0] is NaN');
    expect(() => QuantizedMlp.fromLayers([a], { activations: 'int4' as 'int8', backend })).toThrow(RangeError);
    expect(() => QuantizedMlp.fromLayers([a], { activations: ['float', 'int8'], backend })).toThrow('Expected options.activations to list one mode per layer (1) but received 2');
    expect(() => QuantizedMlp.fromLayers([a], { activations: ['fp16' as 'int8'], backend })).toThrow("options.activations[0]");
    expect(() => QuantizedMlp.fromLayers([a], { backend, format: 'int8' } as never)).toThrow('Unknown option options.format');
    expect(() => QuantizedMlp.fromLayers([a], 'int8' as never)).toThrow(TypeError);
    // W8A8 with int8 weights past what an int32 accumulator holds, as qmatmul refuses it.
    const wide = quantizeLayer(new Float32Array(133145), null, 133145, 1, 'none', 0, { format: 'int8' });
    expect(() => QuantizedMlp.fromLayers([wide], { activations: 'int8', backend })).toThrow(RangeError);
    QuantizedMlp.fromLayers([wide], { activations: 'float', backend }).dispose();
  });
});

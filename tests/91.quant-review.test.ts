// Quantised layers and files against the checks a float model gets: Mlp.load refuses non-finite
// parameters, so a quantised file (or a hand-made layer) with a NaN or infinite bias must be
// refused too, naming the tensor, and bias correction must never make such a bias itself.

import { describe, expect, it } from 'vitest';
import { FileFormatError, Mlp, QuantizedMlp, qmatmul, quantizeLayer } from '../lib/index.js';
import { readSafetensors, writeSafetensors, type TensorInput } from '../lib/io/safetensors.js';
import { backendsUnderTest, gaussian } from './helpers.js';

/** The file of q with layers.<i>.bias replaced by `bias`. */
function withBias(q: QuantizedMlp, i: number, bias: Float32Array): Uint8Array {
  const file = readSafetensors(q.toSafetensors());
  const tensors: Record<string, TensorInput> = {};
  for (const [name, t] of Object.entries(file.tensors)) {
    tensors[name] = { shape: t.shape, data: t.dtype === 'I8' ? Int8Array.from(t.data as Int32Array) : (t.data as Float32Array), dtype: t.dtype as 'F32' };
  }
  tensors[`layers.${i}.bias`] = { shape: [bias.length], data: bias, dtype: 'F32' };
  return writeSafetensors(tensors, { ...file.metadata });
}

describe.each(backendsUnderTest())('non-finite biases on %s', (backend) => {
  it.each([NaN, Infinity, -Infinity])('a quantised file whose bias holds %s is refused, naming the tensor', (value) => {
    const net = new Mlp({ inputs: 5, layers: [{ units: 7, activation: 'relu' }, { units: 3 }], seed: 2 }, { backend });
    for (const weights of ['int8', 'int4'] as const) {
      const q = net.quantize({ weights, backend });
      const bias = q.getLayers()[1].bias!.slice();
      bias[2] = value;
      const bytes = withBias(q, 1, bias);
      expect(() => QuantizedMlp.fromSafetensors(bytes, { backend })).toThrow(FileFormatError);
      expect(() => QuantizedMlp.fromSafetensors(bytes, { backend })).toThrow(`layers.1.bias: bias [2] is ${value}; biases must be finite`);
      // The same file with its bias intact loads.
      QuantizedMlp.fromSafetensors(withBias(q, 1, q.getLayers()[1].bias!), { backend }).dispose();
      q.dispose();
    }
    net.dispose();
  });

  it('quantizeLayer and qmatmul refuse a non-finite bias', () => {
    const w = gaussian(4 * 6, 3);
    const bias = gaussian(4, 4);
    bias[1] = NaN;
    expect(() => quantizeLayer(w, bias, 6, 4, 'none', 0, { format: 'int8' })).toThrow(RangeError);
    const layer = quantizeLayer(w, null, 6, 4, 'none', 0, { format: 'int4' });
    expect(() => qmatmul(gaussian(12, 5), { ...layer, bias }, { backend })).toThrow('layer.bias: bias [1] is NaN; biases must be finite');
  });

  it('bias correction keeps the bias when the correction would overflow float32', () => {
    // Inputs near FLT_MAX on every calibration row, and weights of 1000: the mean weight error
    // times the mean input is past float32, where the correction used to store an infinite bias.
    const params = new Float32Array(2 * 3 + 2).fill(1000);
    params[1] = -999.7;
    params[6] = 0.5;
    params[7] = -0.25;
    const net = new Mlp({ inputs: 3, layers: [{ units: 2 }] }, { backend, parameters: params });
    const calibration = new Float32Array(16 * 3).fill(3e38);
    const q = net.quantize({ weights: 'int4', calibration, backend });
    for (const l of q.getLayers()) for (const b of l.bias ?? []) expect(Number.isFinite(b)).toBe(true);
    q.dispose();
    net.dispose();
  });
});

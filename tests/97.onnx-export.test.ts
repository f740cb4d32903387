// The ONNX exporter the benches and `mlpkit bench` run their onnxruntime peers with
// (lib/io/onnx.ts): each exported model, run by onnxruntime-node, gives mlpkit's outputs, so a
// peer in a benchmark computes the same function as the model it is compared with. Skipped where
// onnxruntime-node is not installed (it is a devDependency).
//
// Tolerance: 1e-5 of the output scale (float32 sums of up to 64 terms in another order, and
// onnxruntime's sigmoid against mlpkit's: a few ulps each).

import { describe, expect, it } from 'vitest';
import { Mlp, type MlpSpec } from '../lib/index.js';
import { mlpToOnnx, onnxExportProblem } from '../lib/io/onnx.js';
import { bytesField, encode, intField, message, stringField } from '../lib/io/protobuf.js';
import type { NormalizedSpec } from '../lib/spec.js';
import { expectClose, randomArray } from './helpers.js';

type Ort = typeof import('onnxruntime-node');
const ort: Ort | null = await import('onnxruntime-node').catch(() => null);

const specs: [string, MlpSpec][] = [
  ['relu', { inputs: 7, layers: [{ units: 33, activation: 'relu' }, { units: 3 }], seed: 1 }],
  ['sigmoid and tanh, no bias on the output', { inputs: 5, layers: [{ units: 17, activation: 'sigmoid' }, { units: 9, activation: 'tanh' }, { units: 2, bias: false }], seed: 2 }],
  ['silu', { inputs: 6, layers: [{ units: 20, activation: 'silu' }, { units: 4 }], seed: 3 }],
  ['a SwiGLU block (gated silu, residual down projection) and an output layer', { inputs: 12, layers: [{ units: 40, activation: 'silu', gated: true }, { units: 12, residual: true }, { units: 3 }], seed: 4 }],
  ['a ReGLU block with a relu output', { inputs: 8, layers: [{ units: 24, activation: 'relu', gated: true }, { units: 8, residual: true, activation: 'relu' }], seed: 5 }],
  ['a gated layer without activation', { inputs: 4, layers: [{ units: 10, gated: true }, { units: 2 }], seed: 6 }],
];

describe.runIf(ort !== null)('mlpToOnnx, run by onnxruntime-node', () => {
  it.each(specs)('%s', async (_, spec) => {
    const net = new Mlp(spec, { backend: 'reference' });
    const session = await ort!.InferenceSession.create(mlpToOnnx(net.spec, net.getLayers()));
    for (const batch of [1, 5]) {
      const x = randomArray(batch * spec.inputs, batch + 10);
      const result = await session.run({ x: new ort!.Tensor('float32', x, [batch, spec.inputs]) });
      expect(result.y.dims).toEqual([batch, net.outputs]);
      expectClose(result.y.data as Float32Array, net.predict(x), 1e-5, `batch ${batch}`);
    }
    await session.release();
  });
});

describe('mlpToOnnx refuses what it cannot export', () => {
  it('an activation without an exporter, or an input encoding', () => {
    const gelu = new Mlp({ inputs: 2, layers: [{ units: 3, activation: 'gelu' }, { units: 1 }] }, { backend: 'reference' });
    expect(onnxExportProblem(gelu.spec)).toMatch(/activation 'gelu' of layer 0 has no exporter/);
    expect(() => mlpToOnnx(gelu.spec, gelu.getLayers())).toThrow(/gelu/);
    const encoded = new Mlp({ inputs: 2, encoding: { type: 'frequency', octaves: 2 }, layers: [{ units: 1 }] }, { backend: 'reference' });
    expect(onnxExportProblem(encoded.spec)).toMatch(/input encoding 'frequency'/);
  });

  it('a quantised model, or layers that are not the spec\'s', () => {
    const base = new Mlp({ inputs: 8, layers: [{ units: 16, activation: 'relu' }, { units: 4 }], seed: 1 }, { backend: 'reference' });
    const q = base.quantize({ weights: 'int8', backend: 'reference' });
    expect(onnxExportProblem((q as unknown as { spec: NormalizedSpec }).spec)).toMatch(/only float models/);
    expect(() => mlpToOnnx(base.spec, q.getLayers() as never)).toThrow(/layers\[0\] has no Float32Array weight/);
    const other = new Mlp({ inputs: 3, layers: [{ units: 16, activation: 'relu' }, { units: 4 }] }, { backend: 'reference' });
    expect(() => mlpToOnnx(base.spec, other.getLayers())).toThrow(/layers\[0\] takes 3 inputs but the spec has 8/);
    const layers = base.getLayers();
    expect(() => mlpToOnnx(base.spec, [layers[0], { ...layers[1], bias: new Float32Array(3) }])).toThrow(/layers\[1\].bias holds 3 values, not 4/);
    expect(() => mlpToOnnx(base.spec, [layers[0]])).toThrow(/the spec has 2 layers but 1 layers were given/);
  });
});

describe('protobuf pieces (lib/io/protobuf.ts)', () => {
  it('encode gives the wire bytes of nested messages, joined once from the pieces', () => {
    // The protobuf documentation's examples: field 1 = 150 is 08 96 01; as a message in field 3,
    // 1a 03 08 96 01; field 2 = "testing" is 12 07 74 65 73 74 69 6e 67.
    expect([...encode(intField(1, 150))]).toEqual([0x08, 0x96, 0x01]);
    expect([...encode(bytesField(3, intField(1, 150)))]).toEqual([0x1a, 0x03, 0x08, 0x96, 0x01]);
    expect([...encode(stringField(2, 'testing'))]).toEqual([0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6e, 0x67]);
    const payload = Uint8Array.of(1, 2, 3);
    const nested = message(intField(1, 1), [undefined, bytesField(2, bytesField(4, payload))], undefined);
    expect(nested.length).toBe(2 + 2 + 2 + 3);
    // Until encode, the payload is held, not copied: a write to it shows in the result.
    payload[0] = 9;
    expect([...encode(nested)]).toEqual([0x08, 0x01, 0x12, 0x05, 0x22, 0x03, 9, 2, 3]);
  });
});

// Parity with PyTorch: every case in tests/fixtures/torch/ was computed by PyTorch
// (tests/fixtures/make_torch_fixtures.py) and committed, so this file needs no torch.
// For each case and each available backend we load the nn.Sequential state_dict, then check
// predict, gradients (loss, every parameter, dL/dx) and one trainer step against the fixture.
//
// Tolerance: |actual - expected| <= 1e-5 * max|expected| per compared tensor (for the scalar
// loss, 1e-5 * |loss|). The fixtures are float64 computations on float32-rounded weights and
// inputs, stored as float32, so they are exact to ~1e-7 relative; 1e-5 leaves room for the
// float32 accumulation (and different summation orders) of the reference and native backends.

import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Mlp, info, readSafetensors, type ActivationName, type Tensor } from '../lib/index.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'torch');
const RTOL = 1e-5;

interface CaseMeta {
  activations: ActivationName[];
  alphas: (number | null)[];
  bias: boolean[];
  inputs: number;
  units: number[];
  batch: number;
  encoding: null | { type: 'frequency'; octaves: number; includeInput: boolean };
  loss: { type: 'mse' | 'l1' | 'huber' | 'softmax-cross-entropy' | 'bce-with-logits'; delta?: number };
  optimizer: Record<string, unknown> & { type: 'sgd' | 'adam' | 'adamw'; lr: number };
  clipNorm?: number;
  modelDtype: 'F32' | 'F16' | 'BF16';
}

interface Fixture {
  name: string;
  modelBytes: Uint8Array;
  modelTensors: Record<string, Tensor>;
  /** Linear layer keys in order, e.g. ['0', '2', '4']. */
  linears: string[];
  data: Record<string, Tensor>;
  meta: CaseMeta;
}

function loadFixtures(): Fixture[] {
  const names = readdirSync(DIR)
    .filter((f) => f.endsWith('.data.safetensors'))
    .map((f) => f.slice(0, -'.data.safetensors'.length))
    .sort();
  return names.map((name) => {
    const modelBytes = readFileSync(join(DIR, `${name}.model.safetensors`));
    const model = readSafetensors(modelBytes);
    const data = readSafetensors(readFileSync(join(DIR, `${name}.data.safetensors`)));
    const linears = Object.keys(model.tensors)
      .map((k) => /^(\d+)\.weight$/.exec(k)?.[1])
      .filter((k): k is string => k !== undefined)
      .sort((a, b) => Number(a) - Number(b));
    return { name, modelBytes, modelTensors: model.tensors, linears, data: data.tensors, meta: JSON.parse(data.metadata.case) };
  });
}

const fixtures = loadFixtures();

const backends: ('reference' | 'native')[] = ['reference'];
if (info().native.available) backends.push('native');

function f32(t: Tensor | undefined, what: string): Float32Array {
  if (!t) throw new Error(`fixture tensor ${what} missing`);
  if (!(t.data instanceof Float32Array)) throw new Error(`fixture tensor ${what} is ${t.dtype}, expected a float tensor`);
  return t.data;
}

/** Max |a - e| relative to max |e| (1 when e is all zeros, so the bound is absolute then). */
function relErr(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let scale = 0;
  let err = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    err = Math.max(err, Number.isNaN(d) ? Infinity : d);
  }
  return err / (scale > 0 ? scale : 1);
}

function expectClose(actual: ArrayLike<number> | null, expected: ArrayLike<number>, what: string): void {
  expect(actual, `${what} present`).not.toBeNull();
  expect(actual!.length, `${what} length`).toBe(expected.length);
  const e = relErr(actual!, expected);
  expect(e, `${what}: max error / max|expected| = ${e.toExponential(3)}`).toBeLessThanOrEqual(RTOL);
}

function load(fx: Fixture, backend: 'reference' | 'native'): Mlp {
  const alpha = fx.meta.alphas.find((a) => a !== null);
  return Mlp.fromSafetensors(fx.modelBytes, {
    activations: fx.meta.activations,
    encoding: fx.meta.encoding ?? 'identity',
    ...(alpha != null ? { alpha } : {}),
    backend,
  });
}

function lossOption(meta: CaseMeta) {
  return meta.loss.type === 'huber' ? { type: 'huber' as const, delta: meta.loss.delta } : meta.loss.type;
}

function target(fx: Fixture): Float32Array | Int32Array {
  const t = fx.data.target;
  if (t.data instanceof Int32Array || t.data instanceof Float32Array) return t.data;
  throw new Error(`${fx.name}: target has dtype ${t.dtype}`);
}

describe('PyTorch parity fixtures', () => {
  it('are present and cover every activation, loss and optimizer', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(15);
    const acts = new Set(fixtures.flatMap((f) => f.meta.activations));
    const losses = new Set(fixtures.map((f) => f.meta.loss.type));
    const opts = new Set(fixtures.map((f) => f.meta.optimizer.type));
    expect([...acts].sort()).toEqual(['gelu', 'gelu_tanh', 'leaky_relu', 'none', 'relu', 'sigmoid', 'silu', 'softplus', 'tanh']);
    expect([...losses].sort()).toEqual(['bce-with-logits', 'huber', 'l1', 'mse', 'softmax-cross-entropy']);
    expect([...opts].sort()).toEqual(['adam', 'adamw', 'sgd']);
    expect(fixtures.some((f) => f.meta.encoding?.type === 'frequency')).toBe(true);
    expect(fixtures.some((f) => f.meta.bias.includes(false))).toBe(true);
    expect(fixtures.some((f) => f.meta.clipNorm !== undefined)).toBe(true);
    expect(fixtures.some((f) => f.meta.batch === 1)).toBe(true);
  });
});

for (const backend of backends) {
  describe(`PyTorch parity (${backend} backend)`, () => {
    for (const fx of fixtures) {
      describe(fx.name, () => {
        const x = () => f32(fx.data.x, 'x');

        it('loads the nn.Sequential state_dict', () => {
          const net = load(fx, backend);
          expect(net.backend).toBe(backend);
          expect(net.inputs).toBe(fx.meta.inputs);
          expect(net.outputs).toBe(fx.meta.units[fx.meta.units.length - 1]);
          const layers = net.getLayers();
          expect(layers.length).toBe(fx.linears.length);
          fx.linears.forEach((k, i) => {
            expect(Array.from(layers[i].weight)).toEqual(Array.from(f32(fx.modelTensors[`${k}.weight`], `${k}.weight`)));
            const b = fx.modelTensors[`${k}.bias`];
            if (b) expect(Array.from(layers[i].bias ?? [])).toEqual(Array.from(f32(b, `${k}.bias`)));
            else expect(layers[i].bias).toBeNull();
          });
          net.dispose();
        });

        it('predict(x) matches the PyTorch forward', () => {
          const net = load(fx, backend);
          expectClose(net.predict(x()), f32(fx.data.y, 'y'), 'y');
          net.dispose();
        });

        it('gradients() match loss.backward()', () => {
          const net = load(fx, backend);
          const g = net.gradients(x(), { loss: lossOption(fx.meta), target: target(fx) });
          const loss = f32(fx.data.loss, 'loss')[0];
          expect(Math.abs(g.loss! - loss), `loss ${g.loss} vs ${loss}`).toBeLessThanOrEqual(RTOL * Math.abs(loss));
          fx.linears.forEach((k, i) => {
            expectClose(g.layers[i].weight, f32(fx.data[`grad.${k}.weight`], `grad.${k}.weight`), `grad.${k}.weight`);
            if (fx.data[`grad.${k}.bias`]) expectClose(g.layers[i].bias, f32(fx.data[`grad.${k}.bias`], `grad.${k}.bias`), `grad.${k}.bias`);
            else expect(g.layers[i].bias).toBeNull();
          });
          expectClose(g.input, f32(fx.data['grad.x'], 'grad.x'), 'grad.x');
          net.dispose();
        });

        it('one trainer step matches torch.optim', () => {
          const net = load(fx, backend);
          const trainer = net.trainer({
            loss: lossOption(fx.meta),
            optimizer: fx.meta.optimizer as never,
            ...(fx.meta.clipNorm !== undefined ? { clipNorm: fx.meta.clipNorm } : {}),
          });
          const loss = trainer.step(x(), target(fx));
          const expectedLoss = f32(fx.data.loss, 'loss')[0];
          expect(Math.abs(loss - expectedLoss)).toBeLessThanOrEqual(RTOL * Math.abs(expectedLoss));
          const layers = net.getLayers();
          fx.linears.forEach((k, i) => {
            expectClose(layers[i].weight, f32(fx.data[`after.${k}.weight`], `after.${k}.weight`), `after.${k}.weight`);
            if (fx.data[`after.${k}.bias`]) expectClose(layers[i].bias, f32(fx.data[`after.${k}.bias`], `after.${k}.bias`), `after.${k}.bias`);
          });
          net.dispose();
        });
      });
    }
  });
}

describe('reduced-precision PyTorch files', () => {
  for (const dtype of ['F16', 'BF16'] as const) {
    it(`a ${dtype} state_dict loads widened to float32 and matches PyTorch`, () => {
      const fx = fixtures.find((f) => f.meta.modelDtype === dtype);
      expect(fx, `a ${dtype} fixture`).toBeDefined();
      for (const t of Object.values(fx!.modelTensors)) expect(t.dtype).toBe(dtype);
      // The torch side rounded its weights to the reduced dtype and computed from the upcast
      // values, so the widened weights are exact and every output must match as for F32.
      const net = load(fx!, 'reference');
      expect(net.spec.layers.map((l) => l.units)).toEqual(fx!.meta.units);
      const w0 = net.getLayers()[0].weight;
      // Every widened value is representable in the reduced format: low mantissa bits are zero.
      const bits = new Uint32Array(w0.buffer, w0.byteOffset, w0.length);
      const lowMask = dtype === 'BF16' ? 0xffff : 0x1fff;
      for (let i = 0; i < bits.length; i++) {
        if (dtype === 'BF16' || Math.abs(w0[i]) >= 2 ** -14) expect(bits[i] & lowMask).toBe(0);
      }
      expectClose(net.predict(f32(fx!.data.x, 'x')), f32(fx!.data.y, 'y'), `${dtype} y`);
      net.dispose();
    });
  }
});

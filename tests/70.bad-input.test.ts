// Every bad input throws a TypeError or RangeError (with a Node-style code) whose message names
// the argument, what was expected and what was given, on every backend, and never crashes.

import { describe, expect, it } from 'vitest';
import { Mlp } from '../lib/index.js';
import { selectBackend } from '../lib/backend/index.js';
import { loadNative } from '../lib/backend/native.js';
import { normalizeSpec, toModelConfig } from '../lib/spec.js';
import { backendsUnderTest, hasNative } from './helpers.js';

function expectError(fn: () => unknown, type: ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor, message: RegExp) {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${type.name} ${message}`).toBeInstanceOf(type);
  expect((caught as Error).message).toMatch(message);
  return caught as Error & { code?: string };
}

describe.each(backendsUnderTest())('bad input on %s', (backend) => {
  const make = () => new Mlp({ inputs: 3, layers: [{ units: 4, activation: 'relu' }, { units: 2 }] }, { backend });

  describe('model spec', () => {
    it.each([
      [{ inputs: 0, layers: [{ units: 1 }] }, RangeError, /Expected an integer between 1 and \d+ for spec.inputs but received 0/],
      [{ inputs: -3, layers: [{ units: 1 }] }, RangeError, /spec.inputs but received -3/],
      [{ inputs: 2.5, layers: [{ units: 1 }] }, RangeError, /spec.inputs but received 2.5/],
      [{ inputs: '3', layers: [{ units: 1 }] }, TypeError, /Expected an integer for spec.inputs but received string '3'/],
      [{ inputs: 3 }, TypeError, /Expected an array of layers for spec.layers but received undefined/],
      [{ inputs: 3, layers: [] }, RangeError, /spec.layers.length but received 0/],
      [{ inputs: 3, layers: [{ units: 0 }] }, RangeError, /spec.layers\[0\].units but received 0/],
      [{ inputs: 3, layers: [{ units: 4, activation: 'swish' }] }, RangeError, /Expected one of 'none', 'relu', .* for spec.layers\[0\].activation but received 'swish'/],
      [{ inputs: 3, layers: [{ units: 4, activation: 7 }] }, TypeError, /spec.layers\[0\].activation but received number 7/],
      [{ inputs: 3, layers: [{ units: 4, bias: 'yes' }] }, TypeError, /Expected a boolean for spec.layers\[0\].bias but received string 'yes'/],
      [{ inputs: 3, layers: [{ units: 4 }], encoding: { type: 'fourier' } }, RangeError, /spec.encoding.type but received 'fourier'/],
      [{ inputs: 3, layers: [{ units: 4 }], encoding: { type: 'frequency', octaves: 0 } }, RangeError, /spec.encoding.octaves but received 0/],
      [{ inputs: 3, layers: [{ units: 4 }], init: 'glorot' }, RangeError, /spec.init but received 'glorot'/],
      [{ inputs: 3, layers: [{ units: 4 }], seed: -1 }, RangeError, /spec.seed but received -1/],
    ])('%o', (spec, type, message) => {
      expectError(() => new Mlp(spec as never, { backend }), type, message);
    });

    it('non-object spec and options', () => {
      expectError(() => new Mlp(null as never), TypeError, /Expected an object for spec but received null/);
      expectError(() => new Mlp({ inputs: 1, layers: [{ units: 1 }] }, { backend: 'gpu' as never }), RangeError, /options.backend but received 'gpu'/);
      expectError(() => new Mlp({ inputs: 1, layers: [{ units: 1 }] }, { parameters: new Float32Array(5) }), RangeError, /Expected options.parameters to have 2 elements but received 5/);
    });
  });

  describe('predict', () => {
    it('wrong types', () => {
      const net = make();
      const e = expectError(() => net.predict([1, 2, 3] as never), TypeError, /Expected a Float32Array for x but received Array\(3\) \(convert it with Float32Array.from\)/);
      expect(e.code).toBe('ERR_INVALID_ARG_TYPE');
      expectError(() => net.predict(new Float64Array(3) as never), TypeError, /Float32Array for x but received Float64Array\(3\)/);
      expectError(() => net.predict('abc' as never), TypeError, /received string 'abc'/);
      expectError(() => net.predict(new Float32Array(3), new Float64Array(2) as never), TypeError, /Float32Array for out but received Float64Array\(2\)/);
    });

    it('lengths that are not a multiple of the input width, and empty batches', () => {
      const net = make();
      const e = expectError(() => net.predict(new Float32Array(4)), RangeError, /Expected x to hold batch x 3 floats \(a multiple of 3\) but received 4 elements/);
      expect(e.code).toBe('ERR_OUT_OF_RANGE');
      expectError(() => net.predict(new Float32Array(0)), RangeError, /Expected a non-empty batch for x \(batch x 3 floats\) but received 0 elements/);
      expectError(() => net.predict(new Float32Array(6), new Float32Array(3)), RangeError, /Expected out to have 4 elements but received 3/);
    });

    it('async forms reject the same way', async () => {
      const net = make();
      await expect(net.predictAsync(new Float32Array(4))).rejects.toThrow(RangeError);
      await expect(net.predictAsync(null as never)).rejects.toThrow(TypeError);
    });

    it('NaN and Infinity in inputs propagate to the outputs (IEEE 754), without error', () => {
      const net = new Mlp({ inputs: 2, layers: [{ units: 3, activation: 'tanh' }, { units: 1 }] }, { backend });
      const y = net.predict(Float32Array.of(NaN, 1, Infinity, 0, 0.5, 0.5));
      expect(Number.isNaN(y[0])).toBe(true);
      expect(Number.isFinite(y[2])).toBe(true);
    });
  });

  describe('training', () => {
    it('unknown losses and optimizers, bad hyperparameters', () => {
      const net = make();
      expectError(() => net.trainer({ loss: 'hinge' as never, optimizer: { type: 'sgd', lr: 0.1 } }), RangeError, /Expected one of 'mse', 'l1', 'huber', 'softmax-cross-entropy', 'bce-with-logits' for options.loss but received 'hinge'/);
      expectError(() => net.trainer({ loss: 42 as never, optimizer: { type: 'sgd', lr: 0.1 } }), TypeError, /loss name .* for options.loss but received number 42/);
      expectError(() => net.trainer({ loss: 'mse', optimizer: { type: 'lion', lr: 0.1 } as never }), RangeError, /options.optimizer.type but received 'lion'/);
      expectError(() => net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: -1 } }), RangeError, /Expected a finite number >= 0 and <= 3.4028234663852886e\+38 for options.optimizer.lr but received -1/);
      expectError(() => net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: NaN } }), RangeError, /options.optimizer.lr but received NaN/);
      expectError(() => net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1, betas: [1, 0.9] } }), RangeError, /betas in \[0, 1\)/);
      expectError(() => net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 1, nesterov: true } }), RangeError, /Nesterov momentum needs momentum > 0/);
      expectError(() => net.trainer({ loss: { type: 'huber', delta: 0 }, optimizer: { type: 'sgd', lr: 1 } }), RangeError, /Expected a finite number > 0 for options.loss.delta but received 0/);
      expectError(() => net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 1 }, clipNorm: 0 }), RangeError, /options.clipNorm but received 0/);
    });

    it('labels out of range or not integers', () => {
      const net = make();
      const t = net.trainer({ loss: 'softmax-cross-entropy', optimizer: { type: 'sgd', lr: 0.1 } });
      const x = new Float32Array(6);
      expectError(() => t.step(x, [0, 2]), RangeError, /Expected labels in \[0, 2\) for target but element 1 is 2/);
      expectError(() => t.step(x, [0, -1]), RangeError, /element 1 is -1/);
      expectError(() => t.step(x, [0, 0.5]), TypeError, /Expected integer class labels in target but element 1 is number 0.5/);
      expectError(() => t.step(x, Float32Array.of(0, 1) as never), TypeError, /integer class labels \(Int32Array or number\[\]\) for target but received Float32Array\(2\)/);
      expectError(() => t.step(x, [0]), RangeError, /Expected target to hold one label per row \(2\) but received 1/);
    });

    it('targets of the wrong shape, non-finite inputs or targets', () => {
      const net = make();
      const t = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 } });
      expectError(() => t.step(new Float32Array(3), new Float32Array(3)), RangeError, /Expected target to have 2 elements but received 3/);
      expectError(() => t.step(Float32Array.of(1, NaN, 0), new Float32Array(2)), RangeError, /Expected finite values in x but element 1 is NaN/);
      expectError(() => t.step(new Float32Array(3), Float32Array.of(0, Infinity)), RangeError, /Expected finite values in target but element 1 is Infinity/);
    });

    it('fit options', async () => {
      const net = make();
      const t = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 } });
      const x = new Float32Array(6);
      const y = new Float32Array(4);
      await expect(t.fit(x, y, { epochs: 0 })).rejects.toThrow(/Expected an integer >= 1 for options.epochs but received 0/);
      await expect(t.fit(x, y, { epochs: 1, batchSize: 0 })).rejects.toThrow(/options.batchSize but received 0/);
      await expect(t.fit(x, y, { epochs: 1, onProgress: 5 as never })).rejects.toThrow(/Expected a function for options.onProgress/);
      await expect(t.fit(x, y, { epochs: 1, signal: {} as never })).rejects.toThrow(/Expected an AbortSignal for options.signal/);
      await expect(t.fit(x, y, { epochs: 1, validation: { x: new Float32Array(0), target: new Float32Array(0) } })).rejects.toThrow(/non-empty batch for options.validation.x/);
    });

    it('gradients requests', () => {
      const net = make();
      expectError(() => net.gradients(new Float32Array(3), { gradOutput: new Float32Array(1) }), RangeError, /Expected request.gradOutput to have 2 elements but received 1/);
      expectError(() => net.gradients(new Float32Array(3), { loss: 'nope' as never, target: new Float32Array(2) }), RangeError, /request.loss but received 'nope'/);
    });
  });

  describe('after dispose()', () => {
    it('every method throws a TypeError with code ERR_MLPKIT_DISPOSED; dispose is idempotent', async () => {
      const net = make();
      const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 } });
      net.dispose();
      net.dispose();
      expect(net.disposed).toBe(true);
      const calls: [string, () => unknown][] = [
        ['predict', () => net.predict(new Float32Array(3))],
        ['getParameters', () => net.getParameters()],
        ['setParameters', () => net.setParameters(new Float32Array(net.parameterCount))],
        ['gradients', () => net.gradients(new Float32Array(3), { gradOutput: new Float32Array(2) })],
        ['trainer', () => net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 } })],
        ['step', () => trainer.step(new Float32Array(3), new Float32Array(2))],
        ['toSafetensors', () => net.toSafetensors()],
      ];
      for (const [name, call] of calls) {
        const e = expectError(call, TypeError, new RegExp(`${name}: the model has been disposed`));
        expect(e.code).toBe('ERR_MLPKIT_DISPOSED');
      }
      await expect(net.predictAsync(new Float32Array(3))).rejects.toThrow(/predictAsync: the model has been disposed/);
      await expect(trainer.fit(new Float32Array(3), new Float32Array(2), { epochs: 1 })).rejects.toThrow(/fit: the model has been disposed/);
    });
  });
});

// The addon checks what crosses into C++ itself, so a caller that bypasses the TypeScript layer
// (or a bug in it) gets an exception, not a crash.
describe.runIf(hasNative())('native addon re-checks its arguments', () => {
  const config = toModelConfig(normalizeSpec({ inputs: 3, layers: [{ units: 4, activation: 'relu' }, { units: 2 }] }));
  const make = () => selectBackend('native').createModel(config, new Float32Array(3 * 4 + 4 + 4 * 2 + 2));

  it('rejects wrong lengths, types and batch sizes', () => {
    const m = make();
    const out = new Float32Array(2);
    expectError(() => m.predict(new Float32Array(2), 1, out), RangeError, /x/);
    expectError(() => m.predict(new Float32Array(3), 1, new Float32Array(1)), RangeError, /out/);
    expectError(() => m.predict(new Float64Array(3) as never, 1, out), TypeError, /x/);
    expectError(() => m.predict(new Float32Array(3), 0, out), RangeError, /batch/);
    expectError(() => m.predict(new Float32Array(3), 1.5, out), RangeError, /batch/);
    expectError(() => m.predict(new Float32Array(3), -1, out), RangeError, /batch/);
    expectError(() => (m.predict as (...a: unknown[]) => void)(), TypeError, /./);
    expectError(() => m.setParams(new Float32Array(5)), RangeError, /params/);
    expectError(() => m.lossGrad(new Float32Array(3), 1, 3, 0, Int32Array.of(2), null), RangeError, /label/);
    expectError(() => m.lossGrad(new Float32Array(3), 1, 9, 0, new Float32Array(2), null), RangeError, /loss/);
    expectError(() => m.lossGrad(new Float32Array(3), 1, 0, 0, new Float32Array(1), null), RangeError, /target/);
    expectError(() => m.optimizerStep(7, new Float64Array(8), 0), RangeError, /optimizer/);
    expectError(() => m.optimizerStep(0, new Float64Array(3), 0), RangeError, /hyper/);
    // The optimizers' options are checked in TypeScript; the raw addon checks its hyper array too.
    const hyper = Float64Array.of(0.1, 0, 0, 0, 0, 0.9, 0.999, 1e-8);
    // Past float32's range too: the kernels convert them to float32 constants.
    for (const [i, bad] of [[0, NaN], [2, Infinity], [7, -Infinity], [0, 1e39], [1, -4e38]] as const) {
      const h = hyper.slice();
      h[i] = bad;
      const err = expectError(() => m.optimizerStep(0, h, 0), RangeError, new RegExp(`hyper\\[${i}\\].*finite.*${String(bad).replace('+', '\\+')}`));
      expect(err.code).toBe('ERR_OUT_OF_RANGE');
      expectError(() => m.trainStep(new Float32Array(3), 1, 0, 0, new Float32Array(2), 0, h, 0), RangeError, /finite/);
    }
    const params = new Float32Array(3 * 4 + 4 + 4 * 2 + 2);
    m.getParams(params);
    expect(params.every(Number.isFinite)).toBe(true);
    m.dispose();
    expectError(() => m.predict(new Float32Array(3), 1, out), TypeError, /disposed/);
  });

  it('rejects a malformed config', () => {
    const Model = selectBackend('native').createModel;
    expectError(() => Model({ ...config, units: new Int32Array(0) }, new Float32Array(0)), RangeError, /./);
    expectError(() => Model({ ...config, activations: Int32Array.of(1, 99) }, new Float32Array(26)), RangeError, /activation/);
    expectError(() => Model({ ...config, units: [4, 2] as never }, new Float32Array(26)), TypeError, /units/);
  });

  it('a value the core cannot take is a RangeError (ERR_OUT_OF_RANGE), not a type error', () => {
    const createSparse = selectBackend('native').createSparseModel!;
    const sparseConfig = { ...toModelConfig(normalizeSpec({ inputs: 3, layers: [{ units: 2 }] })) };
    const layer = { inputs: 3, outputs: 4, activation: 0, alpha: 0, gated: false, residual: true, weight: new Float32Array(12), mode: 0 };
    // A residual layer whose width differs from its input's: the core's own check.
    const err = expectError(() => createSparse(sparseConfig as never, [layer] as never), RangeError, /residual/);
    expect(err.code).toBe('ERR_OUT_OF_RANGE');
  });

  it('a getter or method of one model class called on an object of another throws, never reads it as its own', () => {
    const addon = loadNative()!;
    const m = make();
    for (const cls of [addon.Model, addon.QuantModel, addon.SparseModel]) {
      for (const key of Object.getOwnPropertyNames(cls.prototype)) {
        if (key === 'constructor') continue;
        const d = Object.getOwnPropertyDescriptor(cls.prototype, key)!;
        // Prototype getters do not check their receiver in V8: the classes have none.
        expect(d.get, `${cls.name}.prototype.${key} is a getter`).toBeUndefined();
        expectError(() => (d.value as (...a: unknown[]) => unknown).call(cls === addon.Model ? {} : m, new Float32Array(3), 1, new Float32Array(2)), TypeError, /Illegal invocation/);
      }
    }
    m.dispose();
  });
});

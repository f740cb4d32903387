// Async calls copy their inputs when they are made (README "Guarantees"): x, and the target of
// stepAsync, may be overwritten or reused the moment the call returns its promise, and the
// result is the one the values at the call give. Checked bitwise against the same call on
// inputs nobody touches, for every model kind with a predictAsync (Mlp, QuantizedMlp, SparseMlp)
// and for Trainer.stepAsync, on the reference backend and on the native one when it loads.

import { describe, expect, it } from 'vitest';
import { Mlp, type QuantizedMlp, type SparseMlp } from '../lib/index.js';
import { backendsUnderTest, randomArray, randomLabels, expectSameBits } from './helpers.js';

const INPUTS = 32;
const OUTPUTS = 6;
const SPEC = {
  inputs: INPUTS,
  layers: [{ units: 128, activation: 'relu' as const }, { units: 128, activation: 'relu' as const }, { units: OUTPUTS }],
  seed: 3,
};

interface Predicting {
  readonly inputs: number;
  readonly outputs: number;
  readonly backend: string;
  predictAsync(x: Float32Array, out?: Float32Array): Promise<Float32Array>;
  dispose(): void;
}

/**
 * The copy guarantee for one model: a call whose x is overwritten at once (and one writing into
 * a caller's out) equals the call on an untouched x; several calls in flight on one reused
 * buffer each give the result of the values the buffer held when they were made.
 */
async function checkPredictAsync(model: Predicting, rows: number, what: string): Promise<void> {
  const x = randomArray(rows * model.inputs, 11);
  const expected = await model.predictAsync(x.slice());

  const reused = x.slice();
  const pending = model.predictAsync(reused);
  reused.fill(1e3); // different values, same shape: a call that read x late would compute on these
  expectSameBits(await pending, expected, `${what}: x overwritten at once`);

  const reused2 = x.slice();
  const out = new Float32Array(rows * model.outputs);
  const pendingOut = model.predictAsync(reused2, out);
  reused2.set(randomArray(reused2.length, 12));
  const y = await pendingOut;
  expect(y).toBe(out);
  expectSameBits(out, expected, `${what}: x overwritten at once, into out`);

  // One buffer reused for several calls in flight together.
  const inputs = [0, 1, 2, 3].map((i) => randomArray(rows * model.inputs, 20 + i));
  const wanted = await Promise.all(inputs.map((xi) => model.predictAsync(xi.slice())));
  const buffer = new Float32Array(rows * model.inputs);
  const results = await Promise.all(inputs.map((xi) => {
    buffer.set(xi);
    return model.predictAsync(buffer);
  }));
  results.forEach((r, i) => expectSameBits(r, wanted[i], `${what}: call ${i} on a reused buffer`));
}

describe.each(backendsUnderTest())('async calls copy their inputs (%s)', (backend) => {
  // Enough rows that the work is still running when the caller overwrites x (native), while the
  // reference backend (which queues the call for a later macrotask) stays quick.
  const rows = backend === 'native' ? 4096 : 256;

  it('Mlp.predictAsync', async () => {
    const net = new Mlp(SPEC, { backend });
    expect(net.backend).toBe(backend);
    await checkPredictAsync(net, rows, `Mlp (${backend})`);
    net.dispose();
  });

  it.each([
    [{ weights: 'int8' as const }],
    [{ weights: 'int4' as const, groupSize: 32 as const }],
    [{ weights: 'int8' as const, activations: 'int8' as const }],
  ])('QuantizedMlp.predictAsync, %o', async (options) => {
    const net = new Mlp(SPEC, { backend });
    const q: QuantizedMlp = net.quantize({ ...options, backend });
    expect(q.backend).toBe(backend);
    await checkPredictAsync(q, rows, `QuantizedMlp ${JSON.stringify(options)} (${backend})`);
    q.dispose();
    net.dispose();
  });

  it('QuantizedMlp.predictAsync with mixed per-layer activations (several backend models in a row)', async () => {
    const net = new Mlp(SPEC, { backend });
    // Calibration may keep some layers on float activations: the model then runs segments one
    // after another, and only the first reads x.
    const q: QuantizedMlp = net.quantize({ weights: 'int8', activations: 'int8', calibration: randomArray(64 * INPUTS, 5), backend });
    await checkPredictAsync(q, rows, `QuantizedMlp W8A8 calibrated (${backend}; layers ${q.layers.map((l) => l.activations).join('/')})`);
    q.dispose();
    net.dispose();
  });

  it.each([
    [{ mode: 'exact' as const }],
    [{ mode: 'topk' as const, k: 16 }],
  ])('SparseMlp.predictAsync, %o', async (options) => {
    const net = new Mlp(SPEC, { backend });
    const s: SparseMlp = await net.sparsify({ ...options, backend });
    // A native addon without sparse kernels runs sparse models on the reference (with a
    // warning): the guarantee is then the reference's, checked all the same.
    await checkPredictAsync(s, rows, `SparseMlp ${JSON.stringify(options)} (${s.backend})`);
    s.dispose();
    net.dispose();
  });

  it.each([
    ['mse', 'adam'],
    ['huber', 'sgd'],
    ['softmax-cross-entropy', 'adamw'],
  ] as const)('Trainer.stepAsync (%s, %s): x and target overwritten at once', async (loss, type) => {
    const a = new Mlp(SPEC, { backend });
    const b = new Mlp(SPEC, { backend });
    const options = { loss, optimizer: type === 'sgd' ? { type, lr: 0.05, momentum: 0.9 } : { type, lr: 1e-3 }, clipNorm: 1 };
    const ta = a.trainer(options);
    const tb = b.trainer(options);
    const labels = loss === 'softmax-cross-entropy';
    const batch = rows;
    for (let step = 0; step < 3; step++) {
      const x = randomArray(batch * INPUTS, 100 + step);
      const target = labels ? randomLabels(batch, OUTPUTS, 200 + step) : randomArray(batch * OUTPUTS, 200 + step);
      const lossB = await tb.stepAsync(x.slice(), target.slice());
      const xa = x.slice();
      const targetA = target.slice();
      const pending = ta.stepAsync(xa, targetA);
      xa.fill(-5);
      if (targetA instanceof Int32Array) targetA.fill(OUTPUTS - 1);
      else targetA.fill(9);
      const lossA = await pending;
      expect(Object.is(lossA, lossB), `step ${step}: loss ${lossA} vs ${lossB}`).toBe(true);
      expectSameBits(a.getParameters(), b.getParameters(), `stepAsync ${loss}/${type} (${backend}) step ${step}: parameters`);
    }
    a.dispose();
    b.dispose();
  });

  it('Trainer.stepAsync: steps in flight together on one reused pair of buffers equal the same steps awaited one by one', async () => {
    const a = new Mlp(SPEC, { backend });
    const b = new Mlp(SPEC, { backend });
    const options = { loss: 'softmax-cross-entropy' as const, optimizer: { type: 'adam' as const, lr: 1e-3 } };
    const ta = a.trainer(options);
    const tb = b.trainer(options);
    const batches = [0, 1, 2, 3].map((i) => ({ x: randomArray(rows * INPUTS, 300 + i), labels: randomLabels(rows, OUTPUTS, 400 + i) }));
    const wanted: number[] = [];
    for (const { x, labels } of batches) wanted.push(await tb.stepAsync(x.slice(), labels.slice()));
    const bx = new Float32Array(rows * INPUTS);
    const bt = new Int32Array(rows);
    const losses = await Promise.all(batches.map(({ x, labels }) => {
      bx.set(x);
      bt.set(labels);
      return ta.stepAsync(bx, bt);
    }));
    losses.forEach((l, i) => expect(Object.is(l, wanted[i]), `step ${i}: loss ${l} vs ${wanted[i]}`).toBe(true));
    expectSameBits(a.getParameters(), b.getParameters(), `stepAsync in flight together (${backend}): parameters`);
    a.dispose();
    b.dispose();
  });

  it('Trainer.stepAsync: labels given as number[] may be changed at once', async () => {
    const a = new Mlp(SPEC, { backend });
    const b = new Mlp(SPEC, { backend });
    const options = { loss: 'softmax-cross-entropy' as const, optimizer: { type: 'sgd' as const, lr: 0.1 } };
    const x = randomArray(rows * INPUTS, 500);
    const labels = Array.from(randomLabels(rows, OUTPUTS, 501));
    const lossB = await b.trainer(options).stepAsync(x.slice(), labels.slice());
    const la = labels.slice();
    const pending = a.trainer(options).stepAsync(x.slice(), la);
    la.fill(0);
    expect(Object.is(await pending, lossB)).toBe(true);
    expectSameBits(a.getParameters(), b.getParameters(), `stepAsync number[] labels (${backend}): parameters`);
    a.dispose();
    b.dispose();
  });
});

// Numerical edge cases (issue #6), each with its documented result (README, "Errors and
// guarantees"): int8 accumulation at the widest W8A8 layer, all-zero and all-negative ReLU
// activations (the exact-sparsity path with nothing active), softmax cross-entropy on huge logits,
// float32 overflow in a training step, empty validation sets, NaN through ReLU, denormals.

import { describe, expect, it } from 'vitest';
import { MAX_W8A8_INT8_INPUTS, Mlp, qmatmul, quantizeLayer } from '../lib/index.js';
import { sameBits } from './fuzz-support.js';
import { backendsUnderTest, hasNative, randomArray } from './helpers.js';

const f32 = Math.fround;

describe.each(backendsUnderTest())('numeric edges on %s', (backend) => {
  it('W8A8 int8 at the widest layer: 127 x 127 x 133,144 accumulates exactly in int32', () => {
    const k = MAX_W8A8_INT8_INPUTS;
    // Output 0: every weight +1 (q = 127); output 1: every weight -1 (q = -127); scale 1/127 each.
    const w = new Float32Array(2 * k);
    w.fill(1, 0, k);
    w.fill(-1, k);
    const layer = quantizeLayer(w, null, k, 2, 'none', 0, { format: 'int8' });
    expect((layer.weights as Int8Array)[0]).toBe(127);
    expect((layer.weights as Int8Array)[k]).toBe(-127);
    const x = new Float32Array(k).fill(1); // xq = 127 everywhere, sx = f32(1 / 127)
    const y = qmatmul(x, layer, { activations: 'int8', backend });
    const acc = 127 * 127 * k; // 2,147,441,944 < 2^31 - 1
    expect(acc).toBeLessThan(2 ** 31);
    const sx = f32(1 / 127);
    const term = f32(f32(sx * layer.scales[0]) * f32(acc)); // format.ts: then + 0 (no bias)
    expect(y[0]).toBe(f32(term + 0));
    expect(y[1]).toBe(f32(f32(f32(sx * layer.scales[1]) * f32(-acc)) + 0));
    expect(Math.abs(y[0] - k) / k).toBeLessThan(1e-6);
    // Alternating signs and a row whose scale is set by one huge value: the rest quantise to 0.
    const mixed = Float32Array.from({ length: k }, (_, i) => (i % 2 ? -1 : 1) * (i === 7 ? 3e38 : 1));
    const z = qmatmul(mixed, layer, { activations: 'int8', backend });
    expect(Number.isFinite(z[0]) && Number.isFinite(z[1])).toBe(true);
    // One input more and the accumulator could overflow: refused, on every path in.
    const wide = quantizeLayer(new Float32Array(k + 1).fill(1), null, k + 1, 1, 'none', 0, { format: 'int8' });
    expect(() => qmatmul(new Float32Array(k + 1), wide, { activations: 'int8', backend })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    const net = new Mlp({ inputs: k + 1, layers: [{ units: 1 }] }, { backend });
    expect(() => net.quantize({ weights: 'int8', activations: 'int8', backend })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    net.dispose();
  });

  it('int4 groups at their extremes (codes 0 and 15, 128 inputs a group) agree with the reference bit for bit', () => {
    const k = 1024;
    const w = Float32Array.from({ length: 3 * k }, (_, i) => (i % 3 === 0 ? 1 : i % 3 === 1 ? -1 : 0.5) * (1 + (i % 7)));
    const layer = quantizeLayer(w, null, k, 3, 'none', 0, { format: 'int4', groupSize: 128, symmetric: false });
    const x = Float32Array.from({ length: 4 * k }, (_, i) => (i % 2 ? -3e4 : 3e4));
    const y = qmatmul(x, layer, { activations: 'int8', backend });
    const ref = qmatmul(x, layer, { activations: 'int8', backend: 'reference' });
    expect(sameBits(y, ref)).toBe(true);
    expect(y.every(Number.isFinite)).toBe(true);
  });

  it('all-zero and all-negative ReLU activations: the output is exactly the last bias, at every batch size, gradients are zero, and a step leaves dead layers untouched', () => {
    // 256 -> 512 -> 256 -> 8: wide enough for the exact-sparsity path (>= 2^16 multiply-adds),
    // with every hidden pre-activation negative, so nothing is active at all.
    const spec = { inputs: 256, layers: [{ units: 512, activation: 'relu' as const }, { units: 256, activation: 'relu' as const }, { units: 8 }], seed: 4 };
    const net = new Mlp(spec, { backend });
    const layers = net.getLayers();
    const params = net.getParameters();
    let at = 0;
    layers.forEach((l, i) => {
      at += l.weight.length;
      if (i < 2) params.fill(-1000, at, at + l.outputs); // biases of the hidden layers
      at += l.outputs;
    });
    net.setParameters(params);
    const lastBias = params.subarray(params.length - 8);
    for (const rows of [1, 3, 16, 17, 300]) {
      const y = net.predict(randomArray(rows * 256, rows));
      for (let r = 0; r < rows; r++) expect(sameBits(y.subarray(r * 8, r * 8 + 8), lastBias), `batch ${rows} row ${r}`).toBe(true);
    }
    // All-negative inputs through a ReLU are zero too.
    const negative = new Float32Array(256).fill(-5);
    expect(sameBits(net.predict(negative), lastBias)).toBe(true);
    // Gradients: nothing flows into the dead layers, nothing is NaN.
    const x = randomArray(32 * 256, 9);
    const g = net.gradients(x, { loss: 'mse', target: randomArray(32 * 8, 10) });
    expect(g.parameters.every(Number.isFinite)).toBe(true);
    expect(g.layers[0].weight.every((v) => v === 0) && g.layers[1].weight.every((v) => v === 0)).toBe(true);
    expect(g.input.every((v) => v === 0)).toBe(true);
    const before = net.getParameters();
    net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-2 } }).step(x, randomArray(32 * 8, 10));
    const after = net.getParameters();
    const deadEnd = layers[0].weight.length + 512 + layers[1].weight.length + 256;
    expect(sameBits(after.subarray(0, deadEnd), before.subarray(0, deadEnd)), 'dead layers unchanged by Adam').toBe(true);
    expect(sameBits(after.subarray(deadEnd), before.subarray(deadEnd))).toBe(false);
    net.dispose();
  });

  it('NaN reaches ReLU as 0 (z > 0 ? z : 0), and denormal inputs keep IEEE behaviour in predict', () => {
    // x -> relu(x) -> 3 relu(x) + 0.5: a NaN (or -Infinity) input leaves the ReLU as 0.
    const net = new Mlp({ inputs: 1, layers: [{ units: 1, activation: 'relu', bias: false }, { units: 1 }] }, { backend, parameters: Float32Array.of(1, 3, 0.5) });
    expect(net.predict(Float32Array.of(NaN))[0]).toBe(0.5);
    expect(net.predict(Float32Array.of(-Infinity))[0]).toBe(0.5);
    expect(net.predict(Float32Array.of(2))[0]).toBe(6.5);
    expect(net.predict(Float32Array.of(Infinity))[0]).toBe(Infinity);
    const id = new Mlp({ inputs: 1, layers: [{ units: 1, bias: false }] }, { backend, parameters: Float32Array.of(1) });
    expect(id.predict(Float32Array.of(1e-40))[0]).toBe(f32(1e-40)); // a denormal stays a denormal
    net.dispose();
    id.dispose();
  });

  it('softmax cross-entropy on logits of +-1e30 and 3e38: finite, exact losses and gradients (log-sum-exp keeps its log term)', () => {
    const net = new Mlp({ inputs: 2, layers: [{ units: 2, bias: false }] }, { backend, parameters: Float32Array.of(1, 0, 0, 1) });
    const ce = (x: number[], label: number) => net.gradients(Float32Array.from(x), { loss: 'softmax-cross-entropy', target: [label] });
    expect(ce([1e30, -1e30], 0).loss).toBe(0);
    const wrong = ce([1e30, -1e30], 1);
    expect(wrong.loss).toBe(2 * f32(1e30)); // (max - z_label) + log(1 + e^-2e30)
    expect(Array.from(wrong.input)).toEqual([1, -1]);
    const tie = ce([3e38, 3e38], 1);
    expect(tie.loss).toBeCloseTo(Math.LN2, 12);
    expect(Array.from(tie.input)).toEqual([0.5, -0.5]);
    expect(tie.parameters.every(Number.isFinite)).toBe(true);
    const bce = net.gradients(Float32Array.of(1e30, -1e30), { loss: 'bce-with-logits', target: Float32Array.of(0, 1) });
    expect(bce.loss).toBe(f32(1e30)); // each output is wrong by 1e30: max(z, 0) - z t + log1p(e^-|z|), averaged
    net.dispose();
  });

  it('empty validation and training sets are a RangeError before any step (the model is unchanged)', async () => {
    const net = new Mlp({ inputs: 3, layers: [{ units: 4, activation: 'relu' }, { units: 2 }], seed: 1 }, { backend });
    const before = net.getParameters();
    const t = net.trainer({ loss: 'softmax-cross-entropy', optimizer: { type: 'sgd', lr: 0.1 } });
    const x = randomArray(8 * 3, 1);
    const labels = [0, 1, 0, 1, 1, 0, 0, 1];
    for (const validation of [{ x: new Float32Array(0), target: [] }, { x: new Float32Array(0), target: new Int32Array(0) }]) {
      await expect(t.fit(x, labels, { epochs: 1, validation })).rejects.toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    }
    await expect(t.fit(x, labels, { epochs: 1, validation: { x: randomArray(3, 2), target: [] } })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(t.fit(new Float32Array(0), [], { epochs: 1 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(t.evaluate(new Float32Array(0), [])).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(sameBits(net.getParameters(), before)).toBe(true);
    expect(t.stepCount).toBe(0);
    // The smallest validation set, one row, works.
    const { history } = await t.fit(x, labels, { epochs: 1, validation: { x: randomArray(3, 3), target: [1] } });
    expect(Number.isFinite(history[0].valLoss)).toBe(true);
    expect([0, 1]).toContain(history[0].valAccuracy);
    net.dispose();
  });

  it('a step whose update overflows float32 (finite loss and gradients) throws a RangeError and changes neither the parameters nor the optimizer state', () => {
    const spec = { inputs: 1, layers: [{ units: 1, bias: false }] };
    // w = 1, MSE on one row: the gradient is 2 x^2 (finite in every case), the update lr * 2 x^2.
    const cases = [
      // lr * g past float32, with and without a momentum buffer to leave alone (dampening makes
      // the first step differ from later ones, so a counted failed step would show).
      { optimizer: { type: 'sgd' as const, lr: 1e38 }, bad: 10, ok: 0.01 },
      { optimizer: { type: 'sgd' as const, lr: 1e38, momentum: 0.9, dampening: 0.5 }, bad: 10, ok: 0.01 },
      // A gradient of 5e37 is finite, its square in Adam's second moment is not.
      { optimizer: { type: 'adam' as const, lr: 0.1 }, bad: 5e18, ok: 0.5 },
      { optimizer: { type: 'adamw' as const, lr: 0.1 }, bad: 5e18, ok: 0.5 },
    ];
    for (const { optimizer, bad, ok } of cases) {
      const net = new Mlp(spec, { backend, parameters: Float32Array.of(1) });
      const t = net.trainer({ loss: 'mse', optimizer });
      const x = Float32Array.of(bad);
      const zero = Float32Array.of(0);
      expect(Number.isFinite(net.gradients(x, { loss: 'mse', target: zero }).parameters[0])).toBe(true);
      expect(() => t.step(x, zero)).toThrow(expect.objectContaining({
        name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: expect.stringMatching(/update overflowed float32.*the parameters were not updated/),
      }));
      expect(Array.from(net.getParameters())).toEqual([1]);
      expect(t.stepCount).toBe(0);
      // The moments and step count are untouched: the next step is a fresh twin's first step.
      const twin = new Mlp(spec, { backend, parameters: Float32Array.of(1) });
      const loss = t.step(Float32Array.of(ok), zero);
      expect(loss).toBe(twin.trainer({ loss: 'mse', optimizer }).step(Float32Array.of(ok), zero));
      expect(sameBits(net.getParameters(), twin.getParameters())).toBe(true);
      expect(Number.isFinite(net.getParameters()[0])).toBe(true);
      net.dispose();
      twin.dispose();
    }
  });

  it('updates from gradients too small to square in float32 are still bounded (review: each was once stored as +-Infinity)', () => {
    const spec = { inputs: 1, layers: [{ units: 1 }] };
    const refused = expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', message: expect.stringMatching(/update overflowed float32/) });
    // SGD: a gradient of 2e-25 squares to 0; the bias then moves to 2e13, and weight decay x lr
    // on it overflows in the next step.
    const a = new Mlp(spec, { backend, parameters: Float32Array.of(0, 0) });
    const ta = a.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 1e38, weightDecay: 1 } });
    ta.step(Float32Array.of(0), Float32Array.of(1e-25));
    expect(a.getParameters()[1]).toBeGreaterThan(1e13);
    expect(() => ta.step(Float32Array.of(0), a.predict(Float32Array.of(0)))).toThrow(refused);
    // Adam: g * g underflows, so the step is lr g / eps = 1e43.
    const b = new Mlp(spec, { backend, parameters: Float32Array.of(0, 0) });
    expect(() => b.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e30, eps: 1.2e-38 } }).step(Float32Array.of(0), Float32Array.of(1e-25))).toThrow(refused);
    expect(Array.from(b.getParameters())).toEqual([0, 0]);
    // SGD: a parameter of 1e-24 squares to 0 when the bounds are measured; lr x wd x p = 1e44.
    const c = new Mlp(spec, { backend, parameters: Float32Array.of(0, 1e-24) });
    expect(() => c.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 1e30, weightDecay: 1e38 } }).step(Float32Array.of(0), Float32Array.of(Math.fround(1e-24)))).toThrow(refused);
    for (const m of [a, b, c]) m.dispose();
  });

  it('optimizer constants outside float32 are refused when the trainer is made', () => {
    const net = new Mlp({ inputs: 1, layers: [{ units: 1 }] }, { backend });
    for (const optimizer of [{ type: 'sgd' as const, lr: 1e39 }, { type: 'sgd' as const, lr: 0.1, weightDecay: 1e39 },
      { type: 'sgd' as const, lr: 0.1, momentum: 1e39 }, { type: 'adam' as const, lr: 0.1, eps: 1e-40 }, { type: 'adam' as const, lr: 0.1, eps: 0 }]) {
      expect(() => net.trainer({ loss: 'mse', optimizer })).toThrow(expect.objectContaining({ name: 'RangeError' }));
    }
    net.dispose();
  });

  it('options.parameters must be finite, as setParameters', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      expect(() => new Mlp({ inputs: 1, layers: [{ units: 1 }] }, { backend, parameters: Float32Array.of(bad, 0) }))
        .toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: expect.stringMatching(/finite values in options.parameters/) }));
    }
  });
});

describe.runIf(hasNative())('float32 overflow in a training step (native only: the reference computes in float64, where these logits do not overflow)', () => {
  it('a step whose loss or gradients overflow throws a RangeError and leaves parameters and optimizer state as they were', async () => {
    const net = new Mlp({ inputs: 2, layers: [{ units: 2, bias: false }] }, { backend: 'native', parameters: Float32Array.of(10, 10, 0, 1) });
    const t = net.trainer({ loss: 'softmax-cross-entropy', optimizer: { type: 'adam', lr: 0.1 } });
    const x = Float32Array.of(3e38, 3e38); // logit 0 = 6e39: Infinity in float32
    expect(net.predict(x)[0]).toBe(Infinity);
    const before = net.getParameters();
    expect(() => t.step(x, [1])).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: expect.stringMatching(/the parameters were not updated/) }));
    await expect(t.stepAsync(x, [1])).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(t.fit(x, [1], { epochs: 1 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(sameBits(net.getParameters(), before)).toBe(true);
    expect(t.stepCount).toBe(0);
    // The optimizer state was not touched either (Adam's step count and moments): the next step
    // is the first step of a fresh twin.
    const ok = Float32Array.of(0.5, -0.25);
    const twin = new Mlp({ inputs: 2, layers: [{ units: 2, bias: false }] }, { backend: 'native', parameters: Float32Array.of(10, 10, 0, 1) });
    expect(t.step(ok, [1])).toBe(twin.trainer({ loss: 'softmax-cross-entropy', optimizer: { type: 'adam', lr: 0.1 } }).step(ok, [1]));
    expect(sameBits(net.getParameters(), twin.getParameters())).toBe(true);
    net.dispose();
    twin.dispose();
  });
});

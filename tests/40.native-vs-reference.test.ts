// Native and reference backends on the same calls: forward, backward (every parameter and the
// input), one step of each optimizer, for every activation and loss, on awkward shapes.
// Tolerance 1e-5 relative to the largest value compared: the reference accumulates in float64,
// the native backend in float32; for dot products of <= ~100 terms of O(1) values float32
// accumulation error stays near 1e-6 relative to the output scale.

import { describe, expect, it } from 'vitest';
import { Mlp, info, setThreads } from '../lib/index.js';
import { ACTIVATIONS, LOSSES, type ActivationName, type LossName } from '../lib/backend/types.js';
import type { MlpSpec } from '../lib/spec.js';
import { expectClose, hasNative, randomArray, randomLabels } from './helpers.js';

const TOL = 1e-5;
const WIDTHS = [1, 3, 17, 63, 65];

function pair(spec: MlpSpec) {
  const ref = new Mlp(spec, { backend: 'reference' });
  const nat = new Mlp(spec, { backend: 'native', parameters: ref.getParameters() });
  return { ref, nat };
}

function targetFor(loss: LossName, batch: number, outputs: number, seed: number) {
  if (loss === 'softmax-cross-entropy') return randomLabels(batch, outputs, seed);
  if (loss === 'bce-with-logits') return randomArray(batch * outputs, seed).map((v) => (v > 0 ? 1 : 0));
  return randomArray(batch * outputs, seed);
}

describe.runIf(hasNative())('native vs reference', () => {
  it.each(ACTIVATIONS.map((a) => [a]))('forward and backward, activation %s, widths %s', (activation) => {
    for (const width of WIDTHS) {
      for (const batch of [1, 3, 17]) {
        const spec: MlpSpec = {
          inputs: width,
          layers: [{ units: width, activation: activation as ActivationName, alpha: 0.05 }, { units: 17, activation: activation as ActivationName }, { units: 3 }],
          seed: width * 31 + batch,
        };
        const { ref, nat } = pair(spec);
        const x = randomArray(batch * width, batch + width, 2);
        expectClose(nat.predict(x), ref.predict(x), TOL, `predict ${activation} w${width} b${batch}`);
        const target = randomArray(batch * 3, 3);
        const gr = ref.gradients(x, { loss: 'mse', target });
        const gn = nat.gradients(x, { loss: 'mse', target });
        expect(Math.abs(gn.loss! - gr.loss!) / Math.max(1e-6, Math.abs(gr.loss!))).toBeLessThan(TOL);
        expectClose(gn.parameters, gr.parameters, TOL, `dparams ${activation} w${width} b${batch}`);
        expectClose(gn.input, gr.input, TOL, `dx ${activation} w${width} b${batch}`);
        ref.dispose();
        nat.dispose();
      }
    }
  });

  it.each(LOSSES.map((l) => [l]))('loss %s: value and gradients', (loss) => {
    for (const batch of [1, 5, 64]) {
      const { ref, nat } = pair({ inputs: 7, layers: [{ units: 65, activation: 'relu' }, { units: 4 }], seed: batch });
      const x = randomArray(batch * 7, batch);
      const target = targetFor(loss as LossName, batch, 4, batch + 1);
      const request = { loss: loss as LossName, target, ...(loss === 'huber' ? { delta: 0.3 } : {}) };
      const gr = ref.gradients(x, request);
      const gn = nat.gradients(x, request);
      expect(Math.abs(gn.loss! - gr.loss!) / Math.max(1e-6, Math.abs(gr.loss!))).toBeLessThan(TOL);
      expectClose(gn.parameters, gr.parameters, TOL, `dparams ${loss}`);
      expectClose(gn.input, gr.input, TOL, `dx ${loss}`);
    }
  });

  it.each(['silu', 'gelu', 'relu', 'leaky_relu', 'none'].map((a) => [a]))('gated and residual layers (%s): predict and gradients at batch 1, 3, 17, 130', (activation) => {
    for (const width of [3, 17, 65]) {
      const spec: MlpSpec = {
        inputs: width,
        layers: [
          { units: 2 * width + 1, activation: activation as ActivationName, gated: true },
          { units: width, residual: true },
          { units: 33, activation: 'relu' },
          { units: width, activation: activation as ActivationName, residual: true },
          { units: 3, activation: activation as ActivationName, gated: true },
        ],
        seed: width,
      };
      for (const batch of [1, 3, 17, 130]) {
        const { ref, nat } = pair(spec);
        const x = randomArray(batch * width, batch + width, 2);
        expectClose(nat.predict(x), ref.predict(x), TOL, `predict ${activation} w${width} b${batch}`);
        const target = randomArray(batch * 3, 3);
        const gr = ref.gradients(x, { loss: 'mse', target });
        const gn = nat.gradients(x, { loss: 'mse', target });
        expectClose(gn.parameters, gr.parameters, TOL, `dparams ${activation} w${width} b${batch}`);
        expectClose(gn.input, gr.input, TOL, `dx ${activation} w${width} b${batch}`);
        ref.dispose();
        nat.dispose();
      }
    }
  });

  it('a wide layer at a small batch (the products share their columns over the pool): as the reference, and the same bits on 1 and 2 threads', () => {
    const spec: MlpSpec = { inputs: 300, layers: [{ units: 700, activation: 'relu' }, { units: 300, activation: 'silu', gated: true }, { units: 5 }], seed: 4 };
    const { ref, nat } = pair(spec);
    const x = randomArray(40 * 300, 5);
    const target = randomArray(40 * 5, 6);
    const gr = ref.gradients(x, { loss: 'mse', target });
    const gn = nat.gradients(x, { loss: 'mse', target });
    expectClose(gn.parameters, gr.parameters, TOL, 'dparams');
    expectClose(gn.input, gr.input, TOL, 'dx');
    const before = info().threads;
    setThreads(1);
    try {
      const one = nat.gradients(x, { loss: 'mse', target });
      expect(Array.from(one.parameters)).toEqual(Array.from(gn.parameters));
      expect(Array.from(one.input)).toEqual(Array.from(gn.input));
    } finally {
      setThreads(before);
    }
    ref.dispose();
    nat.dispose();
  });

  it('a wide layer at a batch past the layer-by-layer scratch budget (run in chunks of rows): the same bits as smaller batches, and as the reference', () => {
    // 40 -> 16384 holds 2.6 MB of weights (over the 2 MB "wide" mark) and 16384-wide activations,
    // so 700 rows pass the 16M-float scratch of the layer-by-layer path: it runs as 3 chunks.
    const spec: MlpSpec = { inputs: 40, layers: [{ units: 16384, activation: 'relu' }, { units: 8 }], seed: 11 };
    const { ref, nat } = pair(spec);
    const rows = 700;
    const x = randomArray(rows * 40, 12);
    const whole = nat.predict(x);
    const pieces = [[0, 300], [300, 640], [640, 699], [699, 700]].map(([a, b]) => Array.from(nat.predict(x.subarray(a * 40, b * 40))));
    expect(Array.from(whole)).toEqual(pieces.flat());
    // The reference sums in float64; the 16384-term sums of the output layer stay within 1e-5 of
    // the output scale in float32 (random-sign terms: the error grows like sqrt(16384) ulps).
    const head = 24;
    expectClose(whole.subarray(0, head * 8), ref.predict(x.subarray(0, head * 40)), TOL, 'chunked wide predict');
    ref.dispose();
    nat.dispose();
  });

  it('a wide layer between narrow ones (its packing shared out over tasks of 64 panels): as the reference, also after setParameters and a step', () => {
    const spec: MlpSpec = { inputs: 5, layers: [{ units: 3, activation: 'tanh' }, { units: 2100, activation: 'relu' }, { units: 1030 }, { units: 2 }], seed: 21 };
    const { ref, nat } = pair(spec);
    const x = randomArray(7 * 5, 22);
    expectClose(nat.predict(x), ref.predict(x), TOL, 'predict');
    const p = randomArray(ref.parameterCount, 23);
    ref.setParameters(p);
    nat.setParameters(p);
    expectClose(nat.predict(x), ref.predict(x), TOL, 'predict after setParameters');
    const target = randomArray(7 * 2, 24);
    ref.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 1e-3 } }).step(x, target);
    nat.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 1e-3 } }).step(x, target);
    expectClose(nat.predict(x), ref.predict(x), TOL, 'predict after a step');
    ref.dispose();
    nat.dispose();
  });

  it('backward from a caller-given output gradient', () => {
    const { ref, nat } = pair({ inputs: 5, layers: [{ units: 9, activation: 'silu' }, { units: 2 }], seed: 3 });
    const x = randomArray(4 * 5, 1);
    const gradOutput = randomArray(4 * 2, 2);
    const gr = ref.gradients(x, { gradOutput });
    const gn = nat.gradients(x, { gradOutput });
    expectClose(gn.parameters, gr.parameters, TOL, 'dparams');
    expectClose(gn.input, gr.input, TOL, 'dx');
  });

  it('frequency encoding and bias-free layers', () => {
    const spec: MlpSpec = {
      inputs: 3,
      encoding: { type: 'frequency', octaves: 5 },
      layers: [{ units: 63, activation: 'gelu_tanh', bias: false }, { units: 2, activation: 'sigmoid' }],
      seed: 8,
    };
    const { ref, nat } = pair(spec);
    const x = randomArray(10 * 3, 4);
    expectClose(nat.predict(x), ref.predict(x), TOL, 'predict');
    const target = randomArray(20, 5);
    const gr = ref.gradients(x, { loss: 'l1', target });
    const gn = nat.gradients(x, { loss: 'l1', target });
    expectClose(gn.parameters, gr.parameters, TOL, 'dparams');
    expectClose(gn.input, gr.input, TOL, 'dx');
  });

  it.each([
    [{ type: 'sgd', lr: 0.05 }],
    [{ type: 'sgd', lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-3 }],
    [{ type: 'adam', lr: 1e-2, weightDecay: 1e-3 }],
    [{ type: 'adamw', lr: 1e-2, weightDecay: 0.05, betas: [0.8, 0.99] }],
  ])('three training steps with %o', (optimizer) => {
    const { ref, nat } = pair({ inputs: 17, layers: [{ units: 17, activation: 'tanh' }, { units: 3 }], seed: 12 });
    const tr = ref.trainer({ loss: 'softmax-cross-entropy', optimizer: optimizer as never, clipNorm: 0.5 });
    const tn = nat.trainer({ loss: 'softmax-cross-entropy', optimizer: optimizer as never, clipNorm: 0.5 });
    for (let s = 0; s < 3; s++) {
      const x = randomArray(8 * 17, s);
      const labels = randomLabels(8, 3, s);
      const lr = tr.step(x, labels);
      const ln = tn.step(x, labels);
      expect(Math.abs(ln - lr) / Math.abs(lr)).toBeLessThan(TOL);
      expectClose(nat.getParameters(), ref.getParameters(), TOL, `params after step ${s + 1}`);
    }
  });

  it('predictAsync and stepAsync agree with their sync forms', async () => {
    const { ref, nat } = pair({ inputs: 4, layers: [{ units: 32, activation: 'relu' }, { units: 2 }], seed: 1 });
    const x = randomArray(100 * 4, 9);
    expectClose(await nat.predictAsync(x), ref.predict(x), TOL, 'predictAsync');
    const target = randomArray(200, 10);
    const tn = nat.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-3 } });
    const tr = ref.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-3 } });
    const a = await tn.stepAsync(x, target);
    const b = tr.step(x, target);
    expect(Math.abs(a - b) / b).toBeLessThan(TOL);
    expectClose(nat.getParameters(), ref.getParameters(), TOL, 'params');
  });
});

describe.runIf(process.env.MLPKIT_EXPECT_NATIVE === '1')('native build in CI', () => {
  it('loads', () => {
    expect(hasNative()).toBe(true);
  });
});

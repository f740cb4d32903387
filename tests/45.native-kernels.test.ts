// The fast native CPU path against the reference on shapes that exercise its blocking: batches
// that span several tiles and training chunks (64+ rows), widths around the SIMD register tile
// (1, 3, 17, 63, 65 and 1000), batch 1; and its guarantees: a row's result does not depend on
// the batch it came in, and nothing depends on the thread count, bit for bit.
//
// Run once per ISA the machine has (.ci/run does): MLPKIT_ISA=avx2 npx vitest run tests/45*.
// Tolerance: as in 40.native-vs-reference (float32 accumulation vs the reference's float64),
// 1e-5 relative to the scale of the values; the 1000-wide dot products get 1e-4, since float32
// rounding error grows with the number of terms (~sqrt(1000) * 6e-8 * a few).

import { afterAll, describe, expect, it } from 'vitest';
import { Mlp, info, setThreads } from '../lib/index.js';
import type { ActivationName } from '../lib/backend/types.js';
import type { MlpSpec } from '../lib/spec.js';
import { expectClose, hasNative, randomArray, randomLabels } from './helpers.js';

const TOL = 1e-5;

function pair(spec: MlpSpec) {
  const ref = new Mlp(spec, { backend: 'reference' });
  const nat = new Mlp(spec, { backend: 'native', parameters: ref.getParameters() });
  return { ref, nat };
}

describe.runIf(hasNative())('native kernels', () => {
  afterAll(() => setThreads(2));

  it('use the ISA that MLPKIT_ISA asks for', () => {
    const i = info();
    expect(i.native.isas).toContain('scalar');
    const want = process.env.MLPKIT_ISA;
    if (want && i.native.isas!.includes(want)) expect(i.isa).toBe(want);
    else expect(i.isa).toBe(i.native.isas![0]);
  });

  const shapes: [number, number, number, ActivationName][] = [
    // inputs, hidden width, batch, activation
    [3, 17, 1, 'relu'],
    [1, 1, 65, 'relu'],
    [17, 63, 130, 'leaky_relu'],
    [65, 65, 257, 'relu'],
    [32, 64, 1000, 'relu'],
    [5, 33, 200, 'gelu'],
    [63, 17, 300, 'tanh'],
  ];
  it.each(shapes)('predict, gradients and dL/dx: %i inputs, width %i, batch %i, %s', (inputs, width, batch, act) => {
    const spec: MlpSpec = {
      inputs,
      layers: [{ units: width, activation: act, alpha: 0.1 }, { units: width, activation: act, alpha: 0.1 }, { units: 3 }],
      seed: inputs * 7 + width,
    };
    const { ref, nat } = pair(spec);
    const x = randomArray(batch * inputs, batch, 2);
    expectClose(nat.predict(x), ref.predict(x), TOL, 'predict');
    const target = randomArray(batch * 3, batch + 1);
    const gr = ref.gradients(x, { loss: 'mse', target });
    const gn = nat.gradients(x, { loss: 'mse', target });
    expect(Math.abs(gn.loss! - gr.loss!) / gr.loss!).toBeLessThan(TOL);
    expectClose(gn.parameters, gr.parameters, TOL, 'dparams');
    expectClose(gn.input, gr.input, TOL, 'dx');
    ref.dispose();
    nat.dispose();
  });

  it('1000-wide layers, batch 1 and 3', () => {
    const { ref, nat } = pair({ inputs: 1000, layers: [{ units: 1000, activation: 'relu' }, { units: 10 }], seed: 3 });
    for (const batch of [1, 3]) {
      const x = randomArray(batch * 1000, batch);
      expectClose(nat.predict(x), ref.predict(x), 1e-4, 'predict');
      const labels = randomLabels(batch, 10, 9);
      const gr = ref.gradients(x, { loss: 'softmax-cross-entropy', target: labels });
      const gn = nat.gradients(x, { loss: 'softmax-cross-entropy', target: labels });
      expectClose(gn.parameters, gr.parameters, 1e-4, 'dparams');
      expectClose(gn.input, gr.input, 1e-4, 'dx');
    }
  });

  it('frequency encoding fused into the first layer, over several tiles', () => {
    const spec: MlpSpec = { inputs: 2, encoding: { type: 'frequency', octaves: 6 }, layers: [{ units: 64, activation: 'relu' }, { units: 3 }], seed: 5 };
    const { ref, nat } = pair(spec);
    const x = randomArray(2 * 700, 4);
    expectClose(nat.predict(x), ref.predict(x), TOL, 'predict');
    const target = randomArray(3 * 700, 5);
    expectClose(nat.gradients(x, { loss: 'mse', target }).input, ref.gradients(x, { loss: 'mse', target }).input, TOL, 'dx');
  });

  it('several Adam steps on multi-chunk batches track the reference', () => {
    const { ref, nat } = pair({ inputs: 20, layers: [{ units: 48, activation: 'relu' }, { units: 5 }], seed: 8 });
    const tr = ref.trainer({ loss: 'softmax-cross-entropy', optimizer: { type: 'adamw', lr: 1e-3 }, clipNorm: 5 });
    const tn = nat.trainer({ loss: 'softmax-cross-entropy', optimizer: { type: 'adamw', lr: 1e-3 }, clipNorm: 5 });
    for (let s = 0; s < 3; s++) {
      const x = randomArray(20 * 333, 10 + s);
      const y = randomLabels(333, 5, 20 + s);
      const lr = tr.step(x, y);
      const ln = tn.step(x, y);
      expect(Math.abs(ln - lr) / lr).toBeLessThan(TOL);
    }
    expectClose(nat.getParameters(), ref.getParameters(), 1e-5, 'parameters after 3 steps');
  });

  it('a row gives the same bits alone and inside any batch', () => {
    const net = new Mlp({ inputs: 9, layers: [{ units: 65, activation: 'relu' }, { units: 31, activation: 'silu' }, { units: 4 }], seed: 2 }, { backend: 'native' });
    const batch = 777;
    const x = randomArray(9 * batch, 6);
    const all = net.predict(x);
    for (const r of [0, 1, 5, 6, 400, 776]) {
      const one = net.predict(x.subarray(r * 9, r * 9 + 9));
      expect(Array.from(one)).toEqual(Array.from(all.subarray(r * 4, r * 4 + 4)));
    }
  });

  it('wide layers: column-split small batches and k-blocked products match the batched rows and the reference', () => {
    // 512 -> 1024 -> 1024 -> 33: over 2^20 multiply-adds per row, so batches below 4 x threads
    // share out columns, and the 1024-long reductions run in blocks.
    const spec: MlpSpec = { inputs: 512, layers: [{ units: 1024, activation: 'relu' }, { units: 1024, activation: 'leaky_relu' }, { units: 33 }], seed: 12 };
    const { ref, nat } = pair(spec);
    const batch = 40;
    const x = randomArray(512 * batch, 13);
    const all = nat.predict(x);
    expectClose(all, ref.predict(x), 1e-4, 'batched predict');
    for (const [r, n] of [[0, 1], [7, 1], [3, 5], [39, 1]]) {
      const part = nat.predict(x.subarray(r * 512, (r + n) * 512));
      expect(Buffer.from(part.buffer).equals(Buffer.from(all.slice(r * 33, (r + n) * 33).buffer))).toBe(true);
    }
    ref.dispose();
    nat.dispose();
  });

  it('very wide layers: whole batches layer by layer match the reference and single rows', () => {
    // 4200 outputs: a cache-sized row tile would hold only a few rows, so batches go layer by
    // layer with the columns shared out.
    const { ref, nat } = pair({ inputs: 200, layers: [{ units: 4200, activation: 'relu' }, { units: 5 }], seed: 14 });
    const batch = 20;
    const x = randomArray(200 * batch, 15);
    const all = nat.predict(x);
    expectClose(all, ref.predict(x), 1e-5, 'predict');
    for (const r of [0, 19]) {
      const one = nat.predict(x.subarray(r * 200, (r + 1) * 200));
      expect(Buffer.from(one.buffer).equals(Buffer.from(all.slice(r * 5, (r + 1) * 5).buffer))).toBe(true);
    }
    ref.dispose();
    nat.dispose();
  });

  it('exact ReLU sparsity at batch 1 and a few rows: only the active inputs are read, the result is the dense one', () => {
    // Negative first-layer biases leave ~10% of the hidden units active; a batch-1 predict then
    // skips the inactive ones in the next layer (stack path, and the column-split path of wide
    // layers), which must match the reference and the dense batched rows.
    for (const [inputs, hidden, outputs] of [[64, 1024, 128], [512, 4096, 512]]) {
      const { ref, nat } = pair({ inputs, layers: [{ units: hidden, activation: 'relu' }, { units: outputs }], seed: 16 });
      const params = ref.getParameters();
      params.fill(-0.35, inputs * hidden, inputs * hidden + hidden); // first layer's bias
      ref.setParameters(params);
      nat.setParameters(params);
      const x = randomArray(inputs * 9, 17);
      const all = nat.predict(x);
      expectClose(all, ref.predict(x), 1e-5, `${inputs}-${hidden}-${outputs}`);
      let active = 0;
      const h = new Mlp({ inputs, layers: [{ units: hidden, activation: 'relu' }], seed: 1 }, { backend: 'reference' });
      h.setParameters(params.subarray(0, inputs * hidden + hidden));
      h.predict(x.subarray(0, inputs)).forEach((v) => (active += v > 0 ? 1 : 0));
      expect(active / hidden).toBeLessThan(0.5); // the sparse path is taken
      for (let r = 0; r < 9; r++) {
        const one = nat.predict(x.subarray(r * inputs, (r + 1) * inputs));
        expect(Buffer.from(one.buffer).equals(Buffer.from(all.slice(r * outputs, (r + 1) * outputs).buffer))).toBe(true);
      }
      // A few rows at once: the union of their active inputs.
      const three = nat.predict(x.subarray(2 * inputs, 5 * inputs));
      expect(Buffer.from(three.buffer).equals(Buffer.from(all.slice(2 * outputs, 5 * outputs).buffer))).toBe(true);
      ref.dispose();
      nat.dispose();
      h.dispose();
    }
  });

  it('1 and 2 threads give bitwise identical predictions, gradients and training', () => {
    const run = (threads: number) => {
      setThreads(threads);
      const net = new Mlp({ inputs: 32, layers: [{ units: 64, activation: 'relu' }, { units: 64, activation: 'relu' }, { units: 16 }], seed: 4 }, { backend: 'native' });
      const x = randomArray(32 * 5000, 1);
      const target = randomArray(16 * 5000, 2);
      const predicted = net.predict(x);
      const grads = net.gradients(x, { loss: 'mse', target });
      const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-3 } });
      const losses = [trainer.step(x, target), trainer.step(x, target)];
      const params = net.getParameters();
      net.dispose();
      return { predicted, grads, losses, params };
    };
    const one = run(1);
    const two = run(2);
    expect(Buffer.from(two.predicted.buffer).equals(Buffer.from(one.predicted.buffer))).toBe(true);
    expect(Buffer.from(two.grads.parameters.buffer).equals(Buffer.from(one.grads.parameters.buffer))).toBe(true);
    expect(Buffer.from(two.grads.input.buffer).equals(Buffer.from(one.grads.input.buffer))).toBe(true);
    expect(two.losses).toEqual(one.losses);
    expect(Buffer.from(two.params.buffer).equals(Buffer.from(one.params.buffer))).toBe(true);
  });

  it('setThreads checks its argument', () => {
    expect(() => setThreads(0)).toThrow(RangeError);
    expect(() => setThreads(1.5)).toThrow(RangeError);
    expect(() => setThreads('2' as unknown as number)).toThrow(TypeError);
    setThreads(1);
    expect(info().threads).toBe(1);
    setThreads(2);
    expect(info().threads).toBe(2);
  });
});

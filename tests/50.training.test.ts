import { describe, expect, it } from 'vitest';
import { Mlp } from '../lib/index.js';
import { makeSchedule } from '../lib/train/schedule.js';
import { backendsUnderTest, randomArray } from './helpers.js';

// A smooth 2-D regression target a small net fits quickly.
function dataset(n: number, seed: number) {
  const x = randomArray(n * 2, seed);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) y[i] = Math.sin(2 * x[2 * i]) * Math.cos(x[2 * i + 1]);
  return { x, y };
}

// Two interleaved classes by quadrant (XOR-like), not linearly separable.
function xorData(n: number, seed: number) {
  const x = randomArray(n * 2, seed);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) labels[i] = x[2 * i] * x[2 * i + 1] > 0 ? 1 : 0;
  return { x, labels };
}

describe.each(backendsUnderTest())('training on %s', (backend) => {
  it('fit reduces an mse loss on a regression task, with validation and progress', async () => {
    const net = new Mlp({ inputs: 2, layers: [{ units: 32, activation: 'tanh' }, { units: 1 }], seed: 1 }, { backend });
    const train = dataset(256, 1);
    const val = dataset(64, 2);
    const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-2 } });
    const progress: number[] = [];
    const result = await trainer.fit(train.x, train.y, {
      epochs: 30, batchSize: 32, seed: 3, validation: { x: val.x, target: val.y },
      onProgress: (p) => { if (p.epochEnd) progress.push(p.epoch); },
    });
    expect(result.stopped).toBe(false);
    expect(result.history).toHaveLength(30);
    expect(progress).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(result.history[29].loss).toBeLessThan(result.history[0].loss * 0.2);
    expect(result.history[29].valLoss!).toBeLessThan(0.02);
    expect(result.samplesPerSecond).toBeGreaterThan(0);
  });

  it('fit learns a classifier with softmax cross-entropy and reports accuracy', async () => {
    const net = new Mlp({ inputs: 2, layers: [{ units: 16, activation: 'relu' }, { units: 16, activation: 'relu' }, { units: 2 }], seed: 4 }, { backend });
    const { x, labels } = xorData(400, 5);
    const trainer = net.trainer({ loss: 'softmax-cross-entropy', optimizer: { type: 'adamw', lr: 2e-2 }, schedule: { type: 'cosine' } });
    const result = await trainer.fit(x, labels, { epochs: 40, batchSize: 50, validation: { x, target: labels } });
    expect(result.history.at(-1)!.valAccuracy!).toBeGreaterThan(0.9);
    expect(trainer.lr).toBeCloseTo(0, 10); // cosine annealed to minLr over the fit
  });

  it('same seed, same result; shuffling changes it', async () => {
    const run = async (seed: number, shuffle = true) => {
      const net = new Mlp({ inputs: 2, layers: [{ units: 8, activation: 'silu' }, { units: 1 }], seed: 9 }, { backend });
      const { x, y } = dataset(64, 6);
      await net.trainer({ loss: 'huber', optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9 } }).fit(x, y, { epochs: 3, batchSize: 8, seed, shuffle });
      return net.getParameters();
    };
    expect(await run(1)).toEqual(await run(1));
    expect(await run(1)).not.toEqual(await run(2));
    expect(await run(1, false)).toEqual(await run(2, false));
  });

  it('an AbortSignal stops fit early and resolves with stopped: true', async () => {
    const net = new Mlp({ inputs: 2, layers: [{ units: 8, activation: 'relu' }, { units: 1 }] }, { backend });
    const { x, y } = dataset(128, 7);
    const controller = new AbortController();
    const result = await net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.01 } }).fit(x, y, {
      epochs: 1000, batchSize: 16,
      onProgress: (p) => { if (p.epochEnd && p.epoch === 2) controller.abort(); },
      signal: controller.signal,
    });
    expect(result.stopped).toBe(true);
    expect(result.history).toHaveLength(2);
  });

  it('an abort in the middle of an epoch leaves that epoch out of the history and the callbacks', async () => {
    const net = new Mlp({ inputs: 2, layers: [{ units: 8, activation: 'relu' }, { units: 1 }] }, { backend });
    const { x, y } = dataset(64, 7);
    const val = dataset(16, 8);
    const controller = new AbortController();
    const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.01 } });
    // 4 steps per epoch; abort after the 6th step, half-way through epoch 2.
    const original = trainer.stepAsync.bind(trainer);
    let steps = 0;
    trainer.stepAsync = async (bx, bt) => {
      const loss = await original(bx, bt);
      if (++steps === 6) controller.abort();
      return loss;
    };
    const ends: number[] = [];
    const cut = await trainer.fit(x, y, {
      epochs: 3, batchSize: 16, validation: { x: val.x, target: val.y },
      onProgress: (p) => { if (p.epochEnd) ends.push(p.epoch); },
      signal: controller.signal,
    });
    expect(cut.stopped).toBe(true);
    expect(cut.steps).toBe(6);
    expect(cut.rows).toBe(96); // 6 batches of 16
    // A short last batch counts its own rows: 50 rows in batches of 16 are 4 steps of 16+16+16+2.
    const whole = await net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.01 } })
      .fit(x.subarray(0, 100), y.subarray(0, 50), { epochs: 2, batchSize: 16 });
    expect([whole.steps, whole.rows]).toEqual([8, 100]);
    expect(cut.history.map((r) => r.epoch)).toEqual([1]);
    expect(ends).toEqual([1]);
  });

  it('a new trainer starts the optimizer fresh, whatever trained the model before', () => {
    const spec = { inputs: 2, layers: [{ units: 8, activation: 'tanh' as const }, { units: 1 }], seed: 5 };
    const { x, y } = dataset(32, 9);
    const used = new Mlp(spec, { backend });
    const sgd = used.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9 } });
    for (let i = 0; i < 3; i++) sgd.step(x, y);
    const fresh = new Mlp(spec, { backend });
    fresh.setParameters(used.getParameters());
    used.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-2 } }).step(x, y);
    fresh.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-2 } }).step(x, y);
    expect(used.getParameters()).toEqual(fresh.getParameters());
  });

  it('a cosine schedule without steps anneals over each fit, and reset starts it again', async () => {
    const net = new Mlp({ inputs: 2, layers: [{ units: 4, activation: 'relu' }, { units: 1 }] }, { backend });
    const { x, y } = dataset(32, 10);
    const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 }, schedule: { type: 'cosine' } });
    expect(trainer.lr).toBe(0.1); // what a fit starts with
    const rates = async (epochs: number) => {
      const lrs: number[] = [];
      // batch 8: 4 steps per epoch, one epoch-end callback each with the rate of its last step.
      await trainer.fit(x, y, { epochs, batchSize: 8, onProgress: (p) => { if (p.epochEnd) lrs.push(p.lr); } });
      return lrs;
    };
    const first = await rates(2); // steps 0..7 of 8: the last step's rate is cos at 7/8
    const expected = 0.05 * (1 + Math.cos((Math.PI * 7) / 8));
    expect(first[1]).toBeCloseTo(expected, 12);
    const second = await rates(2);
    expect(second).toEqual(first);
    trainer.reset();
    const longer = await rates(4); // 16 steps: the rate of step 7 of 16 ends epoch 2
    expect(longer[1]).toBeCloseTo(0.05 * (1 + Math.cos((Math.PI * 7) / 16)), 12);
  });

  it('fit without a seed shuffles each call differently; with one, the same', async () => {
    const { x, y } = dataset(64, 11);
    const orders = async (seeds: (number | undefined)[]) => {
      const net = new Mlp({ inputs: 2, layers: [{ units: 4, activation: 'relu' }, { units: 1 }], seed: 1 }, { backend });
      const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.05 } });
      const seen: number[][] = [];
      const original = trainer.stepAsync.bind(trainer);
      trainer.stepAsync = async (bx, bt) => {
        seen.push(Array.from(bx.subarray(0, 4)));
        return original(bx, bt);
      };
      for (const seed of seeds) await trainer.fit(x, y, { epochs: 1, batchSize: 64, seed });
      return seen;
    };
    const unseeded = await orders([undefined, undefined]);
    expect(unseeded[0]).not.toEqual(unseeded[1]);
    const seeded = await orders([3, 3]);
    expect(seeded[0]).toEqual(seeded[1]);
    expect((await orders([undefined]))[0]).toEqual(unseeded[0]); // and the first call is reproducible
  });

  it('rejects non-finite validation inputs and a delta on a loss that has none', async () => {
    const net = new Mlp({ inputs: 2, layers: [{ units: 1 }] }, { backend });
    const { x, y } = dataset(8, 12);
    const bad = x.slice();
    bad[3] = NaN;
    const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.05 } });
    await expect(trainer.fit(x, y, { epochs: 1, validation: { x: bad, target: y } })).rejects.toThrow(/options\.validation\.x/);
    expect(() => net.trainer({ loss: { type: 'mse', delta: 2 } as never, optimizer: { type: 'sgd', lr: 0.1 } })).toThrow(RangeError);
    expect(() => net.gradients(x, { loss: 'l1', target: y, delta: 2 })).toThrow(/applies only to the 'huber' loss/);
  });

  it('step returns the loss before the update, and the update lowers it', () => {
    const net = new Mlp({ inputs: 2, layers: [{ units: 8, activation: 'tanh' }, { units: 1 }], seed: 2 }, { backend });
    const { x, y } = dataset(32, 8);
    const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 } });
    const before = net.gradients(x, { loss: 'mse', target: y }).loss!;
    const first = trainer.step(x, y);
    expect(first).toBeCloseTo(before, 6);
    expect(trainer.step(x, y)).toBeLessThan(first);
    expect(trainer.stepCount).toBe(2);
  });

  it('binary cross-entropy with logits trains and reports accuracy', async () => {
    const net = new Mlp({ inputs: 2, layers: [{ units: 16, activation: 'gelu' }, { units: 1 }], seed: 3 }, { backend });
    const { x, labels } = xorData(300, 9);
    const target = Float32Array.from(labels);
    const trainer = net.trainer({ loss: 'bce-with-logits', optimizer: { type: 'adam', lr: 3e-2 } });
    await trainer.fit(x, target, { epochs: 60, batchSize: 30 });
    const { accuracy } = await trainer.evaluate(x, target);
    expect(accuracy!).toBeGreaterThan(0.9);
  });
});

describe('learning-rate schedules', () => {
  it('step: lr * gamma ^ floor(t / stepSize)', () => {
    const { schedule } = makeSchedule({ type: 'step', stepSize: 10, gamma: 0.5 });
    expect([0, 9, 10, 25].map((t) => schedule(0.1, t, undefined))).toEqual([0.1, 0.1, 0.05, 0.025]);
  });

  it('cosine: from lr to minLr over the given steps', () => {
    const { schedule } = makeSchedule({ type: 'cosine', steps: 100, minLr: 0.01 });
    expect(schedule(0.1, 0, undefined)).toBeCloseTo(0.1, 12);
    expect(schedule(0.1, 50, undefined)).toBeCloseTo(0.055, 12);
    expect(schedule(0.1, 100, undefined)).toBeCloseTo(0.01, 12);
    expect(schedule(0.1, 500, undefined)).toBeCloseTo(0.01, 12);
  });

  it('cosine without steps needs fit to supply the total', () => {
    const net = new Mlp({ inputs: 1, layers: [{ units: 1 }] }, { backend: 'reference' });
    const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 }, schedule: { type: 'cosine' } });
    expect(() => trainer.step(Float32Array.of(1), Float32Array.of(1))).toThrow(/schedule.steps is required/);
  });
});

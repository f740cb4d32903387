// Lifetime, concurrency and worker threads (issue #6): dispose() during an async call finishes
// it cleanly and frees the model when it settles, calls in flight together give the results of
// the same calls one after another (bitwise), and the addon works in several worker_threads at
// once and survives a worker terminated mid-call. (Leak soaks and finalizers: 84.)
//
// The worker checks run the compiled package (dist/, built by `npm ci` / `npx tsc`).

import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Mlp, QuantizedMlp, info, setThreads } from '../lib/index.js';
import { loadNative } from '../lib/backend/native.js';
import { DIST, requireDist } from './child-support.js';
import { sameBits } from './fuzz-support.js';
import { backendsUnderTest, hasNative, randomArray, randomLabels } from './helpers.js';

const SPEC = { inputs: 16, layers: [{ units: 64, activation: 'relu' as const }, { units: 64, activation: 'relu' as const }, { units: 4 }], seed: 1 };


describe.each(backendsUnderTest())('lifetime on %s', (backend) => {
  it('dispose() while predictAsync, stepAsync or a quantised predictAsync runs: the call finishes with the right result', async () => {
    const x = randomArray(4096 * 16, 5);
    const target = randomArray(4096 * 4, 6);
    const twin = new Mlp(SPEC, { backend });
    const expected = twin.predict(x);
    const q = twin.quantize({ weights: 'int4', backend });
    const qExpected = q.predict(x);
    const expectedLoss = twin.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.01 } }).step(x, target);
    const net = new Mlp(SPEC, { backend });
    const pending = net.predictAsync(x);
    const step = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.01 } }).stepAsync(x, target);
    net.dispose();
    const qPending = q.predictAsync(x);
    q.dispose();
    expect(sameBits(await pending, expected)).toBe(true);
    expect(await step).toBe(expectedLoss);
    expect(sameBits(await qPending, qExpected)).toBe(true);
    await expect(net.predictAsync(x)).rejects.toMatchObject({ code: 'ERR_MLPKIT_DISPOSED' });
    await expect(q.predictAsync(x)).rejects.toMatchObject({ code: 'ERR_MLPKIT_DISPOSED' });
    twin.dispose();
  });

  it('arrays detached, overwritten or shrunk while predictAsync / stepAsync run: the call uses the values it was given, and an out that is gone rejects', async () => {
    // Native used to hand the arrays' memory to the thread pool: detaching x freed it under the
    // running kernel (ASan: heap-use-after-free).
    const net = new Mlp(SPEC, { backend });
    const q = net.quantize({ weights: 'int4', backend });
    const x = randomArray(4096 * 16, 11);
    const expected = net.predict(x);
    const qExpected = q.predict(x);
    const detach = (a: Float32Array) => structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] });
    for (const [model, want] of [[net, expected], [q, qExpected]] as const) {
      const a = x.slice();
      const pending = model.predictAsync(a);
      detach(a);
      expect(sameBits(await pending, want)).toBe(true);
      const b = x.slice();
      const written = model.predictAsync(b);
      b.fill(7);
      expect(sameBits(await written, want)).toBe(true);
      const out = new Float32Array(4096 * 4);
      const gone = model.predictAsync(x, out);
      detach(out);
      await expect(gone).rejects.toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      const resizable = new Float32Array(new ArrayBuffer(4096 * 4 * 4, { maxByteLength: 4096 * 4 * 4 }));
      const shrunk = model.predictAsync(x, resizable);
      (resizable.buffer as ArrayBuffer).resize(16);
      await expect(shrunk).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    }
    // A training step reads the x and target it was given, whatever happens to them after.
    const twin = new Mlp(SPEC, { backend });
    const target = randomArray(4096 * 4, 12);
    const options = { loss: 'mse' as const, optimizer: { type: 'adam' as const, lr: 1e-3 } };
    const expectedLoss = twin.trainer(options).step(x, target);
    const xs = x.slice();
    const ts = target.slice();
    const step = net.trainer(options).stepAsync(xs, ts);
    detach(xs);
    ts.fill(NaN);
    expect(await step).toBe(expectedLoss);
    expect(sameBits(net.getParameters(), twin.getParameters())).toBe(true);
    q.dispose();
    net.dispose();
    twin.dispose();
  });

  it('a predictAsync made before a step sees the weights before it, even when it runs in slices (the reference used to tear it)', async () => {
    const net = new Mlp(SPEC, { backend });
    const x = randomArray(8192 * 16, 13);
    const before = net.predict(x);
    const t = net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 0.1 } });
    const pending = net.predictAsync(x);
    const step = t.stepAsync(x.subarray(0, 64 * 16), randomArray(64 * 4, 14));
    const after = net.predictAsync(x);
    expect(sameBits(await pending, before)).toBe(true);
    await step;
    expect(sameBits(await after, net.predict(x))).toBe(true);
    expect(sameBits(await after, before)).toBe(false);
    net.dispose();
  });

  it('step, gradients, predictAsync, step on one model completes (the deadlock the fuzz suite found)', async () => {
    const net = new Mlp(SPEC, { backend });
    const t = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.01 } });
    const x = randomArray(300 * 16, 15);
    const y = randomArray(300 * 4, 16);
    t.step(x, y);
    net.gradients(x, { loss: 'mse', target: y });
    const pending = net.predictAsync(x);
    t.step(x, y); // waits, on native, for the predictAsync issued before it
    await pending;
    net.dispose();
  });

  it('dispose() during fit: fit rejects with ERR_MLPKIT_DISPOSED at its next step, nothing else breaks', async () => {
    const net = new Mlp(SPEC, { backend });
    const x = randomArray(512 * 16, 7);
    const labels = randomLabels(512, 4, 8);
    let steps = 0;
    const fitting = net.trainer({ loss: 'softmax-cross-entropy', optimizer: { type: 'adam', lr: 1e-3 } }).fit(x, labels, {
      epochs: 2000, batchSize: 32,
      onProgress: () => {
        if (++steps === 2) net.dispose();
      },
    });
    // onProgress fires at most every 100 ms; dispose from a timer too, whichever comes first.
    setTimeout(() => net.dispose(), 20);
    await expect(fitting).rejects.toMatchObject({ code: 'ERR_MLPKIT_DISPOSED' });
  });
});

describe.runIf(hasNative())('native lifetime (native only: the reference backend holds no native memory)', () => {
  it('a model disposed while its predictAsync runs is freed when the call settles', async () => {
    const addon = loadNative()!;
    const before = addon.info().liveModels as number;
    const net = new Mlp(SPEC, { backend: 'native' });
    const pending = net.predictAsync(randomArray(16384 * 16, 9));
    net.dispose();
    expect(addon.info().liveModels).toBe(before + 1); // the job still holds it
    await pending;
    expect(addon.info().liveModels).toBe(before);
  });
});

describe.runIf(hasNative())('thread count changed mid-call (native only)', () => {
  // The sparse model sized its per-thread top-k scratch by the thread count at the start of a
  // call and its tiles read the count again: setThreads() raised during a predictAsync wrote
  // past the scratch (a heap overflow ASan reported; scripts/sanitize.sh runs this file).
  it('setThreads() while sparse topk / predictor predictAsync calls run: each gives the result of the same call run alone', async () => {
    const before = info().threads;
    const dense = new Mlp({ inputs: 64, layers: [{ units: 512, activation: 'relu' }, { units: 4 }], seed: 3 }, { backend: 'native' });
    const calibration = randomArray(64 * 64, 4);
    const models = [
      await dense.sparsify({ mode: 'topk', k: 128, backend: 'native' }),
      await dense.sparsify({ mode: 'predictor', k: 128, rank: 16, epochs: 2, calibration, backend: 'native' }),
    ];
    const x = randomArray(64 * 1600, 5);
    try {
      for (const sparse of models) {
        setThreads(1);
        const expected = sparse.predict(x);
        for (const [from, to] of [[1, 8], [8, 1], [2, 16]]) {
          setThreads(from);
          const pending = [sparse.predictAsync(x), sparse.predictAsync(x)];
          setThreads(to);
          for (const got of await Promise.all(pending)) expect(sameBits(got, expected)).toBe(true);
        }
      }
    } finally {
      setThreads(before);
      for (const m of models) m.dispose();
      dense.dispose();
    }
  });
});

describe.each(backendsUnderTest())('calls in flight together on %s give the results of the same calls one after another', (backend) => {
  it('predictAsync, stepAsync and sync calls interleaved on one model (batches large enough to run on the thread pool)', async () => {
    const ops = Array.from({ length: 40 }, (_, i) => ['predictAsync', 'stepAsync', 'predict', 'stepAsync', 'getParameters', 'predictAsync', 'step', 'gradients'][(i * 5 + (i >> 2)) % 8]);
    const run = async (together: boolean) => {
      const net = new Mlp(SPEC, { backend });
      const t = net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-3 }, clipNorm: 1 });
      const results: Float32Array[] = [];
      const pending: Promise<void>[] = [];
      ops.forEach((op, i) => {
        const rows = backend === 'native' ? 256 + 64 * (i % 5) : 16 + (i % 5);
        const x = randomArray(rows * 16, i);
        const y = randomArray(rows * 4, i + 100);
        const record = (v: Float32Array | number | Promise<Float32Array | number>) =>
          Promise.resolve(v).then((r) => { results[i] = typeof r === 'number' ? Float32Array.of(r) : r; });
        let p: Promise<void>;
        switch (op) {
          case 'predictAsync': p = record(net.predictAsync(x)); break;
          case 'stepAsync': p = record(t.stepAsync(x, y)); break;
          case 'predict': p = record(net.predict(x)); break;
          case 'step': p = record(t.step(x, y)); break;
          case 'getParameters': p = record(net.getParameters()); break;
          default: p = record(net.gradients(x, { loss: 'mse', target: y }).parameters);
        }
        pending.push(p);
      });
      if (together) await Promise.all(pending);
      else for (const p of pending) await p;
      results.push(net.getParameters());
      net.dispose();
      return results;
    };
    // "One after another": each call awaited before the next is made.
    const sequential = async () => {
      const net = new Mlp(SPEC, { backend });
      const t = net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-3 }, clipNorm: 1 });
      const results: Float32Array[] = [];
      for (const [i, op] of ops.entries()) {
        const rows = backend === 'native' ? 256 + 64 * (i % 5) : 16 + (i % 5);
        const x = randomArray(rows * 16, i);
        const y = randomArray(rows * 4, i + 100);
        const v = op === 'predictAsync' ? await net.predictAsync(x) : op === 'stepAsync' ? await t.stepAsync(x, y) : op === 'predict' ? net.predict(x)
          : op === 'step' ? t.step(x, y) : op === 'getParameters' ? net.getParameters() : net.gradients(x, { loss: 'mse', target: y }).parameters;
        results.push(typeof v === 'number' ? Float32Array.of(v) : v);
      }
      results.push(net.getParameters());
      net.dispose();
      return results;
    };
    const [together, inTurn] = [await run(true), await sequential()];
    expect(together.length).toBe(inTurn.length);
    together.forEach((r, i) => expect(sameBits(r, inTurn[i]), `call ${i} (${ops[i] ?? 'final parameters'})`).toBe(true));
  });

  it('fit on eight models at once equals the same fits one after another', async () => {
    const x = randomArray(600 * 16, 21);
    const labels = randomLabels(600, 4, 22);
    const fitOne = (seed: number) => {
      const net = new Mlp({ ...SPEC, seed }, { backend });
      const t = net.trainer({ loss: 'softmax-cross-entropy', optimizer: { type: 'adamw', lr: 3e-3 }, schedule: { type: 'cosine' } });
      return t.fit(x, labels, { epochs: backend === 'native' ? 3 : 1, batchSize: 64, seed, validation: { x: x.subarray(0, 64 * 16), target: labels.subarray(0, 64) } })
        .then((r) => { const p = net.getParameters(); net.dispose(); return { history: r.history, steps: r.steps, p }; });
    };
    const seeds = [1, 2, 3, 4, 5, 6, 7, 8];
    const together = await Promise.all(seeds.map(fitOne));
    for (const [i, seed] of seeds.entries()) {
      const alone = await fitOne(seed);
      expect(together[i].history).toEqual(alone.history);
      expect(together[i].steps).toBe(alone.steps);
      expect(sameBits(together[i].p, alone.p)).toBe(true);
    }
  });
});

// ---- worker threads ----------------------------------------------------------------------------

/** A worker running `body` (ES module code, `mlpkit` imported, `post` to answer). */
function worker(body: string, workerData: unknown = null): Worker {
  requireDist();
  const code = `import { parentPort, workerData } from 'node:worker_threads';\nimport * as mlpkit from ${JSON.stringify(DIST.href)};\n` +
    `const post = (m) => parentPort.postMessage(m);\n${body}`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), { workerData, env: process.env });
}

function message<T>(w: Worker): Promise<T> {
  return new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
}

// What each worker computes, and the main thread too: predictions, a few training steps, a
// quantised model's predictions. Deterministic, so every thread must get the same bits.
const WORK = `
  const backend = workerData.backend;
  const spec = { inputs: 16, layers: [{ units: 64, activation: 'relu' }, { units: 64, activation: 'relu' }, { units: 4 }], seed: 1 };
  const rnd = (n, s) => Float32Array.from({ length: n }, (_, i) => Math.sin(s * 7.1 + i * 0.37));
  const net = new mlpkit.Mlp(spec, { backend });
  const t = net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-3 } });
  const x = rnd(300 * 16, 1), y = rnd(300 * 4, 2);
  const losses = [];
  for (let i = 0; i < 10; i++) losses.push(await t.stepAsync(x, y));
  const predicted = await net.predictAsync(x);
  const q = net.quantize({ weights: 'int8', activations: 'int8', backend });
  const quantised = await q.predictAsync(x);
  const result = { backend: net.backend, losses, predicted, quantised, params: net.getParameters() };
  q.dispose();
  net.dispose();
`;

describe.each(backendsUnderTest())('worker_threads on %s', (backend) => {
  it('the addon loads and works in four workers at once, with the main thread\'s results', async () => {
    const run = new Function('mlpkit', 'workerData', `return (async () => { ${WORK}; return result; })();`) as (m: unknown, d: unknown) => Promise<Record<string, unknown>>;
    requireDist();
    const main = await run(await import(DIST.href), { backend });
    const workers = Array.from({ length: 4 }, () => worker(`${WORK}; post(result);`, { backend }));
    const results = await Promise.all(workers.map((w) => message<Record<string, unknown>>(w)));
    await Promise.all(workers.map((w) => w.terminate()));
    for (const r of results) {
      expect(r.backend).toBe(main.backend);
      expect(r.losses).toEqual(main.losses);
      for (const key of ['predicted', 'quantised', 'params']) expect(sameBits(r[key] as Float32Array, main[key] as Float32Array), key).toBe(true);
    }
  });

  it('terminating a worker mid-call (predictAsync, fit, a long sync predict, a quantised predictAsync, during load) leaves the main thread working', async () => {
    const scenarios = [
      `const net = new mlpkit.Mlp({ inputs: 256, layers: [{ units: 1024, activation: 'relu' }, { units: 1024 }] }, { backend: workerData.backend });
       const x = new Float32Array(8192 * 256).fill(0.1);
       const pending = [net.predictAsync(x), net.predictAsync(x), net.predictAsync(x)];
       post('busy'); await Promise.all(pending); post('done');`,
      `const net = new mlpkit.Mlp({ inputs: 64, layers: [{ units: 512, activation: 'relu' }, { units: 8 }] }, { backend: workerData.backend });
       const x = new Float32Array(4096 * 64).fill(0.1), y = new Float32Array(4096 * 8);
       const fitting = net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-3 } }).fit(x, y, { epochs: 1000, batchSize: 1024 });
       post('busy'); await fitting; post('done');`,
      `const net = new mlpkit.Mlp({ inputs: 256, layers: [{ units: 1024, activation: 'relu' }, { units: 1024 }] }, { backend: workerData.backend });
       const x = new Float32Array(2048 * 256).fill(0.1);
       post('busy'); for (let i = 0; i < 20; i++) net.predict(x); post('done');`,
      `const net = new mlpkit.Mlp({ inputs: 512, layers: [{ units: 2048, activation: 'relu' }, { units: 512 }] }, { backend: workerData.backend });
       const q = net.quantize({ weights: 'int4', activations: 'int8', backend: workerData.backend });
       const x = new Float32Array(4096 * 512).fill(0.1);
       const pending = [q.predictAsync(x), q.predictAsync(x)];
       post('busy'); await Promise.all(pending); post('done');`,
      `post('busy'); const nets = Array.from({ length: 200 }, (_, i) => new mlpkit.Mlp({ inputs: 8, layers: [{ units: 64 }], seed: i }, { backend: workerData.backend })); post('done');`,
    ];
    const net = new Mlp(SPEC, { backend });
    const x = randomArray(64 * 16, 3);
    const expected = net.predict(x);
    for (const [i, body] of scenarios.entries()) {
      const w = worker(body, { backend });
      const exited = new Promise<number>((resolve) => w.once('exit', resolve));
      w.on('error', () => {}); // a termination mid-import may surface as an error event; the exit is what counts
      if (i < scenarios.length - 1) expect(await message<string>(w)).toBe('busy');
      // The main thread keeps working while the worker is busy, and after it is gone.
      expect(sameBits(await net.predictAsync(x), expected)).toBe(true);
      await w.terminate();
      await exited;
      expect(sameBits(net.predict(x), expected), `after scenario ${i}`).toBe(true);
    }
    // Terminated at once, while it loads the package and the addon.
    for (let i = 0; i < 3; i++) {
      const w = worker(`post('loaded');`);
      w.on('error', () => {});
      await w.terminate();
    }
    const again = new Mlp(SPEC, { backend });
    expect(sameBits(again.predict(x), expected)).toBe(true);
    again.dispose();
    net.dispose();
  }, 60_000);
});

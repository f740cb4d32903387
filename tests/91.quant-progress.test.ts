// Progress and cancellation of quantize and quantizeAsync (QuantizeOptions.onProgress, .signal;
// lib/quant/progress.ts): one report per layer quantised; with calibration, one per layer
// calibrated and one for the model measured last; in order, the same from both calls; the
// model unchanged by watching it (or by a callback that changes the float model or the
// calibration rows); an abort or a throw from the callback stops the call with that error, and
// quantizeAsync's worker with it, freeing what was built and leaving no listener on the signal.
//
// quantizeAsync runs dist/quant/quantize-worker.js: run `npx tsc -p tsconfig.json` first.

import { getEventListeners, once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { Mlp, type QuantizeProgress, type QuantizedMlp } from '../lib/index.js';
import { loadNative } from '../lib/backend/native.js';
import { errorStats } from '../lib/quant/calibrate.js';
import { quantizeInWorker } from '../lib/quant/quantize-async.js';
import { backendsUnderTest, expectSameBits, gaussian } from './helpers.js';

const INPUTS = 24;
const LAYERS = 3;
const CALIBRATION = gaussian(64 * INPUTS, 5, 1);

function model(backend: 'native' | 'reference'): Mlp {
  const net = new Mlp({ inputs: INPUTS, layers: [{ units: 40, activation: 'relu' }, { units: 33, activation: 'relu' }, { units: 3 }] }, { backend });
  net.setParameters(gaussian(net.parameterCount, 11, 0.2));
  return net;
}

/** The reports a call should make, without the times. */
function expectedSteps(calibrated: boolean): Omit<QuantizeProgress, 'elapsedSeconds'>[] {
  const perLayer = (stage: QuantizeProgress['stage']) => Array.from({ length: LAYERS }, (_, layer) => ({ stage, layer }));
  const order = calibrated
    ? [...perLayer('quantize'), ...perLayer('calibrate'), { stage: 'measure' as const, layer: null }]
    : perLayer('quantize');
  return order.map((s, i) => ({ ...s, layers: LAYERS, step: i + 1, steps: order.length }));
}

function withoutTimes(seen: QuantizeProgress[]): Omit<QuantizeProgress, 'elapsedSeconds'>[] {
  return seen.map(({ elapsedSeconds: _, ...rest }) => rest);
}

function expectTimes(seen: QuantizeProgress[]): void {
  seen.forEach((p, i) => {
    expect(Number.isFinite(p.elapsedSeconds) && p.elapsedSeconds >= 0, `report ${i}: elapsedSeconds ${p.elapsedSeconds}`).toBe(true);
    if (i > 0) expect(p.elapsedSeconds).toBeGreaterThanOrEqual(seen[i - 1].elapsedSeconds);
  });
}

function expectSamePredictions(a: QuantizedMlp, b: QuantizedMlp, what: string): void {
  expect(b.layers, what).toEqual(a.layers);
  expectSameBits(b.predict(CALIBRATION), a.predict(CALIBRATION), what);
}

describe.each(backendsUnderTest())('quantize progress and abort (%s)', (backend) => {
  it.each([false, true])('reports each step in order, the same sync and async, and changes nothing (calibration %s)', async (calibrated) => {
    const net = model(backend);
    const base = { weights: 'int4' as const, ...(calibrated ? { calibration: CALIBRATION } : {}) };
    const plain = net.quantize(base);
    const seenSync: QuantizeProgress[] = [];
    const watched = net.quantize({ ...base, onProgress: (p) => seenSync.push(p) });
    const seenAsync: QuantizeProgress[] = [];
    const watchedAsync = await net.quantizeAsync({ ...base, onProgress: (p) => seenAsync.push(p) });
    expect(withoutTimes(seenSync)).toEqual(expectedSteps(calibrated));
    expect(withoutTimes(seenAsync)).toEqual(expectedSteps(calibrated));
    expectTimes(seenSync);
    expectTimes(seenAsync);
    expectSamePredictions(plain, watched, 'quantize with onProgress');
    expectSamePredictions(plain, watchedAsync, 'quantizeAsync with onProgress');
    expect(JSON.stringify(watched.stats)).toBe(JSON.stringify(plain.stats));
    for (const m of [plain, watched, watchedAsync, net]) m.dispose();
  });

  it('quantize stops at the step where onProgress aborts the signal, with its reason', () => {
    const net = model(backend);
    // Aborts at the first step, the last 'quantize', the first 'calibrate' and the last step
    // ('measure', after the whole work: the call still stops, and frees the model it built),
    // counting the native quantised models alive (quantize's backend is 'auto': native wherever
    // it loads).
    const liveQuantModels = () => loadNative()?.info().liveQuantModels ?? 0;
    const liveBefore = liveQuantModels();
    for (const stopAt of [1, LAYERS, LAYERS + 1, 2 * LAYERS + 1]) {
      const controller = new AbortController();
      const seen: number[] = [];
      const call = () => net.quantize({
        weights: 'int8', calibration: CALIBRATION, signal: controller.signal,
        onProgress: (p) => {
          seen.push(p.step);
          if (p.step === stopAt) controller.abort();
        },
      });
      expect(call, `abort at step ${stopAt}`).toThrow(expect.objectContaining({ name: 'AbortError' }));
      expect(seen).toEqual(Array.from({ length: stopAt }, (_, i) => i + 1));
      expect(liveQuantModels(), `native quantised models left after an abort at step ${stopAt}`).toBe(liveBefore);
    }
    const reason = new Error('no longer needed');
    expect(() => net.quantize({ weights: 'int8', signal: AbortSignal.abort(reason) })).toThrow(reason);
    // The model is as it was: the next call gives the usual result.
    const again = net.quantize({ weights: 'int8', calibration: CALIBRATION });
    expect(again.stats!.output.relativeRms).toBeLessThan(0.05);
    again.dispose();
    net.dispose();
  });

  it('quantizeAsync rejects with the reason when aborted before, during or from onProgress', async () => {
    const net = model(backend);
    const reason = new Error('stop');
    await expect(net.quantizeAsync({ weights: 'int8', signal: AbortSignal.abort(reason) })).rejects.toBe(reason);

    // Aborted right after the call: the worker is still starting.
    const early = new AbortController();
    const pending = net.quantizeAsync({ weights: 'int4', calibration: CALIBRATION, signal: early.signal });
    early.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });

    // From the callback: no report after the abort reaches the caller.
    const controller = new AbortController();
    const seen: number[] = [];
    let exited: Promise<unknown> | null = null;
    await expect(quantizeInWorker(net, {
      weights: 'int8', calibration: CALIBRATION, signal: controller.signal,
      onProgress: (p) => {
        seen.push(p.step);
        if (p.step === 2) controller.abort(reason);
      },
    }, { onWorker: (w) => (exited = once(w, 'exit')) })).rejects.toBe(reason);
    await exited; // any message the worker had sent is in by now
    expect(seen).toEqual([1, 2]);

    // An abort after the call settled changes nothing.
    const late = new AbortController();
    const q = await net.quantizeAsync({ weights: 'int8', signal: late.signal });
    late.abort();
    expect(q.predict(CALIBRATION).length).toBe(64 * 3);
    q.dispose();
    net.dispose();
  });

  it('a throw from onProgress stops either call with that error', async () => {
    const net = model(backend);
    const boom = () => {
      throw new RangeError('from the callback');
    };
    expect(() => net.quantize({ weights: 'int8', calibration: CALIBRATION, onProgress: boom })).toThrow(new RangeError('from the callback'));
    const err = await net.quantizeAsync({ weights: 'int8', calibration: CALIBRATION, onProgress: boom }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RangeError);
    expect((err as Error).message).toBe('from the callback');
    net.dispose();
  });

  it('a callback that changes or disposes the float model, or changes the calibration rows, does not change the result', () => {
    const plain = model(backend);
    const want = plain.quantize({ weights: 'int8', calibration: CALIBRATION });
    const changed = model(backend);
    const got = changed.quantize({
      weights: 'int8', calibration: CALIBRATION,
      onProgress: (p) => p.step === 1 && changed.setParameters(changed.getParameters().map((v) => 2 * v)),
    });
    const disposed = model(backend);
    const got2 = disposed.quantize({ weights: 'int8', calibration: CALIBRATION, onProgress: (p) => p.step === 1 && disposed.dispose() });
    // The rows are read after the first report (calibration, then the measure): from a copy.
    const rows = CALIBRATION.slice();
    const got3 = plain.quantize({ weights: 'int8', calibration: rows, onProgress: (p) => p.step === 1 && rows.fill(7) });
    for (const q of [got, got2, got3]) {
      expect(JSON.stringify(q.stats)).toBe(JSON.stringify(want.stats));
      expectSamePredictions(want, q, 'watched by a callback that changes the model or the rows');
    }
    for (const m of [want, got, got2, got3, plain, changed]) m.dispose();
  });

  it('stats.output is the error against the float model\'s own predict (taken from calibration\'s float layers)', async () => {
    // quantize takes the float outputs from its layer-by-layer calibration, not from a run of
    // net.predict. The two differ by float32 rounding alone: identical on the native backend here,
    // ~1e-8 of the value on the reference one; on an error of ~1e-2 of the output scale, a float
    // reference moved by <= ~1e-6 of the scale moves the stat by <= 1e-4 of itself.
    const net = new Mlp({
      inputs: 3, encoding: { type: 'frequency', octaves: 2 },
      layers: [{ units: 37, activation: 'gelu' }, { units: 20, activation: 'leaky_relu', alpha: 0.1 }, { units: 2 }], seed: 5,
    }, { backend });
    const x = gaussian(300 * 3, 6, 1);
    for (const options of [{ weights: 'int8' as const }, { weights: 'int4' as const, activations: 'int8' as const }]) {
      // Neither call runs the float model itself (a CPU model's outputs come from calibration).
      const predict = vi.spyOn(net, 'predict');
      const predictAsync = vi.spyOn(net, 'predictAsync');
      const made = [net.quantize({ ...options, calibration: x }), await net.quantizeAsync({ ...options, calibration: x })];
      expect(predict).not.toHaveBeenCalled();
      expect(predictAsync).not.toHaveBeenCalled();
      predict.mockRestore();
      predictAsync.mockRestore();
      for (const q of made) {
        const direct = errorStats(q.predict(x), net.predict(x));
        for (const key of ['relativeRms', 'relativeMax'] as const) {
          expect(Math.abs(q.stats!.output[key] / direct[key] - 1), `${options.weights} ${key}`).toBeLessThan(1e-4);
        }
        q.dispose();
      }
    }
    net.dispose();
  });

  it('quantizeAsync leaves no listener on the signal, however it settles', async () => {
    const net = model(backend);
    const signal = new AbortController().signal;
    const q = await net.quantizeAsync({ weights: 'int8', calibration: CALIBRATION, signal, onProgress: () => {} });
    q.dispose();
    await net.quantizeAsync({ weights: 'int8', signal, onProgress: () => { throw new Error('x'); } }).catch(() => {});
    await net.quantizeAsync({ weights: 'int8', rounding: 3, signal } as never).catch(() => {}); // refused before any work
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
    const controller = new AbortController();
    await net.quantizeAsync({ weights: 'int8', signal: controller.signal, onProgress: () => controller.abort() }).catch(() => {});
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    net.dispose();
  });

  it('refuses an onProgress that is not a function and a signal that is not an AbortSignal', async () => {
    const net = model(backend);
    const badProgress = { weights: 'int8', onProgress: 'yes' } as never;
    const badSignal = { weights: 'int8', signal: { aborted: false } } as never;
    const notAFunction = expect.objectContaining({ name: 'TypeError', message: "Expected a function for options.onProgress but received string 'yes'" });
    const notASignal = expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/^Expected an AbortSignal for options\.signal but received /) });
    expect(() => net.quantize(badProgress)).toThrow(notAFunction);
    await expect(net.quantizeAsync(badProgress)).rejects.toThrow(notAFunction);
    expect(() => net.quantize(badSignal)).toThrow(notASignal);
    await expect(net.quantizeAsync(badSignal)).rejects.toThrow(notASignal);
    net.dispose();
  });
});

describe('quantizeAsync: an abort or a throw from onProgress ends the worker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mlpkit-qp-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(['abort', 'throw'])('a worker that never answers is terminated (onProgress: %s)', async (how) => {
    // The worker reports one step, then keeps itself alive with a timer: it exits only when
    // terminated (without that, this test times out).
    const path = join(dir, `${how}.mjs`);
    writeFileSync(path, "import { parentPort } from 'node:worker_threads';\n" +
      "parentPort.postMessage({ progress: { stage: 'quantize', layer: 0, layers: 1, step: 1, steps: 1, elapsedSeconds: 0 } });\n" +
      'setInterval(() => {}, 1000);\n');
    const net = new Mlp({ inputs: 4, layers: [{ units: 3 }] });
    const controller = new AbortController();
    const onProgress = how === 'abort' ? () => controller.abort() : () => { throw new RangeError('stop'); };
    let exited: Promise<unknown> | null = null;
    const err = await quantizeInWorker(net, { weights: 'int8', signal: controller.signal, onProgress },
      { workerUrl: pathToFileURL(path), onWorker: (w) => (exited = once(w, 'exit')) }).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject(how === 'abort' ? { name: 'AbortError' } : { name: 'RangeError', message: 'stop' });
    expect(exited).not.toBeNull();
    await exited;
    net.dispose();
  });
});

// Sparse models as a caller uses them: one buffer for the inputs and the outputs (predict(x, out)
// with out inside x, as Mlp.predict allows) must give what separate buffers give, on both
// backends, sync and async, in every mode.

import { describe, expect, it } from 'vitest';
import { Mlp, type SparsifyOptions } from '../lib/index.js';
import { backendsUnderTest, expectSameBits, randomArray } from './helpers.js';

const MODES: [string, SparsifyOptions][] = [
  ['exact', { mode: 'exact' }],
  ['topk', { mode: 'topk', k: 3 }],
  ['threshold', { mode: 'threshold', threshold: 0.05 }],
];

describe.each(backendsUnderTest())('sparse predict with out overlapping x on %s', (backend) => {
  it.each(MODES)('%s: out = x.subarray(...) gives the outputs of separate buffers', async (_, options) => {
    const net = new Mlp({ inputs: 4, layers: [{ units: 12, activation: 'relu' }, { units: 8, activation: 'relu' }, { units: 2 }], seed: 3 }, { backend });
    const s = await net.sparsify({ ...options, backend });
    for (const batch of [2, 3, 17]) {
      const x = randomArray(batch * 4, batch + 11, 2);
      const want = s.predict(x.slice());
      // out is the second half of x's buffer: row 0's outputs land on inputs of later rows.
      const shared = x.slice();
      const out = shared.subarray(batch * 2, batch * 4);
      s.predict(shared, out);
      expectSameBits(out, want, `predict batch ${batch}`);
      const sharedAsync = x.slice();
      const outAsync = sharedAsync.subarray(batch * 2, batch * 4);
      await s.predictAsync(sharedAsync, outAsync);
      expectSameBits(outAsync, want, `predictAsync batch ${batch}`);
    }
    expect(s.backend).toBe(backend);
    s.dispose();
    net.dispose();
  });
});

describe.each(backendsUnderTest())('sparse predictAsync on %s: arrays changed in flight', (backend) => {
  it('x is read when the call is made, a detached out rejects, a batch over many slices gives the sync result, dispose() lets it finish', async () => {
    // 64 -> 256 -> 8 with a predictor: a 700-row batch spans several slices and 16-row tiles.
    const net = new Mlp({ inputs: 64, layers: [{ units: 256, activation: 'relu' }, { units: 8 }], seed: 4 }, { backend });
    const calibration = randomArray(64 * 40, 5);
    const s = await net.sparsify({ mode: 'predictor', k: 32, rank: 8, epochs: 1, calibration, denseFromRows: 8, backend });
    const x = randomArray(700 * 64, 6);
    const want = s.predict(x);
    const changed = x.slice();
    const pending = s.predictAsync(changed);
    changed.fill(7);
    expectSameBits(await pending, want, 'x written after the call');
    const tail = s.predictAsync(x.subarray(0, 5 * 64)); // a short last tile: denseFromRows 8 > 5
    expectSameBits(await tail, s.predict(x.subarray(0, 5 * 64)), '5 rows');

    const out = new Float32Array(700 * 8);
    const detached = s.predictAsync(x, out);
    structuredClone(out.buffer, { transfer: [out.buffer] });
    await expect(detached).rejects.toThrow(/detached or resized/);

    const finishing = s.predictAsync(x);
    s.dispose();
    expectSameBits(await finishing, want, 'disposed in flight');
    await expect(s.predictAsync(x)).rejects.toThrow(/disposed/);
    net.dispose();
  });
});

describe.each(backendsUnderTest())('sparsify in predictor mode on %s: the model changed while it trains', (backend) => {
  it('dispose() or setParameters() right after the call changes neither its success nor its result', async () => {
    const spec = { inputs: 16, layers: [{ units: 64, activation: 'relu' as const }, { units: 3 }], seed: 1 };
    const calibration = randomArray(64 * 16, 5);
    const options: SparsifyOptions = { mode: 'predictor', calibration, k: 8, epochs: 2, backend };
    const quiet = new Mlp(spec, { backend });
    const want = await quiet.sparsify(options);
    const x = randomArray(5 * 16, 6);

    const disposed = new Mlp(spec, { backend });
    const pending = disposed.sparsify(options);
    disposed.dispose();
    const a = await pending;
    expectSameBits(a.predict(x), want.predict(x), 'disposed at once');

    const retrained = new Mlp(spec, { backend });
    const later = retrained.sparsify(options);
    await new Promise((resolve) => setTimeout(resolve, 0));
    retrained.setParameters(retrained.getParameters().fill(0.5));
    const b = await later;
    expectSameBits(b.predict(x), want.predict(x), 'parameters changed a tick later');
    expect(b.stats!.output.relativeRms).toBe(want.stats!.output.relativeRms);
    for (const m of [quiet, want, a, retrained, b]) m.dispose();
  });
});

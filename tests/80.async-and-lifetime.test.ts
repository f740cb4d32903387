// Async calls leave the event loop free, agree with sync calls, and survive dispose() mid-flight.

import { describe, expect, it } from 'vitest';
import { Mlp, info } from '../lib/index.js';
import { backendsUnderTest, randomArray } from './helpers.js';

describe.each(backendsUnderTest())('async on %s', (backend) => {
  const big = () => new Mlp({ inputs: 64, layers: [{ units: 256, activation: 'relu' }, { units: 256, activation: 'relu' }, { units: 8 }], seed: 1 }, { backend });

  it('predictAsync lets other callbacks run before it settles', async () => {
    const net = big();
    // Enough work that it cannot finish before the event loop turns: ~5 G multiply-adds native
    // (tens of ms even with every core), a few hundred M on the reference (chunked JS).
    const rows = backend === 'native' ? 65536 : 4096;
    const x = randomArray(rows * 64, 1);
    const events: string[] = [];
    const pending = net.predictAsync(x).then(() => events.push('predicted'));
    setImmediate(() => events.push('immediate'));
    await pending;
    expect(events).toEqual(['immediate', 'predicted']);
  });

  it('many concurrent predictAsync calls equal their sync results', async () => {
    const net = big();
    const inputs = Array.from({ length: 8 }, (_, i) => randomArray((i + 1) * 64, i));
    const results = await Promise.all(inputs.map((x) => net.predictAsync(x)));
    results.forEach((y, i) => expect(y).toEqual(net.predict(inputs[i])));
  });

  it('predictAsync writes into a caller buffer', async () => {
    const net = big();
    const x = randomArray(3 * 64, 2);
    const out = new Float32Array(3 * 8);
    const y = await net.predictAsync(x, out);
    expect(y).toBe(out);
    expect(out).toEqual(net.predict(x));
  });

  it('dispose() while predictAsync is in flight finishes or rejects cleanly', async () => {
    const net = big();
    const x = randomArray(2048 * 64, 3);
    const pending = net.predictAsync(x).then(
      (y) => ({ ok: true as const, y }),
      (err: Error) => ({ ok: false as const, err }),
    );
    net.dispose();
    const r = await pending;
    if (r.ok) expect(r.y.length).toBe(2048 * 8);
    else expect(r.err.message).toMatch(/disposed/);
  });

  it('sync predict into a caller buffer returns that buffer', () => {
    const net = big();
    const x = randomArray(64, 4);
    const out = new Float32Array(8);
    expect(net.predict(x, out)).toBe(out);
  });

  it('creating and disposing many models works', () => {
    for (let i = 0; i < 2000; i++) {
      const net = new Mlp({ inputs: 4, layers: [{ units: 8, activation: 'relu' }, { units: 1 }], seed: i }, { backend });
      net.predict(new Float32Array(4));
      net.dispose();
    }
    expect(true).toBe(true);
  });
});

describe('info()', () => {
  it('reports version, backend, ISA, threads and CUDA', () => {
    const i = info();
    expect(i.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(['native', 'reference', 'cuda']).toContain(i.backend);
    expect(typeof i.isa).toBe('string');
    expect(i.threads).toBeGreaterThanOrEqual(1);
    expect(typeof i.cuda.available).toBe('boolean');
    expect(Array.isArray(i.cuda.devices)).toBe(true);
    if (!i.cuda.available) expect(i.cuda.reason).toMatch(/\w/);
    expect(typeof i.native.available).toBe('boolean');
    if (process.env.MLPKIT_BACKEND === 'reference') expect(i.backend).toBe('reference');
  });
});

describe.each(backendsUnderTest())('dispose during predictAsync of a quantised model of several segments, %s', (backend) => {
  // Calibration keeps layer 0 on float inputs (feature 0 is an outlier int8 rows would crush)
  // and layer 1 on int8: two backend models run one after the other. dispose() between them
  // used to free the second before the call reached it.
  it('lets the pending call finish with its result', async () => {
    const k = 32;
    const net = new Mlp({ inputs: k, layers: [{ units: 64, activation: 'relu' }, { units: 2 }], seed: 1 }, { backend });
    const p = net.getParameters();
    for (let j = 0; j < 64; j++) p[j * k] *= 1e-4;
    net.setParameters(p);
    const cal = new Float32Array(64 * k).map((_, i) => (i % k === 0 ? 1e4 : Math.sin(i)));
    const q = net.quantize({ weights: 'int8', activations: 'int8', calibration: cal, equalize: false, backend });
    expect(q.layers.map((l) => l.activations)).toEqual(['float', 'int8']);
    const want = q.predict(cal);
    const pending = q.predictAsync(cal);
    q.dispose();
    expect(await pending).toEqual(want);
    expect(() => q.predict(cal)).toThrow(/disposed/);
    await expect(q.predictAsync(cal)).rejects.toThrow(/disposed/);
    net.dispose();
  });
});

// One million sync batch-1 predicts leave the process's memory flat: the hot path allocates
// nothing (scratch is per thread and reused, the output buffer is the caller's). The budget of
// 4 MB covers allocator and V8 noise; a leak of even 8 bytes per call would show as 8 MB.

import { describe, expect, it } from 'vitest';
import { Mlp } from '../lib/index.js';
import { hasNative, randomArray } from './helpers.js';

describe.runIf(hasNative())('predict soak', () => {
  it('1,000,000 batch-1 predicts keep RSS within 4 MB', () => {
    const net = new Mlp({ inputs: 32, layers: [64, 64, 64, 64].map((units) => ({ units, activation: 'relu' as const })).concat([{ units: 16, activation: 'none' as const }]), seed: 1 }, { backend: 'native' });
    const x = randomArray(32, 1);
    const out = new Float32Array(16);
    for (let i = 0; i < 20_000; i++) net.predict(x, out); // warm up: JIT, scratch, allocator
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 1_000_000; i++) net.predict(x, out);
    const grown = process.memoryUsage().rss - before;
    expect(grown).toBeLessThan(4 * 1024 * 1024);
    expect(Number.isFinite(out[0])).toBe(true);
    net.dispose();
  }, 60_000);
});

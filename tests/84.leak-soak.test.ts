// Leak soaks (issue #6): 100,000 create/dispose cycles and tens of thousands of async calls keep
// memory flat, and models dropped without dispose() are freed by their finalizers. Each runs in a
// fresh `node --expose-gc` on the compiled package (child-support.ts), so a collection can be
// asked for and nothing else in the process moves the numbers. (1,000,000 sync predicts: 85.)

import { describe, expect, it } from 'vitest';
import { MB, child } from './child-support.js';
import { hasNative } from './helpers.js';

// One backend: the one models get by default (native when it loads). The reference backend holds
// no native memory, and MLPKIT_BACKEND=reference npm test soaks it on its own.
const defaultBackend = hasNative() ? 'native' : 'reference';

describe.each([defaultBackend])('leak soaks on %s', (backend) => {
  // Every 2,000 cycles the heap is collected and the event loop turns, as it would in a server:
  // Node-API runs the finalizers of collected wrappers from the loop, so a synchronous loop of
  // 100,000 cycles would only measure how many wrappers wait for it, and lazy collection how much
  // garbage V8 lets pile up. Freed memory stays with the allocator, so the warm-up sets the
  // high-water marks first. RSS is measured outside V8's heap (see child()), plus the live heap:
  // a leak of 100 bytes a cycle fails the 10 MB budget; a leaked model (~3 KB) would be 300 MB.
  it('100,000 create/dispose cycles keep RSS flat (and the native live count at its start)', async () => {
    const r = await child(`
      const spec = { inputs: 8, layers: [{ units: 16, activation: 'relu' }, { units: 2 }] };
      const x = new Float32Array(8);
      const cycles = async (n) => {
        for (let i = 0; i < n; i++) {
          const net = new mlpkit.Mlp({ ...spec, seed: i }, { backend: '${backend}' });
          net.predict(x);
          net.dispose();
          if (i % 2000 === 1999) { gc(); await tick(); }
        }
      };
      await cycles(20000); // warm up: JIT, allocator and heap high-water marks
      await settle();
      const live = loadNative()?.info().liveModels ?? 0;
      const before = rss();
      const heapBefore = heap();
      await cycles(100000);
      await settle();
      out.grownMb = (rss() - before) / ${MB};
      out.heapGrownMb = (heap() - heapBefore) / ${MB};
      // A second round: a leak grows every round by the same amount, while the allocator or V8
      // may take one more step of address space (16 MB) once, in either round.
      const before2 = rss();
      await cycles(100000);
      await settle();
      out.grownMb2 = (rss() - before2) / ${MB};
      out.liveBefore = live;
      out.liveAfter = loadNative()?.info().liveModels ?? 0;
    `, 50_000);
    expect(Math.min(r.grownMb as number, r.grownMb2 as number), `grew ${r.grownMb} MB, then ${r.grownMb2} MB`).toBeLessThan(10);
    expect(r.heapGrownMb as number).toBeLessThan(2);
    expect(r.liveAfter).toBe(r.liveBefore);
  }, 60_000);

  it('20,000 predictAsync and 5,000 stepAsync calls keep RSS flat', async () => {
    const r = await child(`
      const net = new mlpkit.Mlp({ inputs: 8, layers: [{ units: 32, activation: 'relu' }, { units: 2 }], seed: 1 }, { backend: '${backend}' });
      const t = net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-3 } });
      const x = new Float32Array(8 * 4).fill(0.5), y = new Float32Array(2 * 4).fill(0.1);
      const round = async (n) => { for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: 50 }, () => net.predictAsync(x))); for (let i = 0; i < n / 4; i++) await t.stepAsync(x, y); };
      await round(4000);
      await settle();
      const before = rss();
      await round(20000);
      await settle();
      out.grownMb = (rss() - before) / ${MB};
      net.dispose();
    `);
    expect(r.grownMb as number).toBeLessThan(16);
  }, 60_000);

});

describe.runIf(hasNative())('finalizers (native only: the reference backend holds no native memory)', () => {
  it('models, quantised (net.quantize, QuantizedMlp.fromLayers, qmatmul) and sparse models dropped without dispose() are freed once collected', async () => {
    const r = await child(`
      const addon = loadNative();
      const base = addon.info();
      const make = (i) => {
        const net = new mlpkit.Mlp({ inputs: 8, layers: [{ units: 32, activation: 'relu' }, { units: 4 }], seed: i }, { backend: 'native' });
        net.predict(new Float32Array(8));
        if (i % 10 === 0) net.quantize({ weights: 'int8', backend: 'native' }).predict(new Float32Array(8));
        if (i % 10 === 5) sparse.push(net.sparsify({ mode: 'exact', backend: 'native' }).then((s) => s.predict(new Float32Array(8))));
        // A model from quantised layers, and qmatmul's own one-layer model (disposed at once).
        if (i % 10 === 3) mlpkit.QuantizedMlp.fromLayers([layer], { activations: 'int8', backend: 'native' }).predict(new Float32Array(8));
        if (i % 10 === 7) mlpkit.qmatmul(new Float32Array(8), layer, { backend: 'native' });
      };
      const layer = mlpkit.quantizeLayer(new Float32Array(32 * 8).fill(0.25), null, 8, 32, 'relu', 0, { format: 'int4' });
      const sparse = [];
      for (let i = 0; i < 10000; i++) make(i);
      await Promise.all(sparse.splice(0));
      out.peak = addon.info().liveModels - base.liveModels;
      const live = (n) => n.liveModels > base.liveModels || n.liveQuantModels > base.liveQuantModels || n.liveSparseModels > base.liveSparseModels;
      for (let i = 0; i < 50 && live(addon.info()); i++) await settle();
      out.models = addon.info().liveModels - base.liveModels;
      out.quantModels = addon.info().liveQuantModels - base.liveQuantModels;
      out.sparseModels = addon.info().liveSparseModels - base.liveSparseModels;
      out.sparseMade = typeof addon.info().liveSparseModels === 'number';
      // And memory comes back: another 10,000 dropped models do not grow RSS once collected.
      const before = rss();
      for (let i = 0; i < 10000; i++) make(i);
      await Promise.all(sparse.splice(0));
      for (let i = 0; i < 50 && addon.info().liveModels > base.liveModels; i++) await settle();
      out.grownMb = (rss() - before) / ${MB};
    `);
    expect(r.models).toBe(0);
    expect(r.quantModels).toBe(0);
    expect(r.sparseModels).toBe(0);
    expect(r.sparseMade).toBe(true);
    expect(r.grownMb as number).toBeLessThan(24);
  }, 60_000);

});

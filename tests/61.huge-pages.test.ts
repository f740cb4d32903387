// Large arrays that JavaScript allocates and writes whole (a file's bytes, decoded tensors, a
// model's parameters, a file to save) are offered to transparent huge pages before their first
// write (lib/huge-pages.ts, the addon's offerHugePages). The offer is a hint: it must keep every
// byte, accept any typed array, and be in place before the first large array of a process,
// which may come before any model exists; MLPKIT_BACKEND=reference keeps the addon out.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Mlp, QuantizedMlp } from '../lib/index.js';
import { loadNative } from '../lib/backend/native.js';
import { setHugePageOffer } from '../lib/huge-pages.js';
import { DIST, requireDist } from './child-support.js';
import { expectSameBits, hasNative, randomArray } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'mlpkit-huge-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MB = 1 << 20;

describe.runIf(hasNative())('offerHugePages (native)', () => {
  const addon = loadNative() as unknown as { offerHugePages(a: unknown): void };

  it('keeps every byte of any typed array, at any offset and size, and leaves it writable', () => {
    const kinds = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array];
    for (const Kind of kinds) {
      for (const bytes of [4 * MB - 8, 4 * MB, 9 * MB + 24]) {
        const buffer = new ArrayBuffer(bytes + 64);
        const fill = new Uint8Array(buffer);
        for (let i = 0; i < fill.length; i += 4093) fill[i] = (i * 31) & 255;
        const before = fill.slice();
        // An offset that is no multiple of a page: only the whole huge pages inside are offered.
        const view = new Kind(buffer, 24, bytes / Kind.BYTES_PER_ELEMENT);
        addon.offerHugePages(view);
        expect(Buffer.compare(fill, before), `${Kind.name} ${bytes}`).toBe(0);
        view[view.length - 1] = 7;
        expect(view[view.length - 1]).toBe(7);
      }
    }
    const big64 = new BigInt64Array(MB);
    addon.offerHugePages(big64);
    expect(big64[MB - 1]).toBe(0n);
  });

  it('refuses what is not a typed array with a TypeError that says what it got', () => {
    expect(() => addon.offerHugePages(new ArrayBuffer(8 * MB))).toThrow(/offerHugePages: array must be a TypedArray, got object/);
    expect(() => addon.offerHugePages(new DataView(new ArrayBuffer(8)))).toThrow(TypeError);
    expect(() => addon.offerHugePages(3)).toThrow(/got number 3/);
    expect(() => (addon.offerHugePages as () => void)()).toThrow(/expected 1 arguments, got 0/);
  });

  it('sees the large arrays of a save and a load, float and int8, and the models predict the same', async () => {
    const seen: number[] = [];
    setHugePageOffer((a) => {
      seen.push(a.byteLength);
      addon.offerHugePages(a);
    });
    try {
      const net = new Mlp({ inputs: 1024, layers: [{ units: 2048, activation: 'relu' }] }, { backend: 'native' }); // 8 MB of weights
      const params = 1024 * 2048 + 2048;
      expect(seen).toContain(params * 4); // its parameters, initialised in JavaScript
      const x = randomArray(3 * 1024, 1);
      const path = join(dir, 'float.safetensors');
      seen.length = 0;
      await net.save(path);
      const file = seen.find((b) => b > params * 4); // header + parameters
      expect(file).toBeDefined();
      seen.length = 0;
      const back = await Mlp.load(path);
      expect(seen).toContain(file); // the file's bytes
      expect(seen).toContain(params * 4); // the loaded model's parameters
      expectSameBits(back.predict(x), net.predict(x));
      const q = net.quantize({ weights: 'int8' }); // 2 MB of int8 weights: below the threshold
      const qpath = join(dir, 'int8.safetensors');
      await q.save(qpath);
      const big = new Mlp({ inputs: 2048, layers: [{ units: 4096 }] }, { backend: 'native' }).quantize({ weights: 'int8' }); // 8 MB
      const bigPath = join(dir, 'int8-big.safetensors');
      seen.length = 0;
      await big.save(bigPath);
      expect(seen.some((b) => b > 8 * MB)).toBe(true);
      seen.length = 0;
      const bigBack = QuantizedMlp.loadSync(bigPath);
      // The file only: the model's arrays are views into the bytes load read for it.
      expect(seen.filter((b) => b >= 8 * MB)).toHaveLength(1);
      const y = randomArray(2048, 2);
      expectSameBits(bigBack.predict(y), big.predict(y));
      // fromSafetensors copies: the caller's bytes are the caller's to reuse.
      const bytes = readFileSync(bigPath);
      const fromBytes = QuantizedMlp.fromSafetensors(bytes, { backend: 'native' });
      bytes.fill(0);
      expectSameBits(fromBytes.predict(y), big.predict(y));
      expect(Buffer.compare(Buffer.from(fromBytes.toSafetensors()), readFileSync(bigPath))).toBe(0);
      expectSameBits(QuantizedMlp.loadSync(qpath).predict(x), q.predict(x));
    } finally {
      const mod = loadNative() as unknown as { offerHugePages(a: ArrayBufferView): void };
      setHugePageOffer(mod.offerHugePages.bind(mod));
    }
  });
});

describe.runIf(process.platform === 'linux' && hasNative())('the first large array loads the addon, unless MLPKIT_BACKEND=reference', () => {
  // Whether the addon is mapped into a fresh process after it has only written a 6 MB
  // safetensors file and read it back (no model created, so nothing else loads the addon).
  const mapsAddon = (backend: string | undefined): boolean => {
    requireDist();
    const code = `import { readFileSync } from 'node:fs';
import { readSafetensors, writeSafetensors } from ${JSON.stringify(DIST.href)};
const bytes = writeSafetensors({ w: { dtype: 'F32', shape: [1536, 1024], data: new Float32Array(1536 * 1024).fill(0.5) } });
const back = readSafetensors(bytes);
const ok = back.tensors.w.data[1536 * 1024 - 1] === 0.5;
console.log(JSON.stringify({ ok, mapped: readFileSync('/proc/self/maps', 'utf8').includes('mlpkit.node') }));`;
    const env: NodeJS.ProcessEnv = { ...process.env };
    if (backend === undefined) delete env.MLPKIT_BACKEND;
    else env.MLPKIT_BACKEND = backend;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { env, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.ok).toBe(true);
    return out.mapped;
  };

  it('auto: loaded by the file write', () => expect(mapsAddon(undefined)).toBe(true));
  it('reference: not loaded', () => expect(mapsAddon('reference')).toBe(false));
});

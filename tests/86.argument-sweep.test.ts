// Hostile arguments anywhere in a call of the public API must be refused with a coded
// TypeError / RangeError, never V8's own uncoded TypeError. Two sweeps start from a valid call:
// - a revoked Proxy (reading a property of one, instanceof and Array.isArray all throw) at each
//   path of the argument tree in turn, and at each option name an options object accepts, found
//   from the unknown-option error, so options added later are covered without listing them here;
// - each property made a getter that answers its valid value once and something else after
//   (null, a revoked Proxy, a string, -1): a value read twice, checked at the first read and
//   used at the second, shows up as an uncoded error.
// The first found fit's, quantize's and quantizeAsync's signal and a served model uncoded; the
// second, fit's options.validation.x read twice.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Mlp, QuantizedMlp, SparseMlp, createServer, dequantizeLayer, qmatmul, quantizeLayer, readSafetensors, writeSafetensors } from '../lib/index.js';
import { backendsUnderTest } from './helpers.js';

type Tree = Record<string, unknown>;

const revoked: object = (() => {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
})();

// Plain objects and arrays are walked; typed arrays, models and signals are leaves.
const isNode = (v: unknown): v is Tree => typeof v === 'object' && v !== null && (Array.isArray(v) || Object.getPrototypeOf(v) === Object.prototype);

function paths(v: unknown, prefix: string[] = []): string[][] {
  if (!isNode(v)) return [];
  return Object.entries(v).flatMap(([k, x]) => [[...prefix, k], ...paths(x, [...prefix, k])]);
}

// A fresh copy of the plain nodes (leaves shared), so that no call sees another's Proxy.
function fresh<T>(v: T): T {
  if (!isNode(v)) return v;
  return (Array.isArray(v) ? v.map(fresh) : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fresh(x)]))) as T;
}

function at(root: Tree, path: string[]): Tree {
  return path.reduce<Tree>((o, k) => o[k] as Tree, root);
}

/**
 * The uncoded errors of every call with one revoked Proxy in it (an empty list when all is well),
 * and how many option names the unknown-option errors gave (0 would mean the discovery is broken).
 */
async function sweep(given: () => Tree, call: (args: Tree) => unknown): Promise<{ uncoded: string[]; discovered: number }> {
  const make = () => fresh(given());
  const uncoded: string[] = [];
  let discovered = 0;
  const attempt = async (args: Tree, where: string) => {
    try {
      const r = (await call(args)) as { dispose?: () => void } | null;
      if (r && typeof r.dispose === 'function') r.dispose();
    } catch (err) {
      if ((err as { code?: unknown })?.code === undefined) uncoded.push(`${where}: ${String(err)}`);
    }
  };
  for (const path of paths(make())) {
    const args = make();
    at(args, path.slice(0, -1))[path[path.length - 1]] = revoked;
    await attempt(args, path.join('.'));
    // Option names the node takes but the valid call left out.
    if (!isNode(at(make(), path)) || Array.isArray(at(make(), path))) continue;
    const probe = make();
    at(probe, path).__unknown = 1;
    let names: string[] = [];
    try {
      await call(probe);
    } catch (err) {
      names = /expected some of ([^)]*)\)/.exec(String((err as Error).message))?.[1].split(', ') ?? [];
    }
    discovered += names.length;
    for (const name of names.filter((n) => !(n in at(make(), path)))) {
      const args2 = make();
      at(args2, path)[name] = revoked;
      await attempt(args2, [...path, name].join('.'));
    }
  }
  return { uncoded, discovered };
}

/** The uncoded errors of every call with one property that changes after its first read. */
async function flipSweep(given: () => Tree, call: (args: Tree) => unknown): Promise<string[]> {
  const uncoded: string[] = [];
  for (const path of paths(given())) {
    for (const later of [null, revoked, 'zz', -1]) {
      const args = fresh(given());
      const parent = at(args, path.slice(0, -1));
      const key = path[path.length - 1];
      const valid = parent[key];
      let reads = 0;
      Object.defineProperty(parent, key, { get: () => (reads++ === 0 ? valid : later), enumerable: true, configurable: true });
      try {
        const r = (await call(args)) as { dispose?: () => void } | null;
        if (r && typeof r.dispose === 'function') r.dispose();
      } catch (err) {
        if ((err as { code?: unknown })?.code === undefined) uncoded.push(`${path.join('.')} (then ${later === revoked ? 'a revoked Proxy' : String(later)}): ${String(err)}`);
      }
    }
  }
  return uncoded;
}

describe.each(backendsUnderTest())('hostile arguments anywhere in a call on %s', (backend) => {
  const net = new Mlp({ inputs: 3, layers: [{ units: 4, activation: 'relu' }, { units: 2 }], seed: 1 }, { backend });
  const q = net.quantize({ weights: 'int8', backend });
  const layer = q.getLayers()[0];
  const x = new Float32Array(6);
  const t = new Float32Array(4);
  const sgd = { loss: 'mse' as const, optimizer: { type: 'sgd' as const, lr: 0.1 } };
  let sparseBytes: Uint8Array;
  beforeAll(async () => {
    const sparse = await net.sparsify({ mode: 'exact' });
    sparseBytes = sparse.toSafetensors();
    sparse.dispose();
  });
  afterAll(() => {
    q.dispose();
    net.dispose();
  });

  const CASES: [string, () => Tree, (a: Tree) => unknown][] = [
    ['new Mlp', () => ({ spec: { inputs: 3, layers: [{ units: 4, activation: 'relu' }, { units: 2 }], encoding: { type: 'frequency', octaves: 2 }, seed: 1 }, options: { backend } }),
      (a) => new Mlp(a.spec as never, a.options as never)],
    ['predict', () => ({ x: new Float32Array(3), out: new Float32Array(2) }), (a) => net.predict(a.x as never, a.out as never)],
    ['predictAsync', () => ({ x: new Float32Array(3), out: new Float32Array(2) }), (a) => net.predictAsync(a.x as never, a.out as never)],
    ['gradients', () => ({ x, request: { loss: { type: 'huber', delta: 1 }, target: t } }), (a) => net.gradients(a.x as never, a.request as never)],
    ['trainer', () => ({ o: { loss: 'mse', optimizer: { type: 'adam', lr: 1e-3, betas: [0.9, 0.99] }, schedule: { type: 'cosine', steps: 10 } } }),
      (a) => net.trainer(a.o as never)],
    ['trainer.fit', () => ({ x, t, o: { epochs: 1, batchSize: 2, validation: { x, target: t }, onProgress: () => {} } }),
      (a) => net.trainer(sgd).fit(a.x as never, a.t as never, a.o as never)],
    ['net.quantize', () => ({ o: { weights: ['int8', 'int4'], groupSize: 32, calibration: new Float32Array(48), activations: 'int8', backend } }),
      (a) => net.quantize(a.o as never)],
    ['net.quantizeAsync', () => ({ o: { weights: ['int8', 'int4'], groupSize: 32, calibration: new Float32Array(48), activations: 'int8', backend } }),
      (a) => net.quantizeAsync(a.o as never)],
    ['net.sparsify', () => ({ o: { mode: 'topk', k: 2, calibration: new Float32Array(48) } }), (a) => net.sparsify(a.o as never)],
    ['QuantizedMlp.fromLayers', () => ({ layers: [layer], o: { activations: ['int8'], backend } }), (a) => QuantizedMlp.fromLayers(a.layers as never, a.o as never)],
    ['qmatmul', () => ({ x: new Float32Array(3), layer: { ...layer }, o: { activations: 'int8', out: new Float32Array(4), backend } }),
      (a) => qmatmul(a.x as never, a.layer as never, a.o as never)],
    ['quantizeLayer', () => ({ w: new Float32Array(12), b: new Float32Array(4), o: { format: 'int4', groupSize: 32 } }),
      (a) => quantizeLayer(a.w as never, a.b as never, 3, 4, 'relu', 0, a.o as never)],
    ['dequantizeLayer', () => ({ layer: { ...layer } }), (a) => dequantizeLayer(a.layer as never)],
    ['QuantizedMlp.fromSafetensors', () => ({ bytes: q.toSafetensors(), o: { backend } }), (a) => QuantizedMlp.fromSafetensors(a.bytes as never, a.o as never)],
    ['SparseMlp.fromSafetensors', () => ({ bytes: sparseBytes, o: { backend } }), (a) => SparseMlp.fromSafetensors(a.bytes as never, a.o as never)],
    ['Mlp.fromSafetensors', () => ({ bytes: net.toSafetensors(), o: { backend } }), (a) => Mlp.fromSafetensors(a.bytes as never, a.o as never)],
    ['writeSafetensors', () => ({ tensors: { a: { shape: [2], data: new Float32Array(2), dtype: 'F32' } }, metadata: { k: 'v' } }),
      (a) => writeSafetensors(a.tensors as never, a.metadata as never)],
    ['readSafetensors', () => ({ bytes: net.toSafetensors() }), (a) => readSafetensors(a.bytes as never)],
    ['createServer', () => ({ o: { models: { m: net }, maxBatchRows: 8 } }), (a) => createServer(a.o as never)],
  ];

  // The cases whose options objects must have given their option names.
  const WITH_OPTIONS = new Set(['new Mlp', 'trainer', 'trainer.fit', 'net.quantize', 'net.quantizeAsync', 'net.sparsify', 'QuantizedMlp.fromLayers', 'qmatmul',
    'quantizeLayer', 'QuantizedMlp.fromSafetensors', 'SparseMlp.fromSafetensors', 'Mlp.fromSafetensors', 'createServer']);

  it.each(CASES)('%s: a revoked Proxy at any path or option name', async (name, make, call) => {
    const { uncoded, discovered } = await sweep(make, call);
    expect(uncoded).toEqual([]);
    if (WITH_OPTIONS.has(name)) expect(discovered, 'option names read from the unknown-option errors').toBeGreaterThan(0);
  });

  it.each(CASES)('%s: a property that changes after its first read', async (_name, make, call) => {
    expect(await flipSweep(make, call)).toEqual([]);
  });
});

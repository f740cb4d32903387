// net.quantizeAsync(options) (lib/quant/quantize-async.ts): net.quantize in a worker thread. It
// must give the same model bit for bit (layers, predictions, stats), reject bad options with
// quantize's own errors, survive the model's disposal mid-call, report a worker's failure as an
// error without harming the host, and leave the event loop free while it runs.
//
// The worker runs dist/quant/quantize-worker.js (Node cannot run a .ts worker): run
// `npx tsc -p tsconfig.json` first so that dist matches lib.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Mlp, type QuantizedMlp, type QuantizeOptions } from '../lib/index.js';
import { quantizeInWorker } from '../lib/quant/quantize-async.js';
import { child } from './child-support.js';
import { backendsUnderTest, expectSameBits, gaussian } from './helpers.js';

const INPUTS = 48;

/** Three layers; the first has one input column 1000x smaller than the rest (per-input equalisation then has something to do). */
function model(backend: 'native' | 'reference', seed = 7): Mlp {
  const net = new Mlp({ inputs: INPUTS, layers: [{ units: 64, activation: 'relu' }, { units: 32, activation: 'tanh' }, { units: 5 }] }, { backend });
  const p = gaussian(net.parameterCount, seed, 0.2);
  for (let j = 0; j < 64; j++) p[j * INPUTS + 3] *= 1e-3;
  net.setParameters(p);
  return net;
}

const CALIBRATION = gaussian(40 * INPUTS, 99, 1.5);
const X = gaussian(17 * INPUTS, 123, 1.5);

const FORMATS: [string, QuantizeOptions][] = [
  ['int8', { weights: 'int8' }],
  ['int4 g32 sym', { weights: 'int4', groupSize: 32 }],
  ['int4 g32 asym', { weights: 'int4', groupSize: 32, symmetric: false }],
  ['int4 g64 sym', { weights: 'int4', groupSize: 64 }],
  ['int4 g64 asym', { weights: 'int4', groupSize: 64, symmetric: false }],
  ['int8 W8A8', { weights: 'int8', activations: 'int8' }],
  ['int4 g32 W8A8', { weights: 'int4', groupSize: 32, activations: 'int8' }],
  ['int8 equalize', { weights: 'int8', equalize: true }],
];

function expectSameModel(a: QuantizedMlp, b: QuantizedMlp, what: string): void {
  expect(b.backend, what).toBe(a.backend);
  expect(b.layers, what).toEqual(a.layers);
  expect(b.activations, what).toBe(a.activations);
  expect(b.sizeBytes, what).toBe(a.sizeBytes);
  expect(JSON.stringify(b.stats), what).toBe(JSON.stringify(a.stats));
  expect(b.stats, what).toEqual(a.stats);
  expect(Buffer.compare(Buffer.from(b.toSafetensors()), Buffer.from(a.toSafetensors())), `${what}: file bytes`).toBe(0);
  const la = a.getLayers();
  const lb = b.getLayers();
  la.forEach((l, i) => {
    expect(Buffer.from(lb[i].weights.buffer, lb[i].weights.byteOffset, lb[i].weights.byteLength).equals(Buffer.from(l.weights.buffer, l.weights.byteOffset, l.weights.byteLength)), `${what}: layer ${i} codes`).toBe(true);
    expectSameBits(lb[i].scales, l.scales, `${what}: layer ${i} scales`);
  });
  expectSameBits(b.predict(X), a.predict(X), `${what}: predict`);
}

describe.each(backendsUnderTest())('quantizeAsync on %s: bit for bit quantize', (backend) => {
  const net = model(backend);
  afterAll(() => net.dispose());

  it.each(FORMATS)('%s, without and with calibration', async (name, options) => {
    for (const calibration of [undefined, CALIBRATION]) {
      const o: QuantizeOptions = { ...options, backend, ...(calibration ? { calibration } : {}) };
      const want = net.quantize(o);
      const got = await net.quantizeAsync(o);
      expect(got.stats === null, name).toBe(!calibration);
      expectSameModel(want, got, `${backend} ${name}${calibration ? ' calibrated' : ''}`);
      want.dispose();
      got.dispose();
    }
  });

  it("backend 'auto' (the default) picks what quantize picks", async () => {
    const want = net.quantize({ weights: 'int4', calibration: CALIBRATION });
    const got = await net.quantizeAsync({ weights: 'int4', calibration: CALIBRATION });
    expectSameModel(want, got, 'auto');
    want.dispose();
    got.dispose();
  });

  it('several calls in flight at once give the same models', async () => {
    const options = FORMATS.map(([, o]) => ({ ...o, calibration: CALIBRATION }));
    const got = await Promise.all(options.map((o) => net.quantizeAsync(o)));
    options.forEach((o, i) => {
      const want = net.quantize(o);
      expectSameModel(want, got[i], FORMATS[i][0]);
      want.dispose();
      got[i].dispose();
    });
  });

  it('disposing the model while the call is in flight does not affect it', async () => {
    const own = model(backend, 11);
    const want = own.quantize({ weights: 'int4', calibration: CALIBRATION });
    const pending = own.quantizeAsync({ weights: 'int4', calibration: CALIBRATION });
    own.dispose();
    const got = await pending;
    expectSameModel(want, got, 'disposed mid-call');
    want.dispose();
    got.dispose();
  });

  it('the calibration rows are copied when the call is made', async () => {
    const rows = CALIBRATION.slice();
    const want = net.quantize({ weights: 'int8', activations: 'int8', calibration: rows });
    const pending = net.quantizeAsync({ weights: 'int8', activations: 'int8', calibration: rows });
    rows.fill(Number.NaN);
    const got = await pending;
    expectSameModel(want, got, 'calibration changed after the call');
    want.dispose();
    got.dispose();
  });
});

describe('quantizeAsync: bad options and models', () => {
  const net = model(backendsUnderTest()[0]);
  afterAll(() => net.dispose());

  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const BAD: [string, unknown][] = [
    ['undefined', undefined],
    ['null', null],
    ['a string', 'int8'],
    ['an array', []],
    ['a revoked Proxy', revoked.proxy],
    ['no weights', {}],
    ['weights int3', { weights: 'int3' }],
    ['weights a number', { weights: 8 }],
    ['int8 with groupSize', { weights: 'int8', groupSize: 32 }],
    ['int8 asymmetric', { weights: 'int8', symmetric: false }],
    ['int4 groupSize 48', { weights: 'int4', groupSize: 48 }],
    ["int4 groupSize '32'", { weights: 'int4', groupSize: '32' }],
    ['symmetric a string', { weights: 'int4', symmetric: 'yes' }],
    ['activations int16', { weights: 'int8', activations: 'int16' }],
    ['backend cuda', { weights: 'int8', backend: 'cuda' }],
    ['equalize a string', { weights: 'int8', equalize: 'yes' }],
    ['a misspelt key', { weights: 'int4', groupsize: 32 }],
    ['calibration Float64Array', { weights: 'int8', calibration: new Float64Array(INPUTS) }],
    ['calibration number[]', { weights: 'int8', calibration: [1, 2, 3] }],
    ['calibration empty', { weights: 'int8', calibration: new Float32Array(0) }],
    ['calibration not a multiple of inputs', { weights: 'int8', calibration: new Float32Array(INPUTS + 1) }],
    ['calibration with NaN', { weights: 'int8', calibration: new Float32Array(INPUTS).fill(Number.NaN) }],
  ];

  it.each(BAD)('%s: rejects with the error quantize throws', async (_name, options) => {
    let thrown: unknown = null;
    try {
      net.quantize(options as QuantizeOptions);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(Error);
    const e = thrown as Error & { code?: string };
    const rejected = await net.quantizeAsync(options as QuantizeOptions).then(() => null, (err: unknown) => err);
    expect(rejected).toBeInstanceOf(e.constructor);
    expect(rejected).toMatchObject({ name: e.name, message: e.message, code: e.code });
  });

  it('a getter that throws: the same error object, as a rejection', async () => {
    const boom = new Error('boom');
    const options = { get weights(): 'int8' { throw boom; } };
    expect(() => net.quantize(options)).toThrow(boom);
    await expect(net.quantizeAsync(options)).rejects.toBe(boom);
  });

  it('reads each option once; a getter that changes its answer cannot split the checks from the work', async () => {
    let reads = 0;
    const options = {
      get weights(): 'int8' | 'int4' {
        reads++;
        return reads === 1 ? 'int4' : ('int3' as 'int4');
      },
      get groupSize(): 64 {
        reads++;
        return 64;
      },
    };
    const got = await net.quantizeAsync(options);
    expect(reads).toBe(2);
    const want = net.quantize({ weights: 'int4', groupSize: 64 });
    expectSameModel(want, got, 'getters');
    want.dispose();
    got.dispose();
  });

  it('inherited options count, as they do for quantize', async () => {
    const options = Object.create({ weights: 'int4', symmetric: false }) as QuantizeOptions;
    const want = net.quantize(options);
    const got = await net.quantizeAsync(options);
    expectSameModel(want, got, 'inherited');
    want.dispose();
    got.dispose();
  });

  it('gated and residual layers: rejected as quantize throws', async () => {
    for (const layers of [[{ units: 8, gated: true }, { units: 2 }], [{ units: 16 }, { units: INPUTS, residual: true }, { units: 2 }]]) {
      const odd = new Mlp({ inputs: INPUTS, layers }, { backend: backendsUnderTest()[0] });
      let thrown: (Error & { code?: string }) | null = null;
      try {
        odd.quantize({ weights: 'int8' });
      } catch (err) {
        thrown = err as Error & { code?: string };
      }
      expect(thrown).toBeInstanceOf(RangeError);
      await expect(odd.quantizeAsync({ weights: 'int8' })).rejects.toMatchObject({ name: 'RangeError', message: thrown!.message, code: thrown!.code });
      odd.dispose();
    }
  });

  it('a disposed model rejects with ERR_MLPKIT_DISPOSED', async () => {
    const gone = model(backendsUnderTest()[0]);
    gone.dispose();
    const rejected = await gone.quantizeAsync({ weights: 'int8' }).then(() => null, (err: unknown) => err);
    expect(rejected).toBeInstanceOf(TypeError);
    expect(rejected).toMatchObject({ code: 'ERR_MLPKIT_DISPOSED', message: 'quantizeAsync: the model has been disposed' });
  });
});

describe('quantizeAsync: failures in the worker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mlpkit-qa-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const net = model(backendsUnderTest()[0]);
  afterAll(() => net.dispose());
  const worker = (name: string, body: string): URL => {
    const path = join(dir, `${name}.mjs`);
    writeFileSync(path, `import { parentPort, workerData } from 'node:worker_threads';\n${body}\n`);
    return pathToFileURL(path);
  };

  it('an error the worker reports (out of memory): rejected with its class, message and code', async () => {
    const url = worker('oom', "parentPort.postMessage({ ok: false, error: { name: 'RangeError', message: 'could not allocate 4e9 floats', code: 'ERR_MLPKIT_OUT_OF_MEMORY' } });");
    const rejected = await quantizeInWorker(net, { weights: 'int8' }, { workerUrl: url }).then(() => null, (err: unknown) => err);
    expect(rejected).toBeInstanceOf(RangeError);
    expect(rejected).toMatchObject({ message: 'could not allocate 4e9 floats', code: 'ERR_MLPKIT_OUT_OF_MEMORY' });
  });

  it('an uncaught exception in the worker: rejected with its message and code, the host unharmed', async () => {
    const url = worker('throws', "const e = new Error('kaboom'); e.code = 'ERR_SOMETHING'; throw e;");
    const rejected = await quantizeInWorker(net, { weights: 'int8' }, { workerUrl: url }).then(() => null, (err: unknown) => err);
    expect(rejected).toBeInstanceOf(Error);
    expect((rejected as Error).message).toContain('kaboom');
    expect(rejected).toMatchObject({ code: 'ERR_SOMETHING' });
  });

  it('a worker that exits without an answer: rejected', async () => {
    const url = worker('exits', 'process.exit(7);');
    await expect(quantizeInWorker(net, { weights: 'int8' }, { workerUrl: url })).rejects.toThrow(/exited \(code 7\)/);
  });

  it('the real worker still works after those', async () => {
    const want = net.quantize({ weights: 'int8' });
    const got = await net.quantizeAsync({ weights: 'int8' });
    expectSameModel(want, got, 'after failures');
    want.dispose();
    got.dispose();
  });

  it('a pending call keeps the process alive until it settles, and nothing is left to hold it after', async () => {
    // child() prints `out` when the module body ends, before the call settles; the line printed
    // in .then() comes only if the pending worker kept the process alive, and the child must
    // then exit on its own (child() kills it after 25 s and fails).
    const out = await child(
      `const net = new mlpkit.Mlp({ inputs: 64, layers: [{ units: 256, activation: 'relu' }, { units: 4 }] });\n` +
        `net.quantizeAsync({ weights: 'int4' }).then((q) => console.log(JSON.stringify({ layers: q.layers.length })));\n` +
        `net.dispose();`,
    );
    expect(out.layers).toBe(2);
  });
});

describe('quantizeAsync: the event loop keeps turning', () => {
  it.each(backendsUnderTest())('%s: many timer ticks while a large model quantises', async (backend) => {
    // quantize takes ~0.6 s here on native (2 cores), ~1 s on the reference.
    const big = new Mlp({ inputs: 1024, layers: [{ units: 4096, activation: 'relu' }, { units: 16 }] }, { backend });
    const calibration = gaussian(32 * 1024, 5);
    let ticks = 0;
    let done = false;
    const timer = async (): Promise<void> => {
      while (!done) {
        await new Promise((r) => setTimeout(r, 2));
        ticks++;
      }
    };
    const ticking = timer();
    const q = await big.quantizeAsync({ weights: 'int4', calibration });
    done = true;
    await ticking;
    expect(ticks).toBeGreaterThan(5);
    q.dispose();
    big.dispose();
  });
});

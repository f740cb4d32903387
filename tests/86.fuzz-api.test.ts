// API fuzzing (issue #6): every public function and method, and the raw native addon under them,
// called with random and hostile arguments: wrong types, typed arrays of other element types,
// detached / shared / resizable / offset buffers, lengths that do not line up, huge sizes,
// NaN / Infinity / denormals, negative and fractional sizes, objects with throwing getters,
// Proxies (transparent, throwing, revoked), disposed handles, and arrays changed while an async
// call is in flight. Every call must give a correct result (checked against the same call on
// plain copies: the library is deterministic, so bitwise) or a documented error
// (fuzz-support.ts: expectDocumented). A crash, a hang or an uncoded error fails the test.
//
// fast-check drives it: a mature property tester whose shrinking reduces a failure to a minimal
// recipe. Fixed seed and modest runs here; `npm run fuzz` (MLPKIT_FUZZ_RUNS, MLPKIT_FUZZ_SEED)
// runs the same properties long.

import fc from 'fast-check';
import { types } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  ACTIVATIONS, LOSSES, Mlp, QuantizedMlp, SparseMlp, createServer, dequantizeLayer, info, qmatmul, quantizeLayer, readSafetensors, setThreads,
  writeSafetensors, type QuantLayer,
} from '../lib/index.js';
import { loadNative } from '../lib/backend/native.js';
import { typedArrayLength } from '../lib/errors.js';
import { normalizeSpec, toModelConfig } from '../lib/spec.js';
import {
  BACKINGS, Hostile, SPECIAL_NUMBERS, attempt, attemptAsync, buildF32, buildValue, expectDocumented, f32Recipe, fuzzParams,
  plainCopy, sameBits, sizeLike, throwingGetters, throwingProxy, valueRecipe, type F32Recipe, type ValueRecipe,
} from './fuzz-support.js';
import { backendsUnderTest, hasNative, randomArray } from './helpers.js';

const SPEC = { inputs: 3, layers: [{ units: 5, activation: 'relu' as const }, { units: 2 }], seed: 7 };

/** Lengths that matter for an array of rows `width` wide: empty, off by one, one or many rows. */
const rowLengths = (width: number) => fc.constantFrom(0, 1, width - 1, width, width + 1, 2 * width, 3 * width, 64 * width);

/** An argument that is usually a well-formed array of the right kind, sometimes anything at all. */
const f32OrValue = (lengths: fc.Arbitrary<number>) =>
  fc.oneof({ weight: 4, arbitrary: f32Recipe(lengths).map((r) => ({ f32: r })) }, { weight: 1, arbitrary: valueRecipe.map((v) => ({ value: v })) });
type F32OrValue = { f32: F32Recipe } | { value: ValueRecipe };
const buildArg = (a: F32OrValue): unknown => ('f32' in a ? buildF32(a.f32) : buildValue(a.value));

/** Detaches or shrinks the memory behind an array; false when it cannot be done (shared, or not an array). */
function sabotage(value: unknown, how: 'detach' | 'shrink' | 'write'): boolean {
  if (!types.isFloat32Array(value)) return false;
  try {
    if (how === 'write') {
      Float32Array.prototype.fill.call(value, 7);
      return false; // not an error for the call: it must simply not see the write
    }
    const buffer = value.buffer as ArrayBuffer;
    if (how === 'shrink') {
      if (!buffer.resizable) return false;
      buffer.resize(0);
      return true;
    }
    if (buffer instanceof SharedArrayBuffer) return false;
    structuredClone(buffer, { transfer: [buffer] });
    return true;
  } catch {
    return false;
  }
}

interface Predicting {
  readonly inputs: number;
  readonly outputs: number;
  predict(x: Float32Array, out?: Float32Array): Float32Array;
  predictAsync(x: Float32Array, out?: Float32Array): Promise<Float32Array>;
}

const predictCase = (width: number) =>
  fc.record({
    x: f32OrValue(rowLengths(width)),
    out: fc.option(fc.record({ delta: fc.constantFrom(0, 0, 0, -1, 1), backing: fc.constantFrom(...BACKINGS), seed: fc.nat(100) }), { nil: undefined }),
    async: fc.boolean(),
    after: fc.constantFrom('none', 'detach-x', 'write-x', 'detach-out', 'shrink-out'),
  });
type PredictCase = ReturnType<typeof predictCase> extends fc.Arbitrary<infer T> ? T : never;

/** One predict or predictAsync call from a case: a correct result or a documented error. */
async function predictOnce(model: Predicting, c: PredictCase, what: string): Promise<void> {
  const x = buildArg(c.x);
  const before = plainCopy(x);
  const rows = before && before.length % model.inputs === 0 ? before.length / model.inputs : 1;
  const out = c.out && buildF32({ backing: c.out.backing, length: Math.max(0, rows * model.outputs + c.out.delta), fill: 'random', seed: c.out.seed });
  let outcome: { ok: true; value: Float32Array } | { ok: false; error: unknown };
  let broken = false;
  if (!c.async) {
    outcome = attempt(what, () => model.predict(x as Float32Array, out as Float32Array | undefined));
  } else {
    const pending = model.predictAsync(x as Float32Array, out as Float32Array | undefined);
    if (c.after === 'detach-x') sabotage(x, 'detach');
    if (c.after === 'write-x') sabotage(x, 'write');
    if (c.after === 'detach-out') broken = sabotage(out, 'detach');
    if (c.after === 'shrink-out') broken = sabotage(out, 'shrink');
    outcome = await attemptAsync(what, () => pending);
  }
  if (!outcome.ok) return;
  // Success: only for a real Float32Array of whole rows, and its values are predict's on a plain copy.
  expect(broken, `${what} resolved although out was detached or shrunk in flight`).toBe(false);
  expect(before).not.toBeNull();
  const y = outcome.value;
  if (out !== undefined) expect(y).toBe(out);
  const expected = model.predict(before!);
  expect(sameBits(Float32Array.from(y), expected), `${what}: differs from predict on a plain copy`).toBe(true);
}

describe.each(backendsUnderTest())('API fuzz on %s', (backend) => {
  const make = () => new Mlp(SPEC, { backend });

  it('new Mlp(spec, options): hostile specs and options', () => {
    const layer = fc.oneof(
      { weight: 4, arbitrary: fc.record({ units: sizeLike, activation: fc.option(fc.constantFrom(...ACTIVATIONS, 'swish', 3, null), { nil: undefined }), bias: fc.option(fc.constantFrom(true, false, 1, 'yes'), { nil: undefined }), alpha: fc.option(sizeLike, { nil: undefined }) }) },
      { weight: 1, arbitrary: valueRecipe.map((v) => ({ hostile: v })) },
    );
    const specCase = fc.record({
      inputs: fc.oneof(sizeLike, valueRecipe.map((v) => ({ hostile: v }))),
      layers: fc.oneof({ weight: 4, arbitrary: fc.array(layer, { minLength: 0, maxLength: 3 }) }, { weight: 1, arbitrary: valueRecipe.map((v) => ({ hostile: v })) }),
      encoding: fc.constantFrom(undefined, 'identity', { type: 'frequency', octaves: 2 }, { type: 'frequency', octaves: 0 }, { type: 'frequency', octaves: 25 }, { type: 'fourier' }, 5),
      init: fc.constantFrom(undefined, 'torch', 'he-normal', 'glorot', 1),
      seed: fc.constantFrom(undefined, 0, 7, -1, 2 ** 32, 1.5, NaN, '1'),
      wrap: fc.constantFrom('plain', 'plain', 'proxy', 'throwing-getters', 'throwing-proxy', 'revoked'),
      options: fc.record({ backend: fc.constantFrom('default', 'auto', 'gpu', 5), parameters: fc.option(f32OrValue(fc.constantFrom(0, 31, 32, 33)), { nil: undefined }) }),
    });
    const unwrap = (v: unknown) => (typeof v === 'object' && v !== null && 'hostile' in v ? buildValue((v as { hostile: ValueRecipe }).hostile) : v);
    fc.assert(
      fc.property(specCase, (c) => {
        const raw = {
          inputs: unwrap(c.inputs),
          layers: Array.isArray(c.layers) ? c.layers.map(unwrap) : unwrap(c.layers),
          ...(c.encoding !== undefined ? { encoding: c.encoding } : {}),
          ...(c.init !== undefined ? { init: c.init } : {}),
          ...(c.seed !== undefined ? { seed: c.seed } : {}),
        };
        let spec: unknown = raw;
        if (c.wrap === 'proxy') spec = new Proxy(raw, {});
        if (c.wrap === 'throwing-getters') spec = throwingGetters('spec');
        if (c.wrap === 'throwing-proxy') spec = throwingProxy('spec');
        if (c.wrap === 'revoked') {
          const r = Proxy.revocable(raw, {});
          r.revoke();
          spec = r.proxy;
        }
        const options: Record<string, unknown> = { backend: c.options.backend === 'default' ? backend : c.options.backend };
        if (c.options.parameters) options.parameters = buildArg(c.options.parameters);
        const made = attempt('new Mlp', () => new Mlp(spec as never, options as never));
        if (!made.ok) return;
        const net = made.value;
        // A model that was made works: it predicts the right shape, and given parameters are its parameters.
        const y = net.predict(new Float32Array(net.inputs));
        expect(y.length).toBe(net.outputs);
        if (options.parameters !== undefined) expect(sameBits(net.getParameters(), plainCopy(options.parameters)!)).toBe(true);
        net.dispose();
      }),
      fuzzParams(300),
    );
  });

  it('predict and predictAsync: hostile x and out, and arrays detached, written or shrunk in flight', async () => {
    const net = make();
    await fc.assert(fc.asyncProperty(predictCase(3), (c) => predictOnce(net, c, 'Mlp.predict')), fuzzParams(400));
    net.dispose();
  });

  it('getParameters / setParameters: hostile parameter arrays', () => {
    const net = make();
    fc.assert(
      fc.property(f32OrValue(fc.constantFrom(0, 31, 32, 33)), (p) => {
        const params = buildArg(p);
        const copy = plainCopy(params);
        const r = attempt('setParameters', () => net.setParameters(params as Float32Array));
        if (r.ok) expect(sameBits(net.getParameters(), copy!)).toBe(true);
      }),
      fuzzParams(200),
    );
    net.dispose();
  });

  const labelsCase = fc.record({
    type: fc.constantFrom('int32', 'array', 'uint8', 'uint32', 'int8', 'float32', 'proxy-array'),
    length: fc.constantFrom(0, 1, 2, 3, 4, 64),
    value: fc.constantFrom(0, 1, 2, -1, 0.5, 2 ** 32 + 1, NaN, '1', null),
  });
  function buildLabels(c: { type: string; length: number; value: unknown }): unknown {
    const values = Array.from({ length: c.length }, (_, i) => (i === c.length - 1 ? c.value : i % 2));
    switch (c.type) {
      case 'int32': return Int32Array.from(values as number[]);
      case 'uint8': return Uint8Array.from(values as number[]);
      case 'uint32': return Uint32Array.from(values as number[]);
      case 'int8': return Int8Array.from(values as number[]);
      case 'float32': return Float32Array.from(values as number[]);
      case 'proxy-array': return new Proxy(values, {});
      default: return values;
    }
  }
  const targetArg = fc.oneof(
    { weight: 2, arbitrary: f32Recipe(rowLengths(2)).map((r) => ({ f32: r })) },
    { weight: 2, arbitrary: labelsCase.map((l) => ({ labels: l })) },
    { weight: 1, arbitrary: valueRecipe.map((v) => ({ value: v })) },
  );
  type TargetArg = { f32: F32Recipe } | { labels: { type: string; length: number; value: unknown } } | { value: ValueRecipe };
  const buildTarget = (t: TargetArg) => ('f32' in t ? buildF32(t.f32) : 'labels' in t ? buildLabels(t.labels) : buildValue(t.value));
  /** The same target as a plain array of its kind, for the twin model. */
  const plainTarget = (t: unknown) =>
    types.isFloat32Array(t) ? plainCopy(t)
      : types.isTypedArray(t) && !types.isBigInt64Array(t) && !types.isBigUint64Array(t) ? Int32Array.from(t as Int32Array)
        : !types.isProxy(t) && Array.isArray(t) ? [...t] : t;
  const LOSS_NAMES = ['mse', 'l1', 'huber', 'softmax-cross-entropy', 'bce-with-logits'] as const;

  it('trainer.step / stepAsync: hostile inputs and targets; a step that runs equals the same step on plain copies', async () => {
    const stepCase = fc.record({ loss: fc.constantFrom(...LOSS_NAMES), x: f32OrValue(rowLengths(3)), target: targetArg, async: fc.boolean() });
    await fc.assert(
      fc.asyncProperty(stepCase, async (c) => {
        const a = make();
        const b = make();
        const options = { loss: c.loss, optimizer: { type: 'adam' as const, lr: 0.01 } };
        const ta = a.trainer(options);
        const tb = b.trainer(options);
        const x = buildArg(c.x);
        const target = buildTarget(c.target);
        const xs = plainCopy(x);
        const ts = plainTarget(target);
        const r = c.async
          ? await attemptAsync('stepAsync', () => ta.stepAsync(x as Float32Array, target as Float32Array))
          : attempt('step', () => ta.step(x as Float32Array, target as Float32Array));
        if (r.ok) {
          expect(Object.is(r.value, tb.step(xs!, ts as Float32Array))).toBe(true);
          expect(sameBits(a.getParameters(), b.getParameters())).toBe(true);
        } else {
          expect(sameBits(a.getParameters(), b.getParameters()), 'a rejected step changed the model').toBe(true);
        }
        a.dispose();
        b.dispose();
      }),
      fuzzParams(250),
    );
  });

  it('trainer.fit: hostile options (epochs, batchSize, shuffle, seed, validation, onProgress, signal)', async () => {
    const fitCase = fc.record({
      epochs: fc.constantFrom(1, 2, 0, -1, 1.5, NaN, Infinity, '1', null),
      batchSize: fc.constantFrom(undefined, 1, 3, 64, 0, -1, 0.5, NaN, 2 ** 31, '2'),
      shuffle: fc.constantFrom(undefined, true, false, 1),
      seed: fc.constantFrom(undefined, 0, 5, -1, 2 ** 32, 1.5, 'x'),
      validation: fc.oneof(fc.constant(undefined), fc.record({ x: f32OrValue(rowLengths(3)), target: targetArg }), valueRecipe.map((v) => ({ hostile: v }))),
      onProgress: fc.constantFrom(undefined, 'noop', 'throws', 5),
      signal: fc.constantFrom(undefined, 'aborted', 'fresh', 'object'),
      wrap: fc.constantFrom('plain', 'plain', 'plain', 'proxy', 'throwing-getters'),
      loss: fc.constantFrom('mse', 'softmax-cross-entropy'),
    });
    const x = randomArray(10 * 3, 1);
    const build = (c: typeof fitCase extends fc.Arbitrary<infer T> ? T : never) => {
      const o: Record<string, unknown> = { epochs: c.epochs };
      if (c.batchSize !== undefined) o.batchSize = c.batchSize;
      if (c.shuffle !== undefined) o.shuffle = c.shuffle;
      if (c.seed !== undefined) o.seed = c.seed;
      if (c.validation !== undefined) {
        o.validation = 'hostile' in c.validation ? buildValue(c.validation.hostile) : { x: buildArg(c.validation.x), target: buildTarget(c.validation.target) };
      }
      if (c.onProgress === 'noop') o.onProgress = () => {};
      else if (c.onProgress === 'throws') o.onProgress = () => { throw new Hostile('onProgress'); };
      else if (c.onProgress !== undefined) o.onProgress = c.onProgress;
      if (c.signal === 'aborted') o.signal = AbortSignal.abort();
      else if (c.signal === 'fresh') o.signal = new AbortController().signal;
      else if (c.signal === 'object') o.signal = {};
      if (c.wrap === 'proxy') return new Proxy(o, {});
      if (c.wrap === 'throwing-getters') return throwingGetters('fit options');
      return o;
    };
    await fc.assert(
      fc.asyncProperty(fitCase, async (c) => {
        const a = make();
        const b = make();
        const target = c.loss === 'mse' ? randomArray(10 * 2, 2) : Int32Array.from({ length: 10 }, (_, i) => i % 2);
        const options = { loss: c.loss, optimizer: { type: 'sgd' as const, lr: 0.05 }, schedule: { type: 'cosine' as const } };
        const r = await attemptAsync('fit', () => a.trainer(options).fit(x, target, build(c) as never));
        if (r.ok) {
          // The same fit on a twin (options rebuilt from the recipe) gives the same history and weights.
          const twin = await b.trainer(options).fit(x, target, build(c) as never);
          expect(r.value.history).toEqual(twin.history);
          expect(r.value.steps).toBe(twin.steps);
          expect(sameBits(a.getParameters(), b.getParameters())).toBe(true);
        }
        a.dispose();
        b.dispose();
      }),
      fuzzParams(120),
    );
  });

  it('gradients(x, request): hostile requests; results equal the same call on plain copies', () => {
    const requestCase = fc.oneof(
      fc.record({ gradOutput: f32OrValue(rowLengths(2)) }),
      fc.record({ loss: fc.oneof(fc.constantFrom<unknown>(...LOSS_NAMES, { type: 'huber', delta: 2 }, { type: 'huber', delta: -1 }, 'hinge'), valueRecipe.map((v) => ({ hostile: v }))), target: targetArg, delta: fc.option(sizeLike, { nil: undefined }) }),
      valueRecipe.map((v) => ({ hostile: v })),
    );
    const net = make();
    fc.assert(
      fc.property(f32OrValue(rowLengths(3)), requestCase, (xr, rc) => {
        const x = buildArg(xr);
        let request: unknown;
        let plainRequest: unknown;
        if ('hostile' in rc) request = plainRequest = buildValue(rc.hostile as ValueRecipe);
        else if ('gradOutput' in rc) {
          const g = buildArg(rc.gradOutput);
          request = { gradOutput: g };
          plainRequest = { gradOutput: plainCopy(g) };
        } else {
          const loss = typeof rc.loss === 'object' && rc.loss !== null && 'hostile' in rc.loss ? buildValue((rc.loss as { hostile: ValueRecipe }).hostile) : rc.loss;
          const target = buildTarget(rc.target as TargetArg);
          request = { loss, target, ...(rc.delta !== undefined ? { delta: rc.delta } : {}) };
          plainRequest = { loss, target: plainTarget(target), ...(rc.delta !== undefined ? { delta: rc.delta } : {}) };
        }
        const xs = plainCopy(x);
        const r = attempt('gradients', () => net.gradients(x as Float32Array, request as never));
        if (r.ok) {
          const again = net.gradients(xs!, plainRequest as never);
          expect(Object.is(r.value.loss, again.loss)).toBe(true);
          expect(sameBits(r.value.parameters, again.parameters)).toBe(true);
          expect(sameBits(r.value.input, again.input)).toBe(true);
        }
      }),
      fuzzParams(250),
    );
    net.dispose();
  });

  // ---- quantised models -----------------------------------------------------------------------

  const quantizeCase = fc.record({
    weights: fc.constantFrom<unknown>('int8', 'int4', 'int2', undefined, 8),
    groupSize: fc.constantFrom<unknown>(undefined, 32, 64, 128, 16, '32'),
    symmetric: fc.constantFrom<unknown>(undefined, true, false, 'yes'),
    activations: fc.constantFrom<unknown>(undefined, 'float', 'int8', 'int4'),
    calibration: fc.option(f32OrValue(rowLengths(3)), { nil: undefined }),
    extra: fc.constantFrom<unknown>(undefined, 'groupsize'),
    wrap: fc.constantFrom('plain', 'plain', 'proxy', 'throwing-getters', 'hostile'),
  });

  it('quantize(options): hostile options; a quantised model that is made predicts and round-trips through safetensors', () => {
    const net = make();
    const x = randomArray(4 * 3, 3);
    fc.assert(
      fc.property(quantizeCase, valueRecipe, (c, hostile) => {
        const o: Record<string, unknown> = { backend };
        for (const key of ['weights', 'groupSize', 'symmetric', 'activations'] as const) if (c[key] !== undefined) o[key] = c[key];
        if (c.calibration) o.calibration = buildArg(c.calibration);
        if (c.extra) o[c.extra as string] = 32;
        const options = c.wrap === 'proxy' ? new Proxy(o, {}) : c.wrap === 'throwing-getters' ? throwingGetters('quantize options') : c.wrap === 'hostile' ? buildValue(hostile) : o;
        const r = attempt('quantize', () => net.quantize(options as never));
        if (!r.ok) return;
        const q = r.value;
        const y = q.predict(x);
        expect(y.length).toBe(4 * 2);
        const back = QuantizedMlp.fromSafetensors(q.toSafetensors(), { backend });
        expect(sameBits(back.predict(x), y)).toBe(true);
        back.dispose();
        q.dispose();
      }),
      fuzzParams(120),
    );
    net.dispose();
  });

  it('quantizeAsync(options): the model quantize makes, bit for bit, or its error; calibration detached or written in flight', async () => {
    const net = make();
    const x = randomArray(4 * 3, 3);
    let made = 0;
    // Mostly options that make a model (each worker run then has a result to compare).
    const validCase = fc.record({
      weights: fc.constantFrom<unknown>('int8', 'int4'),
      groupSize: fc.constantFrom<unknown>(undefined, 32, 64, 128),
      symmetric: fc.constantFrom<unknown>(undefined, true, false),
      activations: fc.constantFrom<unknown>(undefined, 'float', 'int8'),
      calibration: fc.option(f32Recipe(fc.constantFrom(3, 6, 3 * 64)).map((r) => ({ f32: r }) as F32OrValue), { nil: undefined }),
      extra: fc.constant<unknown>(undefined),
      wrap: fc.constantFrom('plain', 'plain', 'proxy'),
    });
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 3, arbitrary: validCase }, { weight: 1, arbitrary: quantizeCase }), valueRecipe, fc.constantFrom('none', 'detach', 'write'), async (c, hostile, inFlight) => {
        // Each call gets its own options (a Proxy or throwing getters run once per read).
        const options = () => {
          const o: Record<string, unknown> = { backend };
          for (const key of ['weights', 'groupSize', 'symmetric', 'activations'] as const) if (c[key] !== undefined) o[key] = c[key];
          if (c.calibration) o.calibration = buildArg(c.calibration);
          if (c.extra) o[c.extra as string] = 32;
          return c.wrap === 'proxy' ? new Proxy(o, {}) : c.wrap === 'throwing-getters' ? throwingGetters('quantize options') : c.wrap === 'hostile' ? buildValue(hostile) : o;
        };
        const sync = attempt('quantize', () => net.quantize(options() as never));
        const asyncOptions = options() as Record<string, unknown>;
        const pending = attemptAsync('quantizeAsync', () => net.quantizeAsync(asyncOptions as never));
        // The call has read its options: changing the calibration now must not change the model.
        if (inFlight !== 'none' && c.wrap === 'plain') sabotage(asyncOptions.calibration, inFlight);
        const r = await pending;
        expect(r.ok, `quantize ${sync.ok ? 'made a model' : String((sync as { error: Error }).error?.message)}`).toBe(sync.ok);
        if (!sync.ok || !r.ok) {
          const [a, b] = [(sync as { error: Error & { code?: string } }).error, (r as { error: Error & { code?: string } }).error];
          expect(b.constructor).toBe(a.constructor);
          expect(b.code).toBe(a.code);
          if (!(a instanceof Hostile)) expect(b.message).toBe(a.message);
          return;
        }
        made++;
        expect(sameBits(r.value.predict(x), sync.value.predict(x))).toBe(true);
        expect(r.value.stats).toEqual(sync.value.stats);
        r.value.dispose();
        sync.value.dispose();
      }),
      // Each run that makes a model starts a worker (~40 ms).
      fuzzParams(40, 40),
    );
    expect(made, 'quantizeAsync made no model: the property checked only errors').toBeGreaterThan(0);
    net.dispose();
  });

  it('QuantizedMlp predict / predictAsync: hostile x and out, arrays changed in flight', async () => {
    const net = make();
    for (const options of [{ weights: 'int8' as const, activations: 'int8' as const }, { weights: 'int4' as const, symmetric: false }]) {
      const q = net.quantize({ ...options, backend });
      await fc.assert(fc.asyncProperty(predictCase(3), (c) => predictOnce(q, c, 'QuantizedMlp.predict')), fuzzParams(150));
      q.dispose();
    }
    net.dispose();
  });

  const sparsifyCase = fc.record({
    mode: fc.constantFrom<unknown>('exact', 'threshold', 'topk', 'predictor', 'sparse', undefined, 3),
    targetDensity: fc.constantFrom<unknown>(undefined, 0.5, 1, 0, -0.1, 1.5, NaN, '0.5'),
    threshold: fc.constantFrom<unknown>(undefined, 0, 0.3, -1, Infinity, NaN),
    k: fc.constantFrom<unknown>(undefined, 1, 3, 5, 6, 0, 2.5, -1),
    layers: fc.constantFrom<unknown>(undefined, [0], [1], [0, 0], [], [-1], ['0'], 0),
    rank: fc.constantFrom<unknown>(undefined, 1, 2, 0, 1e9),
    epochs: fc.constantFrom<unknown>(undefined, 1, 0, 2.5),
    weights: fc.constantFrom<unknown>(undefined, 'float', 'int8', 'int8', 'int4', 8),
    calibration: fc.option(f32OrValue(rowLengths(3)), { nil: undefined }),
    extra: fc.constantFrom<unknown>(undefined, 'targetdensity'),
    wrap: fc.constantFrom('plain', 'plain', 'plain', 'proxy', 'throwing-getters', 'hostile'),
  });

  it('sparsify(options): hostile options; a sparse model that is made predicts and round-trips through safetensors', async () => {
    const net = make();
    const x = randomArray(4 * 3, 3);
    await fc.assert(
      fc.asyncProperty(sparsifyCase, valueRecipe, async (c, hostile) => {
        const o: Record<string, unknown> = { backend };
        for (const key of ['mode', 'targetDensity', 'threshold', 'k', 'layers', 'rank', 'epochs', 'weights'] as const) if (c[key] !== undefined) o[key] = c[key];
        if (c.calibration) o.calibration = buildArg(c.calibration);
        if (c.extra) o[c.extra as string] = 0.5;
        const options = c.wrap === 'proxy' ? new Proxy(o, {}) : c.wrap === 'throwing-getters' ? throwingGetters('sparsify options') : c.wrap === 'hostile' ? buildValue(hostile) : o;
        const r = await attemptAsync('sparsify', () => net.sparsify(options as never));
        if (!r.ok) return;
        const sparse = r.value;
        const y = sparse.predict(x);
        expect(y.length).toBe(4 * 2);
        const back = SparseMlp.fromSafetensors(sparse.toSafetensors(), { backend });
        expect(sameBits(back.predict(x), y)).toBe(true);
        back.dispose();
        sparse.dispose();
      }),
      fuzzParams(80),
    );
    net.dispose();
  });

  it('SparseMlp predict / predictAsync: hostile x and out, arrays changed in flight', async () => {
    const net = make();
    const calibration = randomArray(20 * 3, 4);
    for (const options of [{ mode: 'exact' as const }, { mode: 'topk' as const, k: 2 }, { mode: 'predictor' as const, k: 2, rank: 2, epochs: 1, calibration }]) {
      const sparse = await net.sparsify({ ...options, backend });
      await fc.assert(fc.asyncProperty(predictCase(3), (c) => predictOnce(sparse, c, 'SparseMlp.predict')), fuzzParams(100));
      sparse.dispose();
    }
    net.dispose();
  });

  // A valid layer with one field replaced: by a hostile value, or by a subtly wrong one.
  const LAYER_FIELDS = ['inputs', 'outputs', 'format', 'groupSize', 'symmetric', 'weights', 'scales', 'zeros', 'bias', 'activation', 'alpha', 'none', 'whole'] as const;
  const layerCase = fc.record({
    format: fc.constantFrom('int8', 'int4-sym', 'int4-asym'),
    field: fc.constantFrom(...LAYER_FIELDS),
    subtle: fc.constantFrom('-128', 'nan-scale', 'negative-scale', 'zero-17', 'bad-padding', 'short', 'long', 'other-type', 'zero', 'huge', 'fraction', 'shared'),
    hostile: valueRecipe,
    useHostile: fc.boolean(),
  });
  function makeLayer(format: string): QuantLayer {
    const k = 40;
    const n = 3;
    const w = randomArray(n * k, 11);
    const opts = format === 'int8' ? { format: 'int8' as const } : { format: 'int4' as const, groupSize: 32 as const, symmetric: format === 'int4-sym' };
    return quantizeLayer(w, randomArray(n, 12), k, n, 'relu', 0.01, opts);
  }
  function mutateLayer(c: typeof layerCase extends fc.Arbitrary<infer T> ? T : never): unknown {
    const layer: Record<string, unknown> = { ...makeLayer(c.format) };
    if (c.field === 'none') return layer;
    if (c.field === 'whole') return c.useHostile ? buildValue(c.hostile) : new Proxy(layer, {});
    if (c.useHostile) {
      layer[c.field] = buildValue(c.hostile);
      return layer;
    }
    const v = layer[c.field];
    if (ArrayBuffer.isView(v)) {
      const a = v as Int8Array | Uint8Array | Float32Array;
      switch (c.subtle) {
        case '-128': if (a instanceof Int8Array && a.length) a[0] = -128; break;
        case 'nan-scale': if (a instanceof Float32Array && a.length) a[0] = NaN; break;
        case 'negative-scale': if (a instanceof Float32Array && a.length) a[0] = -1; break;
        case 'zero-17': if (a instanceof Uint8Array && a.length) a[0] = 17; break;
        case 'bad-padding': if (a instanceof Uint8Array && a.length) a[a.length - 1] = 0xff; break;
        case 'short': layer[c.field] = a.subarray(0, a.length - 1); break;
        case 'long': { const b = new (a.constructor as Float32ArrayConstructor)(a.length + 1); b.set(a); layer[c.field] = b; break; }
        case 'other-type': layer[c.field] = Float64Array.from(a); break;
        case 'shared': { const b = new (a.constructor as Float32ArrayConstructor)(new SharedArrayBuffer(a.byteLength)); b.set(a); layer[c.field] = b; break; }
        default: break;
      }
    } else if (typeof v === 'number') {
      layer[c.field] = c.subtle === 'zero' ? 0 : c.subtle === 'huge' ? 2 ** 31 : c.subtle === 'fraction' ? v + 0.5 : -v;
    } else {
      layer[c.field] = c.subtle === 'other-type' ? 1 : null;
    }
    return layer;
  }

  it('qmatmul, dequantizeLayer: hostile and subtly broken layers, x and options', () => {
    const qCase = fc.record({
      layer: layerCase,
      x: f32OrValue(rowLengths(40)),
      form: fc.constantFrom('x-layer', 'x-layer-options', 'x-batch-layer-options'),
      batch: sizeLike,
      activations: fc.constantFrom<unknown>(undefined, 'float', 'int8', 'int4', 1),
      out: fc.option(f32OrValue(rowLengths(3)), { nil: undefined }),
    });
    fc.assert(
      fc.property(qCase, (c) => {
        const layer = mutateLayer(c.layer);
        const deq = attempt('dequantizeLayer', () => dequantizeLayer(layer as QuantLayer));
        if (deq.ok) expect(deq.value.length).toBe((layer as QuantLayer).inputs * (layer as QuantLayer).outputs);
        const x = buildArg(c.x);
        const xs = plainCopy(x);
        const options: Record<string, unknown> = { backend };
        if (c.activations !== undefined) options.activations = c.activations;
        if (c.out) options.out = buildArg(c.out);
        const call = () =>
          c.form === 'x-layer' ? qmatmul(x as Float32Array, layer as QuantLayer)
            : c.form === 'x-layer-options' ? qmatmul(x as Float32Array, layer as QuantLayer, options)
              : qmatmul(x as Float32Array, c.batch as number, layer as QuantLayer, options);
        const r = attempt('qmatmul', call);
        if (r.ok) {
          const again = c.form === 'x-layer' ? qmatmul(xs!, layer as QuantLayer) : qmatmul(xs!, layer as QuantLayer, { backend, ...(c.activations !== undefined ? { activations: c.activations as 'float' } : {}) });
          expect(sameBits(Float32Array.from(r.value), again)).toBe(true);
        }
      }),
      fuzzParams(300),
    );
  });

  it('QuantizedMlp.fromLayers: hostile and subtly broken layer lists and options', () => {
    const flCase = fc.record({
      layers: fc.oneof(fc.array(layerCase, { minLength: 0, maxLength: 2 }), valueRecipe.map((v) => ({ hostile: v }))),
      activations: fc.constantFrom<unknown>(undefined, 'float', 'int8', 'int4', 1, ['int8'], ['float', 'int8'], [null], 'float,int8'),
      extraKey: fc.boolean(),
    });
    fc.assert(
      fc.property(flCase, (c) => {
        const layers = Array.isArray(c.layers) ? c.layers.map((l) => mutateLayer(l)) : buildValue(c.layers.hostile as ValueRecipe);
        const options: Record<string, unknown> = { backend };
        if (c.activations !== undefined) options.activations = c.activations;
        if (c.extraKey) options.groupSize = 32;
        const r = attempt('QuantizedMlp.fromLayers', () => QuantizedMlp.fromLayers(layers as QuantLayer[], options));
        if (r.ok) {
          // Only a one-layer list chains (the layers are 40 -> 3): it computes what qmatmul does.
          const layer = (layers as QuantLayer[])[0];
          const x = randomArray(2 * layer.inputs, 13);
          const activations = Array.isArray(c.activations) ? c.activations[0] : c.activations;
          try {
            expect(sameBits(r.value.predict(x), qmatmul(x, layer, { backend, activations: activations as 'float' }))).toBe(true);
          } finally {
            r.value.dispose();
          }
        }
      }),
      fuzzParams(300),
    );
  });

  it('quantizeLayer: hostile weights, sizes, activation, alpha and options', () => {
    const qlCase = fc.record({
      weight: f32OrValue(fc.constantFrom(0, 5, 6, 7, 120, 121)),
      bias: fc.oneof(fc.constant(null), f32OrValue(fc.constantFrom(2, 3, 4))),
      inputs: sizeLike,
      outputs: sizeLike,
      activation: fc.constantFrom<unknown>('relu', 'none', 0, 8, 9, -1, 1.5, 'swish', null),
      alpha: fc.constantFrom<unknown>(0.01, 0, NaN, Infinity, '1'),
      options: fc.oneof(
        fc.record({ format: fc.constantFrom<unknown>('int8', 'int4', 'fp8'), groupSize: fc.constantFrom<unknown>(undefined, 32, 64, 128, 7), symmetric: fc.constantFrom<unknown>(undefined, true, false, 0) }),
        valueRecipe.map((v) => ({ hostile: v })),
      ),
    });
    fc.assert(
      fc.property(qlCase, (c) => {
        const bias = c.bias === null ? null : buildArg(c.bias);
        const options = 'hostile' in c.options ? buildValue(c.options.hostile as ValueRecipe) : Object.fromEntries(Object.entries(c.options).filter(([, v]) => v !== undefined));
        const r = attempt('quantizeLayer', () => quantizeLayer(buildArg(c.weight) as Float32Array, bias as Float32Array | null, c.inputs as number, c.outputs as number, c.activation as 'relu', c.alpha as number, options as never));
        if (r.ok) {
          // What quantizeLayer makes is a layer every consumer accepts.
          expect(dequantizeLayer(r.value).length).toBe(r.value.inputs * r.value.outputs);
          expect(qmatmul(new Float32Array(r.value.inputs), r.value, { backend }).length).toBe(r.value.outputs);
        }
      }),
      fuzzParams(300),
    );
  });

  // ---- files, threads, info -------------------------------------------------------------------

  it('readSafetensors, writeSafetensors, Mlp.fromSafetensors, QuantizedMlp.fromSafetensors: hostile arguments and options', () => {
    const net = make();
    const ours = net.toSafetensors();
    const foreign = writeSafetensors({ '0.weight': { shape: [4, 3], data: randomArray(12, 4) }, '0.bias': { shape: [4], data: randomArray(4, 5) }, '2.weight': { shape: [2, 4], data: randomArray(8, 6) } });
    const quant = net.quantize({ weights: 'int4', backend }).toSafetensors();
    const tensorCase = fc.record({
      name: fc.constantFrom('w', '__metadata__', '__proto__', 'constructor', '', 'x'.repeat(5000), 'é\u0000'),
      shape: fc.oneof(fc.constantFrom<unknown>([2, 2], [4], [], [0], [2, -2], [1.5], [2 ** 53, 0], ['2'], '4', null), valueRecipe.map((v) => ({ hostile: v }))),
      data: f32OrValue(fc.constantFrom(0, 1, 4)),
      dtype: fc.constantFrom<unknown>(undefined, 'F32', 'F64', 'I32', 'I64', 'I8', 'U8', 'F16', 'BF16', 'BOOL', 'toString', 5),
    });
    const fileCase = fc.record({
      tensors: fc.oneof(fc.array(tensorCase, { maxLength: 3 }), valueRecipe.map((v) => ({ hostile: v }))),
      metadata: fc.oneof(fc.constant(undefined), fc.constantFrom<unknown>({ a: 'b' }, { a: 1 }, { __proto__: 'x' }, []), valueRecipe.map((v) => ({ hostile: v }))),
      bytes: fc.oneof(fc.constantFrom('ours', 'foreign', 'quant'), valueRecipe.map((v) => ({ hostile: v }))),
      loadOptions: fc.oneof(
        fc.record({ activation: fc.constantFrom<unknown>(undefined, 'relu', 'swish', 1), activations: fc.constantFrom<unknown>(undefined, ['relu', 'none'], ['relu'], 'relu', [1, 2]), encoding: fc.constantFrom<unknown>(undefined, { type: 'frequency', octaves: 0 }, 'x'), alpha: fc.constantFrom<unknown>(undefined, 0.1, NaN), backend: fc.constantFrom<unknown>(undefined, backend, 'gpu') }),
        valueRecipe.map((v) => ({ hostile: v })),
      ),
    });
    const hostileOr = (v: unknown) => (typeof v === 'object' && v !== null && 'hostile' in v ? buildValue((v as { hostile: ValueRecipe }).hostile) : v);
    fc.assert(
      fc.property(fileCase, (c) => {
        let tensors: unknown = hostileOr(c.tensors);
        if (Array.isArray(c.tensors)) {
          const t: Record<string, unknown> = {};
          for (const e of c.tensors) Object.defineProperty(t, e.name, { value: { shape: hostileOr(e.shape), data: buildArg(e.data), ...(e.dtype !== undefined ? { dtype: e.dtype } : {}) }, enumerable: true, configurable: true });
          tensors = t;
        }
        const metadata = hostileOr(c.metadata);
        const written = attempt('writeSafetensors', () => writeSafetensors(tensors as never, metadata as never));
        if (written.ok) {
          // What was written reads back: the same names, shapes and values.
          const back = readSafetensors(written.value);
          for (const [name, t] of Object.entries(tensors as Record<string, { shape: number[]; data: ArrayBufferView & ArrayLike<number> }>)) {
            expect(back.tensors[name].shape).toEqual(t.shape);
            const wrote = Array.from({ length: typedArrayLength(t.data) }, (_, i) => t.data[i]);
            const read = Array.from(back.tensors[name].data);
            expect(read.length).toBe(wrote.length);
            read.forEach((v, i) => expect(v === wrote[i] || (Number.isNaN(v) && Number.isNaN(wrote[i])) || Math.fround(wrote[i]) === v).toBe(true));
          }
        }
        const bytes = typeof c.bytes === 'string' ? { ours, foreign, quant }[c.bytes] : buildValue(c.bytes.hostile);
        const options = hostileOr(c.loadOptions);
        const read = attempt('readSafetensors', () => readSafetensors(bytes as Uint8Array));
        if (read.ok) expect(Object.keys(read.value.tensors).length).toBeGreaterThan(0);
        const loaded = attempt('Mlp.fromSafetensors', () => Mlp.fromSafetensors(bytes as Uint8Array, options as never));
        if (loaded.ok) {
          expect(loaded.value.predict(new Float32Array(loaded.value.inputs)).length).toBe(loaded.value.outputs);
          loaded.value.dispose();
        }
        const q = attempt('QuantizedMlp.fromSafetensors', () => QuantizedMlp.fromSafetensors(bytes as Uint8Array, options as never));
        if (q.ok) q.value.dispose();
      }),
      fuzzParams(250),
    );
    net.dispose();
  });

  it('save / saveSync / load / loadSync (Mlp and QuantizedMlp): hostile non-string paths and options', async () => {
    const net = make();
    const q = net.quantize({ weights: 'int8', backend });
    // Strings are left out: a random string is a real path, and Node's fs errors for it are Node's.
    const notAString = valueRecipe.filter((r) => r.kind !== 'string' && r.kind !== 'long-string' && !(r.kind === 'anything' && typeof r.extra === 'string'));
    await fc.assert(
      fc.asyncProperty(notAString, valueRecipe, async (pathRecipe, optionsRecipe) => {
        const path = buildValue(pathRecipe) as string;
        const options = buildValue(optionsRecipe) as never;
        for (const [name, call] of [
          ['save', () => net.save(path)], ['saveSync', async () => net.saveSync(path)],
          ['Mlp.load', () => Mlp.load(path, options)], ['Mlp.loadSync', async () => Mlp.loadSync(path, options)],
          ['q.save', () => q.save(path)], ['q.saveSync', async () => q.saveSync(path)],
          ['QuantizedMlp.load', () => QuantizedMlp.load(path, options)], ['QuantizedMlp.loadSync', async () => QuantizedMlp.loadSync(path, options)],
        ] as const) {
          const r = await attemptAsync(name, call as () => Promise<unknown>);
          expect(r.ok, `${name} accepted ${String(pathRecipe.kind)} as a path`).toBe(false);
        }
      }),
      fuzzParams(60),
    );
    q.dispose();
    net.dispose();
  });

  it('setThreads and info: hostile thread counts; results do not depend on the count', () => {
    const net = make();
    const x = randomArray(300 * 3, 9);
    const expected = net.predict(x);
    const threads = info().threads;
    try {
      fc.assert(
        fc.property(fc.oneof(sizeLike, valueRecipe.map((v) => ({ hostile: v }))), (n) => {
          const value = typeof n === 'object' && n !== null && 'hostile' in n ? buildValue(n.hostile as ValueRecipe) : n;
          const r = attempt('setThreads', () => setThreads(value as number));
          if (r.ok && backend === 'native') expect(info().threads).toBe(value);
          expect(sameBits(net.predict(x), expected)).toBe(true);
        }),
        fuzzParams(150),
      );
    } finally {
      setThreads(threads);
    }
    net.dispose();
  });

  // ---- disposed handles, and calls while async work runs --------------------------------------

  it('a disposed model, quantised model or trainer: every call throws or rejects with ERR_MLPKIT_DISPOSED', async () => {
    const calls: [string, (net: Mlp, q: QuantizedMlp, t: ReturnType<Mlp['trainer']>, arg: unknown) => unknown][] = [
      ['predict', (n, _q, _t, a) => n.predict((a ?? new Float32Array(3)) as Float32Array)],
      ['predictAsync', (n, _q, _t, a) => n.predictAsync((a ?? new Float32Array(3)) as Float32Array)],
      ['getParameters', (n) => n.getParameters()],
      ['setParameters', (n, _q, _t, a) => n.setParameters((a ?? new Float32Array(32)) as Float32Array)],
      ['getLayers', (n) => n.getLayers()],
      ['gradients', (n, _q, _t, a) => n.gradients(new Float32Array(3), (a ?? { gradOutput: new Float32Array(2) }) as never)],
      ['trainer', (n, _q, _t, a) => n.trainer((a ?? { loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 } }) as never)],
      ['quantize', (n, _q, _t, a) => n.quantize((a ?? { weights: 'int8' }) as never)],
      ['toSafetensors', (n) => n.toSafetensors()],
      ['step', (_n, _q, t, a) => t.step(new Float32Array(3), (a ?? new Float32Array(2)) as Float32Array)],
      ['stepAsync', (_n, _q, t, a) => t.stepAsync(new Float32Array(3), (a ?? new Float32Array(2)) as Float32Array)],
      ['fit', (_n, _q, t, a) => t.fit(new Float32Array(3), new Float32Array(2), (a ?? { epochs: 1 }) as never)],
      ['evaluate', (_n, _q, t) => t.evaluate(new Float32Array(3), new Float32Array(2))],
      ['reset', (_n, _q, t) => t.reset()],
      ['q.predict', (_n, q, _t, a) => q.predict((a ?? new Float32Array(3)) as Float32Array)],
      ['q.predictAsync', (_n, q, _t, a) => q.predictAsync((a ?? new Float32Array(3)) as Float32Array)],
      ['q.getLayers', (_n, q) => q.getLayers()],
      ['q.toSafetensors', (_n, q) => q.toSafetensors()],
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...calls), fc.option(valueRecipe, { nil: undefined }), async ([name, call], arg) => {
        const net = make();
        const q = net.quantize({ weights: 'int8', backend });
        const t = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 } });
        net.dispose();
        q.dispose();
        net.dispose(); // idempotent
        const r = await attemptAsync(name, async () => call(net, q, t, arg === undefined ? undefined : buildValue(arg)));
        expect(r.ok, `${name} on a disposed model succeeded`).toBe(false);
        if (arg === undefined) expect((r as { error: { code: string } }).error.code).toBe('ERR_MLPKIT_DISPOSED');
      }),
      fuzzParams(150),
    );
  });

  it('many calls in flight on one model (predictAsync, stepAsync, sync calls, dispose) give the results of the same calls one after another', async () => {
    const OPS = ['predictAsync', 'predict', 'stepAsync', 'step', 'getParameters', 'setParameters', 'gradients', 'q-predictAsync', 'dispose'] as const;
    const opCase = fc.array(fc.record({ op: fc.constantFrom(...OPS), rows: fc.constantFrom(1, 2, 7, 64, 300), seed: fc.nat(50) }), { minLength: 1, maxLength: 12 });
    await fc.assert(
      fc.asyncProperty(opCase, async (ops) => {
        const run = async (concurrent: boolean) => {
          const net = make();
          const q = net.quantize({ weights: 'int8', activations: 'int8', backend });
          const t = net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 0.01 } });
          const results: unknown[] = [];
          const pending: Promise<unknown>[] = [];
          for (const [i, { op, rows, seed }] of ops.entries()) {
            const x = randomArray(rows * 3, seed);
            const settle = async (fn: () => unknown) => {
              try {
                results[i] = await fn();
              } catch (err) {
                expectDocumented(err, op);
                results[i] = `error ${(err as { code: string }).code}`;
              }
            };
            const call = (): unknown => {
              switch (op) {
                case 'predictAsync': return net.predictAsync(x);
                case 'predict': return net.predict(x);
                case 'stepAsync': return t.stepAsync(x, randomArray(rows * 2, seed + 1));
                case 'step': return t.step(x, randomArray(rows * 2, seed + 1));
                case 'getParameters': return net.getParameters();
                case 'setParameters': return net.setParameters(randomArray(32, seed));
                case 'gradients': return net.gradients(x, { loss: 'mse', target: randomArray(rows * 2, seed) }).parameters;
                case 'q-predictAsync': return q.predictAsync(x);
                case 'dispose': net.dispose(); return 'disposed';
              }
            };
            const p = settle(call);
            if (concurrent) pending.push(p);
            else await p;
          }
          await Promise.all(pending);
          net.dispose();
          q.dispose();
          return results;
        };
        const together = await run(true);
        const inTurn = await run(false);
        expect(together.length).toBe(inTurn.length);
        together.forEach((r, i) => {
          if (r instanceof Float32Array) expect(sameBits(r, inTurn[i] as Float32Array), `call ${i} (${ops[i].op})`).toBe(true);
          else expect(Object.is(r, inTurn[i]) || r === inTurn[i], `call ${i} (${ops[i].op}): ${String(r)} vs ${String(inTurn[i])}`).toBe(true);
        });
      }),
      fuzzParams(60),
    );
  });

  it('out overlapping x (the same array, or views of one buffer shifted by rows) gives the result of plain arrays', () => {
    // Square layers wide enough for several column groups: the kernels wrote early outputs over
    // inputs they had still to read (128 x 128 at batch 64: 4,096 of 4,096 outputs wrong).
    for (const [width, batch] of [[128, 2], [128, 64], [512, 8]]) {
      const net = new Mlp({ inputs: width, layers: [{ units: width }], seed: 5 }, { backend });
      const q = net.quantize({ weights: 'int8', backend });
      const layer = q.getLayers()[0];
      for (const shift of [0, 1, -1]) {
        const buf = randomArray((batch + 1) * width, width + batch);
        // shift 0: out is x; 1: x starts a row after out; -1: out starts a row after x.
        const x = buf.subarray(Math.max(shift, 0) * width, (Math.max(shift, 0) + batch) * width);
        const out = buf.subarray(Math.max(-shift, 0) * width, (Math.max(-shift, 0) + batch) * width);
        const plain = Float32Array.from(x);
        const expected = net.predict(plain);
        const qExpected = q.predict(plain);
        const mExpected = qmatmul(plain, layer, { backend });
        expect(sameBits(net.predict(x, out), expected), `Mlp ${width} x ${batch} shift ${shift}`).toBe(true);
        buf.set(randomArray((batch + 1) * width, width + batch));
        expect(sameBits(q.predict(x, out), qExpected), `QuantizedMlp ${width} x ${batch} shift ${shift}`).toBe(true);
        buf.set(randomArray((batch + 1) * width, width + batch));
        expect(sameBits(qmatmul(x, layer, { backend, out }), mExpected), `qmatmul ${width} x ${batch} shift ${shift}`).toBe(true);
      }
      q.dispose();
      net.dispose();
    }
  });

  it('huge sizes fail with a RangeError, before anything is allocated', () => {
    const huge = (fn: () => unknown, code = 'ERR_OUT_OF_RANGE') => {
      const r = attempt('huge', fn);
      expect(r.ok).toBe(false);
      expect((r as { error: RangeError & { code: string } }).error).toBeInstanceOf(RangeError);
      expect((r as { error: { code: string } }).error.code).toBe(code);
    };
    huge(() => new Mlp({ inputs: 2 ** 20, layers: [{ units: 2 ** 20 }] }, { backend })); // 2^40 parameters
    huge(() => new Mlp({ inputs: 2 ** 16, layers: [{ units: 2 ** 16 }, { units: 2 ** 16 }] }, { backend }));
    huge(() => new Mlp({ inputs: 1, layers: [{ units: 2 ** 21 }] }, { backend })); // wider than a layer may be
    const wide = new Mlp({ inputs: 1, layers: [{ units: 2 ** 20, bias: false }] }, { backend });
    huge(() => wide.predict(new Float32Array(2 ** 13))); // 2^33 outputs: more than one Float32Array holds
    wide.dispose();
    huge(() => quantizeLayer(new Float32Array(4), null, 2 ** 40, 2 ** 40, 'none', 0, { format: 'int8' }));
  });
});

// ---- regressions: what the fuzzers found, pinned down --------------------------------------------

describe('regressions found by the fuzz suites', () => {
  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      return `${(err as Error).name} ${(err as { code?: string }).code}`;
    }
    return 'no error';
  };
  const { proxy: revoked, revoke } = Proxy.revocable({}, {});
  revoke();

  it('arrays that only pose as Float32Arrays (a Proxy of one, an object inheriting the prototype) are coded TypeErrors', () => {
    const net = new Mlp(SPEC);
    expect(code(() => net.predict(new Proxy(new Float32Array(3), {}) as Float32Array))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(code(() => net.predict(Object.setPrototypeOf({ length: 3 }, Float32Array.prototype) as Float32Array))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(code(() => new Mlp(revoked as never))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    net.dispose();
  });

  it('sparsify: a revoked Proxy for calibration or layers is a coded TypeError (instanceof and Array.isArray threw V8\'s own)', async () => {
    const net = new Mlp(SPEC);
    const codeAsync = async (fn: () => Promise<unknown>) => fn().then(() => 'no error', (err) => `${err.name} ${err.code}`);
    expect(await codeAsync(() => net.sparsify({ mode: 'topk', k: 2, calibration: revoked as never }))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(await codeAsync(() => net.sparsify({ mode: 'topk', k: 2, layers: revoked as never }))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    net.dispose();
  });

  it("quantize's weights and signal, Adam's betas, fit's signal, new Trainer's net, a served model, fromLayers' lists: a revoked Proxy is a coded TypeError (Array.isArray, instanceof and property reads threw V8's own)", async () => {
    const net = new Mlp(SPEC);
    const codeAsync = async (fn: () => Promise<unknown>) => fn().then(() => 'no error', (err) => `${err.name} ${err.code}`);
    const sgd = { loss: 'mse' as const, optimizer: { type: 'sgd' as const, lr: 0.1 } };
    const Trainer = net.trainer(sgd).constructor as new (...a: unknown[]) => unknown;
    expect(code(() => new Trainer(revoked, sgd))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(await codeAsync(() => net.trainer(sgd).fit(new Float32Array(6), new Float32Array(4), { epochs: 1, signal: revoked as never }))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(code(() => net.quantize({ weights: 'int8', signal: revoked as never }))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(await codeAsync(() => net.quantizeAsync({ weights: 'int8', signal: revoked as never }))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(code(() => createServer({ models: { m: revoked as never } }))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(code(() => net.quantize({ weights: revoked as never }))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(await codeAsync(() => net.quantizeAsync({ weights: revoked as never }))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(code(() => net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-3, betas: revoked as never } }))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    const q = net.quantize({ weights: 'int8' });
    const layer = q.getLayers()[0];
    q.dispose();
    expect(code(() => QuantizedMlp.fromLayers(revoked as never))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(code(() => QuantizedMlp.fromLayers([layer], { activations: revoked as never }))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    net.dispose();
  });

  it('writeSafetensors: a detached empty array writes an empty tensor (the typed-array copy threw on it)', () => {
    const detached = new Float32Array(0);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    const file = readSafetensors(writeSafetensors({ t: { shape: [0], data: detached, dtype: 'F64' }, u: { shape: [1], data: Float32Array.of(2) } }));
    expect(file.tensors.t.data).toHaveLength(0);
    expect(Array.from(file.tensors.u.data)).toEqual([2]);
  });

  it('labels: 2^32 + 1 is out of range (it used to wrap to the valid label 1); a revoked Proxy is a coded TypeError', () => {
    const net = new Mlp(SPEC);
    const t = net.trainer({ loss: 'softmax-cross-entropy', optimizer: { type: 'sgd', lr: 0.1 } });
    expect(code(() => t.step(new Float32Array(3), [2 ** 32 + 1]))).toBe('RangeError ERR_OUT_OF_RANGE');
    expect(code(() => t.step(new Float32Array(3), revoked as never))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    net.dispose();
  });

  it('a quantised layer with a revoked Proxy for an array is a coded TypeError; a 100,000-character name is clipped in the message', () => {
    const layer = { ...quantizeLayer(randomArray(6, 1), null, 3, 2, 'none', 0, { format: 'int8' }), scales: revoked };
    expect(code(() => dequantizeLayer(layer as never))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(code(() => qmatmul(new Float32Array(3), layer as never))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    let message = '';
    try {
      new Mlp(SPEC).gradients(new Float32Array(3), { loss: 'x'.repeat(100_000) as never, target: new Float32Array(2) });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message.length).toBeLessThan(300);
  });

  it('QuantizedMlp has no public constructor; new Trainer needs a live Mlp', () => {
    expect(code(() => new (QuantizedMlp as unknown as new (...a: unknown[]) => unknown)({}, 'auto'))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    const net = new Mlp(SPEC);
    const Trainer = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 } }).constructor as new (...a: unknown[]) => unknown;
    expect(code(() => new Trainer({}, { loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 } }))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    net.dispose();
    expect(code(() => new Trainer(net, { loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 } }))).toBe('TypeError ERR_MLPKIT_DISPOSED');
  });

  it('writeSafetensors: an unwritable dtype (F16 used to write no bytes), a non-integer I64 (V8\'s BigInt error), a shape that is not an array', () => {
    expect(code(() => writeSafetensors({ a: { shape: [1], data: Float32Array.of(1), dtype: 'F16' as never } }))).toBe('RangeError ERR_OUT_OF_RANGE');
    expect(code(() => writeSafetensors({ a: { shape: [1], data: Float32Array.of(1.5), dtype: 'I64' } }))).toBe('RangeError ERR_OUT_OF_RANGE');
    expect(code(() => writeSafetensors({ a: { shape: 1 as never, data: Float32Array.of(1) } }))).toBe('TypeError ERR_INVALID_ARG_TYPE');
    expect(code(() => writeSafetensors({ __metadata__: { shape: [1], data: Float32Array.of(1) } }))).toBe('RangeError ERR_OUT_OF_RANGE');
  });
});

// ---- the raw native addon ------------------------------------------------------------------------
// lib/backend/native.ts loads it; these calls bypass every TypeScript check, so the addon must
// refuse bad arguments itself. Besides the coded errors, the only errors allowed are V8's own
// TypeErrors for calling a method on a foreign receiver or a class without `new`.

interface RawAddon {
  info(): Record<string, unknown>;
  setThreads(n: unknown): void;
  firstNonFinite(data: unknown): number;
  offerHugePages(array: unknown): void;
  Model: new (...args: unknown[]) => Record<string, (...args: unknown[]) => unknown>;
  QuantModel: new (...args: unknown[]) => Record<string, (...args: unknown[]) => unknown>;
}

function expectRawError(err: unknown, what: string): void {
  const message = (err as Error)?.message;
  if (err instanceof TypeError && (message === 'Illegal invocation' || message === "Class constructors cannot be invoked without 'new'")) return;
  // V8's own TypeError for reading a revoked Proxy passed as the config or a layer: the public API
  // refuses those with a code before they reach the addon.
  if (err instanceof TypeError && /on a proxy that has been revoked$/.test(message)) return;
  expectDocumented(err, what);
}

async function rawAttempt(what: string, fn: () => unknown): Promise<boolean> {
  try {
    const r = fn();
    if (r instanceof Promise) await r;
    return true;
  } catch (err) {
    expectRawError(err, what);
    return false;
  }
}

describe.runIf(hasNative())('raw native addon fuzz (native only: needs the addon, skipped when it does not load or MLPKIT_BACKEND=reference)', () => {
  const addon = loadNative() as unknown as RawAddon;
  const config = toModelConfig(normalizeSpec(SPEC));
  const paramCount = 32;
  const goodQuantLayer = () => quantizeLayer(randomArray(2 * 40, 3), randomArray(2, 4), 40, 2, 'relu', 0.01, { format: 'int4', groupSize: 32, symmetric: false });

  // Per method: argument positions and what is valid there, so calls get deep before they fail.
  const x = (rows: number) => new Float32Array(rows * 3);
  const METHODS: Record<string, (() => unknown)[]> = {
    predict: [() => x(2), () => 2, () => new Float32Array(4)],
    predictAsync: [() => x(2), () => 2, () => new Float32Array(4)],
    getParams: [() => new Float32Array(paramCount)],
    setParams: [() => new Float32Array(paramCount)],
    getGrads: [() => new Float32Array(paramCount)],
    setGrads: [() => new Float32Array(paramCount)],
    lossGrad: [() => x(2), () => 2, () => 0, () => 1, () => new Float32Array(4), () => x(2)],
    backward: [() => x(2), () => 2, () => new Float32Array(4), () => x(2)],
    optimizerStep: [() => 1, () => Float64Array.of(0.01, 0, 0, 0, 0, 0.9, 0.999, 1e-8), () => 0],
    resetOptimizer: [],
    trainStep: [() => x(2), () => 2, () => 3, () => 0, () => Int32Array.of(0, 1), () => 1, () => Float64Array.of(0.01, 0, 0, 0, 0, 0.9, 0.999, 1e-8), () => 1],
    trainStepAsync: [() => x(2), () => 2, () => 3, () => 0, () => Int32Array.of(0, 1), () => 1, () => Float64Array.of(0.01, 0, 0, 0, 0, 0.9, 0.999, 1e-8), () => 1],
    dispose: [],
  };
  // Each argument: the valid one, a hostile value, a number from the special list, or an array that
  // aliases the first argument (out = x, gradInput = x).
  const argCase = fc.record({ kind: fc.constantFrom('valid', 'valid', 'valid', 'hostile', 'special', 'alias', 'f32'), value: valueRecipe, special: fc.constantFrom(...SPECIAL_NUMBERS), f32: f32Recipe(fc.constantFrom(0, 4, 6, 32)) });
  const buildArgs = (gens: (() => unknown)[], cases: (typeof argCase extends fc.Arbitrary<infer T> ? T : never)[]) => {
    const args: unknown[] = [];
    cases.forEach((c, i) => {
      const gen = gens[i];
      if (c.kind === 'valid' && gen) args.push(gen());
      else if (c.kind === 'hostile') args.push(buildValue(c.value));
      else if (c.kind === 'special') args.push(c.special);
      else if (c.kind === 'alias') args.push(args[0]);
      else if (c.kind === 'f32') args.push(buildF32(c.f32));
      else args.push(gen ? gen() : undefined);
    });
    return args;
  };

  it('Model constructor: hostile configs (fields, getters that detach arrays already read, Proxies) and params', async () => {
    const FIELDS = ['inputs', 'encoding', 'octaves', 'includeInput', 'units', 'activations', 'alphas', 'bias'] as const;
    const ctorCase = fc.record({
      field: fc.constantFrom(...FIELDS, 'none', 'whole'),
      how: fc.constantFrom('hostile', 'special', 'detaching-getter', 'throwing-getter', 'huge-units'),
      value: valueRecipe,
      special: fc.constantFrom(...SPECIAL_NUMBERS),
      params: fc.oneof(fc.constant(null), f32Recipe(fc.constantFrom(0, 31, 32, 33))),
    });
    await fc.assert(
      fc.asyncProperty(ctorCase, async (c) => {
        const cfg: Record<string, unknown> = { ...config, units: config.units.slice(), activations: config.activations.slice(), alphas: config.alphas.slice(), bias: config.bias.slice() };
        let arg: unknown = cfg;
        if (c.field === 'whole') arg = c.how === 'special' ? c.special : buildValue(c.value);
        else if (c.field !== 'none') {
          if (c.how === 'hostile') cfg[c.field] = buildValue(c.value);
          else if (c.how === 'special') cfg[c.field] = c.special;
          else if (c.how === 'huge-units') cfg.units = Int32Array.of(2 ** 31 - 1, 2 ** 31 - 1);
          else {
            // A getter that runs when the addon reads this field: it detaches every array read before.
            const arrays = [cfg.units, cfg.activations, cfg.alphas, cfg.bias] as ArrayBufferView[];
            const value = cfg[c.field];
            Object.defineProperty(cfg, c.field, {
              get: () => {
                if (c.how === 'throwing-getter') throw new Hostile(c.field);
                for (const a of arrays) if (a !== value) try { structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] }); } catch { /* already */ }
                return value;
              },
            });
          }
        }
        const params = c.params ? buildF32(c.params) : new Float32Array(paramCount);
        let model: Record<string, (...a: unknown[]) => unknown> | null = null;
        await rawAttempt('new Model', () => { model = new addon.Model(arg, params); });
        if (model) (model as { dispose(): void }).dispose();
      }),
      fuzzParams(300),
    );
  });

  it('Model methods: hostile, special and aliased arguments, any count, live and disposed', async () => {
    const callCase = fc.record({
      method: fc.constantFrom(...Object.keys(METHODS)),
      args: fc.array(argCase, { minLength: 0, maxLength: 9 }),
      disposed: fc.boolean(),
      receiver: fc.constantFrom('model', 'model', 'model', 'bound-other', 'foreign', 'quant'),
    });
    await fc.assert(
      fc.asyncProperty(callCase, async (c) => {
        const model = new addon.Model(config, randomArray(paramCount, 1));
        const quant = new addon.QuantModel({ inputs: 40, encoding: 0, octaves: 0, includeInput: false, activations: 0 }, [goodQuantLayer()]);
        if (c.disposed) (model.dispose as () => void)();
        const args = buildArgs(METHODS[c.method], c.args);
        const fn = c.method === 'predict' ? model.predict : (Object.getPrototypeOf(model) as Record<string, (...a: unknown[]) => unknown>)[c.method];
        const receiver = c.receiver === 'model' ? model : c.receiver === 'quant' ? quant : c.receiver === 'foreign' ? {} : Object.create(model);
        await rawAttempt(`Model.${c.method}`, () => fn.apply(receiver, args));
        (model.dispose as () => void)();
        (quant.dispose as () => void)();
      }),
      fuzzParams(600),
    );
  });

  it('QuantModel: hostile configs and layers (fields, getters that detach arrays already read), and its methods', async () => {
    const FIELDS = ['inputs', 'outputs', 'groupSize', 'format', 'symmetric', 'weights', 'scales', 'zeros', 'bias', 'activation', 'alpha'] as const;
    const qCase = fc.record({
      field: fc.constantFrom(...FIELDS, 'none', 'config', 'layers'),
      how: fc.constantFrom('hostile', 'special', 'detaching-getter', 'throwing-getter'),
      value: valueRecipe,
      special: fc.constantFrom(...SPECIAL_NUMBERS),
      mode: fc.constantFrom(0, 1, 2, -1, 0.5),
      method: fc.constantFrom('predict', 'predictAsync', 'dispose'),
      args: fc.array(argCase, { minLength: 0, maxLength: 4 }),
    });
    await fc.assert(
      fc.asyncProperty(qCase, async (c) => {
        const layer: Record<string, unknown> = { ...goodQuantLayer() };
        let cfg: unknown = { inputs: 40, encoding: 0, octaves: 0, includeInput: false, activations: c.mode };
        let layers: unknown = [layer];
        if (c.field === 'config') cfg = c.how === 'special' ? c.special : buildValue(c.value);
        else if (c.field === 'layers') layers = c.how === 'special' ? c.special : buildValue(c.value);
        else if (c.field !== 'none') {
          if (c.how === 'hostile') layer[c.field] = buildValue(c.value);
          else if (c.how === 'special') layer[c.field] = c.special;
          else {
            const arrays = [layer.weights, layer.scales, layer.zeros, layer.bias] as ArrayBufferView[];
            const value = layer[c.field];
            Object.defineProperty(layer, c.field, {
              get: () => {
                if (c.how === 'throwing-getter') throw new Hostile(c.field);
                for (const a of arrays) if (a && a !== value) try { structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] }); } catch { /* already */ }
                return value;
              },
            });
          }
        }
        let model: Record<string, (...a: unknown[]) => unknown> | null = null;
        await rawAttempt('new QuantModel', () => { model = new addon.QuantModel(cfg, layers); });
        if (!model) return;
        const m = model as Record<string, (...a: unknown[]) => unknown>;
        const gens = [() => new Float32Array(2 * 40), () => 2, () => new Float32Array(4)];
        await rawAttempt(`QuantModel.${c.method}`, () => m[c.method](...buildArgs(gens, c.args)));
        m.dispose();
      }),
      fuzzParams(300),
    );
  });

  it('regressions: a getter that detaches arrays the constructor already read; paramCount read on a foreign object', () => {
    // ReadModelConfig and the QuantModel layer reader kept pointers into arrays they had read
    // while a later Get() ran JS: here the getter of `bias` detaches (and so frees) units.
    const cfg = { ...config, units: config.units.slice() };
    Object.defineProperty(cfg, 'bias', {
      get: () => {
        structuredClone(cfg.units.buffer, { transfer: [cfg.units.buffer as ArrayBuffer] });
        return config.bias;
      },
    });
    const m = new addon.Model(cfg, randomArray(paramCount, 1)); // units were copied before the getter ran
    const y = new Float32Array(2);
    (m.predict as (...a: unknown[]) => void)(new Float32Array(3), 1, y);
    expect(sameBits(y, new Mlp(SPEC, { backend: 'native', parameters: randomArray(paramCount, 1) }).predict(new Float32Array(3)))).toBe(true);
    // paramCount used to be a prototype getter: on a foreign receiver, an uncoded 'Invalid argument'.
    expect(Object.getOwnPropertyDescriptor(Object.getPrototypeOf(m), 'paramCount')).toBeUndefined();
    expect(m.paramCount).toBe(paramCount);
    (m.dispose as () => void)();
  });

  it('regressions: QuantModel reads its arrays in place, so an array detached by a later getter is a RangeError', () => {
    // The layer reader checks every array as it reads it and takes its pointers only after the
    // last Get (no copy of the weights): an array detached meanwhile has no elements by then.
    const cfg = { inputs: 40, encoding: 0, octaves: 0, includeInput: false, activations: 0 };
    const detachBy = (target: Record<string, unknown>, field: string, victim: ArrayBufferView) => {
      const value = target[field];
      Object.defineProperty(target, field, {
        get: () => {
          structuredClone(victim.buffer, { transfer: [victim.buffer as ArrayBuffer] });
          return value;
        },
      });
    };
    const rangeErrorOf = (fn: () => unknown): Error => {
      try {
        fn();
      } catch (err) {
        return err as Error;
      }
      throw new Error('expected a throw');
    };
    const same: Record<string, unknown> = { ...goodQuantLayer() };
    detachBy(same, 'activation', same.weights as ArrayBufferView);
    let err = rangeErrorOf(() => new addon.QuantModel(cfg, [same]));
    expect(err).toBeInstanceOf(RangeError);
    expect(err.message).toBe('QuantModel: layers[0]: weights must have outputs * paddedInputs / 2 = 64 elements, got 0');
    // A later layer's getter detaches an earlier layer's scales.
    const first: Record<string, unknown> = { ...goodQuantLayer() };
    const second: Record<string, unknown> = { ...quantizeLayer(randomArray(2 * 2, 5), randomArray(2, 6), 2, 2, 'none', 0, { format: 'int4', groupSize: 32, symmetric: false }) };
    detachBy(second, 'bias', first.scales as ArrayBufferView);
    err = rangeErrorOf(() => new addon.QuantModel(cfg, [first, second]));
    expect(err).toBeInstanceOf(RangeError);
    expect(err.message).toBe('QuantModel: layers[0]: scales must have outputs * groups = 4 elements, got 0');
  });

  it('info, setThreads, firstNonFinite, offerHugePages: hostile arguments; huge raw sizes are RangeErrors', async () => {
    const threads = addon.info().threads as number;
    try {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom('info', 'setThreads', 'firstNonFinite', 'offerHugePages'), fc.array(argCase, { maxLength: 3 }), async (name, cases) => {
          const args = buildArgs([() => 2], cases);
          await rawAttempt(name, () => (addon[name as keyof RawAddon] as (...a: unknown[]) => unknown)(...args));
        }),
        fuzzParams(200),
      );
    } finally {
      addon.setThreads(threads);
    }
    const range = async (fn: () => unknown) => {
      let caught: unknown;
      try {
        fn();
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(RangeError);
      expect((caught as { code: string }).code).toBe('ERR_OUT_OF_RANGE');
    };
    await range(() => new addon.Model({ ...config, units: Int32Array.of(2 ** 31 - 1, 2 ** 31 - 1) }, new Float32Array(4)));
    await range(() => new addon.Model({ ...config, encoding: 1, octaves: 2 ** 31 - 1, includeInput: true }, new Float32Array(4)));
    const m = new addon.Model(config, new Float32Array(paramCount));
    await range(() => m.predict(new Float32Array(3), 2 ** 53 - 1, new Float32Array(2)));
    await range(() => m.predict(new Float32Array(3), 2 ** 62, new Float32Array(2)));
    m.dispose();
    const big = { ...goodQuantLayer(), inputs: 2 ** 31 - 1, groupSize: 32 };
    await range(() => new addon.QuantModel({ inputs: 2 ** 31 - 1, encoding: 0, octaves: 0, includeInput: false, activations: 0 }, [big]));
  });
});

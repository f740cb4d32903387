// Shared pieces of the fuzz suites (86, 87): recipes for hostile values, the rule every call
// must follow (a correct result or a documented error), and the run settings.
//
// Values are generated as recipes and built inside each run, so fast-check can shrink a failing
// case to a minimal recipe, and so each run gets fresh objects (a detached buffer, a revoked
// Proxy) however often the case is replayed.

import fc from 'fast-check';
import { types } from 'node:util';
import { expect } from 'vitest';
import { FileFormatError } from '../lib/index.js';
import { typedArrayLength } from '../lib/errors.js';

/** Runs per property: a modest number in CI, `MLPKIT_FUZZ_RUNS=100000 npm run fuzz` for long runs. */
export const FUZZ_RUNS = Number(process.env.MLPKIT_FUZZ_RUNS ?? 0) || 0;
/** One seed for the whole suite, so a CI failure replays exactly (MLPKIT_FUZZ_SEED to vary it). */
export const FUZZ_SEED = Number(process.env.MLPKIT_FUZZ_SEED ?? 20261202);

/**
 * fast-check parameters: `runs` in CI unless MLPKIT_FUZZ_RUNS asks for more. A property whose
 * run costs as much as `costPerRun` ordinary ones (one that starts a worker thread) gets that
 * share of a long run, so `npm run fuzz` stays minutes long.
 */
export function fuzzParams(runs: number, costPerRun = 1): fc.Parameters<unknown> {
  return { numRuns: FUZZ_RUNS ? Math.max(runs, Math.ceil(FUZZ_RUNS / costPerRun)) : runs, seed: FUZZ_SEED, endOnFailure: true };
}

/** What a hostile getter, Proxy trap or valueOf throws: it must come back out unchanged. */
export class Hostile extends Error {
  constructor(where: string) {
    super(`hostile code ran: ${where}`);
  }
}

const DOCUMENTED: Record<string, string[]> = {
  TypeError: ['ERR_INVALID_ARG_TYPE', 'ERR_MLPKIT_DISPOSED'],
  RangeError: ['ERR_OUT_OF_RANGE', 'ERR_MLPKIT_OUT_OF_MEMORY'],
};

/**
 * A documented error: TypeError (ERR_INVALID_ARG_TYPE, ERR_MLPKIT_DISPOSED), RangeError
 * (ERR_OUT_OF_RANGE, ERR_MLPKIT_OUT_OF_MEMORY), FileFormatError (ERR_MLPKIT_INVALID_FILE),
 * Error (ERR_MLPKIT_NATIVE_UNAVAILABLE: backend 'native' asked for where it does not load), or
 * the caller's own exception from a getter or trap, passed through. With a short message.
 */
export function expectDocumented(err: unknown, what: string): void {
  if (err instanceof Hostile) return;
  const e = err as Error & { code?: unknown };
  const ok =
    (err instanceof FileFormatError && e.code === 'ERR_MLPKIT_INVALID_FILE') ||
    (err instanceof Error && e.code === 'ERR_MLPKIT_NATIVE_UNAVAILABLE') ||
    (err instanceof TypeError && DOCUMENTED.TypeError.includes(e.code as string)) ||
    (err instanceof RangeError && DOCUMENTED.RangeError.includes(e.code as string));
  if (!ok) {
    throw new Error(`${what}: undocumented error ${(err as Error)?.constructor?.name} code=${String(e?.code)}: ${String(e?.message).slice(0, 300)}`, { cause: err });
  }
  expect(typeof e.message).toBe('string');
  expect(e.message.length, `${what}: message length`).toBeLessThan(2000);
}

/** Runs fn; a thrown error must be documented. Returns the result, or undefined after an error. */
export function attempt<T>(what: string, fn: () => T): { ok: true; value: T } | { ok: false; error: unknown } {
  try {
    return { ok: true, value: fn() };
  } catch (error) {
    expectDocumented(error, what);
    return { ok: false, error };
  }
}

/** The async twin: a thrown error or a rejection must be documented. */
export async function attemptAsync<T>(what: string, fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await fn() };
  } catch (error) {
    expectDocumented(error, what);
    return { ok: false, error };
  }
}

/** Bitwise equality of float arrays (NaN payloads included). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

// ---- numbers -----------------------------------------------------------------------------------

export const SPECIAL_NUMBERS = [
  0, -0, 1, -1, 0.5, 2.5, -3, NaN, Infinity, -Infinity, 5e-324, -5e-324, 1e-45, 1.17e-38, 3.4e38, -3.4e38, 1e30,
  -1e30, 1e308, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 32 + 1, -(2 ** 31), 2 ** 53, Number.MAX_SAFE_INTEGER,
  Number.MAX_VALUE, Number.MIN_VALUE, 1e21, 127, 128, -128, 255, 256,
];

/** Numbers a size or code field may meet: small valid ones, and every special case. */
export const sizeLike = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 8 }) },
  { weight: 2, arbitrary: fc.constantFrom(...SPECIAL_NUMBERS) },
  { weight: 1, arbitrary: fc.double() },
);

/** Float32 contents for inputs: ordinary, or NaN / Infinity / denormals / extremes. */
export const FILLS = ['random', 'zeros', 'nan', 'inf', 'denormal', 'extreme', 'mixed'] as const;
export type Fill = (typeof FILLS)[number];

export function fillValue(fill: Fill, i: number, seed: number): number {
  const r = Math.sin(seed * 12.9898 + i * 78.233) * 43758.5453;
  const u = r - Math.floor(r); // [0, 1)
  switch (fill) {
    case 'random': return 2 * u - 1;
    case 'zeros': return 0;
    case 'nan': return i % 3 === 0 ? NaN : 2 * u - 1;
    case 'inf': return i % 4 === 0 ? (i % 8 === 0 ? Infinity : -Infinity) : u;
    case 'denormal': return (u < 0.5 ? -1 : 1) * u * 1e-40;
    case 'extreme': return (u < 0.5 ? -1 : 1) * (u < 0.25 ? 3.4e38 : 1e30);
    case 'mixed': return [0, -0, NaN, Infinity, -Infinity, 1e-42, 3.4e38, -1, 0.25][i % 9];
  }
}

// ---- Float32Array recipes ------------------------------------------------------------------------

/** Every way a Float32Array (or what poses as one) can be backed. */
export const BACKINGS = [
  'plain', 'offset', 'shared', 'resizable', 'tracking', 'detached', 'subclass', 'lying-length', 'fake', 'proxy', 'float64', 'int32', 'array',
] as const;
export type Backing = (typeof BACKINGS)[number];

export interface F32Recipe {
  backing: Backing;
  length: number;
  fill: Fill;
  seed: number;
}

/** length: `lengths` gives the interesting ones for the call (multiples of a width, off by one). */
export function f32Recipe(lengths: fc.Arbitrary<number>, backings: readonly Backing[] = BACKINGS): fc.Arbitrary<F32Recipe> {
  return fc.record({
    backing: fc.constantFrom(...backings),
    length: lengths,
    fill: fc.constantFrom(...FILLS),
    seed: fc.integer({ min: 0, max: 1000 }),
  });
}

class LyingFloat32Array extends Float32Array {
  override get length(): number {
    return super.length + 1000;
  }
}
class SubFloat32Array extends Float32Array {}

function values(r: F32Recipe): number[] {
  return Array.from({ length: r.length }, (_, i) => fillValue(r.fill, i, r.seed));
}

/** Builds the array a recipe describes (fresh each time). */
export function buildF32(r: F32Recipe): unknown {
  const v = values(r);
  switch (r.backing) {
    case 'plain': return Float32Array.from(v);
    case 'offset': {
      // A view at an odd float offset into a larger buffer, with live data on both sides.
      const buf = new Float32Array(r.length + 7).fill(123.5);
      const view = buf.subarray(3, 3 + r.length);
      view.set(v);
      return view;
    }
    case 'shared': {
      const a = new Float32Array(new SharedArrayBuffer(4 * r.length + 8), 4, r.length);
      a.set(v);
      return a;
    }
    case 'resizable': {
      const buf = new ArrayBuffer(4 * r.length, { maxByteLength: 4 * r.length + 64 });
      const a = new Float32Array(buf, 0, r.length);
      a.set(v);
      return a;
    }
    case 'tracking': {
      const buf = new ArrayBuffer(4 * r.length, { maxByteLength: 4 * r.length + 64 });
      const a = new Float32Array(buf); // length-tracking
      a.set(v);
      return a;
    }
    case 'detached': {
      const a = Float32Array.from(v);
      structuredClone(a.buffer, { transfer: [a.buffer] });
      return a;
    }
    case 'subclass': return SubFloat32Array.from(v);
    case 'lying-length': return LyingFloat32Array.from(v);
    case 'fake': return Object.setPrototypeOf({ length: r.length, 0: 1 }, Float32Array.prototype);
    case 'proxy': return new Proxy(Float32Array.from(v), {});
    case 'float64': return Float64Array.from(v);
    case 'int32': return Int32Array.from(v, (x) => (Number.isFinite(x) ? Math.trunc(x) : 0));
    case 'array': return v;
  }
}

/** A plain Float32Array copy of what a valid recipe holds, or null when the recipe is not one. */
export function plainCopy(x: unknown): Float32Array | null {
  if (!types.isFloat32Array(x)) return null;
  const copy = new Float32Array(typedArrayLength(x)); // 0 when detached
  if (copy.length > 0) Float32Array.prototype.set.call(copy, x);
  return copy;
}

// ---- any hostile value ---------------------------------------------------------------------------

export const VALUE_KINDS = [
  'undefined', 'null', 'true', 'number', 'string', 'long-string', 'bigint', 'symbol', 'function', 'object',
  'array', 'nested-array', 'int8', 'uint8', 'uint8-clamped', 'int16', 'uint16', 'int32', 'uint32', 'float32',
  'float64', 'bigint64', 'dataview', 'arraybuffer', 'shared-arraybuffer', 'proxy', 'throwing-proxy',
  'revoked-proxy', 'throwing-getters', 'date', 'map', 'promise', 'anything',
] as const;
export type ValueKind = (typeof VALUE_KINDS)[number];

export interface ValueRecipe {
  kind: ValueKind;
  n: number;
  extra: unknown;
}

export const valueRecipe: fc.Arbitrary<ValueRecipe> = fc.record({
  kind: fc.constantFrom(...VALUE_KINDS),
  n: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.constantFrom(...SPECIAL_NUMBERS)),
  extra: fc.anything({ maxDepth: 2, withBigInt: true, withTypedArray: true, withSparseArray: true, withNullPrototype: true }),
});

/** An object every one of whose properties throws Hostile when read. */
export function throwingGetters(where: string): object {
  return new Proxy({}, {
    get: () => {
      throw new Hostile(`${where} get`);
    },
    has: () => true,
  });
}

/** A Proxy every trap of which throws Hostile. */
export function throwingProxy(where: string, target: object = {}): object {
  const trap = () => {
    throw new Hostile(where);
  };
  return new Proxy(target, {
    get: trap, set: trap, has: trap, ownKeys: trap, getOwnPropertyDescriptor: trap, getPrototypeOf: trap,
    defineProperty: trap, deleteProperty: trap, apply: trap, construct: trap, isExtensible: trap, preventExtensions: trap,
  });
}

export function buildValue(r: ValueRecipe): unknown {
  const len = Number.isInteger(r.n) && r.n >= 0 && r.n <= 64 ? r.n : 3;
  switch (r.kind) {
    case 'undefined': return undefined;
    case 'null': return null;
    case 'true': return true;
    case 'number': return r.n;
    case 'string': return String(r.n);
    case 'long-string': return 'x'.repeat(100_000);
    case 'bigint': return 12345678901234567890n;
    case 'symbol': return Symbol('hostile');
    case 'function': return () => 1;
    case 'object': return { inputs: r.n, length: r.n, units: r.n };
    case 'array': return Array.from({ length: len }, (_, i) => i);
    case 'nested-array': {
      let a: unknown = [];
      for (let i = 0; i < 1000; i++) a = [a];
      return a;
    }
    case 'int8': return new Int8Array(len);
    case 'uint8': return new Uint8Array(len);
    case 'uint8-clamped': return new Uint8ClampedArray(len);
    case 'int16': return new Int16Array(len);
    case 'uint16': return new Uint16Array(len);
    case 'int32': return new Int32Array(len);
    case 'uint32': return new Uint32Array(len);
    case 'float32': return new Float32Array(len);
    case 'float64': return new Float64Array(len);
    case 'bigint64': return new BigInt64Array(len);
    case 'dataview': return new DataView(new ArrayBuffer(len * 4));
    case 'arraybuffer': return new ArrayBuffer(len * 4);
    case 'shared-arraybuffer': return new SharedArrayBuffer(len * 4);
    case 'proxy': return new Proxy({ inputs: 2, layers: [{ units: 1 }] }, {});
    case 'throwing-proxy': return throwingProxy('value');
    case 'revoked-proxy': {
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      return proxy;
    }
    case 'throwing-getters': return throwingGetters('value');
    case 'date': return new Date(0);
    case 'map': return new Map([[1, 2]]);
    case 'promise': return Promise.resolve(1);
    case 'anything': return r.extra;
  }
}

// Shared test utilities: seeded data, backends under test, and relative comparisons.

import { expect } from 'vitest';
import { nativeAvailable } from '../lib/backend/index.js';
import { Rng } from '../lib/init.js';
import type { LayerFormatOptions } from '../lib/index.js';

/** Backends to cross-check: the reference always, native when it loads and is not forced off. */
export function backendsUnderTest(): ('native' | 'reference')[] {
  const forcedReference = (process.env.MLPKIT_BACKEND ?? '').toLowerCase() === 'reference';
  return !forcedReference && nativeAvailable() ? ['reference', 'native'] : ['reference'];
}

export const hasNative = (): boolean => backendsUnderTest().includes('native');

export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => (2 * rng.uniform() - 1) * scale);
}

/** n draws of N(0, scale^2), seeded. */
export function gaussian(n: number, seed: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/** Float32 values compared bit for bit, sign of zero included (NaN equals NaN): the first difference is reported. */
export function expectSameBits(a: Float32Array | Float64Array, b: Float32Array | Float64Array, what = ''): void {
  expect(a.length, `${what}: length`).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) throw new Error(`${what}: element ${i} differs: ${a[i]} vs ${b[i]}`);
  }
}

export function randomLabels(n: number, classes: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: n }, () => rng.below(classes));
}

/** max |a - b| / max(max |b|, floor): error relative to the scale of the values compared. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): number {
  expect(a.length).toBe(b.length);
  let maxDiff = 0;
  let scale = floor;
  for (let i = 0; i < a.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return maxDiff / scale;
}

export function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what = ''): void {
  const err = relativeError(a, b);
  if (!(err <= tol)) throw new Error(`${what}: relative error ${err.toExponential(3)} exceeds ${tol}`);
}

/** Every int4 group size, symmetric and asymmetric, and int8: the layer formats, named. */
export const LAYER_FORMATS: [string, LayerFormatOptions][] = [
  ['int8', { format: 'int8' }],
  ['int4 g32 sym', { format: 'int4', groupSize: 32 }],
  ['int4 g32 asym', { format: 'int4', groupSize: 32, symmetric: false }],
  ['int4 g64 sym', { format: 'int4', groupSize: 64 }],
  ['int4 g64 asym', { format: 'int4', groupSize: 64, symmetric: false }],
  ['int4 g128 sym', { format: 'int4', groupSize: 128 }],
  ['int4 g128 asym', { format: 'int4', groupSize: 128, symmetric: false }],
];

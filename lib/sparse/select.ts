// Which hidden units a sparse model keeps for one row: the TypeScript form of
// native/core/sparse/select.cpp, and the two must choose the same units (up to values that sit
// within float rounding of a threshold or a tie). Every rule returns the kept units in
// increasing order; NaN always counts as kept, so sparsification never hides a NaN.

import { activate } from '../backend/reference/activation.js';
import { ACTIVATIONS } from '../backend/types.js';

type Row = Float32Array | Float64Array;

// Rising activations that are never negative: their largest output has the largest score.
const RANK_BY_SCORE = new Set(['relu', 'sigmoid', 'softplus'].map((a) => ACTIVATIONS.indexOf(a as never)));
// Odd and rising: the largest |output| has the largest |score|.
const RANK_BY_MAGNITUDE = new Set(['none', 'tanh'].map((a) => ACTIVATIONS.indexOf(a as never)));

/**
 * Turns a predictor's scores (estimates of a layer's pre-activations) into the keys selectTop
 * ranks, in place, and returns its magnitude flag: the largest predicted |act(z)| should rank
 * first. For relu, sigmoid and softplus the score itself (it also orders the units that would
 * come out at zero); for none and tanh |score|; for leaky relu, gelu and silu the activation is
 * applied first. native/core/sparse/select.cpp: predictor_keys.
 */
export function predictorKeys(score: Row, offset: number, n: number, activation: number, alpha: number): boolean {
  if (RANK_BY_SCORE.has(activation)) return false;
  if (RANK_BY_MAGNITUDE.has(activation)) return true;
  for (let j = offset; j < offset + n; j++) score[j] = activate(activation, score[j], alpha);
  return true;
}

/** Exact: the nonzero units (after ReLU, those that fired). */
export function selectNonzero(h: Row, offset: number, n: number): number[] {
  const kept: number[] = [];
  for (let j = 0; j < n; j++) if (h[offset + j] !== 0) kept.push(j);
  return kept;
}

/** Threshold: the units with |h| > t. */
export function selectThreshold(h: Row, offset: number, n: number, t: number): number[] {
  const kept: number[] = [];
  for (let j = 0; j < n; j++) if (!(Math.abs(h[offset + j]) <= t)) kept.push(j);
  return kept;
}

/**
 * The k units with the largest key (|h| when magnitude, else the value, as a predictor's
 * score), ties to the lower index, NaN above everything, -0 equal to +0.
 */
export function selectTop(key: Row, offset: number, n: number, k: number, magnitude: boolean): number[] {
  if (k >= n) return Array.from({ length: n }, (_, j) => j);
  if (k <= 0) return [];
  const order = Array.from({ length: n }, (_, j) => j);
  const value = (j: number): number => {
    const v = key[offset + j];
    return magnitude ? Math.abs(v) : v;
  };
  order.sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    const na = Number.isNaN(va);
    const nb = Number.isNaN(vb);
    if (na || nb) return na && nb ? a - b : na ? -1 : 1;
    return va > vb ? -1 : va < vb ? 1 : a - b;
  });
  return order.slice(0, k).sort((a, b) => a - b);
}

/** Zeroes h[offset + j] for every j in [0, n) not in kept (increasing). */
export function keepOnly(h: Row, offset: number, n: number, kept: readonly number[]): void {
  let next = 0;
  for (let j = 0; j < n; j++) {
    if (next < kept.length && kept[next] === j) next++;
    else h[offset + j] = 0;
  }
}

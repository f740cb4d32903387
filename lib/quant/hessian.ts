// The second-order statistics GPTQ rounding (lib/quant/gptq.ts) reads: the Gram matrix of a
// layer's calibration inputs and the upper triangular factor of its inverse, in float64: a layer
// of k inputs costs m k^2 / 2 (m rows) for the Gram matrix and about k^3 / 3 for the factor.

/**
 * Share of the mean diagonal added to every diagonal entry. It keeps the factorisation defined
 * when the inputs span less than k dimensions (fewer rows than inputs, inputs always zero, two
 * inputs always equal) and limits how far the error of one weight is pushed onto others along
 * directions the calibration rows barely cover. 1% is the value of the GPTQ paper (Frantar et
 * al. 2022), where it was robust across models; larger values move the result towards plain
 * rounding (a diagonal matrix pushes no error at all).
 */
export const DAMPING = 0.01;

/** Times the damping is multiplied by 10 when the factorisation meets a non-positive pivot. */
const DAMPING_RETRIES = 4;

/**
 * H = X^T X for x [rows x k] (row-major), upper triangle and diagonal only (row p holds H[p][t]
 * for t >= p), float64. Zeros are skipped: inputs after a ReLU are mostly zero.
 */
export function gramUpper(x: Float32Array, k: number): Float64Array {
  const rows = x.length / k;
  const h = new Float64Array(k * k);
  for (let r = 0; r < rows; r++) {
    const base = r * k;
    for (let p = 0; p < k; p++) {
      const xp = x[base + p];
      if (xp === 0) continue;
      const hp = p * k;
      for (let t = p; t < k; t++) h[hp + t] += xp * x[base + t];
    }
  }
  return h;
}

/**
 * U, upper triangular, with U^T U = (H + lambda I)^-1, from H's upper triangle (gramUpper),
 * lambda = DAMPING x mean(diag H) (raised while a pivot is not positive); null when H is all
 * zero (no input ever nonzero: nothing to learn from) or the factorisation still fails.
 *
 * H + lambda I = R R^T with R upper triangular (Cholesky taken from the last index backwards),
 * so its inverse is R^-T R^-1 and U = R^-1. Both loops run along rows, contiguous in memory.
 */
export function inverseFactor(h: Float64Array, k: number): Float64Array | null {
  let trace = 0;
  for (let p = 0; p < k; p++) trace += h[p * k + p];
  if (!(trace > 0) || !Number.isFinite(trace)) return null;
  let lambda = (DAMPING * trace) / k;
  for (let attempt = 0; attempt <= DAMPING_RETRIES; attempt++, lambda *= 10) {
    const r = reverseCholesky(h, k, lambda);
    if (r) return invertUpper(r, k);
  }
  return null;
}

/**
 * R upper with R R^T = H + lambda I, or null at a non-positive pivot. Right-looking: once
 * column j of R is known, its outer product leaves the leading block at once, so every inner
 * loop runs along a row with no running sum (the native copy, native/core/quant/gptq.cpp,
 * vectorises them and keeps each element's operations in this order: the same bits).
 */
function reverseCholesky(h: Float64Array, k: number, lambda: number): Float64Array | null {
  const a = Float64Array.from(h); // becomes R in place, column by column from the last
  for (let p = 0; p < k; p++) a[p * k + p] += lambda;
  const column = new Float64Array(k);
  for (let j = k - 1; j >= 0; j--) {
    const d = a[j * k + j];
    if (!(d > 0)) return null;
    const pivot = Math.sqrt(d);
    a[j * k + j] = pivot;
    for (let i = 0; i < j; i++) {
      const v = a[i * k + j] / pivot;
      a[i * k + j] = v;
      column[i] = v;
    }
    for (let i = 0; i < j; i++) {
      const ci = column[i];
      if (ci === 0) continue;
      const ai = i * k;
      for (let l = i; l < j; l++) a[ai + l] -= ci * column[l];
    }
  }
  return a;
}

/** R^-1 for R upper triangular with a positive diagonal, row by row (row i of U R = e_i). */
function invertUpper(r: Float64Array, k: number): Float64Array {
  const u = new Float64Array(k * k);
  const acc = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    acc.fill(0, i);
    const ui = i * k;
    for (let s = i; s < k; s++) {
      const v = ((s === i ? 1 : 0) - acc[s]) / r[s * k + s];
      u[ui + s] = v;
      if (v === 0) continue;
      const rs = s * k;
      for (let t = s + 1; t < k; t++) acc[t] += v * r[rs + t];
    }
  }
  return u;
}

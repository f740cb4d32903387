// Agreement checks run before anything is timed: a peer that computes something else than
// mlpkit would make every ratio meaningless, so a disagreement stops the bench.

export class CheckError extends Error {}

/**
 * Largest elementwise difference relative to the reference output's scale (max |want|).
 * Scale-relative rather than per element: outputs near zero legitimately differ by float32
 * rounding that is large relative to themselves, and summation order differs between backends.
 */
export function relativeError(got, want) {
  if (got.length !== want.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    diff = d > diff || Number.isNaN(d) ? d : diff; // NaN must not read as agreement
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return Number.isNaN(diff) ? Infinity : diff / Math.max(scale, Number.MIN_VALUE);
}

/** Throws a CheckError naming `what` when got and want differ by more than `tolerance`. */
export function expectClose(what, got, want, tolerance, hint = '') {
  const err = relativeError(got, want);
  if (!(err <= tolerance)) {
    throw new CheckError(
      `${what}: relative error ${err.toExponential(2)} exceeds ${tolerance.toExponential(0)}` +
        ` (first values ${Array.from(got.slice(0, 3), (v) => v.toFixed(6)).join(', ')}` +
        ` vs ${Array.from(want.slice(0, 3), (v) => v.toFixed(6)).join(', ')})${hint ? `; ${hint}` : ''}`,
    );
  }
  return err;
}

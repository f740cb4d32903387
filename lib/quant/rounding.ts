// The two integer rounding steps every quantiser in lib/quant/format.ts uses. Both take and
// return JS numbers; the float32 operations around them are spelled out with Math.fround at
// each call site, so the order of operations stays visible where the contract states it.

/**
 * Round to the nearest integer, ties to even (IEEE 754 roundTiesToEven, what C's nearbyint and
 * the x86 cvtps2dq instruction do in the default rounding mode): 0.5 -> 0, 1.5 -> 2, 2.5 -> 2,
 * -2.5 -> -2, -3.5 -> -4. Values of magnitude >= 2^52 are integers already and come back as they
 * are; so do +-Infinity and NaN (the callers clamp or reject those). Never returns -0.
 */
export function roundHalfEven(v: number): number {
  // Math.round rounds ties towards +Infinity (exactly, with no v + 0.5 rounding error), so the
  // only results to fix are ties that went up to an odd integer. r - v is exact: both lie within
  // one unit of each other.
  const r = Math.round(v);
  const rounded = r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
  return rounded === 0 ? 0 : rounded;
}

/** min(max(v, lo), hi); +-Infinity clamps to the bound. NaN is the caller's to exclude. */
export function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

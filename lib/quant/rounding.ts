// The two integer rounding steps every quantiser in lib/quant/format.ts uses. Both take and
// return JS numbers; the float32 operations around them are spelled out with Math.fround at
// each call site, so the order of operations stays visible where the contract states it.

/** 1.5 * 2^52: see roundHalfEven. */
export const ROUNDING_SHIFT = 6755399441055744;

/**
 * Round to the nearest integer, ties to even (IEEE 754 roundTiesToEven, what C's nearbyint and
 * the x86 cvtps2dq instruction do in the default rounding mode): 0.5 -> 0, 1.5 -> 2, 2.5 -> 2,
 * -2.5 -> -2, -3.5 -> -4. Values of magnitude >= 2^52 are integers already and come back as they
 * are; so do +-Infinity and NaN (the callers clamp or reject those). Never returns -0.
 */
export function roundHalfEven(v: number): number {
  // Below 2^51, adding 1.5 * 2^52 leaves a double with no fraction bits, so the addition itself
  // rounds to the nearest integer, ties to even, and subtracting it back is exact. It is ~3x
  // faster than Math.round in V8, and never gives -0 (-0.4 + 1.5 * 2^52 rounds to 1.5 * 2^52).
  if (Math.abs(v) < 2251799813685248) return v + ROUNDING_SHIFT - ROUNDING_SHIFT;
  // Larger magnitudes (halves exist up to 2^52), +-Infinity and NaN: Math.round rounds ties
  // towards +Infinity (exactly, with no v + 0.5 rounding error), so the only results to fix are
  // ties that went up to an odd integer. r - v is exact: both lie within one unit of each other.
  const r = Math.round(v);
  const rounded = r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
  return rounded === 0 ? 0 : rounded;
}

/** min(max(v, lo), hi); +-Infinity clamps to the bound. NaN is the caller's to exclude. */
export function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

const scratchFloat = new Float32Array(1);
const scratchBits = new Uint32Array(scratchFloat.buffer);

/**
 * The float32 value of v (rounded to float32 first) rounded to bfloat16, the float32 values whose
 * low 16 bits are zero: to nearest, ties to even. int4 scales are rounded so (quantize.ts), which
 * lets the native kernels keep them in 2 bytes exactly (native/core/quant/qlayer.h). Values that
 * would round past the largest finite bfloat16 stay +-Infinity; NaN stays NaN.
 */
export function roundToBf16(v: number): number {
  scratchFloat[0] = v;
  const u = scratchBits[0];
  if ((u & 0x7f800000) === 0x7f800000) return scratchFloat[0]; // Infinity, NaN
  // Adding 0x7fff plus the lowest kept bit rounds the kept half to nearest, ties to even; a
  // carry out of the mantissa moves to the next binade (or to Infinity), as rounding should.
  scratchBits[0] = ((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000) >>> 0;
  return scratchFloat[0];
}

/**
 * An int8 row's scale: f32(amax / 127), one float32 step lower when 127 times it would round
 * past the largest float32. Only amax = FLT_MAX does (its quotient rounds up); with that scale,
 * the code 127 would dequantise to Infinity (format.ts).
 */
export function int8Scale(amax: number): number {
  const scale = Math.fround(amax / 127);
  if (Math.fround(127 * scale) !== Infinity) return scale;
  scratchFloat[0] = scale;
  scratchBits[0] -= 1; // a positive finite float32: one unit in the last place down
  return scratchFloat[0];
}

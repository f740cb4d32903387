// The predict request's usual body, {"inputs": [[x, ...], ...]} or {"inputs": [x, ...]}, read
// straight from its bytes into float32 rows.
//
// Why not JSON.parse: for a row of 32 numbers it costs ~3 us (V8 turns every fraction into a
// double through its general string-to-double path, then builds arrays of boxed numbers), more
// than the model's predict, and the server's throughput is set by its per-request CPU.
//
// This reader accepts only that one shape with numbers it can convert exactly; anything else
// (another key, a "shape", a string, a number of 20+ digits, bad JSON, a row of the wrong
// width) returns null, and the caller parses the body the general way, which also words the
// error. So the fast path never changes an answer: each value is fround() of the double JSON.parse
// would give, or the body is left to JSON.parse.

export interface CanonicalRows {
  x: Float32Array;
  rows: number;
  /** {"inputs": [x, ...]}: one row, written flat. */
  flat: boolean;
}

// Powers of ten that are exact doubles (10^22 is the last).
const POW10 = Array.from({ length: 23 }, (_, i) => Number(`1e${i}`));

// A mantissa of up to 15 digits is exact, and one multiply or divide by an exact power of ten
// rounds it correctly: the double JSON.parse gives. Digits 16 to 19 each add two roundings
// (times 10, plus the digit) and the scaling one more: at most 9 * 2^-53 relative error, bounded
// here by 2^-49 so the rounding of the bound's own arithmetic cannot matter.
const REL_ERROR = 2 ** -49;
const MAX_DIGITS = 19;

import { allocFloats } from './float-slab.js';

// Reused between calls: a body's values are read here before its row count is known.
let scratch = new Float32Array(256);

// Filled by readNumber: the float32 value, and the index after the number.
let numberValue = 0;
let numberEnd = 0;
// Filled by readRow: the index after the row's ']'.
let rowEnd = 0;

const enum Ch {
  Tab = 9, Newline = 10, Return = 13, Space = 32, Quote = 34, Plus = 43, Comma = 44, Minus = 45, Dot = 46,
  Zero = 48, Nine = 57, Colon = 58, UpperE = 69, OpenBracket = 91, CloseBracket = 93, LowerE = 101,
  OpenBrace = 123, CloseBrace = 125,
}

function skipSpace(b: Uint8Array, i: number): number {
  while (i < b.length) {
    const c = b[i];
    if (c !== Ch.Space && c !== Ch.Newline && c !== Ch.Return && c !== Ch.Tab) break;
    i++;
  }
  return i;
}

/**
 * A JSON number at b[i]; false when there is none, or when it is outside what this reader
 * converts exactly (more than 19 significant digits, a power of ten past 10^22 either way, a value
 * past float32's range, or one within rounding error of a float32 rounding boundary).
 */
function readNumber(b: Uint8Array, i: number): boolean {
  const n = b.length;
  let negative = false;
  if (i < n && b[i] === Ch.Minus) {
    negative = true;
    i++;
  }
  if (i >= n) return false;
  let mantissa = 0;
  let digits = 0; // significant digits so far (leading zeros do not count)
  let scale = 0; // the value is mantissa * 10^scale
  let c = b[i];
  if (c === Ch.Zero) {
    i++;
  } else if (c > Ch.Zero && c <= Ch.Nine) {
    do {
      mantissa = mantissa * 10 + (c - Ch.Zero);
      digits++;
      i++;
      c = i < n ? b[i] : 0;
    } while (c >= Ch.Zero && c <= Ch.Nine);
  } else {
    return false;
  }
  if (i < n && b[i] === Ch.Dot) {
    i++;
    const start = i;
    while (i < n && (c = b[i]) >= Ch.Zero && c <= Ch.Nine) {
      if (mantissa !== 0 || c !== Ch.Zero) {
        mantissa = mantissa * 10 + (c - Ch.Zero);
        digits++;
      }
      scale--;
      i++;
    }
    if (i === start) return false;
  }
  if (i < n && (b[i] === Ch.LowerE || b[i] === Ch.UpperE)) {
    i++;
    let expNegative = false;
    if (i < n && (b[i] === Ch.Plus || b[i] === Ch.Minus)) expNegative = b[i++] === Ch.Minus;
    const start = i;
    let exponent = 0;
    while (i < n && (c = b[i]) >= Ch.Zero && c <= Ch.Nine) {
      if (exponent < 10_000) exponent = exponent * 10 + (c - Ch.Zero);
      i++;
    }
    if (i === start) return false;
    scale += expNegative ? -exponent : exponent;
  }
  if (digits > MAX_DIGITS) return false;
  let value: number;
  if (mantissa === 0) {
    value = 0;
  } else {
    if (scale > 22 || scale < -22) return false;
    value = scale >= 0 ? mantissa * POW10[scale] : mantissa / POW10[-scale];
    if (digits > 15) {
      // The double may be a few ulps off the one JSON.parse gives; the float32 is still the
      // same unless a float32 rounding boundary lies within that error.
      const err = value * REL_ERROR;
      const low = Math.fround(value - err);
      if (low !== Math.fround(value + err)) return false;
      value = low;
    }
  }
  value = Math.fround(negative ? -value : value);
  if (value === Infinity || value === -Infinity) return false;
  numberValue = value;
  numberEnd = i;
  return true;
}

/** Values of one JSON array of numbers starting at b[i] ('['), stored from scratch[at]; -1 if not that. */
function readRow(b: Uint8Array, i: number, at: number): number {
  if (b[i] !== Ch.OpenBracket) return -1;
  i = skipSpace(b, i + 1);
  if (b[i] === Ch.CloseBracket) return -1; // an empty row: the general path words the error
  for (;;) {
    if (!readNumber(b, i)) return -1;
    if (at >= scratch.length) grow(at + 1);
    scratch[at++] = numberValue;
    i = skipSpace(b, numberEnd);
    const c = b[i];
    if (c === Ch.CloseBracket) {
      rowEnd = i + 1;
      return at;
    }
    if (c !== Ch.Comma) return -1;
    i = skipSpace(b, i + 1);
  }
}
function grow(needed: number): void {
  const next = new Float32Array(Math.max(needed, scratch.length * 2));
  next.set(scratch);
  scratch = next;
}

const INPUTS_KEY = [Ch.Quote, ...Array.from('inputs', (ch) => ch.charCodeAt(0)), Ch.Quote];

/** The rows of a body in the canonical form with `width` values per row, or null (see above). */
export function readCanonicalRows(b: Uint8Array, width: number): CanonicalRows | null {
  let i = skipSpace(b, 0);
  if (b[i] !== Ch.OpenBrace) return null;
  i = skipSpace(b, i + 1);
  for (const ch of INPUTS_KEY) if (b[i++] !== ch) return null;
  i = skipSpace(b, i);
  if (b[i] !== Ch.Colon) return null;
  i = skipSpace(b, i + 1);
  if (b[i] !== Ch.OpenBracket) return null;
  const outer = i;
  i = skipSpace(b, i + 1);
  let count = 0;
  let rows = 0;
  let flat = false;
  if (b[i] === Ch.OpenBracket) {
    for (;;) {
      const end = readRow(b, i, count);
      if (end < 0 || end - count !== width) return null;
      count = end;
      rows++;
      i = skipSpace(b, rowEnd);
      if (b[i] === Ch.CloseBracket) break;
      if (b[i] !== Ch.Comma) return null;
      i = skipSpace(b, i + 1);
    }
  } else {
    // The outer array is the row itself.
    if (readRow(b, outer, 0) !== width) return null;
    count = width;
    rows = 1;
    flat = true;
    i = rowEnd - 1;
  }
  i = skipSpace(b, i + 1);
  if (b[i] !== Ch.CloseBrace) return null;
  if (skipSpace(b, i + 1) !== b.length) return null;
  const x = allocFloats(count);
  x.set(scratch.subarray(0, count));
  return { x, rows, flat };
}

// The predict request's usual body, {"inputs": [[x, ...], ...]} or {"inputs": [x, ...]}, read
// straight from its bytes into float32 rows.
//
// Why not JSON.parse: for a row of 32 numbers it costs ~3 us (V8 turns every fraction into a
// double through its general string-to-double path, then builds arrays of boxed numbers), more
// than the model's predict, and the server's throughput is set by its per-request CPU.
//
// This reader accepts only that one shape with numbers it can convert exactly; anything else
// (another key, a "shape", a string, a number of 19+ digits, bad JSON, a row of the wrong
// width) returns null, and the caller parses the body the general way, which also words the
// error. So the fast path never changes an answer: each value is fround() of the double JSON.parse
// would give, or the body is left to JSON.parse.

import { allocFloats } from './float-slab.js';

export interface CanonicalRows {
  x: Float32Array;
  rows: number;
  /** {"inputs": [x, ...]}: one row, written flat. */
  flat: boolean;
}

// Powers of ten that are exact doubles (10^22 is the last).
const POW10 = Array.from({ length: 23 }, (_, i) => Number(`1e${i}`));

// A mantissa of up to 15 digits is exact, and one multiply or divide by an exact power of ten
// rounds it correctly: the double JSON.parse gives. With 16 to 18 digits, joining the two halves
// rounds twice and the scaling once more: at most 3 * 2^-53 relative error, bounded here by
// 2^-49 so the rounding of the bound's own arithmetic cannot matter.
const REL_ERROR = 2 ** -49;
const MAX_DIGITS = 18;

// Reused between calls: a body's values are read here before its row count is known. It keeps
// the size of the largest body seen (at most the server's body limit / 2 values).
let scratch = new Float32Array(256);

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
 * Reads the JSON number at b[i] into out[at] and returns the index after it; -1 when there is
 * none, or when it is outside what this reader converts exactly (over 18 significant digits, a
 * power of ten past 10^22 either way, a value past float32's range, or one within rounding error
 * of a float32 rounding boundary).
 */
function readNumber(b: Uint8Array, i: number, out: Float32Array, at: number): number {
  const n = b.length;
  let negative = false;
  if (i < n && b[i] === Ch.Minus) {
    negative = true;
    i++;
  }
  // The significant digits go into two int32 halves, the first 9 and the next 9: integer
  // steps, where one double multiply-add per digit would be a chain of 17 slow steps.
  let high = 0;
  let low = 0;
  let lowDigits = 0;
  let digits = 0; // significant digits so far (leading zeros do not count)
  let scale = 0; // the value is (high * 10^lowDigits + low) * 10^scale
  let c = i < n ? b[i] : 0;
  if (c === Ch.Zero) {
    c = ++i < n ? b[i] : 0;
  } else if (c > Ch.Zero && c <= Ch.Nine) {
    do {
      if (digits < 9) high = high * 10 + (c - Ch.Zero);
      else if (digits < MAX_DIGITS) {
        low = low * 10 + (c - Ch.Zero);
        lowDigits++;
      }
      digits++;
      c = ++i < n ? b[i] : 0;
    } while (c >= Ch.Zero && c <= Ch.Nine);
  } else {
    return -1;
  }
  if (c === Ch.Dot) {
    const start = ++i;
    while (i < n && (c = b[i]) >= Ch.Zero && c <= Ch.Nine) {
      if (digits > 0 || c !== Ch.Zero) {
        if (digits < 9) high = high * 10 + (c - Ch.Zero);
        else if (digits < MAX_DIGITS) {
          low = low * 10 + (c - Ch.Zero);
          lowDigits++;
        }
        digits++;
      }
      scale--;
      i++;
    }
    if (i === start) return -1;
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
    if (i === start) return -1;
    scale += expNegative ? -exponent : exponent;
  }
  if (digits > MAX_DIGITS) return -1;
  let value = 0;
  if (digits > 0) {
    if (scale > 22 || scale < -22) return -1;
    const mantissa = lowDigits === 0 ? high : high * POW10[lowDigits] + low;
    value = scale >= 0 ? mantissa * POW10[scale] : mantissa / POW10[-scale];
    if (digits > 15) {
      // The double may be a few ulps off the one JSON.parse gives; the float32 is still the
      // same unless a float32 rounding boundary lies within that error.
      const err = value * REL_ERROR;
      const below = Math.fround(value - err);
      if (below !== Math.fround(value + err)) return -1;
      value = below;
    }
  }
  value = Math.fround(negative ? -value : value);
  if (value === Infinity || value === -Infinity) return -1;
  out[at] = value;
  return i;
}

/** Values of one JSON array of numbers starting at b[i] ('['), stored from scratch[at]; -1 if not that. */
function readRow(b: Uint8Array, i: number, at: number): number {
  if (b[i] !== Ch.OpenBracket) return -1;
  i = skipSpace(b, i + 1);
  if (b[i] === Ch.CloseBracket) return -1; // an empty row: the general path words the error
  for (;;) {
    if (at >= scratch.length) grow(at + 1);
    i = readNumber(b, i, scratch, at++);
    if (i < 0) return -1;
    i = skipSpace(b, i);
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

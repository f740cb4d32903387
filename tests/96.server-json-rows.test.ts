// The server's fast reader of JSON predict bodies (lib/server/json-rows.ts) against JSON.parse:
// every value it returns is bit for bit Math.fround of JSON.parse's double, including numbers
// that sit on or next to a float32 rounding boundary; every body outside its one shape is left
// to the general path (null); and decodeJson gives the same rows or the same error whether the
// fast reader took the body or not. Also the slab allocator the decoders share.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBinary, decodeJson } from '../lib/server/codec.js';
import { allocFloats } from '../lib/server/float-slab.js';
import { HttpError } from '../lib/server/errors.js';
import { readCanonicalRows } from '../lib/server/json-rows.js';

const bytes = (text: string) => Buffer.from(text, 'utf8');

/** What the general path would hold: fround of JSON.parse's doubles, row by row. */
function parsed(text: string): Float32Array {
  const inputs = JSON.parse(text).inputs as number[] | number[][];
  return Float32Array.from((Array.isArray(inputs[0]) ? (inputs as number[][]).flat() : (inputs as number[])), Math.fround);
}

function expectSameBits(got: Float32Array, want: Float32Array): void {
  expect(got.length).toBe(want.length);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) expect([i, got[i]]).toEqual([i, want[i]]);
}

/** Every decimal spelling a client might send for v. */
function spellings(v: number): string[] {
  const out = [String(v), v.toPrecision(17), v.toPrecision(9), v.toExponential(), v.toExponential(5)];
  if (Math.abs(v) < 1e6) out.push(v.toFixed(3), v.toFixed(8));
  return out.map((s) => s.replace('e+', 'e')).concat(String(v).toUpperCase());
}

/**
 * Whether the fast reader may leave this number to JSON.parse: past float32's range, over 18
 * significant digits, or a power of ten past 10^±22 once the fraction digits are counted in.
 * (It may also for a decimal within ~1e-15 of a float32 rounding boundary: about one value in
 * 10^7, which these fixed-seed runs do not meet.)
 */
function mayFallBack(text: string): boolean {
  if (!Number.isFinite(Math.fround(Number(text)))) return true;
  const [mantissa, exponent = '0'] = text.replace(/^-/, '').split(/e/i);
  const [whole, fraction = ''] = mantissa.split('.');
  const digits = (whole + fraction).replace(/^0+/, '');
  if (digits.replace(/0/g, '') === '') return false; // zero: always read
  const scale = Number(exponent) - fraction.length;
  return digits.length > 18 || scale > 22 || scale < -22;
}

describe('readCanonicalRows', () => {
  it('reads every number as fround(JSON.parse) bit for bit (random float32 and float64 values, many spellings)', () => {
    const value = fc.oneof(
      fc.float({ noNaN: true, noDefaultInfinity: true }),
      fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e30, max: 1e30 }),
      fc.integer({ min: -1_000_000, max: 1_000_000 }),
    );
    fc.assert(fc.property(fc.array(value, { minLength: 1, maxLength: 40 }), fc.nat(), (values, pick) => {
      const texts = values.map((v, i) => { const s = spellings(v); return s[(pick + i) % s.length]; });
      const body = `{"inputs":[[${texts.join(',')}]]}`;
      const got = readCanonicalRows(bytes(body), values.length);
      const want = parsed(body);
      if (got === null) {
        expect(texts.filter(mayFallBack)).not.toEqual([]);
        return;
      }
      expect(got.rows).toBe(1);
      expectSameBits(got.x, want);
    }), { seed: 96, numRuns: 3000 });
  });

  it('rounds numbers next to a float32 rounding boundary as JSON.parse + fround does (or leaves them to it)', () => {
    // Midpoints of adjacent float32 values, and decimals a hair above and below them: the cases
    // where an inexact double would round to the other float32.
    fc.assert(fc.property(fc.float({ noNaN: true, noDefaultInfinity: true, min: Math.fround(-1e30), max: Math.fround(1e30) }), fc.integer({ min: -3, max: 3 }), (f, nudge) => {
      const a = Math.fround(f);
      const up = new Float32Array([a]);
      new Uint32Array(up.buffer)[0] += 1;
      if (!Number.isFinite(up[0])) return;
      const mid = (a + up[0]) / 2; // exact in a double
      for (const digits of [9, 12, 16, 17, 19]) {
        const text = nudge === 0 ? mid.toPrecision(digits) : (mid * (1 + nudge * 2 ** -50)).toPrecision(digits);
        const body = `{"inputs":[${text}]}`;
        const got = readCanonicalRows(bytes(body), 1);
        if (got !== null) expectSameBits(got.x, parsed(body));
        // Up to 15 digits the double is exact, so no boundary is too close: always read here.
        else if (digits <= 15) expect(mayFallBack(text)).toBe(true);
      }
    }), { seed: 7, numRuns: 2000 });
  });

  it('reads the nested and flat forms, several rows, and whitespace anywhere JSON allows it', () => {
    const nested = readCanonicalRows(bytes(' {\n\t"inputs" : [ [1, -2.5e1 ,3] ,\r\n[ 4,5 , 6e-1 ] ] } \n'), 3)!;
    expect(nested.rows).toBe(2);
    expect(nested.flat).toBe(false);
    expect(Array.from(nested.x)).toEqual([1, -25, 3, 4, 5, Math.fround(0.6)]);
    const flat = readCanonicalRows(bytes('{"inputs":[0.5, -0, 0e400, -0.0E-7]}'), 4)!;
    expect(flat.flat).toBe(true);
    expect(flat.rows).toBe(1);
    expect(Object.is(flat.x[1], -0) && Object.is(flat.x[2], 0) && Object.is(flat.x[3], -0)).toBe(true);
  });

  it('leaves every other body to the general path', () => {
    const others = [
      '', ' ', '{}', '[]', '{"inputs":[]}', '{"inputs":[[]]}', '{"inputs":[[1,2]]}', // empty, or the wrong width (3)
      '{"inputs":[[1,2,3],[4,5]]}', '{"inputs":[[1,2,3]],"shape":[1,3]}', '{"inputs":[1,2,3],"shape":[1,3]}',
      '{"shape":[1,3],"inputs":[1,2,3]}', '{"inputs":[[1,2,3]]}x', '{"inputs":[[1,2,3]],}', '{"inputs":[[1,2,3],]}',
      '{"inputs":[[1,2,3,]]}', '{"inputs":[[1 2 3]]}', '{"input":[[1,2,3]]}', '{"\\u0069nputs":[[1,2,3]]}',
      '{"inputs":[[01,2,3]]}', '{"inputs":[[1.,2,3]]}', '{"inputs":[[.5,2,3]]}', '{"inputs":[[+1,2,3]]}', '{"inputs":[[-,2,3]]}',
      '{"inputs":[[1e,2,3]]}', '{"inputs":[[1e+,2,3]]}', '{"inputs":[[NaN,2,3]]}', '{"inputs":[[Infinity,2,3]]}',
      '{"inputs":[[null,2,3]]}', '{"inputs":[["1",2,3]]}', '{"inputs":[[true,2,3]]}', '{"inputs":[[[1],2,3]]}',
      '{"inputs":[[1e39,2,3]]}', '{"inputs":[[-3.5e38,2,3]]}', '{"inputs":[[1e23,2,3]]}', '{"inputs":[[1e-23,2,3]]}',
      '{"inputs":[[12345678901234567890,2,3]]}', '{"inputs":[[1,2,3]]', '{"inputs":[[1,2,3]', '{"inputs":[[1,2,3',
      '\u00a0{"inputs":[[1,2,3]]}', '\ufeff{"inputs":[[1,2,3]]}',
    ];
    for (const body of others) expect([body, readCanonicalRows(bytes(body), 3)]).toEqual([body, null]);
  });
});

describe('decodeJson with and without the fast reader', () => {
  /** The outcome of a decode: rows, or the error a client would see. */
  function outcome(f: () => ReturnType<typeof decodeJson>): unknown {
    try {
      const r = f();
      return { rows: r.rows, flat: r.flat, bits: Array.from(new Uint32Array(r.x.buffer, r.x.byteOffset, r.x.length)) };
    } catch (err) {
      expect(err).toBeInstanceOf(HttpError);
      return { status: (err as HttpError).status, code: (err as HttpError).code, message: (err as Error).message };
    }
  }

  it('gives the same rows or the same error from bytes (fast reader first) as from text (JSON.parse only)', () => {
    const num = fc.oneof(fc.float({ noDefaultInfinity: true }).map((v) => (Number.isNaN(v) ? 'NaN' : String(v))),
      fc.constantFrom('1e39', '-0', '1e400', '"2"', 'null', '01', '[1]', '1e-50', '12345678901234567890123'));
    const row = fc.array(num, { minLength: 0, maxLength: 5 }).map((r) => `[${r.join(',')}]`);
    const body = fc.oneof(
      fc.array(row, { minLength: 0, maxLength: 4 }).map((rows) => `{"inputs":[${rows.join(',')}]}`),
      fc.array(num, { minLength: 0, maxLength: 5 }).map((r) => `{"inputs":[${r.join(',')}]}`),
      fc.array(num, { minLength: 0, maxLength: 5 }).map((r) => `{"inputs":[${r.join(',')}],"shape":[1,${r.length}]}`),
      fc.string({ maxLength: 30 }),
    );
    fc.assert(fc.property(body, fc.integer({ min: 1, max: 4 }), (text, width) => {
      expect(outcome(() => decodeJson(bytes(text), 'm', width))).toEqual(outcome(() => decodeJson(text, 'm', width)));
    }), { seed: 3, numRuns: 3000 });
  });
});

describe('allocFloats', () => {
  it('hands out zeroed arrays that never share memory, across slab turnovers', () => {
    const arrays: Float32Array[] = [];
    for (let i = 0; i < 5000; i++) {
      const n = 1 + (i * 37) % 300; // up to 1200 bytes: pooled
      const a = allocFloats(n);
      expect(a.length).toBe(n);
      expect(a.byteOffset % 16).toBe(0);
      expect(a.every((v) => v === 0)).toBe(true);
      a.fill(i);
      arrays.push(a);
    }
    arrays.forEach((a, i) => expect(a.every((v) => v === i)).toBe(true));
    const big = allocFloats(5000);
    expect(big.byteOffset).toBe(0);
    expect(big.buffer.byteLength).toBe(20000);
  });

  it('decodeBinary writes each body into its own view (not the start of the shared slab)', () => {
    const first = decodeBinary(Buffer.from(new Float32Array([1, 2, 3]).buffer), 'm', 3);
    const second = decodeBinary(Buffer.from(new Float32Array([4, 5, 6, 7, 8, 9]).buffer), 'm', 3);
    expect(Array.from(first.x)).toEqual([1, 2, 3]);
    expect(Array.from(second.x)).toEqual([4, 5, 6, 7, 8, 9]);
  });
});

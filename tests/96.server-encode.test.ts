// The server's JSON answer encoder (lib/server/codec.ts encodeJson) against JSON.stringify of the
// same rows: the same text for any float32 values, NaN and the infinities (null, as JSON.stringify
// writes them), -0, subnormals and the extremes, row form and flat form.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeJson } from '../lib/server/codec.js';

const value = fc.oneof(
  fc.float({ noDefaultInfinity: false, noNaN: false }),
  fc.constantFrom(0, -0, NaN, Infinity, -Infinity, 1e-45, -1e-45, 3.4028234663852886e38, 1.1754943508222875e-38, 0.1, 1 / 3),
);

describe('encodeJson', () => {
  it('writes what JSON.stringify writes, in both forms', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 17 }), fc.array(value, { minLength: 85, maxLength: 85 }),
      (rows, width, pool) => {
        const y = Float32Array.from({ length: rows * width }, (_, i) => pool[i % pool.length]);
        const values = Array.from(y);
        const byRow = Array.from({ length: rows }, (_, r) => values.slice(r * width, (r + 1) * width));
        expect(encodeJson(y, rows, width, false)).toBe(JSON.stringify({ outputs: byRow }));
        expect(encodeJson(y, rows, width, true)).toBe(JSON.stringify({ outputs: values, shape: [rows, width] }));
      }), { numRuns: 300, seed: 3 });
  });

  it('reads only its rows of a longer array', () => {
    const y = new Float32Array([1, 2, 3, 4, 5, 6, 7]);
    expect(encodeJson(y, 2, 3, false)).toBe('{"outputs":[[1,2,3],[4,5,6]]}');
    expect(encodeJson(y.subarray(1, 4), 1, 3, true)).toBe('{"outputs":[2,3,4],"shape":[1,3]}');
  });
});

// Between the stored weights of a QuantLayer and the signed integers q they stand for
// (w ~= scale * q): nibble packing for int4, and unpacking of either format into one
// Int8Array of q per row, which the reference kernels, dequantisation and the checks read.

import { groupsPerRow, paddedInputs, type QuantLayer } from './format.js';

/** Two 4-bit codes per byte: code 2b in the low nibble of byte b, code 2b + 1 in the high one. */
export function packNibbles(codes: Uint8Array): Uint8Array {
  const packed = new Uint8Array(codes.length >> 1);
  for (let b = 0; b < packed.length; b++) packed[b] = (codes[2 * b] & 15) | ((codes[2 * b + 1] & 15) << 4);
  return packed;
}

/** The nibble (in [0, 15]) for padded position p of row `row` of an int4 layer. */
export function nibbleAt(packed: Uint8Array, rowBytes: number, row: number, p: number): number {
  const byte = packed[row * rowBytes + (p >> 1)];
  return p & 1 ? byte >> 4 : byte & 15;
}

/**
 * q for every padded position: Int8Array [outputs * kPadded], row-major. int8: the stored
 * values; symmetric int4: u - 8; asymmetric int4: u - zero of the position's group.
 */
export function unpackCodes(layer: QuantLayer): Int8Array {
  const n = layer.outputs;
  const kp = paddedInputs(layer);
  if (layer.format === 'int8') return Int8Array.from(layer.weights as Int8Array);
  const q = new Int8Array(n * kp);
  const groups = groupsPerRow(layer);
  const packed = layer.weights as Uint8Array;
  const rowBytes = kp >> 1;
  for (let j = 0; j < n; j++) {
    for (let g = 0; g < groups; g++) {
      const zero = layer.zeros ? layer.zeros[j * groups + g] : 8;
      for (let p = g * layer.groupSize; p < (g + 1) * layer.groupSize; p++) q[j * kp + p] = nibbleAt(packed, rowBytes, j, p) - zero;
    }
  }
  return q;
}

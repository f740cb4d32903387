// NumPy .npy files (format versions 1-3): float32, float64, int32 and int64, little-endian, C
// order. That covers what np.save writes for numeric tables on every common machine; anything
// else (big-endian, Fortran order, object arrays) is refused with the line of numpy that fixes it.

import { FileFormatError } from '../errors.js';
import { offerHugePages } from '../huge-pages.js';

export type NpyDtype = 'float32' | 'float64' | 'int32' | 'int64';
export type NpyData = Float32Array | Float64Array | Int32Array | BigInt64Array;

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  data: NpyData;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const DESCR: Record<string, NpyDtype> = { '<f4': 'float32', '<f8': 'float64', '<i4': 'int32', '<i8': 'int64' };
const BYTES: Record<NpyDtype, number> = { float32: 4, float64: 8, int32: 4, int64: 8 };

function fail(message: string): never {
  throw new FileFormatError(`npy: ${message}`);
}

/** True when the bytes start with the .npy magic string. */
export function isNpy(bytes: Uint8Array): boolean {
  return bytes.length >= MAGIC.length && MAGIC.every((b, i) => bytes[i] === b);
}

function field(header: string, key: string): string | undefined {
  // numpy writes a Python dict literal; values are a quoted string, True/False or a tuple.
  const m = new RegExp(`['"]${key}['"]\\s*:\\s*('[^']*'|"[^"]*"|True|False|\\([^)]*\\))`).exec(header);
  return m?.[1];
}

export function readNpy(bytes: Uint8Array): NpyArray {
  if (!isNpy(bytes)) fail('not a .npy file (it does not start with \\x93NUMPY)');
  if (bytes.length < 10) fail('file is truncated inside its header');
  const major = bytes[6];
  if (major < 1 || major > 3) fail(`format version ${major}.${bytes[7]} is not supported (expected 1.0, 2.0 or 3.0)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lengthBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lengthBytes) fail('file is truncated inside its header');
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataStart = 8 + lengthBytes + headerLen;
  if (dataStart > bytes.length) fail(`header of ${headerLen} bytes runs past the end of the ${bytes.length}-byte file`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(8 + lengthBytes, dataStart));

  if (/'descr'\s*:\s*\[/.test(header)) {
    fail('a structured array (named fields) is not supported; save a plain 2-D array, e.g. ' +
      'np.save(path, np.column_stack([a[f] for f in a.dtype.names]).astype(\'<f4\'))');
  }
  const descrText = field(header, 'descr');
  const fortran = field(header, 'fortran_order');
  const shapeText = field(header, 'shape');
  if (descrText === undefined || fortran === undefined || shapeText === undefined) {
    fail(`header is not a dict with 'descr', 'fortran_order' and 'shape': ${header.trim()}`);
  }
  const descr = descrText.slice(1, -1);
  const dtype = DESCR[descr.replace(/^=/, '<')];
  if (!dtype) {
    fail(`dtype '${descr}' is not supported (expected little-endian float32, float64, int32 or int64; ` +
      `convert with a.astype('<f4'))`);
  }
  if (fortran === 'True') fail('array is in Fortran order; save it with np.save(path, np.ascontiguousarray(a))');
  const dims = shapeText.slice(1, -1).split(',').map((s) => s.trim()).filter((s) => s !== '');
  const shape = dims.map((d) => {
    const n = Number(d.replace(/L$/, '')); // Python 2 wrote longs as 3L
    if (!Number.isSafeInteger(n) || n < 0) fail(`shape ${shapeText} holds '${d}', not a dimension`);
    return n;
  });
  const count = shape.reduce((a, b) => a * b, 1);
  const byteLength = count * BYTES[dtype];
  if (dataStart + byteLength > bytes.length) {
    fail(`shape ${shapeText} of ${dtype} needs ${byteLength} bytes of data but the file holds ${bytes.length - dataStart} (truncated?)`);
  }
  // A copy (not Buffer#slice, which shares memory): the data offset need not be aligned for
  // the typed array, and callers may keep the result.
  const copy = offerHugePages(new Uint8Array(byteLength));
  copy.set(bytes.subarray(dataStart, dataStart + byteLength));
  const raw = copy.buffer;
  const data = dtype === 'float32' ? new Float32Array(raw)
    : dtype === 'float64' ? new Float64Array(raw)
    : dtype === 'int32' ? new Int32Array(raw)
    : new BigInt64Array(raw);
  return { dtype, shape, data };
}

function dtypeOf(data: NpyData): NpyDtype {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  return 'int64';
}

/** A version 1.0 .npy file of `data` with the given shape (C order). */
export function writeNpy(data: NpyData, shape: number[]): Uint8Array {
  const dtype = dtypeOf(data);
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new RangeError(`writeNpy: shape [${shape.join(', ')}] holds ${count} values but the data has ${data.length}`);
  const descr = Object.keys(DESCR).find((k) => DESCR[k] === dtype)!;
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // numpy pads the header with spaces so the data starts on a 64-byte boundary, ending in '\n'.
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  if (header.length > 0xffff) throw new RangeError('writeNpy: shape too long for a version 1.0 header');
  const out = offerHugePages(new Uint8Array(10 + header.length + data.byteLength));
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

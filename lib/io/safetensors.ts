// The safetensors container: 8-byte little-endian header length, a UTF-8 JSON header
// { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { string: string } },
// then the raw little-endian tensor bytes. Every field is checked before a byte is read, so a
// truncated or hostile file is an error that names the tensor and the problem, never a crash.

import { FileFormatError, describe, typeError } from '../errors.js';

export type Dtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_BYTES: Record<Dtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** A tensor as read: floats widened (F16/BF16) to Float32Array, F64 kept, integers as Int32Array. */
export interface Tensor {
  dtype: Dtype;
  shape: number[];
  data: Float32Array | Float64Array | Int32Array | Uint8Array;
}

/**
 * A tensor to write: F32 from Float32Array, F64 from Float64Array, I32/I64 from Int32Array,
 * I8 from Int8Array, U8 from Uint8Array (the default dtype of each). I8 and U8 may also be
 * written from an Int32Array whose values fit.
 */
export interface TensorInput {
  shape: number[];
  data: Float32Array | Float64Array | Int32Array | Int8Array | Uint8Array;
  dtype?: 'F32' | 'F64' | 'I32' | 'I64' | 'I8' | 'U8';
}

export interface SafetensorsFile {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

// A header is metadata, not data: anything this large is a corrupt or hostile length field.
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

function fail(message: string): never {
  throw new FileFormatError(`safetensors: ${message}`);
}

export function readSafetensors(bytes: Uint8Array): SafetensorsFile {
  if (!(bytes instanceof Uint8Array)) {
    throw typeError(`Expected a Uint8Array (or Buffer) of safetensors bytes but received ${describe(bytes)}`);
  }
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(bytes.length - 8)) {
    fail(`header length ${headerLen} runs past the end of the ${bytes.length}-byte file (truncated?)`);
  }
  if (headerLen > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLen} exceeds ${MAX_HEADER_BYTES} bytes`);
  const hl = Number(headerLen);
  let header: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + hl));
    header = JSON.parse(text);
  } catch (err) {
    fail(`header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
  const dataStart = 8 + hl;
  const dataLen = bytes.length - dataStart;
  const tensors: Record<string, Tensor> = {};
  const metadata: Record<string, string> = {};
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail('__metadata__ is not an object');
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__['${k}'] is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (typeof entry !== 'object' || entry === null) fail(`tensor '${name}': entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      fail(`tensor '${name}': unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor '${name}': shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
    ) {
      fail(`tensor '${name}': data_offsets ${JSON.stringify(offsets)} is not [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLen) fail(`tensor '${name}': data_offsets end ${end} is past the ${dataLen} data bytes (truncated?)`);
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    const size = DTYPE_BYTES[dtype as Dtype];
    if (count * size !== end - begin) {
      fail(`tensor '${name}': shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${count * size} bytes but data_offsets span ${end - begin}`);
    }
    spans.push({ name, begin, end });
    tensors[name] = {
      dtype: dtype as Dtype,
      shape: (shape as number[]).slice(),
      data: decode(dtype as Dtype, bytes.subarray(dataStart + begin, dataStart + end), count, name),
    };
  }
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i].begin < spans[i - 1].end) fail(`tensors '${spans[i - 1].name}' and '${spans[i].name}' overlap`);
  }
  return { tensors, metadata };
}

function decode(dtype: Dtype, raw: Uint8Array, count: number, name: string): Tensor['data'] {
  // Copy first: the data section need not be aligned for a typed-array view. (Not raw.slice():
  // on a Buffer that returns a view into the shared pool, not a copy.)
  const copy = new Uint8Array(raw.length);
  copy.set(raw);
  const buf = copy.buffer;
  const dv = new DataView(buf);
  switch (dtype) {
    case 'F32': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getFloat32(i * 4, true);
      return out;
    }
    case 'F64': {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getFloat64(i * 8, true);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = halfToFloat(dv.getUint16(i * 2, true));
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(count);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = dv.getUint16(i * 2, true) << 16;
      return out;
    }
    case 'I64': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const v = dv.getBigInt64(i * 8, true);
        if (v < -2147483648n || v > 2147483647n) fail(`tensor '${name}': I64 value ${v} at ${i} does not fit in int32`);
        out[i] = Number(v);
      }
      return out;
    }
    case 'I32': return Int32Array.from({ length: count }, (_, i) => dv.getInt32(i * 4, true));
    case 'I16': return Int32Array.from({ length: count }, (_, i) => dv.getInt16(i * 2, true));
    case 'I8': return Int32Array.from({ length: count }, (_, i) => dv.getInt8(i));
    case 'U8':
    case 'BOOL': return new Uint8Array(buf);
  }
}

/** IEEE 754 binary16 to number, subnormals and inf/NaN included. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function writeSafetensors(tensors: Record<string, TensorInput>, metadata: Record<string, string> = {}): Uint8Array {
  const entries = Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const layout: { dtype: string; data: TensorInput['data']; begin: number }[] = [];
  for (const [name, t] of entries) {
    const dtype = t.dtype ?? defaultDtype(name, t.data);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw typeError(`writeSafetensors: tensor '${name}' has shape [${t.shape.join(', ')}] (${count} elements) but ${t.data.length} values`);
    }
    if (dtype === 'I8' || dtype === 'U8') checkIntegerRange(name, dtype, t.data);
    const size = DTYPE_BYTES[dtype as Dtype];
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + count * size] };
    layout.push({ dtype, data: t.data, begin: offset });
    offset += count * size;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  const enc = new TextEncoder();
  let headerBytes = enc.encode(json);
  const pad = (8 - (headerBytes.length % 8)) % 8;
  if (pad) {
    json += ' '.repeat(pad);
    headerBytes = enc.encode(json);
  }
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  const base = 8 + headerBytes.length;
  for (const { dtype, data, begin } of layout) {
    const at = base + begin;
    for (let i = 0; i < data.length; i++) {
      switch (dtype) {
        case 'F32': dv.setFloat32(at + i * 4, data[i], true); break;
        case 'F64': dv.setFloat64(at + i * 8, data[i], true); break;
        case 'I32': dv.setInt32(at + i * 4, data[i], true); break;
        case 'I64': dv.setBigInt64(at + i * 8, BigInt(data[i]), true); break;
        case 'I8': dv.setInt8(at + i, data[i]); break;
        case 'U8': dv.setUint8(at + i, data[i]); break;
      }
    }
  }
  return out;
}

function defaultDtype(name: string, data: TensorInput['data']): string {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Float64Array) return 'F64';
  if (data instanceof Int32Array) return 'I32';
  if (data instanceof Int8Array) return 'I8';
  if (data instanceof Uint8Array) return 'U8';
  throw typeError(`writeSafetensors: tensor '${name}' data must be a Float32Array, Float64Array, Int32Array, Int8Array or Uint8Array but received ${describe(data)}`);
}

/** Byte-wide dtypes hold only their range: a value that does not fit is an error, not a wrap. */
function checkIntegerRange(name: string, dtype: 'I8' | 'U8', data: TensorInput['data']): void {
  if ((dtype === 'I8' && data instanceof Int8Array) || (dtype === 'U8' && data instanceof Uint8Array)) return;
  const [lo, hi] = dtype === 'I8' ? [-128, 127] : [0, 255];
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!(Number.isInteger(v) && v >= lo && v <= hi)) {
      throw typeError(`writeSafetensors: tensor '${name}' value ${v} at ${i} does not fit ${dtype} [${lo}, ${hi}]`);
    }
  }
}

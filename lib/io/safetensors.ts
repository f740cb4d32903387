// The safetensors container: 8-byte little-endian header length, a UTF-8 JSON header
// { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { string: string } },
// then the raw little-endian tensor bytes. Every field is checked before a byte is read, so a
// truncated or hostile file is an error that names the tensor and the problem, never a crash.

import { endianness } from 'node:os';
import { types } from 'node:util';
import { FileFormatError, describe, outOfMemoryError, plainBytes, rangeError, typeError, typedArrayLength } from '../errors.js';
import { FLT_MAX, MAX_ARRAY_LENGTH, expectObject, isArray, rejectUnknownKeys } from '../validate.js';
import { offerHugePages } from '../huge-pages.js';

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
// A safetensors header nests three deep ({ name: { shape: [...] } }); mlpkit's metadata JSON a few
// more. Anything deeper is rejected before it is parsed.
const MAX_JSON_DEPTH = 64;

function fail(message: string): never {
  throw new FileFormatError(`safetensors: ${message}`);
}

/** At most `max` characters of a string for a message, with how much was cut. */
export function clip(text: string, max = 80): string {
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length} characters)`;
}

/** A value read from a file, for a message: short JSON, never throwing. */
export function preview(value: unknown): string {
  try {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : clip(text);
  } catch {
    return describe(value);
  }
}

/**
 * JSON from a file, parsed only after a linear scan that refuses what JSON.parse would quietly
 * accept: nesting deeper than MAX_JSON_DEPTH, and an object with the same key twice (JSON.parse
 * keeps the last, so a second entry for one tensor could hide behind the first). `what` names
 * the JSON in messages.
 */
export function parseFileJson(text: string, what: string, kind = 'JSON'): unknown {
  const stack: ({ keys: Set<string>; expectKey: boolean } | null)[] = []; // null: an array
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (stack.length >= MAX_JSON_DEPTH) fail(`${what} nests deeper than ${MAX_JSON_DEPTH} levels`);
      stack.push(c === 0x7b ? { keys: new Set(), expectKey: true } : null);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top) top.expectKey = true;
    } else if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top && top.expectKey) {
        let key = text.slice(i + 1, j);
        try {
          key = JSON.parse(text.slice(i, j + 1)) as string; // escapes: "a" and "\u0061" are one key
        } catch {
          // invalid JSON: JSON.parse below says so
        }
        if (top.keys.has(key)) fail(`${what} has the key '${clip(key)}' twice`);
        top.keys.add(key);
        top.expectKey = false;
      }
      i = j;
    }
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    fail(`${what} is not valid ${kind} (${clip((err as Error).message, 200)})`);
  }
}

/** Own properties only: a dtype named 'toString' is no dtype. */
function isDtype(value: unknown): value is Dtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, value);
}

export function readSafetensors(input: Uint8Array): SafetensorsFile {
  return parseSafetensors(input, {}) as SafetensorsFile; // without `int8`, no Int8Array
}

/** A tensor as parseSafetensors gives it: with `int8`, I8 data is an Int8Array. */
export interface ParsedTensor {
  dtype: Dtype;
  shape: number[];
  data: Tensor['data'] | Int8Array;
}

export interface ParsedSafetensors {
  tensors: Record<string, ParsedTensor>;
  metadata: Record<string, string>;
}

/**
 * readSafetensors for the model loaders, which copy or repack every tensor at once: two passes
 * over the whole file each did no work there. `views`: an aligned F32 tensor, and an I8 (with
 * `int8`) or U8 one, is a view into `input`, not a copy (Mlp.fromSafetensors copies it into the
 * parameters, 0.15 s of a 268 MB model's load; QuantizedMlp.load owns the bytes it read).
 * `int8`: I8 data is an Int8Array, not widened to an Int32Array that the quantised loader then
 * narrowed again (4 bytes per weight, twice). Neither is for tensors handed to a caller, who may
 * keep, write or transfer them.
 */
export function parseSafetensors(input: Uint8Array, options: { views?: boolean; int8?: boolean }): ParsedSafetensors {
  const views = options.views === true;
  const int8 = options.int8 === true;
  if (!types.isUint8Array(input)) {
    throw typeError(`Expected a Uint8Array (or Buffer) of safetensors bytes but received ${describe(input)}`);
  }
  // Read once through the intrinsic getters; a detached buffer reads as 0 bytes.
  const length = typedArrayLength(input);
  if (length < 8) fail(`file is ${length} bytes, shorter than the 8-byte header length`);
  const bytes = plainBytes(input);
  const prefix = new Uint8Array(8);
  prefix.set(bytes.subarray(0, 8));
  const headerLen = new DataView(prefix.buffer).getBigUint64(0, true);
  if (headerLen > BigInt(length - 8)) {
    // torch.save writes a zip archive (or, before PyTorch 1.6, a pickle): its first bytes read
    // as an impossible header length. Say what the file is rather than "truncated".
    const zip = bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
    const pickle = bytes[0] === 0x80 && bytes[1] >= 2 && bytes[1] <= 5;
    if (zip || pickle) {
      fail(`this is not a safetensors file but a ${zip ? 'zip archive' : 'Python pickle'} (a torch.save checkpoint?); ` +
        'write the weights with safetensors.torch.save_file(model.state_dict(), path) instead');
    }
    fail(`header length ${headerLen} runs past the end of the ${length}-byte file (truncated?)`);
  }
  if (headerLen > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLen} exceeds ${MAX_HEADER_BYTES} bytes`);
  const hl = Number(headerLen);
  // A private copy: the caller's bytes may sit on a SharedArrayBuffer, which TextDecoder refuses.
  const headerBytes = new Uint8Array(hl);
  headerBytes.set(bytes.subarray(8, 8 + hl));
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch (err) {
    fail(`header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  const header = parseFileJson(text, 'header', 'UTF-8 JSON');
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
  const dataStart = 8 + hl;
  const dataLen = length - dataStart;
  // Null prototypes: a tensor or metadata key '__proto__' is an entry like any other.
  const tensors = Object.create(null) as Record<string, ParsedTensor>;
  const metadata = Object.create(null) as Record<string, string>;
  const spans: { name: string; dtype: Dtype; shape: number[]; count: number; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    const where = `tensor '${clip(name)}'`;
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail(`__metadata__ is not an object but ${preview(entry)}`);
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__['${clip(k)}'] is not a string but ${preview(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail(`${where}: entry is not an object but ${preview(entry)}`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (!isDtype(dtype)) {
      fail(`${where}: unsupported dtype ${preview(dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`${where}: shape ${preview(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
    ) {
      fail(`${where}: data_offsets ${preview(offsets)} is not [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLen) fail(`${where}: data_offsets end ${end} is past the ${dataLen} data bytes (truncated?)`);
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    const size = DTYPE_BYTES[dtype];
    if (count * size !== end - begin) {
      fail(`${where}: shape ${preview(shape)} of ${dtype} needs ${count * size} bytes but data_offsets span ${end - begin}`);
    }
    spans.push({ name, dtype, shape: (shape as number[]).slice(), count, begin, end });
  }
  // Overlaps are refused before any tensor is decoded: a small file whose many entries all
  // point at one large span would otherwise be decoded once per entry (gigabytes for a 1 MB file)
  // before the error.
  const sorted = spans.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) fail(`tensors '${clip(sorted[i - 1].name)}' and '${clip(sorted[i].name)}' overlap`);
  }
  for (const { name, dtype, shape, count, begin, end } of spans) {
    const raw = bytes.subarray(dataStart + begin, dataStart + end);
    let data: ParsedTensor['data'];
    if (views && dtype === 'F32' && LITTLE_ENDIAN && raw.byteOffset % 4 === 0) data = new Float32Array(raw.buffer, raw.byteOffset, count);
    else if (views && int8 && dtype === 'I8') data = new Int8Array(raw.buffer, raw.byteOffset, count);
    else if (views && dtype === 'U8') data = raw;
    else data = decode(dtype, raw, count, name, int8);
    tensors[name] = { dtype, shape, data };
  }
  return { tensors, metadata };
}

// Every host Node runs on in practice is little-endian, as the file is; there a typed array
// over the (aligned) copy is the decoded tensor, and widening is one typed-array set, both at
// memory speed. The DataView loops are for a big-endian host. (A per-element loop took 7.7 s to
// load a 4096 x 16384 int8 layer; bench/load-model.mjs.)
const LITTLE_ENDIAN = endianness() === 'LE';

function decode(dtype: Dtype, raw: Uint8Array, count: number, name: string, int8: boolean): ParsedTensor['data'] {
  // Copy first: the data section need not be aligned for a typed-array view. (Not raw.slice():
  // on a Buffer that returns a view into the shared pool, not a copy.)
  const copy = offerHugePages(new Uint8Array(raw.length));
  copy.set(raw);
  const buf = copy.buffer;
  const dv = new DataView(buf);
  switch (dtype) {
    case 'F32': {
      if (LITTLE_ENDIAN) return new Float32Array(buf, 0, count);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getFloat32(i * 4, true);
      return out;
    }
    case 'F64': {
      if (LITTLE_ENDIAN) return new Float64Array(buf, 0, count);
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
        if (v < -2147483648n || v > 2147483647n) fail(`tensor '${clip(name)}': I64 value ${v} at ${i} does not fit in int32`);
        out[i] = Number(v);
      }
      return out;
    }
    case 'I32': {
      if (LITTLE_ENDIAN) return new Int32Array(buf, 0, count);
      return Int32Array.from({ length: count }, (_, i) => dv.getInt32(i * 4, true));
    }
    case 'I16': {
      const out = new Int32Array(count);
      if (LITTLE_ENDIAN) out.set(new Int16Array(buf, 0, count));
      else for (let i = 0; i < count; i++) out[i] = dv.getInt16(i * 2, true);
      return out;
    }
    case 'I8': {
      if (int8) return new Int8Array(buf, 0, count);
      const out = new Int32Array(count);
      out.set(new Int8Array(buf, 0, count));
      return out;
    }
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

const WRITABLE_DTYPES = ['F32', 'F64', 'I32', 'I64', 'I8', 'U8'] as const;
type WritableDtype = (typeof WRITABLE_DTYPES)[number];
// The values each integer dtype holds; a value outside (or not an integer) is an error, not a wrap.
const INTEGER_RANGE: Partial<Record<WritableDtype, [number, number]>> = {
  I8: [-128, 127],
  U8: [0, 255],
  I32: [-(2 ** 31), 2 ** 31 - 1],
  // The reader gives I64 tensors back as Int32Array (what the models use them for: labels,
  // counts), so the writer takes only what it can read back.
  I64: [-(2 ** 31), 2 ** 31 - 1],
};

interface Checked {
  name: string;
  dtype: WritableDtype;
  shape: number[];
  data: TensorInput['data'];
  bytes: number;
}

/** One tensor to write, checked: a real typed array of a supported type, a shape that matches it. */
function checkTensorInput(name: string, value: unknown): Checked {
  const where = `writeSafetensors: tensor '${clip(name)}'`;
  if (name === '__metadata__') throw rangeError(`${where}: the name '__metadata__' is reserved for the metadata`);
  const t = expectObject(`tensors['${clip(name)}']`, value);
  // A misspelt `dtpye: 'I8'` would otherwise write the data's default dtype.
  rejectUnknownKeys(`tensors['${clip(name)}']`, t, ['shape', 'data', 'dtype']);
  const data = t.data;
  if (!(types.isFloat32Array(data) || types.isFloat64Array(data) || types.isInt32Array(data) || types.isInt8Array(data) || types.isUint8Array(data))) {
    throw typeError(`${where}: data must be a Float32Array, Float64Array, Int32Array, Int8Array or Uint8Array but received ${describe(data)}`);
  }
  const length = typedArrayLength(data);
  const rawShape = t.shape;
  if (!isArray(rawShape) || types.isProxy(rawShape)) throw typeError(`${where}: shape must be an array of integers but received ${describe(rawShape)}`);
  const shape = Array.from({ length: rawShape.length }, (_, i) => rawShape[i]);
  shape.forEach((d, i) => {
    if (typeof d !== 'number') throw typeError(`${where}: shape[${i}] must be an integer but received ${describe(d)}`);
    if (!Number.isSafeInteger(d) || d < 0) throw rangeError(`${where}: shape[${i}] must be a non-negative integer but received ${d}`);
  });
  const count = (shape as number[]).reduce((a, b) => a * b, 1);
  if (count !== length) {
    throw rangeError(`${where}: shape [${shape.join(', ')}] holds ${count} elements but data has ${length}`);
  }
  const dtype = t.dtype === undefined ? defaultDtype(data) : t.dtype;
  if (!(WRITABLE_DTYPES as readonly unknown[]).includes(dtype)) {
    throw rangeError(`${where}: dtype must be one of ${WRITABLE_DTYPES.join(', ')} but received ${describe(dtype)}`);
  }
  const range = INTEGER_RANGE[dtype as WritableDtype];
  // An array whose element type is the dtype's (or, for I32 and I64, Int32Array) holds nothing
  // else: a 67 MB Int8Array of int8 weights skips a 67M-element loop.
  const fits = (dtype === 'I8' && types.isInt8Array(data)) || (dtype === 'U8' && types.isUint8Array(data)) ||
    ((dtype === 'I32' || dtype === 'I64') && types.isInt32Array(data));
  if (range && !fits) checkIntegerRange(where, dtype as string, data, range);
  if (dtype === 'F32' && !types.isFloat32Array(data)) checkFloat32Range(where, data);
  return { name, dtype: dtype as WritableDtype, shape: shape as number[], data, bytes: count * DTYPE_BYTES[dtype as WritableDtype] };
}

export function writeSafetensors(tensors: Record<string, TensorInput>, metadata: Record<string, string> = {}): Uint8Array {
  const tensorObject = expectObject('tensors', tensors);
  const metadataObject = expectObject('metadata', metadata);
  // A null prototype: a metadata key '__proto__' is kept like any other (the reader keeps it).
  const meta = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(metadataObject)) {
    if (typeof v !== 'string') throw typeError(`writeSafetensors: metadata['${clip(k)}'] must be a string but received ${describe(v)}`);
    meta[k] = v;
  }
  const checked = Object.entries(tensorObject).map(([name, t]) => checkTensorInput(name, t));
  const header: Record<string, unknown> = {};
  if (Object.keys(meta).length > 0) header.__metadata__ = meta;
  let offset = 0;
  const layout: { dtype: WritableDtype; data: TensorInput['data']; begin: number }[] = [];
  for (const { name, dtype, shape, data, bytes } of checked) {
    // defineProperty: a tensor named '__proto__' is a key like any other.
    Object.defineProperty(header, name, { value: { dtype, shape, data_offsets: [offset, offset + bytes] }, enumerable: true, writable: true, configurable: true });
    layout.push({ dtype, data, begin: offset });
    offset += bytes;
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
  const total = 8 + headerBytes.length + offset;
  if (total > MAX_ARRAY_LENGTH) throw rangeError(`writeSafetensors: the file would be ${total} bytes, more than one Uint8Array can hold (${MAX_ARRAY_LENGTH})`);
  let out: Uint8Array;
  try {
    out = offerHugePages(new Uint8Array(total));
  } catch (err) {
    throw outOfMemoryError(`writeSafetensors: could not allocate ${total} bytes (${(err as Error).message})`);
  }
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  const base = 8 + headerBytes.length;
  for (const { dtype, data, begin } of layout) {
    const at = base + begin;
    const n = typedArrayLength(data);
    // (A detached array has no elements, and set() would throw on it.)
    if (n === 0) continue;
    if (LITTLE_ENDIAN && dtype !== 'I64') {
      // One typed-array set (converting F64/I32 sources as DataView would; ranges were checked).
      // A view needs its element alignment, which a tensor after an I8/U8 one may lack.
      const Ctor = TYPED_CTOR[dtype];
      if (at % Ctor.BYTES_PER_ELEMENT === 0) new Ctor(out.buffer as ArrayBuffer, at, n).set(data as ArrayLike<number>);
      else {
        const aligned = new Ctor(n);
        aligned.set(data as ArrayLike<number>);
        out.set(new Uint8Array(aligned.buffer), at);
      }
      continue;
    }
    for (let i = 0; i < n; i++) {
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

const TYPED_CTOR = { F32: Float32Array, F64: Float64Array, I32: Int32Array, I8: Int8Array, U8: Uint8Array } as const;

function defaultDtype(data: TensorInput['data']): WritableDtype {
  if (types.isFloat32Array(data)) return 'F32';
  if (types.isFloat64Array(data)) return 'F64';
  if (types.isInt32Array(data)) return 'I32';
  if (types.isInt8Array(data)) return 'I8';
  return 'U8';
}

/** F32 from float64 or int32 values: a finite value that float32 would turn into an infinity is an error. */
function checkFloat32Range(where: string, data: TensorInput['data']): void {
  const n = typedArrayLength(data);
  for (let i = 0; i < n; i++) {
    const v = data[i];
    if (Number.isFinite(v) && !Number.isFinite(Math.fround(v))) {
      throw rangeError(`${where}: value ${v} at ${i} does not fit F32 (largest finite float32: ${FLT_MAX})`);
    }
  }
}

/** Integer dtypes hold only their range: a value that does not fit is an error, not a wrap. */
function checkIntegerRange(where: string, dtype: string, data: TensorInput['data'], [lo, hi]: [number, number]): void {
  const n = typedArrayLength(data);
  for (let i = 0; i < n; i++) {
    const v = data[i];
    if (!(Number.isInteger(v) && v >= lo && v <= hi)) {
      throw rangeError(`${where}: value ${v} at ${i} does not fit ${dtype} [${lo}, ${hi}]`);
    }
  }
}

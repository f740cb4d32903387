// Argument checks shared by both backends, so native and reference throw the same errors.
// Messages say: which argument, what was expected, what was received.

import { types } from 'node:util';
import { describe, outOfMemoryError, rangeError, typeError, typedArrayLength } from './errors.js';

/** Array.isArray, except that a revoked Proxy (where it throws) is not an array. */
export function isArray(value: unknown): value is unknown[] {
  try {
    return Array.isArray(value);
  } catch {
    return false;
  }
}

/** True for a revoked Proxy, on which every property read, instanceof and Array.isArray throw. */
export function isRevokedProxy(value: unknown): boolean {
  try {
    Array.isArray(value);
    return false;
  } catch {
    return true;
  }
}

/** value instanceof Class, except that a revoked Proxy (where instanceof throws V8's own, uncoded TypeError) is not one. */
export function isInstanceOf<T>(value: unknown, Class: abstract new (...args: never[]) => T): value is T {
  return !isRevokedProxy(value) && value instanceof Class;
}

export function expectObject(name: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || isArray(value)) {
    throw typeError(`Expected an object for ${name} but received ${describe(value)}`);
  }
  if (isRevokedProxy(value)) throw typeError(`Expected an object for ${name} but received a revoked Proxy`);
  return value as Record<string, unknown>;
}

/**
 * Rejects option names that `known` does not list: a misspelt `batchsize: 8` would otherwise be
 * ignored and the default used without a word. `name` is the object's path in messages
 * (`options.optimizer`, `spec.layers[0]`); `context`, when given, says why the list is what it
 * is (e.g. "optimizer type 'sgd'" where the names depend on a type).
 */
export function rejectUnknownKeys(name: string, options: Record<string, unknown>, known: readonly string[], context?: string): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const shown = key.length > 40 ? `${key.slice(0, 40)}... (${key.length} characters)` : key;
      throw rangeError(`Unknown option ${name}.${shown}${context ? ` for ${context}` : ''} (expected some of ${known.join(', ')})`);
    }
  }
}

export function expectInteger(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw typeError(`Expected an integer for ${name} but received ${describe(value)}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    const bound = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
    throw rangeError(`Expected an integer ${bound} for ${name} but received ${value}`);
  }
  return value;
}

export function expectNumber(
  name: string,
  value: unknown,
  opts: { min?: number; max?: number; minExclusive?: boolean } = {},
): number {
  if (typeof value !== 'number') throw typeError(`Expected a number for ${name} but received ${describe(value)}`);
  const { min = -Infinity, max = Infinity, minExclusive = false } = opts;
  const belowMin = minExclusive ? value <= min : value < min;
  if (!Number.isFinite(value) || belowMin || value > max) {
    const parts = [];
    if (min !== -Infinity) parts.push(minExclusive ? `> ${min}` : `>= ${min}`);
    if (max !== Infinity) parts.push(`<= ${max}`);
    const bound = parts.length ? ` ${parts.join(' and ')}` : '';
    throw rangeError(`Expected a finite number${bound} for ${name} but received ${value}`);
  }
  return value;
}

export function expectBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw typeError(`Expected a boolean for ${name} but received ${describe(value)}`);
  return value;
}

export function expectOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string') {
    throw typeError(`Expected one of ${allowed.map((a) => `'${a}'`).join(', ')} for ${name} but received ${describe(value)}`);
  }
  if (!(allowed as readonly string[]).includes(value)) {
    const shown = value.length > 40 ? `${value.slice(0, 40)}... (${value.length} characters)` : value;
    throw rangeError(`Expected one of ${allowed.map((a) => `'${a}'`).join(', ')} for ${name} but received '${shown}'`);
  }
  return value as T;
}

/**
 * A real Float32Array (on any buffer: plain, shared, resizable, or detached, which reads as
 * empty). Not a Proxy of one, nor an object that merely inherits from Float32Array.prototype:
 * the native backend reads the memory behind the array, which only a real one has. A subclass
 * whose `length` disagrees with its element count is refused too.
 */
export function expectFloat32Array(name: string, value: unknown): Float32Array {
  if (!types.isFloat32Array(value)) {
    throw typeError(
      `Expected a Float32Array for ${name} but received ${describe(value)}` +
        (isArray(value) || types.isTypedArray(value) ? ' (convert it with Float32Array.from)' : ''),
    );
  }
  const length = typedArrayLength(value);
  if (value.length !== length) {
    throw typeError(`Expected a Float32Array for ${name} but received one whose length property (${String(value.length)}) is not its element count (${length})`);
  }
  return value;
}

/**
 * The most elements one typed array may hold (V8's limit on 64-bit hosts); larger requests are
 * a RangeError (ERR_OUT_OF_RANGE) rather than V8's uncoded one.
 */
export const MAX_ARRAY_LENGTH = 2 ** 32;

/** The largest finite float32: values the kernels and files keep as float32 must not pass it. */
export const FLT_MAX = 3.4028234663852886e38;

/**
 * A new Float32Array of `length` floats for `what` (an output, a buffer the caller's sizes
 * imply): ERR_OUT_OF_RANGE past MAX_ARRAY_LENGTH, ERR_MLPKIT_OUT_OF_MEMORY when the allocation
 * itself fails.
 */
export function allocFloat32(what: string, length: number): Float32Array {
  if (!(length <= MAX_ARRAY_LENGTH)) {
    throw rangeError(`${what} would hold ${length} floats, more than one Float32Array can (${MAX_ARRAY_LENGTH})`);
  }
  try {
    return new Float32Array(length);
  } catch (err) {
    throw outOfMemoryError(`${what}: could not allocate ${length} floats (${(err as Error).message})`);
  }
}

/**
 * A row-major batch of `width` columns: returns the batch size. An empty array or a length
 * that is not a multiple of the width is a RangeError.
 */
export function expectBatch(name: string, value: unknown, width: number): number {
  const x = expectFloat32Array(name, value);
  if (x.length === 0) throw rangeError(`Expected a non-empty batch for ${name} (batch x ${width} floats) but received 0 elements`);
  if (x.length % width !== 0) {
    throw rangeError(`Expected ${name} to hold batch x ${width} floats (a multiple of ${width}) but received ${x.length} elements`);
  }
  return x.length / width;
}

/** The caller's output buffer, when given, must be exactly the right size. */
export function expectOutputBuffer(name: string, value: unknown, length: number): Float32Array {
  const out = expectFloat32Array(name, value);
  if (out.length !== length) throw rangeError(`Expected ${name} to have ${length} elements but received ${out.length}`);
  return out;
}

// A faster scan for Float32Arrays, installed by the native backend when it loads (training
// checks every input element on every step; a JS loop over a large batch costs about as much as
// a third of the step itself). Returns the index of the first non-finite element, or -1.
let scanFloat32: ((data: Float32Array) => number) | null = null;
export function setFloat32FiniteScan(scan: ((data: Float32Array) => number) | null): void {
  scanFloat32 = scan;
}

/** Index of the first NaN or infinity in data, or -1 (the native scan when it is loaded). */
export function firstNonFinite(data: Float32Array): number {
  if (scanFloat32 && data.length > 256) return scanFloat32(data);
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return i;
  return -1;
}

export function expectAllFinite(name: string, data: ArrayLike<number>): void {
  if (scanFloat32 && data instanceof Float32Array && data.length > 256) {
    const i = scanFloat32(data);
    if (i >= 0) throw rangeError(`Expected finite values in ${name} but element ${i} is ${data[i]}`);
    return;
  }
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw rangeError(`Expected finite values in ${name} but element ${i} is ${data[i]}`);
    }
  }
}

/**
 * Class labels for softmax cross-entropy: an integer typed array or number[] of length `batch`,
 * every value in [0, classes). Returned as an Int32Array (shared when it already is one).
 */
export function expectLabels(name: string, value: unknown, batch: number, classes: number): Int32Array {
  let labels: Int32Array;
  if (types.isInt32Array(value)) {
    labels = value;
    if (typedArrayLength(value) !== value.length) {
      throw typeError(`Expected an Int32Array for ${name} but received one whose length property is not its element count`);
    }
  } else if (
    (isArray(value) && !types.isProxy(value)) ||
    types.isUint8Array(value) ||
    types.isUint16Array(value) ||
    types.isUint32Array(value) ||
    types.isInt8Array(value) ||
    types.isInt16Array(value)
  ) {
    // The length is read once and checked before anything is allocated from it.
    const length = types.isTypedArray(value) ? typedArrayLength(value) : (value as unknown[]).length;
    if (length !== batch) {
      throw rangeError(`Expected ${name} to hold one label per row (${batch}) but received ${length}`);
    }
    labels = new Int32Array(length);
    for (let i = 0; i < length; i++) {
      const v = (value as ArrayLike<unknown>)[i];
      if (typeof v !== 'number' || !Number.isInteger(v)) {
        throw typeError(`Expected integer class labels in ${name} but element ${i} is ${describe(v)}`);
      }
      // Checked before the int32 conversion, which would wrap 2^32 + 1 to a valid label 1.
      if (v < 0 || v >= classes) throw rangeError(`Expected labels in [0, ${classes}) for ${name} but element ${i} is ${v}`);
      labels[i] = v;
    }
  } else {
    throw typeError(`Expected integer class labels (Int32Array or number[]) for ${name} but received ${describe(value)}`);
  }
  if (labels.length !== batch) {
    throw rangeError(`Expected ${name} to hold one label per row (${batch}) but received ${labels.length}`);
  }
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] < 0 || labels[i] >= classes) {
      throw rangeError(`Expected labels in [0, ${classes}) for ${name} but element ${i} is ${labels[i]}`);
    }
  }
  return labels;
}

/** A file path argument (save / load). */
export function expectPath(name: string, value: unknown): string {
  if (typeof value !== 'string') throw typeError(`Expected a file path string for ${name} but received ${describe(value)}`);
  return value;
}

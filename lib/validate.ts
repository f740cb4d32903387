// Argument checks shared by both backends, so native and reference throw the same errors.
// Messages say: which argument, what was expected, what was received.

import { describe, rangeError, typeError } from './errors.js';

export function expectObject(name: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw typeError(`Expected an object for ${name} but received ${describe(value)}`);
  }
  return value as Record<string, unknown>;
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
    throw rangeError(`Expected one of ${allowed.map((a) => `'${a}'`).join(', ')} for ${name} but received '${value}'`);
  }
  return value as T;
}

export function expectFloat32Array(name: string, value: unknown): Float32Array {
  if (!(value instanceof Float32Array)) {
    throw typeError(
      `Expected a Float32Array for ${name} but received ${describe(value)}` +
        (Array.isArray(value) || ArrayBuffer.isView(value) ? ' (convert it with Float32Array.from)' : ''),
    );
  }
  return value;
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
  if (value instanceof Int32Array) labels = value;
  else if (
    Array.isArray(value) ||
    value instanceof Uint8Array ||
    value instanceof Uint16Array ||
    value instanceof Uint32Array ||
    value instanceof Int8Array ||
    value instanceof Int16Array
  ) {
    labels = new Int32Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const v = (value as ArrayLike<unknown>)[i];
      if (typeof v !== 'number' || !Number.isInteger(v)) {
        throw typeError(`Expected integer class labels in ${name} but element ${i} is ${describe(v)}`);
      }
      labels[i] = v;
    }
  } else if (value instanceof Float32Array || value instanceof Float64Array) {
    throw typeError(`Expected integer class labels (Int32Array or number[]) for ${name} but received ${describe(value)}`);
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

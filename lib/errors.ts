// Errors carry Node-style codes so callers can branch on `err.code` rather than on message text.

import { types } from 'node:util';

export const ERR_INVALID_ARG_TYPE = 'ERR_INVALID_ARG_TYPE';
export const ERR_OUT_OF_RANGE = 'ERR_OUT_OF_RANGE';
export const ERR_DISPOSED = 'ERR_MLPKIT_DISPOSED';
export const ERR_INVALID_FILE = 'ERR_MLPKIT_INVALID_FILE';
export const ERR_NATIVE_UNAVAILABLE = 'ERR_MLPKIT_NATIVE_UNAVAILABLE';
export const ERR_CUDA_UNAVAILABLE = 'ERR_MLPKIT_CUDA_UNAVAILABLE';
export const ERR_OUT_OF_MEMORY = 'ERR_MLPKIT_OUT_OF_MEMORY';

function withCode<E extends Error>(err: E, code: string): E & { code: string } {
  Object.defineProperty(err, 'code', { value: code, enumerable: true, writable: true, configurable: true });
  return err as E & { code: string };
}

/** A value of the wrong type (ERR_INVALID_ARG_TYPE). */
export function typeError(message: string): TypeError & { code: string } {
  return withCode(new TypeError(message), ERR_INVALID_ARG_TYPE);
}

/** A value of the right type outside what is allowed (ERR_OUT_OF_RANGE). */
export function rangeError(message: string): RangeError & { code: string } {
  return withCode(new RangeError(message), ERR_OUT_OF_RANGE);
}

/** An allocation for sizes the caller asked for failed (ERR_MLPKIT_OUT_OF_MEMORY), as V8's own RangeError. */
export function outOfMemoryError(message: string): RangeError & { code: string } {
  return withCode(new RangeError(message), ERR_OUT_OF_MEMORY);
}

/** A call on a model after dispose(): like a revoked Proxy, the object is no longer usable. */
export function disposedError(what: string): TypeError & { code: string } {
  return withCode(new TypeError(`${what}: the model has been disposed`), ERR_DISPOSED);
}

/** A safetensors file (or bytes) that cannot be read as a model. */
export class FileFormatError extends Error {
  readonly code = ERR_INVALID_FILE;
  constructor(message: string) {
    super(message);
    this.name = 'FileFormatError';
  }
}

/**
 * Short description of a received value for error messages: "Float64Array(3)", "string 'x'".
 * Never runs the value's own code (no getters, no Proxy traps), so describing a hostile value
 * cannot throw or hang.
 */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return `number ${value}`;
  if (typeof value === 'string') return `string '${value.length > 40 ? value.slice(0, 40) + '...' : value}'`;
  if (typeof value === 'boolean') return `boolean ${value}`;
  if (typeof value === 'bigint') return `bigint ${value}`;
  if (typeof value === 'symbol') return 'symbol';
  if (types.isProxy(value)) return typeof value === 'function' ? 'a Proxy (function)' : 'a Proxy';
  if (typeof value === 'function') return 'function';
  if (types.isTypedArray(value)) return `${typedArrayName(value)}(${typedArrayLength(value)})`;
  if (types.isDataView(value)) return 'DataView';
  if (Array.isArray(value)) return `Array(${value.length})`;
  const proto = Object.getPrototypeOf(value) as object | null;
  if (proto === null || proto === Object.prototype) return 'object';
  if (types.isProxy(proto)) return 'object';
  const ctor = Object.getOwnPropertyDescriptor(proto, 'constructor')?.value as unknown;
  if (typeof ctor !== 'function' || types.isProxy(ctor)) return 'object';
  const name = Object.getOwnPropertyDescriptor(ctor, 'name')?.value as unknown;
  return typeof name === 'string' && name !== '' && name !== 'Object' ? `an instance of ${name.slice(0, 40)}` : 'object';
}

// The intrinsic getters of %TypedArray%.prototype: a `length` or Symbol.toStringTag that a caller
// planted on an array (or its prototype) cannot lie about what the array is.
const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;
const typedArrayLengthGetter = Object.getOwnPropertyDescriptor(typedArrayPrototype, 'length')!.get!;
const typedArrayNameGetter = Object.getOwnPropertyDescriptor(typedArrayPrototype, Symbol.toStringTag)!.get!;

/** The element count of a real typed array (0 once its buffer is detached). */
export function typedArrayLength(value: ArrayBufferView): number {
  return typedArrayLengthGetter.call(value) as number;
}

const typedArrayBufferGetter = Object.getOwnPropertyDescriptor(typedArrayPrototype, 'buffer')!.get!;
const typedArrayByteOffsetGetter = Object.getOwnPropertyDescriptor(typedArrayPrototype, 'byteOffset')!.get!;

/**
 * A plain Uint8Array over the same bytes as a (non-detached) Uint8Array or Buffer: what the code
 * after it calls (subarray, set) are then the built-in methods, whatever a subclass overrides.
 */
export function plainBytes(value: Uint8Array): Uint8Array {
  return new Uint8Array(
    typedArrayBufferGetter.call(value) as ArrayBufferLike,
    typedArrayByteOffsetGetter.call(value) as number,
    typedArrayLength(value),
  );
}

/** 'Float32Array', 'Int8Array', ...: the array's real element type. */
export function typedArrayName(value: ArrayBufferView): string {
  return typedArrayNameGetter.call(value) as string;
}

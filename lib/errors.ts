// Errors carry Node-style codes so callers can branch on `err.code` rather than on message text.

export const ERR_INVALID_ARG_TYPE = 'ERR_INVALID_ARG_TYPE';
export const ERR_OUT_OF_RANGE = 'ERR_OUT_OF_RANGE';
export const ERR_DISPOSED = 'ERR_MLPKIT_DISPOSED';
export const ERR_INVALID_FILE = 'ERR_MLPKIT_INVALID_FILE';
export const ERR_NATIVE_UNAVAILABLE = 'ERR_MLPKIT_NATIVE_UNAVAILABLE';
export const ERR_CUDA_UNAVAILABLE = 'ERR_MLPKIT_CUDA_UNAVAILABLE';

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

/** Short description of a received value for error messages: "Float64Array(3)", "string 'x'". */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return `number ${value}`;
  if (typeof value === 'string') return `string '${value.length > 40 ? value.slice(0, 40) + '...' : value}'`;
  if (typeof value === 'boolean') return `boolean ${value}`;
  if (typeof value === 'bigint') return `bigint ${value}`;
  if (typeof value === 'function') return 'function';
  if (ArrayBuffer.isView(value)) {
    const len = (value as unknown as { length?: number }).length;
    return `${value.constructor.name}(${len ?? value.byteLength})`;
  }
  if (Array.isArray(value)) return `Array(${value.length})`;
  const name = (value as object).constructor?.name;
  return name && name !== 'Object' ? `an instance of ${name}` : 'object';
}

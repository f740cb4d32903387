// Request bodies to rows of float32 inputs, and outputs to response bodies.
//
// JSON: {"inputs": [[...], ...]} (one array per row), or {"inputs": [...], "shape": [rows, n]}
// (flat, row-major; a single row may leave out the shape). Binary: application/octet-stream
// holding rows x n little-endian float32s. Every value must be a finite number in float32's
// range: a NaN would only come back as a NaN (or a 0 after ReLU) with no hint of the mistake.

import { HttpError, badRequest } from './errors.js';
import { allocFloats } from './float-slab.js';
import { readCanonicalRows } from './json-rows.js';

export interface DecodedInput {
  x: Float32Array;
  rows: number;
  /** The request used the flat form: answer in it too. */
  flat: boolean;
}

const JSON_HINT = `send {"inputs": [[x1, x2, ...], ...]} or {"inputs": [...], "shape": [rows, columns]}`;

function featureCountError(model: string, width: number, got: number, where: string): HttpError {
  return badRequest('wrong_feature_count',
    `model '${model}' takes ${width} inputs per row but ${where} holds ${got}`);
}

/** v as a float32; `where` names it in the error (a function: the name costs more than the check). */
function numberAt(v: unknown, where: () => string): number {
  if (typeof v !== 'number') {
    const what = v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'string' ? `the string ${JSON.stringify(v.length > 20 ? v.slice(0, 20) + '...' : v)}` : `a ${typeof v}`;
    throw badRequest('invalid_number', `${where()} is ${what}; every input must be a number`);
  }
  const f = Math.fround(v);
  if (!Number.isFinite(f)) throw badRequest('non_finite', `${where()} is ${v}, which is not a finite float32`);
  return f;
}

/** A JSON body (bytes, or text already decoded) as rows of `width` float32s. */
export function decodeJson(bytes: Uint8Array | string, model: string, width: number): DecodedInput {
  if (typeof bytes !== 'string') {
    const fast = readCanonicalRows(bytes, width);
    if (fast) return fast;
  }
  const text = typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw badRequest('invalid_json', `the body is not valid JSON (${(err as Error).message}); ${JSON_HINT}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw badRequest('invalid_request', `expected a JSON object; ${JSON_HINT}`);
  }
  const { inputs, shape } = body as { inputs?: unknown; shape?: unknown };
  if (!Array.isArray(inputs)) throw badRequest('invalid_request', `expected an array under "inputs"; ${JSON_HINT}`);
  if (inputs.length === 0) throw badRequest('invalid_request', '"inputs" is empty; send at least one row');

  if (Array.isArray(inputs[0])) {
    const rows = inputs.length;
    // Every row's shape is checked before the rows x width floats are allocated: a body of
    // [[], 0, 0, ...] is 2 bytes per row, and allocating first turned each of those bytes into
    // 2 x width floats (a 500, or gigabytes) before the 400.
    for (let r = 0; r < rows; r++) {
      const row = inputs[r] as unknown;
      if (!Array.isArray(row)) throw badRequest('invalid_request', `inputs[${r}] is not an array; every row must be an array of numbers`);
      if (row.length !== width) {
        // [[[1, 2, 3]]]: one level too deep reads as a row of 1; say what it is instead.
        if (row.length > 0 && Array.isArray(row[0])) {
          throw badRequest('invalid_request', `inputs[${r}][0] is an array: "inputs" nests one level too deep; ${JSON_HINT}`);
        }
        throw featureCountError(model, width, row.length, `inputs[${r}]`);
      }
    }
    // Rows say their own shape (checked above); a "shape" beside them that disagrees is a mistake to report.
    if (shape !== undefined && !(Array.isArray(shape) && shape.length === 2 && shape[0] === rows && shape[1] === width)) {
      throw badRequest('invalid_request', `"shape" ${JSON.stringify(shape).slice(0, 60)} does not match the ${rows} rows of ${width} in "inputs"; ` +
        'leave "shape" out when "inputs" holds rows');
    }
    const x = allocFloats(rows * width);
    for (let r = 0; r < rows; r++) {
      const row = inputs[r] as unknown[];
      for (let c = 0; c < width; c++) x[r * width + c] = numberAt(row[c], () => `inputs[${r}][${c}]`);
    }
    return { x, rows, flat: false };
  }

  let rows: number;
  if (shape === undefined) {
    if (inputs.length !== width) {
      throw badRequest('wrong_feature_count', `model '${model}' takes ${width} inputs per row but the flat "inputs" holds ${inputs.length} ` +
        `values and no "shape"; send one row of ${width}, or add "shape": [rows, ${width}]`);
    }
    rows = 1;
  } else {
    if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isInteger(d) && d > 0)) {
      throw badRequest('invalid_request', `"shape" must be [rows, columns] of positive integers but is ${JSON.stringify(shape)}`);
    }
    if (shape[1] !== width) throw featureCountError(model, width, shape[1] as number, '"shape"');
    rows = shape[0] as number;
    if (rows * width !== inputs.length) {
      throw badRequest('invalid_request', `"shape" [${rows}, ${width}] needs ${rows * width} values but "inputs" holds ${inputs.length}`);
    }
  }
  const x = allocFloats(rows * width);
  for (let i = 0; i < x.length; i++) x[i] = numberAt(inputs[i], () => `inputs[${i}]`);
  return { x, rows, flat: true };
}

export function decodeBinary(body: Buffer, model: string, width: number): DecodedInput {
  const rowBytes = width * 4;
  if (body.length === 0) throw badRequest('invalid_request', `the body is empty; send rows of ${width} little-endian float32s`);
  if (body.length % rowBytes !== 0) {
    throw badRequest('wrong_feature_count', `model '${model}' takes rows of ${width} float32s (${rowBytes} bytes) ` +
      `but the body has ${body.length} bytes, not a multiple of ${rowBytes}`);
  }
  // A copy: the body may sit at any offset of memory Node reuses, and the rows may wait in the
  // queue or sit on the thread pool for a while.
  const x = allocFloats(body.length / 4);
  new Uint8Array(x.buffer, x.byteOffset, x.byteLength).set(body);
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) {
      throw badRequest('non_finite', `value ${i % width} of row ${Math.floor(i / width)} is ${x[i]}; every input must be a finite number`);
    }
  }
  return { x, rows: body.length / rowBytes, flat: false };
}

/** y[from, to) as JSON numbers joined by commas; a non-finite value as null (JSON has no NaN or Infinity). */
function numbersText(y: Float32Array, from: number, to: number): string {
  // One string grown by concatenation: ~2.5x faster than pushing String(v) into an array and
  // joining it, and this runs for every answer the server gives.
  let text = '';
  for (let i = from; i < to; i++) {
    const v = y[i];
    text += (i === from ? '' : ',') + (Number.isFinite(v) ? v : 'null');
  }
  return text;
}

/** {"outputs": [[...], ...]} or, for flat requests, {"outputs": [...], "shape": [rows, n]}. */
export function encodeJson(y: Float32Array, rows: number, width: number, flat: boolean): string {
  if (flat) return `{"outputs":[${numbersText(y, 0, rows * width)}],"shape":[${rows},${width}]}`;
  let text = '{"outputs":[';
  for (let r = 0; r < rows; r++) text += `${r === 0 ? '' : ','}[${numbersText(y, r * width, (r + 1) * width)}]`;
  return `${text}]}`;
}

/** Little-endian float32 bytes of y, sharing its memory. */
export function encodeBinary(y: Float32Array): Buffer {
  return Buffer.from(y.buffer, y.byteOffset, y.byteLength);
}

// createServer's options: the models by name, the batching knobs, and the limits that keep one
// bad client or a traffic spike from taking the server down. Checked once, with lib/validate's
// messages, and filled with defaults measured on the demo model (bench/serve.mjs).

import { disposedError, rangeError, typeError, describe } from '../errors.js';
import { Mlp } from '../mlp.js';
import { QuantizedMlp } from '../quant/model.js';
import { SparseMlp } from '../sparse/model.js';
import { parameterLayout } from '../spec.js';
import { expectBoolean, expectInteger, expectNumber, expectObject, isRevokedProxy, rejectUnknownKeys } from '../validate.js';

/** What the server needs of a model: Mlp, QuantizedMlp and SparseMlp are all servable. */
export interface ServableModel {
  readonly inputs: number;
  readonly outputs: number;
  predict(x: Float32Array, out?: Float32Array): Float32Array;
  predictAsync(x: Float32Array, out?: Float32Array): Promise<Float32Array>;
}

export interface BatchEvent {
  model: string;
  /** Requests merged into this predict call. */
  requests: number;
  rows: number;
}

export interface ServerOptions {
  /** The models to serve, by name (letters, digits, '.', '_', '-'): POST /v1/models/<name>/predict. */
  models: Record<string, ServableModel>;
  /** Merge concurrent requests for a model into one predict call. Default true. */
  batching?: boolean;
  /** Most rows in one merged predict call. Default 256. */
  maxBatchRows?: number;
  /**
   * How long a queued request may wait for others to fill its batch, in microseconds. Default 0:
   * merge what arrives in the same event-loop turn or while the model is busy, never wait longer.
   * A request that finds the model idle and nothing queued always runs at once. Must be below
   * queueTimeoutMs x 1000.
   */
  maxWaitUs?: number;
  /** Rows that may wait per model; past it requests get 503 with Retry-After. Default 1024. */
  maxQueueRows?: number;
  /** A request queued longer than this gets 503. Default 10000 ms. */
  queueTimeoutMs?: number;
  /** Largest request body; larger ones get 413. Default 1 MiB. */
  maxBodyBytes?: number;
  /**
   * Bytes of request bodies the server reads at once, over all connections (bodies are buffered
   * whole before they are decoded); a body that would pass it gets 503 with Retry-After. Bounds
   * memory under many slow uploads. Default 64 MiB; at least maxBodyBytes.
   */
  maxBufferedBodyBytes?: number;
  /** Time a client has to send the request headers (slow clients get 408). Default 10000 ms. */
  headersTimeoutMs?: number;
  /** Time a client has to send the whole request. Default 30000 ms. */
  requestTimeoutMs?: number;
  /** Idle keep-alive connections are closed after this. Default 5000 ms. */
  keepAliveTimeoutMs?: number;
  /**
   * A response the client stops reading (nothing of it taken for this long, with part of it
   * still buffered in the server) closes its connection, so a client that never reads cannot
   * hold a socket and its response memory. Default 30000 ms.
   */
  writeTimeoutMs?: number;
  /**
   * Multiply-adds up to which a predict call runs on the event loop; larger calls go to the
   * thread pool with predictAsync. Default 4M (40-120 us on one core with the native backend):
   * below that the thread hop and the wake-up cost more than the work saves.
   */
  inlineMacs?: number;
  /** Seconds in the Retry-After header of 503 answers. Default 1. */
  retryAfterSeconds?: number;
  /** Called for every predict call (tests, logging). */
  onBatch?: (event: BatchEvent) => void;
  /**
   * Leave V8's allocation-site pretenuring flag as it is. By default createServer turns
   * pretenuring off for the whole process (unless node was started with
   * --allocation-site-pretenuring or --no-allocation-site-pretenuring): in about half of the
   * processes started it moved every finished request into the old space under load and cost
   * ~20% of the throughput (lib/server/v8-pretenuring.ts). It changes only when V8 promotes
   * objects. Default false.
   */
  keepV8Pretenuring?: boolean;
  /**
   * Read the usual predict request (POST, Content-Length, JSON or float32 body) straight off
   * the socket and write its answer there, without node:http's request and response objects;
   * a connection's first request of any other form hands the connection to node:http
   * (lib/server/direct-http.ts). The answers are the same; the server takes 1.3-1.4x the
   * requests per second. Requests served this way emit no 'request' event on `server.http`.
   * Default true.
   */
  directHttp?: boolean;
  /**
   * Serve the usual predict request (POST, Content-Length, JSON body, keep-alive) of a native
   * backend Mlp in the addon, reading and writing the connection's socket from C++ on the event
   * loop, with no JS per request (lib/server/socket-path.ts); any other request hands the
   * connection to the directHttp path. The answers and metrics are the same; the server takes
   * more requests per second. Applies with directHttp and batching on, maxWaitUs 0 and no
   * onBatch, on Linux and macOS with an addon built with it, to models whose batch of 64 rows
   * fits within inlineMacs. Default true.
   */
  nativeHttp?: boolean;
}

export type NormalizedServerOptions = Required<Omit<ServerOptions, 'onBatch' | 'models'>> & {
  models: Map<string, { model: ServableModel; macsPerRow: number }>;
  onBatch: ((event: BatchEvent) => void) | null;
};

/** The names ServerOptions takes. */
export const SERVER_OPTION_KEYS = [
  'models', 'batching', 'maxBatchRows', 'maxWaitUs', 'maxQueueRows', 'queueTimeoutMs', 'maxBodyBytes', 'maxBufferedBodyBytes', 'headersTimeoutMs',
  'requestTimeoutMs', 'keepAliveTimeoutMs', 'writeTimeoutMs', 'inlineMacs', 'retryAfterSeconds', 'onBatch', 'keepV8Pretenuring',
  'directHttp', 'nativeHttp',
] as const;

/** Model names are URL path segments: letters, digits, '.', '_' and '-', 1 to 128 of them. */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Multiply-adds per row, the unit of the inline/thread-pool choice. */
function macsPerRow(model: ServableModel): number {
  if (model instanceof Mlp) return parameterLayout(model.spec).slots.reduce((sum, s) => sum + s.inputs * s.outputs, 0);
  if (model instanceof QuantizedMlp) return model.layers.reduce((sum, l) => sum + l.inputs * l.outputs, 0);
  // A sparse model reads fewer weights per row; the dense count is its upper bound.
  if (model instanceof SparseMlp) return model.layers.reduce((sum, l) => sum + l.inputs * l.outputs, 0);
  return model.inputs * model.outputs;
}

function checkModel(name: string, value: unknown): ServableModel {
  const m = value as Partial<ServableModel> | null;
  // A revoked Proxy first: reading any property of one throws V8's own, uncoded TypeError.
  const ok = typeof m === 'object' && m !== null && !isRevokedProxy(m) && typeof m.predict === 'function' && typeof m.predictAsync === 'function' &&
    Number.isInteger(m.inputs) && Number.isInteger(m.outputs) && m.inputs! >= 1 && m.outputs! >= 1;
  if (!ok) {
    throw typeError(`Expected an Mlp, QuantizedMlp or SparseMlp for options.models.${name} (or an object with predict, predictAsync and integer inputs and outputs >= 1) but received ${describe(value)}`);
  }
  // A disposed model would answer every request with a 500 while /v1/models lists it.
  if ((m as { disposed?: unknown }).disposed === true) throw disposedError(`createServer: options.models.${name}`);
  return m as ServableModel;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export function normalizeServerOptions(value: unknown): NormalizedServerOptions {
  const o = expectObject('options', value);
  rejectUnknownKeys('options', o, SERVER_OPTION_KEYS);
  const modelsIn = expectObject('options.models', o.models);
  const models: NormalizedServerOptions['models'] = new Map();
  for (const [name, model] of Object.entries(modelsIn)) {
    if (!MODEL_NAME.test(name)) {
      throw rangeError(`Expected model names of letters, digits, '.', '_' and '-' (URL-safe) but received '${name}'`);
    }
    const m = checkModel(name, model);
    models.set(name, { model: m, macsPerRow: macsPerRow(m) });
  }
  if (models.size === 0) throw rangeError('Expected at least one model in options.models');
  // Durations in ms become timer delays, which past 2^31 - 1 ms fire after 1 ms instead.
  const int = (key: string, fallback: number, min: number) =>
    (o[key] === undefined ? fallback : expectInteger(`options.${key}`, o[key], min, key.endsWith('Ms') ? MAX_TIMER_MS : Number.MAX_SAFE_INTEGER));
  const num = (key: string, fallback: number) => (o[key] === undefined ? fallback : expectNumber(`options.${key}`, o[key], { min: 0 }));
  const onBatch = o.onBatch;
  if (onBatch !== undefined && typeof onBatch !== 'function') {
    throw typeError(`Expected a function for options.onBatch but received ${describe(onBatch)}`);
  }
  const headersTimeoutMs = int('headersTimeoutMs', 10_000, 1);
  const requestTimeoutMs = int('requestTimeoutMs', 30_000, 1);
  if (requestTimeoutMs < headersTimeoutMs) {
    throw rangeError(`Expected options.requestTimeoutMs (${requestTimeoutMs}) >= options.headersTimeoutMs (${headersTimeoutMs}): the headers are part of the request`);
  }
  const maxBodyBytes = int('maxBodyBytes', 1 << 20, 1);
  const maxBufferedBodyBytes = int('maxBufferedBodyBytes', Math.max(64 << 20, maxBodyBytes), 1);
  if (maxBufferedBodyBytes < maxBodyBytes) {
    throw rangeError(`Expected options.maxBufferedBodyBytes (${maxBufferedBodyBytes}) >= options.maxBodyBytes (${maxBodyBytes}): a body of the largest size must fit`);
  }
  const queueTimeoutMs = int('queueTimeoutMs', 10_000, 1);
  const maxWaitUs = num('maxWaitUs', 0);
  // A batch may wait for company only while its requests can still run: a wait past the queue
  // timeout held them and then answered 503 (and past 2^31 ms, setTimeout fired every 1 ms).
  if (maxWaitUs >= queueTimeoutMs * 1000) {
    throw rangeError(`Expected options.maxWaitUs (${maxWaitUs}) < options.queueTimeoutMs (${queueTimeoutMs}) x 1000: a request must not wait for its batch longer than it may queue`);
  }
  return {
    models,
    batching: o.batching === undefined ? true : expectBoolean('options.batching', o.batching),
    maxBatchRows: int('maxBatchRows', 256, 1),
    maxWaitUs,
    maxQueueRows: int('maxQueueRows', 1024, 1),
    queueTimeoutMs,
    maxBodyBytes,
    maxBufferedBodyBytes,
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs: int('keepAliveTimeoutMs', 5_000, 1),
    writeTimeoutMs: int('writeTimeoutMs', 30_000, 1),
    inlineMacs: num('inlineMacs', 4 << 20),
    retryAfterSeconds: int('retryAfterSeconds', 1, 0),
    onBatch: (onBatch as NormalizedServerOptions['onBatch']) ?? null,
    keepV8Pretenuring: o.keepV8Pretenuring === undefined ? false : expectBoolean('options.keepV8Pretenuring', o.keepV8Pretenuring),
    directHttp: o.directHttp === undefined ? true : expectBoolean('options.directHttp', o.directHttp),
    nativeHttp: o.nativeHttp === undefined ? true : expectBoolean('options.nativeHttp', o.nativeHttp),
  };
}

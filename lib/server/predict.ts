// One predict request from its body to its answer, shared by the node:http handler (http.ts)
// and the direct HTTP/1.1 path (direct-http.ts): decode the rows, queue them on the model's
// batcher, encode what comes back.

import type { Batcher } from './batcher.js';
import type { BodyBudget } from './body.js';
import { decodeBinary, decodeJson, encodeBinary, encodeJson } from './codec.js';
import { HttpError } from './errors.js';
import type { NormalizedServerOptions, ServableModel } from './options.js';
import type { ServerMetrics } from './server-metrics.js';

export interface ServedModel {
  name: string;
  /** Its metric labels, made once, so counting a request allocates nothing. */
  labels: { model: string };
  model: ServableModel;
  batcher: Batcher;
  describe: () => Record<string, unknown>;
}

/** What both request paths (http.ts, direct-http.ts) share of the server. */
export interface ServingContext {
  options: NormalizedServerOptions;
  models: Map<string, ServedModel>;
  metrics: ServerMetrics;
  /** The bytes of request bodies being read, over all connections (503 past its limit). */
  bodyBudget: BodyBudget;
  /** True once close() began: /readyz fails and every response closes its connection. */
  draining: () => boolean;
  onRequestStart: () => void;
  onRequestEnd: () => void;
  log: (message: string) => void;
}

export const JSON_TYPE = 'application/json; charset=utf-8';

export interface PredictAnswer {
  /** The rows came through: a 200 with this body. */
  ok: (body: string | Buffer, type: string, headers?: Record<string, string>) => void;
  /** An HttpError (the request's fault, or 503), or anything else (a bug: 500). */
  fail: (err: unknown) => void;
}

/**
 * Decodes `body` and queues its rows; `answer` is called once, now or when the batch is done.
 * Returns what takes the request out of the queue if its client leaves first (null once answered).
 */
export function predictBody(served: ServedModel, body: Buffer, binary: boolean, acceptBinary: boolean,
  options: Pick<NormalizedServerOptions, 'maxQueueRows' | 'retryAfterSeconds'>, answer: PredictAnswer): (() => void) | null {
  try {
    const width = served.model.inputs;
    const input = binary ? decodeBinary(body, served.name, width) : decodeJson(body, served.name, width);
    const ticket = served.batcher.submit(input.x, input.rows, (err, y) => {
      try {
        if (err) return answer.fail(err);
        const outputs = served.model.outputs;
        if (acceptBinary) answer.ok(encodeBinary(y!), 'application/octet-stream', { 'Mlpkit-Shape': `${input.rows},${outputs}` });
        else answer.ok(encodeJson(y!, input.rows, outputs, input.flat), JSON_TYPE);
      } catch (e) {
        answer.fail(e);
      }
    });
    if (ticket) return () => served.batcher.cancel(ticket);
    answer.fail(overloaded(served.name, options));
  } catch (err) {
    answer.fail(err);
  }
  return null;
}

/** The 503 of a request that finds its model's queue full (the native socket path words it the same). */
export function overloaded(model: string, options: Pick<NormalizedServerOptions, 'maxQueueRows' | 'retryAfterSeconds'>): HttpError {
  return new HttpError(503, 'overloaded', `model '${model}' has ${options.maxQueueRows} rows queued; retry after ${options.retryAfterSeconds} s`,
    { 'Retry-After': String(options.retryAfterSeconds) });
}

/** Content types whose body is read as JSON. */
export function isJsonType(type: string): boolean {
  // curl -d sends form-urlencoded and some clients text/plain; their bodies are still our JSON.
  return type === '' || type.includes('json') || type.startsWith('text/plain') || type.startsWith('application/x-www-form-urlencoded');
}

// The HTTP endpoints: routing, the predict request from body to response, and JSON errors.
//
//   POST /v1/models/:name/predict   JSON or application/octet-stream rows in; JSON, or float32
//                                   bytes when the request accepts application/octet-stream
//   GET  /v1/models, /v1/models/:name   what is served
//   GET  /healthz                   the process answers
//   GET  /readyz                    ready for traffic (503 while shutting down)
//   GET  /metrics                   Prometheus text format

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { readBody } from './body.js';
import { HttpError, errorBody } from './errors.js';
import { JSON_TYPE, isJsonType, predictBody, type ServedModel, type ServingContext } from './predict.js';

/**
 * Set on a response by the server's clientError handler when it answered the request itself,
 * straight on the socket (a body that came too slowly: 408): the status the request is counted under.
 */
export const RAW_REPLY = Symbol('mlpkit.rawReply');

/**
 * Set on a socket while the rest of a refused (413) body is read and thrown away: a timeout
 * there (the client kept sending past requestTimeoutMs) closes it without another answer.
 */
export const LINGERING = Symbol('mlpkit.lingering');

/** On a socket: the end-of-request bookkeeping of each request on it not yet answered. */
const UNANSWERED = Symbol('mlpkit.unanswered');

export interface HandlerContext extends ServingContext {
  /** Replaces this server's own metrics text (cluster workers answer for all of them): see ModelServer.metricsSource. */
  metricsSource: () => (() => Promise<string>) | null;
}

interface RequestState {
  labels: { model: string };
  predict: boolean;
  /** Takes the request out of its model's queue (its client went away before the answer). */
  cancel: (() => void) | null;
}

const METRICS_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const PREDICT_PATH = /^\/v1\/models\/([^/]+)(\/predict)?$/;
const OTHER_PATHS = new Set(['/healthz', '/readyz', '/metrics', '/v1/models']);
const NO_MODEL = { model: '' };

function methodNotAllowed(method: string | undefined, path: string, allow: string): HttpError {
  return new HttpError(405, 'method_not_allowed', `${method} is not allowed on ${path}; use ${allow}`, { Allow: allow });
}

/**
 * Float32 bytes back when Accept names application/octet-stream (media types are
 * case-insensitive) with a q above 0 and no lower than application/json's. A client that wrote
 * the type in another case, or refused it with q=0, used to get the other format: read as
 * floats, JSON text is garbage with no error.
 */
export function wantsBinary(accept: string | undefined): boolean {
  if (accept === undefined || !/octet-stream/i.test(accept)) return false;
  let binary = 0;
  let json = -1;
  for (const item of accept.toLowerCase().split(',')) {
    const [type, ...params] = item.split(';');
    const t = type.trim();
    if (t !== 'application/octet-stream' && t !== 'application/json') continue;
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/.exec(p);
      if (m) q = Number(m[1]);
    }
    if (t === 'application/json') json = Math.max(json, q);
    else binary = Math.max(binary, q);
  }
  return binary > 0 && binary >= json;
}

/** Closes `socket` if `res` makes no write progress for `ms`; the watch ends with the response. */
function watchStalledWrite(socket: Socket, res: ServerResponse, ms: number): void {
  // A socket timeout counts inactivity, and every chunk the kernel accepts is activity: a slow
  // reader that keeps reading is not cut off. node:http leaves the socket timeout unused
  // (server.timeout is 0), and its own 'timeout' handler destroys a socket nobody else answers.
  // Cleared before node's own 'finish' handler runs (prepended): that one then sets the
  // keep-alive timeout of an idle connection, which clearing it afterwards switched off.
  socket.setTimeout(ms);
  res.prependOnceListener('finish', () => socket.setTimeout(0));
  res.once('close', () => {
    if (!res.writableFinished) socket.setTimeout(0);
  });
}

export function createHandler(ctx: HandlerContext): (req: IncomingMessage, res: ServerResponse) => void {
  const { options, models, metrics, bodyBudget } = ctx;

  /**
   * `holdUntil`: a request whose body is still arriving. The response is written at once but
   * ended only when that body has been read: node destroys a Connection: close socket as soon
   * as its response ends, and a client still sending would then get a reset, not the answer.
   */
  function send(res: ServerResponse, status: number, body: string | Buffer, type: string, headers?: Record<string, string>,
    holdUntil?: IncomingMessage): void {
    if (res.headersSent || res.destroyed) return;
    // writeHead with a flat list is node:http's cheapest way to set headers (no header object).
    const list: string[] = ['Content-Type', type, 'Content-Length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.length)];
    if (headers) for (const k in headers) list.push(k, headers[k]);
    if (ctx.draining() && headers?.Connection === undefined) list.push('Connection', 'close');
    res.writeHead(status, list);
    if (holdUntil !== undefined && !holdUntil.complete) {
      res.write(body);
      holdUntil.once('end', () => res.end());
    } else {
      res.end(body);
    }
    // Bytes the kernel has not taken (a client not reading): the connection gets writeTimeoutMs
    // of no progress, then closes, rather than holding the socket and the buffered response.
    const socket = res.socket;
    if (socket !== null && socket.writableLength > 0) watchStalledWrite(socket, res, options.writeTimeoutMs);
  }

  function sendError(res: ServerResponse, err: HttpError, holdUntil?: IncomingMessage): void {
    send(res, err.status, errorBody(err.code, err.message), JSON_TYPE, err.headers, holdUntil);
  }

  function predict(req: IncomingMessage, res: ServerResponse, served: ServedModel, state: RequestState): void {
    const type = (req.headers['content-type'] ?? '').toLowerCase();
    const binary = type.startsWith('application/octet-stream');
    if (!binary && !isJsonType(type)) {
      return sendError(res, new HttpError(415, 'unsupported_media_type',
        `Content-Type '${type}' is not supported; send application/json or application/octet-stream (float32 rows)`));
    }
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
      // Read as is, a gzip body is garbage whose error would not say why.
      return sendError(res, new HttpError(415, 'unsupported_media_type',
        `Content-Encoding '${encoding.slice(0, 40)}' is not supported; send the body uncompressed`));
    }
    readBody(req, options.maxBodyBytes, bodyBudget, (bodyErr, body) => {
      if (bodyErr) return refuseBody(req, res, bodyErr);
      // This runs from the body's 'end' event, outside the handler's try: predictBody answers
      // every error, since a throw here would take the process down.
      state.cancel = predictBody(served, body!, binary, wantsBinary(req.headers.accept), options, {
        ok: (out, type, headers) => {
          state.cancel = null;
          send(res, 200, out, type, headers);
        },
        fail: (err) => {
          state.cancel = null;
          failed(req, res, err);
        },
      });
    });
  }

  /**
   * A body over the limit (413). Closing the connection while the client still sends would make
   * its kernel reset it, and most clients then report EPIPE / ECONNRESET, not the 413: the rest
   * of the body is read and discarded instead (at most until requestTimeoutMs, as any body), and
   * the connection stays usable. Only a client that sent Expect: 100-continue and was not
   * invited to send (server.ts) is waiting with its body unsent: its connection is closed.
   */
  function refuseBody(req: IncomingMessage, res: ServerResponse, err: HttpError): void {
    const uninvited = /100-continue/i.test(req.headers.expect ?? '') && Number(req.headers['content-length']) > options.maxBodyBytes;
    if (uninvited) return sendError(res, new HttpError(err.status, err.code, err.message, { ...err.headers, Connection: 'close' }));
    const socket = req.socket as IncomingMessage['socket'] & { [LINGERING]?: boolean };
    if (!req.complete) {
      socket[LINGERING] = true;
      req.once('end', () => void (socket[LINGERING] = false));
      req.resume();
      // While draining every response closes its connection: it ends once the body is read.
      if (ctx.draining()) return sendError(res, err, req);
    }
    sendError(res, err);
  }

  /** Bad requests get their 4xx; anything else is a bug: logged, and answered 500. */
  function failed(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    if (err instanceof HttpError) return sendError(res, err);
    ctx.log(`${req.method} ${req.url} failed: ${(err as Error)?.stack ?? String(err)}`);
    sendError(res, new HttpError(500, 'internal', 'the server failed on this request; see its log'));
  }

  /** Answers the request (now, or when its predict is done), noting its model and kind in `state`. */
  function route(req: IncomingMessage, res: ServerResponse, state: RequestState): void {
    // RFC 9112 3.2: an HTTP/1.1 request without Host is a 400. node would answer it itself,
    // with an empty body and uncounted (server.ts turns that off).
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
      return sendError(res, new HttpError(400, 'bad_http', 'the request has no Host header, which HTTP/1.1 requires'));
    }
    let url = req.url ?? '/';
    if (url.charCodeAt(0) !== 47) {
      // The absolute form, POST http://host/v1/... (RFC 9112 3.2.2: a server must accept it;
      // proxies send it): its path.
      const origin = /^https?:\/\/[^/?#]*/i.exec(url);
      if (origin) url = `/${url.slice(origin[0].length).replace(/^\//, '')}`;
    }
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const method = req.method;
    const m = PREDICT_PATH.exec(path);
    if (m) {
      let name = m[1];
      try {
        name = decodeURIComponent(name);
      } catch {
        // a malformed %-escape: look it up as written, which finds nothing
      }
      const served = models.get(name);
      if (!served) {
        return sendError(res, new HttpError(404, 'model_not_found',
          `no model named '${name.slice(0, 100)}'; this server has ${[...models.keys()].join(', ')} (GET /v1/models)`));
      }
      state.labels = served.labels;
      if (m[2]) {
        if (method !== 'POST') return sendError(res, methodNotAllowed(method, path, 'POST'));
        state.predict = true;
        return predict(req, res, served, state);
      }
      if (method !== 'GET' && method !== 'HEAD') return sendError(res, methodNotAllowed(method, path, 'GET, HEAD'));
      return send(res, 200, JSON.stringify(served.describe()), JSON_TYPE);
    }
    if (!OTHER_PATHS.has(path)) {
      return sendError(res, new HttpError(404, 'not_found',
        `no endpoint ${path.slice(0, 100)}; try POST /v1/models/<name>/predict, GET /v1/models, /healthz, /readyz or /metrics`));
    }
    if (method !== 'GET' && method !== 'HEAD') return sendError(res, methodNotAllowed(method, path, 'GET, HEAD'));
    if (path === '/healthz') return send(res, 200, '{"status":"ok"}', JSON_TYPE);
    if (path === '/readyz') {
      if (ctx.draining()) return sendError(res, new HttpError(503, 'shutting_down', 'the server is shutting down'));
      return send(res, 200, '{"status":"ready"}', JSON_TYPE);
    }
    if (path === '/metrics') {
      const source = ctx.metricsSource();
      if (!source) return send(res, 200, metrics.render(), METRICS_TYPE);
      source().then((text) => send(res, 200, text, METRICS_TYPE), () => send(res, 200, metrics.render(), METRICS_TYPE));
      return;
    }
    send(res, 200, JSON.stringify({ models: [...models.values()].map((s) => s.describe()) }), JSON_TYPE);
  }

  return (req, res) => {
    const start = performance.now();
    ctx.onRequestStart();
    const state: RequestState = { labels: NO_MODEL, predict: false, cancel: null };
    let ended = false;
    let pending: Set<() => void> | null = null;
    // Once per request: from the response's 'close' (on(), not once(): no wrapper), or the socket's.
    const end = () => {
      if (ended) return;
      ended = true;
      pending?.delete(end);
      // A client gone while its request waits in the queue: the slot goes to the next request.
      state.cancel?.();
      const raw = (res as ServerResponse & { [RAW_REPLY]?: number })[RAW_REPLY];
      metrics.countRequest(state.labels.model, raw !== undefined ? String(raw) : res.writableFinished ? String(res.statusCode) : 'aborted');
      if (state.predict) metrics.latency.observe(state.labels, (performance.now() - start) / 1000);
      ctx.onRequestEnd();
    };
    if (res.socket === null) {
      // A response queued behind another on its connection (pipelining) never gets its 'close'
      // when the connection goes first (node only drops it): such requests end with the socket,
      // as aborted. (One with its socket gets 'close' from node; most requests pay nothing here.)
      const socket = req.socket as Socket & { [UNANSWERED]?: Set<() => void> };
      let set = socket[UNANSWERED];
      if (set === undefined) {
        const created = (set = socket[UNANSWERED] = new Set());
        socket.once('close', () => {
          for (const f of created) f();
        });
      }
      pending = set;
      set.add(end);
    }
    res.on('close', end);
    try {
      route(req, res, state);
    } catch (err) {
      failed(req, res, err);
    }
  };
}

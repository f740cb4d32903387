// createServer(): an HTTP/1.1 server (node:http) for one or more models, with micro-batching,
// request limits, Prometheus metrics and a graceful close(). One server uses one event loop, so
// one core for HTTP work (the native backend's predict may use more): for more cores run one
// server per core (`mlpkit serve --workers N`, or several processes) behind a load balancer.

import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Mlp } from '../mlp.js';
import { QuantizedMlp } from '../quant/model.js';
import { SparseMlp } from '../sparse/model.js';
import { Batcher } from './batcher.js';
import { BodyBudget } from './body.js';
import { DirectPath } from './direct-http.js';
import { errorBody } from './errors.js';
import { LINGERING, RAW_REPLY, createHandler } from './http.js';
import type { ServedModel, ServingContext } from './predict.js';
import { normalizeServerOptions, type NormalizedServerOptions, type ServableModel, type ServerOptions } from './options.js';
import { ServerMetrics } from './server-metrics.js';
import { SocketPath } from './socket-path.js';
import { turnOffPretenuring } from './v8-pretenuring.js';
import { expectNumber, expectObject, rejectUnknownKeys } from '../validate.js';

// Pending connections the kernel holds for accept() (capped by net.core.somaxconn). Node's
// default, 511, overflows when ~1000 clients connect at once (TcpExtListenOverflows rose by
// ~100 per 1024-connection wrk run here, none with 4096): the kernel drops those handshakes and
// the clients wait for a retransmit, 1 s and then 3 s, before their first request gets in.
const LISTEN_BACKLOG = 4096;

export interface ListenInfo {
  host: string;
  port: number;
  url: string;
}

export interface CloseOptions {
  /** After this long, connections still open are cut (their requests fail). Default 10000 ms. */
  graceMs?: number;
}

/** On a response: a request pipelined behind it failed (bad HTTP, too slow) and was counted. */
const LATE_BEHIND = Symbol('mlpkit.lateBehind');

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

function describeModel(name: string, model: ServableModel): Record<string, unknown> {
  const base = { name, inputs: model.inputs, outputs: model.outputs };
  if (model instanceof Mlp) return { ...base, kind: 'float', backend: model.backend, spec: model.spec };
  if (model instanceof QuantizedMlp) {
    return { ...base, kind: 'quantized', backend: model.backend, sizeBytes: model.sizeBytes,
      layers: model.layers.map((l) => ({ inputs: l.inputs, outputs: l.outputs, format: l.format, activations: l.activations, activation: l.activation })) };
  }
  if (model instanceof SparseMlp) {
    return { ...base, kind: 'sparse', backend: model.backend,
      layers: model.layers.map((l) => ({ inputs: l.inputs, outputs: l.outputs, mode: l.mode, threshold: l.threshold, k: l.k, rank: l.rank })) };
  }
  return { ...base, kind: 'custom' };
}

export class ModelServer {
  /** The node:http server underneath (for its events; listen and close through this object). */
  readonly http: http.Server;
  readonly options: NormalizedServerOptions;
  /**
   * When set, GET /metrics answers with what it resolves to instead of metricsText() (it falls
   * back to metricsText() when it rejects). `mlpkit serve --workers N` sets it in each worker to
   * the sum over all workers, so a scrape that reaches any one of them sees the whole server.
   */
  metricsSource: (() => Promise<string>) | null = null;
  private readonly served = new Map<string, ServedModel>();
  private readonly metrics: ServerMetrics;
  private draining = false;
  private inFlight = 0;
  private closing: Promise<void> | null = null;
  private readonly sockets = new Set<Socket>(); // open connections (close() enforces their timeouts)
  private readonly checkEveryMs: number; // how often the header and body timeouts are checked
  private direct: DirectPath | null = null; // predict requests read off the socket (direct-http.ts)
  private socketPath: SocketPath | null = null; // and those served in the addon (socket-path.ts)

  constructor(options: ServerOptions) {
    const o = normalizeServerOptions(options);
    this.options = o;
    if (!o.keepV8Pretenuring) turnOffPretenuring();
    // Node checks both timeouts only this often (default 30 s): a fraction of the shorter one.
    this.checkEveryMs = Math.max(50, Math.min(1000, Math.floor(o.headersTimeoutMs / 4)));
    const bodyBudget = new BodyBudget(o.maxBufferedBodyBytes, o.retryAfterSeconds);
    this.metrics = new ServerMetrics(o.maxBatchRows,
      () => [...this.served.values()].map((s) => ({ model: s.name, depth: s.batcher.depth })),
      () => this.inFlight,
      () => bodyBudget.used);
    for (const [name, { model, macsPerRow }] of o.models) {
      const labels = { model: name };
      const batcher = new Batcher(model, macsPerRow, o, (requests, rows) => {
        this.metrics.batchRows.observe(labels, rows);
        this.metrics.batchRequests.observe(labels, requests);
        o.onBatch?.({ model: name, requests, rows });
      });
      this.served.set(name, { name, labels, model, batcher, describe: () => describeModel(name, model) });
    }
    const serving: ServingContext = {
      options: o,
      models: this.served,
      metrics: this.metrics,
      bodyBudget,
      draining: () => this.draining,
      onRequestStart: () => void this.inFlight++,
      onRequestEnd: () => void this.inFlight--,
      log: (message) => void process.stderr.write(`mlpkit server: ${message}\n`),
    };
    const handler = createHandler({ ...serving, metricsSource: () => this.metricsSource });
    this.http = http.createServer({
      headersTimeout: o.headersTimeoutMs,
      requestTimeout: o.requestTimeoutMs,
      keepAliveTimeout: o.keepAliveTimeoutMs,
      connectionsCheckingInterval: this.checkEveryMs,
      noDelay: true,
      requireHostHeader: false, // http.ts answers a missing Host in JSON, and counts it
    }, handler);
    this.http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.clientError(err, socket));
    // node:http's own connection listener, called for the connections it serves: all of them
    // with directHttp off, else those the direct path hands over (direct-http.ts).
    const nodeListeners = this.http.listeners('connection') as ((socket: Socket) => void)[];
    this.http.removeAllListeners('connection');
    const toNode = (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      for (const listener of nodeListeners) listener.call(this.http, socket);
    };
    if (o.directHttp) {
      this.direct = new DirectPath({
        ...serving,
        handOff: toNode,
        refuse: (socket, code, model) => this.clientError(Object.assign(new Error(code), { code }), socket, model),
      }, this.checkEveryMs);
      const direct = this.direct;
      this.socketPath = SocketPath.create(direct, this.checkEveryMs);
      const native = this.socketPath;
      if (native === null) {
        this.http.on('connection', (socket: Socket) => direct.accept(socket));
      } else {
        // Sockets open paused, so node reads nothing the native side should: it polls the fd.
        (this.http as http.Server & { pauseOnConnect: boolean }).pauseOnConnect = true;
        this.metrics.collect = () => native.collect();
        this.http.on('connection', (socket: Socket) => {
          if (native.adopt(socket)) return;
          direct.accept(socket);
          socket.resume();
        });
      }
    } else {
      this.http.on('connection', toNode);
    }
    // Expect: 100-continue (curl sends it for large uploads): invite the body only when its
    // declared length fits, so an over-limit upload gets its 413 without being sent first.
    this.http.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const declared = Number(req.headers['content-length']);
      if (!(declared > o.maxBodyBytes)) res.writeContinue();
      handler(req, res);
    });
    // Any other Expect value: Node's own 417 has no body and keeps the connection, whose
    // unsent body would then be read as the next request. A JSON 417, and the connection closes.
    this.http.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const body = errorBody('expectation_failed',
        `Expect: ${String(req.headers.expect).slice(0, 100)} is not supported; send no Expect header, or Expect: 100-continue`);
      res.writeHead(417, ['Content-Type', 'application/json; charset=utf-8', 'Content-Length', String(Buffer.byteLength(body)), 'Connection', 'close']);
      res.end(body);
      this.metrics.countRequest('', '417');
    });
  }

  /** Errors before a request reaches the handler (bad HTTP, slow headers): answered in JSON too. */
  private clientError(err: NodeJS.ErrnoException, socket: Duplex, model = ''): void {
    const s = socket as Socket & { _httpMessage?: http.ServerResponse; [LINGERING]?: boolean };
    const pending = s._httpMessage;
    // (A lingering socket's request was answered 413 already: its discarded body ran too long.)
    if (err.code === 'ECONNRESET' || !s.writable || pending?.headersSent || s[LINGERING]) {
      s.destroy();
      return;
    }
    let status = 400;
    let body = errorBody('bad_http', `the request is not valid HTTP/1.1 (${err.code ?? err.message})`);
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      status = 408;
      body = errorBody('request_timeout',
        `the request was not received in time (headers within ${this.options.headersTimeoutMs} ms, all of it within ${this.options.requestTimeoutMs} ms)`);
    } else if (err.code === 'HPE_HEADER_OVERFLOW') {
      status = 431;
      body = errorBody('headers_too_large', 'the request headers are too large');
    }
    if (pending && pending.req.complete) {
      // The error is in a later request pipelined behind one still being answered: a reply
      // written now would reach the client as that earlier request's response. The earlier
      // one is answered, then the connection closes. (node's timeout check calls this again
      // every checkEveryMs until then: the late request is counted once.)
      const marked = pending as http.ServerResponse & { [LATE_BEHIND]?: boolean };
      if (marked[LATE_BEHIND]) return;
      marked[LATE_BEHIND] = true;
      pending.shouldKeepAlive = false;
      pending.once('close', () => s.destroy());
      this.metrics.countRequest('', String(status));
      return;
    }
    // Counted once: by the pending response's 'close' (http.ts) when this answers its request
    // (its body came too slowly), else here.
    if (pending) (pending as http.ServerResponse & { [RAW_REPLY]?: number })[RAW_REPLY] = status;
    else this.metrics.countRequest(model, String(status));
    s.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    setTimeout(() => s.destroy(), 1000).unref(); // a client that never reads must not hold the socket
  }

  /** Starts listening; port 0 picks a free one. Default host 127.0.0.1 (use '0.0.0.0' to serve other machines). */
  listen(port = 0, host = '127.0.0.1'): Promise<ListenInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.http.once('error', onError);
      this.http.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
        this.http.off('error', onError);
        resolve(this.address!);
      });
    });
  }

  get address(): ListenInfo | null {
    const a = this.http.address() as AddressInfo | null;
    if (!a || typeof a === 'string') return null;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return { host: a.address, port: a.port, url: `http://${host}:${a.port}` };
  }

  /** The Prometheus text of GET /metrics. */
  metricsText(): string {
    return this.metrics.render();
  }

  /**
   * Graceful shutdown: stop accepting connections, fail /readyz, let every request already
   * received finish (their responses close their connections), then resolve. Connections still
   * open after graceMs are cut.
   */
  close(options: CloseOptions = {}): Promise<void> {
    const o = expectObject('options', options);
    rejectUnknownKeys('options', o, ['graceMs']);
    const graceMs = o.graceMs === undefined ? 10_000 : expectNumber('options.graceMs', o.graceMs, { min: 0 });
    if (this.closing) return this.closing;
    this.draining = true;
    this.closing = new Promise((resolve) => {
      if (!this.http.listening) return resolve();
      const timer = setTimeout(() => {
        this.http.closeAllConnections();
        this.direct?.destroyAll();
      }, graceMs);
      // Server.close() stops the checks behind headersTimeout and requestTimeout, so a client
      // still sending its headers or body would hold the shutdown for the whole grace period:
      // the same limits are enforced here while draining.
      const started = performance.now();
      const sweep = setInterval(() => {
        const waited = performance.now() - started;
        for (const socket of this.sockets) {
          const res = (socket as Socket & { _httpMessage?: http.ServerResponse })._httpMessage;
          const late = res ? !res.req.complete && waited >= this.options.requestTimeoutMs : waited >= this.options.headersTimeoutMs;
          if (late) this.clientError(Object.assign(new Error('request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket);
        }
      }, this.checkEveryMs);
      this.http.close(() => {
        clearTimeout(timer);
        clearInterval(sweep);
        resolve();
      });
      this.http.closeIdleConnections();
      // The native path's connections come back to the direct path first (Connection: close
      // on what they still owe), then the idle ones close.
      this.socketPath?.close();
      this.direct?.closeIdle();
    });
    return this.closing;
  }
}

/**
 * An HTTP server for `options.models`; call listen() to start it. Side effect: turns off V8's
 * allocation-site pretenuring for the whole process, unless `options.keepV8Pretenuring` (see
 * ServerOptions and lib/server/v8-pretenuring.ts).
 */
export function createServer(options: ServerOptions): ModelServer {
  return new ModelServer(options);
}

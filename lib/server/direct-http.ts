// The direct path: predict requests read and answered straight on the socket, without node:http.
//
// Why: at one row per request the model is ~1 us of a request's ~25 us of server CPU, and most
// of the rest is node:http's per-request machinery (IncomingMessage and ServerResponse streams,
// header objects, the parser's JS callbacks). A server that reads HTTP/1.1 off a node:net socket
// itself served ~1.8x the requests of a node:http one here. So every new connection starts on
// this path (unless the native socket path, socket-path.ts, takes it; a connection that path
// hands back goes on here, with what it left owed), which handles one narrow, common form of
// request:
//
//   POST /v1/models/<served model>/predict HTTP/1.1, with Host, a Content-Length within
//   maxBodyBytes, a JSON or octet-stream Content-Type, printable ASCII headers, and no
//   Transfer-Encoding, Expect, Upgrade or Content-Encoding
//
// and nothing else. The first request that is anything else (another endpoint, chunked, a
// malformed line, HTTP/1.0, a head over 16 KiB) hands the connection to node:http for the rest
// of its life: once the answers already owed on it are written, the unread bytes, from that
// request's first byte on, are pushed back onto the socket (unshift) and node's own connection
// listener takes it. Everything but the hot request therefore behaves exactly as the node:http
// server does, and this file stays a small, strict parser: when in doubt, it hands off.
//
// What the direct path keeps of node:http's behaviour: the same answers byte for byte (status
// line, headers in node's order, Date, Connection/Keep-Alive), pipelined answers in order,
// Connection: close, the header and request timeouts (408, by the server's clientError), the
// keep-alive timeout, the stalled-write timeout, the body budget, and graceful close.

import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { HttpError, errorBody } from './errors.js';
import { parseHead, type Head } from './direct-head.js';
import { JSON_TYPE, predictBody, type ServingContext } from './predict.js';

export interface DirectContext extends ServingContext {
  /** Gives the connection to node:http (its unread bytes are back on the socket). */
  handOff: (socket: Socket) => void;
  /**
   * Answers on the socket as node:http's clientError does for `code`, and closes it: 408 for
   * ERR_HTTP_REQUEST_TIMEOUT (a request that did not arrive in time), 400 otherwise. Counted
   * under `model` ('' before the request's head was read).
   */
  refuse: (socket: Socket, code: string, model: string) => void;
}

/** node:http's default maxHeaderSize: a longer head goes to node, which answers 431. */
const MAX_HEAD_BYTES = 16 * 1024;
/**
 * Requests of one connection queued at once; past it the socket is read no further until some
 * answers go out. (Rows are bounded by the batcher's maxQueueRows anyway: this bounds the
 * per-connection bookkeeping of a client that sends without reading.)
 */
const MAX_PIPELINED = 64;
const EMPTY = Buffer.alloc(0);
const HEAD_END = Buffer.from('\r\n\r\n');
/** A connection the native socket path hands over (socket-path.ts), and what it leaves owed. */
export interface Resume {
  /** Bytes received and not answered, from a request's first byte. */
  unread?: Buffer;
  /** Answers not yet written. */
  unwritten?: Buffer;
  /** performance.now() when the connection opened, if no request on it was answered yet (else 0). */
  openedAt: number;
}

/** One request read on the direct path, from its parse to its answer being written. */
interface Exchange {
  labels: { model: string };
  start: number;
  /** The answer closes the connection. */
  close: boolean;
  status: number;
  /** The answer's head, and its body when that is text; null until the answer is ready. */
  text: string | null;
  /** A binary answer's body. */
  bytes: Buffer | null;
  cancel: (() => void) | null;
}

let dateSecond = -1;
let dateText = '';
/** The Date header's value, made once a second (as node:http does). */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

class DirectConnection {
  /** Bytes received and not yet taken as a request. */
  private buf: Buffer | null = null;
  /** While a body is incomplete: its head, where the body starts in buf, and the chunks so far. */
  private head: Head | null = null;
  private bodyAt = 0;
  private parts: Buffer[] | null = null;
  private have = 0;
  /** Body budget bytes held: those of the incomplete body received so far. */
  private reserved = 0;
  /** performance.now() when an incomplete request was first seen (0: none). */
  since = 0;
  private readonly queue: Exchange[] = [];
  /** No further requests are read: the connection ends once the queue is answered. */
  private closing = false;
  /** The connection goes to node:http once the queue is answered. */
  private handingOff = false;
  private paused = false;
  /** performance.now() when reading last paused. */
  private pausedAt = 0;
  private stalled = false;
  private gone = false;

  private readonly onData = (chunk: Buffer) => {
    try {
      this.receive(chunk);
    } catch (err) {
      // A bug here must cost one connection, not the process (this runs from a socket event).
      this.owner.ctx.log(`direct HTTP path failed on a connection: ${(err as Error)?.stack ?? String(err)}`);
      this.socket.destroy();
    }
  };
  private readonly onEnd = () => this.clientEnded();
  private readonly onDrain = () => this.drained();
  private readonly onTimeout = () => this.inactive();
  private readonly onClose = () => this.closed();
  private readonly onWritten = () => {
    if (this.stalled && !this.gone && this.socket.writableLength === 0) this.drained();
  };

  constructor(readonly socket: Socket, private readonly owner: DirectPath, from?: Resume) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('drain', this.onDrain);
    socket.on('timeout', this.onTimeout);
    socket.on('close', this.onClose);
    socket.on('error', noop); // 'close' follows, which ends what is owed
    socket.setTimeout(owner.keepAliveMs);
    if (from === undefined) {
      // node:http times the first request's headers from the connection's start.
      this.incomplete();
      return;
    }
    // From the native path: still timed from the start if nothing was answered yet, else idle.
    if (from.openedAt > 0) {
      this.incomplete();
      this.since = from.openedAt;
    }
    if (from.unwritten !== undefined) {
      socket.write(from.unwritten);
      this.watchWrite();
    }
    if (from.unread !== undefined) this.receive(from.unread);
  }

  /** The incomplete request's head has been read (its body has not). */
  get hasHead(): boolean {
    return this.head !== null;
  }

  /** Nothing received and nothing owed. */
  get idle(): boolean {
    return this.queue.length === 0 && this.buf === null && this.parts === null;
  }

  private receive(chunk: Buffer): void {
    if (this.closing) return; // after Connection: close, as node:http, later requests are not read
    if (this.handingOff) return this.append(chunk); // kept for node:http, from the first byte of the request it is to read
    if (this.parts !== null) {
      const need = this.bodyAt + this.head!.length;
      const bytes = Math.min(chunk.length, need - this.have);
      this.parts.push(chunk);
      this.have += chunk.length;
      // Checked as each chunk arrives, as node's path does: past the budget, node takes the
      // request (from its first byte) and answers 503.
      const budget = this.owner.ctx.bodyBudget;
      if (budget.used + bytes > budget.limit) return this.handOff();
      this.hold(bytes);
      if (this.have < need) return;
      this.buf = Buffer.concat(this.parts, this.have);
      this.parts = null;
    } else {
      this.append(chunk);
    }
    this.parse();
  }

  private append(chunk: Buffer): void {
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** Forgets what was received and not taken as a request (its budget bytes and clock too). */
  private dropUnread(): void {
    this.buf = null;
    this.parts = null;
    this.head = null;
    this.release();
    this.complete();
  }

  /** Takes every complete request off buf. */
  private parse(): void {
    const { ctx } = this.owner;
    while (this.buf !== null && !this.closing) {
      if (this.queue.length >= MAX_PIPELINED || this.socket.writableNeedDrain) {
        // A client that sends and does not read: stop reading until answers go out. (A
        // connection not being read cannot be late: its clock starts again when it is.)
        this.paused = true;
        this.pausedAt = performance.now();
        this.socket.pause();
        this.complete();
        return;
      }
      const buf = this.buf;
      let head = this.head;
      if (head === null) {
        const end = buf.indexOf(HEAD_END);
        if (end < 0 && buf.length <= MAX_HEAD_BYTES) return this.incomplete();
        if (end < 0 || end > MAX_HEAD_BYTES) return this.handOff();
        head = parseHead(buf, end, ctx.models);
        // A body over its limit, or one that could pass the server's budget of bodies being
        // read (body.ts), goes to node's path for its 413 or 503 (even when it came whole: the
        // answer must not depend on how the client's writes were split).
        const budget = ctx.bodyBudget;
        if (head === null || head.length > ctx.options.maxBodyBytes || budget.used + head.length > budget.limit) return this.handOff();
        this.bodyAt = end + 4;
      }
      const total = this.bodyAt + head.length;
      if (buf.length < total) {
        if (this.head === null) {
          // The body's bytes count against the budget as they arrive, as on node's path.
          this.hold(buf.length - this.bodyAt);
          this.head = head;
        }
        this.parts = [buf];
        this.have = buf.length;
        this.buf = null;
        return this.incomplete();
      }
      this.release();
      this.head = null;
      this.complete();
      this.buf = total === buf.length ? null : buf.subarray(total);
      this.start(head, buf.subarray(this.bodyAt, total));
    }
    // Bytes after a Connection: close request are not read (as node:http does not answer them).
    if (this.closing) this.buf = null;
    this.complete();
  }

  private incomplete(): void {
    if (this.since === 0) this.since = performance.now();
    this.owner.waiting.add(this);
  }

  private complete(): void {
    this.since = 0;
    this.owner.waiting.delete(this);
  }

  private hold(bytes: number): void {
    this.owner.ctx.bodyBudget.used += bytes;
    this.reserved += bytes;
  }

  private release(): void {
    this.owner.ctx.bodyBudget.used -= this.reserved;
    this.reserved = 0;
  }

  private start(head: Head, body: Buffer): void {
    const { ctx } = this.owner;
    ctx.onRequestStart();
    const ex: Exchange = { labels: head.served.labels, start: performance.now(), close: head.close, status: 0, text: null, bytes: null, cancel: null };
    this.queue.push(ex);
    if (head.close) this.closing = true;
    const cancel = predictBody(head.served, body, head.binary, head.acceptBinary, ctx.options, {
      ok: (out, type, headers) => this.answer(ex, 200, out, type, headers),
      fail: (err) => {
        if (err instanceof HttpError) return this.answer(ex, err.status, errorBody(err.code, err.message), JSON_TYPE, err.headers);
        ctx.log(`POST /v1/models/${head.served.name}/predict failed: ${(err as Error)?.stack ?? String(err)}`);
        this.answer(ex, 500, errorBody('internal', 'the server failed on this request; see its log'), JSON_TYPE);
      },
    });
    if (ex.text === null) ex.cancel = cancel; // (answered already when the model ran at once)
  }

  private answer(ex: Exchange, status: number, body: string | Buffer, type: string, headers?: Record<string, string>): void {
    if (this.gone) return;
    ex.cancel = null;
    // node:http's order: the handler's headers (http.ts adds Connection: close while the server
    // drains), then Date, then the Connection node adds itself.
    const draining = this.owner.ctx.draining();
    const length = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
    let text = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${type}\r\nContent-Length: ${length}\r\n`;
    if (headers) for (const k in headers) text += `${k}: ${headers[k]}\r\n`;
    if (draining) text += `Connection: close\r\nDate: ${httpDate()}\r\n\r\n`;
    else text += `Date: ${httpDate()}\r\n${ex.close ? 'Connection: close\r\n\r\n' : this.owner.keepAlive}`;
    ex.close ||= draining;
    ex.status = status;
    if (typeof body === 'string') ex.text = text + body;
    else {
      ex.text = text;
      ex.bytes = body;
    }
    if (this.queue[0] === ex) this.flush();
  }

  /** Writes the answers at the head of the queue that are ready, in order. */
  private flush(): void {
    const s = this.socket;
    const corked = this.queue.length > 1 || this.queue[0].bytes !== null;
    if (corked) s.cork();
    while (this.queue.length > 0 && this.queue[0].text !== null) {
      const ex = this.queue.shift()!;
      s.write(ex.text!);
      if (ex.bytes !== null) s.write(ex.bytes);
      this.finish(ex, ex.status);
      if (ex.close) {
        this.closing = true;
        this.dropUnread();
        this.abortQueue();
        s.destroySoon(); // ends, and closes once written (the socket is half open: end alone would wait for the client)
        break;
      }
    }
    if (corked) s.uncork();
    this.watchWrite();
    if (this.gone) return;
    if (this.queue.length === 0 && this.closing) {
      if (!s.writableEnded) s.destroySoon();
    } else if (this.queue.length === 0 && this.handingOff) {
      this.handOff();
    } else if (this.paused && !this.closing && !this.handingOff && this.queue.length < MAX_PIPELINED && !s.writableNeedDrain) {
      this.resume();
    }
  }

  /**
   * While answers sit unsent (the client is not taking them), the connection gets writeTimeoutMs
   * of no progress. The watch ends when what is buffered has gone out ('drain' comes only past
   * the high-water mark).
   */
  private watchWrite(): void {
    const s = this.socket;
    if (s.writableLength === 0 || s.destroyed) return;
    if (!this.stalled) {
      this.stalled = true;
      s.setTimeout(this.owner.ctx.options.writeTimeoutMs);
    }
    if (!s.writableEnded) s.write(EMPTY, this.onWritten);
  }

  private resume(): void {
    this.paused = false;
    this.socket.resume();
    this.parse();
  }

  private finish(ex: Exchange, status: number | 'aborted'): void {
    const { metrics, onRequestEnd } = this.owner.ctx;
    metrics.countRequest(ex.labels.model, String(status));
    metrics.latency.observe(ex.labels, (performance.now() - ex.start) / 1000);
    onRequestEnd();
  }

  private abortQueue(): void {
    for (const ex of this.queue.splice(0)) {
      ex.cancel?.();
      this.finish(ex, 'aborted');
    }
  }

  /**
   * The connection ends: counts the complete requests received and not yet parsed (those a
   * client sent past MAX_PIPELINED, or faster than it reads) as aborted, as node's path counts
   * every request it parsed; a client that leaves has asked for them all the same. Returns
   * whether what is left holds a request cut short (an incomplete head or body), which gets
   * node's 400 on a FIN. Counting stops at a request with Connection: close (node:http answers
   * nothing after it) and at one node:http was to take (which node:http would count; here it
   * is not).
   */
  private takeUnread(): boolean {
    if (this.parts !== null) return true; // a body still arriving
    const { ctx } = this.owner;
    // They arrived before reading paused, at the latest.
    const waited = this.paused ? (performance.now() - this.pausedAt) / 1000 : 0;
    let buf = this.buf;
    while (buf !== null) {
      const end = buf.indexOf(HEAD_END);
      if (end < 0 || end > MAX_HEAD_BYTES) return true;
      const head = this.handingOff ? null : parseHead(buf, end, ctx.models);
      if (head === null) return buf.length < end + 4 + declaredLength(buf, end);
      const total = end + 4 + head.length;
      if (buf.length < total) return true;
      ctx.metrics.countRequest(head.served.name, 'aborted');
      ctx.metrics.latency.observe(head.served.labels, waited);
      if (head.close) return false;
      buf = total === buf.length ? null : buf.subarray(total);
    }
    return false;
  }

  /** The request at the head of buf is not of the direct form: node:http takes the connection. */
  private handOff(): void {
    this.release();
    this.head = null;
    this.complete();
    if (this.parts !== null) {
      this.buf = Buffer.concat(this.parts, this.have);
      this.parts = null;
    }
    if (this.queue.length > 0) {
      // Answers are owed first, in order: read nothing more until they are written.
      this.handingOff = true;
      this.socket.pause();
      return;
    }
    const s = this.socket;
    this.detach();
    if (this.buf !== null) s.unshift(this.buf);
    this.buf = null;
    this.owner.ctx.handOff(s);
    s.resume();
  }

  private detach(): void {
    const s = this.socket;
    this.gone = true;
    this.complete();
    this.owner.connections.delete(this);
    s.off('data', this.onData);
    s.off('end', this.onEnd);
    s.off('drain', this.onDrain);
    s.off('timeout', this.onTimeout);
    s.off('close', this.onClose);
    s.setTimeout(0);
  }

  private clientEnded(): void {
    // The client sent FIN. As node:http does (its sockets are half open, but httpAllowHalfOpen
    // is off), that counts as gone: what it asked for is aborted and the socket ends. A request
    // cut short by the FIN, with nothing owed before it, gets node's 400 (HPE_INVALID_EOF_STATE).
    const cut = this.takeUnread();
    const model = this.head === null ? '' : this.head.served.name;
    this.closing = true;
    this.dropUnread();
    if (cut && this.queue.length === 0 && this.socket.writable) {
      this.detach();
      this.owner.ctx.refuse(this.socket, 'HPE_INVALID_EOF_STATE', model);
      return;
    }
    if (cut && this.socket.writable) {
      // Cut behind requests not yet answered: as node:http, the first of them is still
      // answered (with Connection: close, which ends the connection), and the cut one counted.
      this.queue[0].close = true;
      this.owner.ctx.metrics.countRequest('', '400');
      return;
    }
    this.abortQueue();
    if (this.socket.writable) this.socket.end();
  }

  private drained(): void {
    if (this.stalled) {
      this.stalled = false;
      this.socket.setTimeout(this.owner.keepAliveMs);
    }
    if (this.paused && this.queue.length < MAX_PIPELINED && !this.handingOff && !this.closing) this.resume();
  }

  /** The socket saw no traffic for its timeout. */
  private inactive(): void {
    if (this.stalled) return void this.socket.destroy(); // an answer not taken for writeTimeoutMs
    // Keep-alive timeout. (A connection that has sent nothing yet is the sweep's: it gets a 408
    // at headersTimeoutMs, as on node's path.)
    if (this.idle && this.since === 0) this.socket.destroy();
    // Otherwise a request is incomplete (the sweep times it) or being computed.
  }

  /** Called by the sweep for a request incomplete past its time. */
  timedOut(): void {
    const model = this.head === null ? '' : this.head.served.name;
    this.dropUnread();
    if (this.queue.length === 0) {
      this.detach();
      this.owner.ctx.refuse(this.socket, 'ERR_HTTP_REQUEST_TIMEOUT', model);
      return;
    }
    // Answers are owed on the connection: the first goes out with Connection: close, as node's
    // path does, and the connection ends. (Counted here, as node's path counts a late request
    // behind an answered one.)
    this.closing = true;
    this.queue[0].close = true;
    this.owner.ctx.metrics.countRequest(model, '408');
  }

  private closed(): void {
    this.takeUnread();
    this.buf = null;
    this.gone = true;
    this.release();
    this.complete();
    this.owner.connections.delete(this);
    this.abortQueue();
  }
}

function noop(): void {}

/**
 * The Content-Length of a head node:http is to read, leniently (0 when it has none): only to
 * tell whether its body had all arrived when the connection ended.
 */
function declaredLength(buf: Buffer, end: number): number {
  const m = /\r\ncontent-length:[ \t]*([0-9]{1,15})/i.exec(buf.toString('latin1', 0, end));
  return m === null ? 0 : Number(m[1]);
}

/** The direct path of one server: its connections and the timeouts of their incomplete requests. */
export class DirectPath {
  readonly connections = new Set<DirectConnection>();
  /** Connections holding an incomplete request (checked against the header and request timeouts). */
  readonly waiting = new Set<DirectConnection>();
  /** The end of a keep-alive answer's head, as node:http writes it. */
  readonly keepAlive: string;
  /**
   * How long an idle connection is kept: keepAliveTimeoutMs plus the 1 s node:http adds, so a
   * client that reuses the connection just as the advertised timeout ends does not meet a
   * closing socket.
   */
  readonly keepAliveMs: number;
  private sweep: ReturnType<typeof setInterval> | null = null;

  constructor(readonly ctx: DirectContext, private readonly checkEveryMs: number) {
    this.keepAlive = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(ctx.options.keepAliveTimeoutMs / 1000)}\r\n\r\n`;
    this.keepAliveMs = ctx.options.keepAliveTimeoutMs + 1000;
  }

  /** Serves the connection from its start, or from where the native socket path left it. */
  accept(socket: Socket, from?: Resume): void {
    this.connections.add(new DirectConnection(socket, this, from));
    if (this.sweep === null) {
      this.sweep = setInterval(() => this.check(), this.checkEveryMs);
      this.sweep.unref();
    }
  }

  private check(): void {
    const now = performance.now();
    const { headersTimeoutMs, requestTimeoutMs } = this.ctx.options;
    for (const c of this.waiting) {
      if (c.since > 0 && now - c.since >= (c.hasHead ? requestTimeoutMs : headersTimeoutMs)) c.timedOut();
    }
    if (this.connections.size === 0 && this.sweep !== null) {
      clearInterval(this.sweep);
      this.sweep = null;
    }
  }

  /** Server close: idle connections close now; the others once their answers are written (Connection: close). */
  closeIdle(): void {
    for (const c of this.connections) if (c.idle) c.socket.destroy();
  }

  destroyAll(): void {
    for (const c of this.connections) c.socket.destroy();
  }
}

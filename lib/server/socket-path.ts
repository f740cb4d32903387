// The native socket path's TypeScript side: which connections it takes, and what becomes of a
// connection it hands back. (native/addon/socket_path.h has the why and the how.)
//
// The path serves the hot request, POST /v1/models/<name>/predict with a JSON body, for models
// of the native backend small enough to batch on the event loop, with no JS per request: C++
// reads the socket, batches, predicts and writes. Every other case comes back here, with the
// bytes not yet answered and the answers not yet written, and the connection goes on, for the
// rest of its life, on the TypeScript direct path (direct-http.ts), exactly as if it had
// started there. The answers are the same byte for byte; the metrics the native side counts
// are added to the server's when they are read.

import type { Socket } from 'node:net';
import { loadNative, type NativeSocketPath, type NativeSocketPathOptions } from '../backend/native.js';
import { Mlp } from '../mlp.js';
import type { DirectPath } from './direct-http.js';
import { errorBody } from './errors.js';
import { overloaded } from './predict.js';

/** Requests one connection may owe answers to (direct-http.ts's MAX_PIPELINED). */
const MAX_PIPELINED = 64;
/**
 * A model is served natively when a batch of this many rows fits within inlineMacs: each
 * predict call runs on the event loop there, where the TypeScript path would send a larger one
 * to the thread pool.
 */
const MIN_INLINE_ROWS = 64;

interface Owned {
  socket: Socket;
  /** performance.now() when the connection opened. */
  openedAt: number;
}

export class SocketPath {
  private readonly owned = new Map<number, Owned>();
  private nextId = 1;

  private constructor(
    private readonly native: NativeSocketPath,
    private readonly labels: { model: string }[],
    private readonly direct: DirectPath,
  ) {}

  /**
   * The native path beside the direct path `direct`, or null where it does not apply: turned off
   * (nativeHttp, directHttp), batching that waits or reports each batch (maxWaitUs, onBatch),
   * no addon built with it, or no model it can serve.
   */
  static create(direct: DirectPath, checkEveryMs: number): SocketPath | null {
    const { ctx } = direct;
    const o = ctx.options;
    if (!o.nativeHttp || !o.directHttp || !o.batching || o.maxWaitUs > 0 || o.onBatch !== null || process.platform === 'win32') return null;
    const addon = loadNative();
    if (!addon?.createSocketPath) return null;
    const models: NativeSocketPathOptions['models'] = [];
    const labels: { model: string }[] = [];
    for (const served of ctx.models.values()) {
      const m = served.model;
      if (!(m instanceof Mlp) || m.backend !== 'native' || m.disposed) continue;
      const inlineRows = Math.floor(o.inlineMacs / o.models.get(served.name)!.macsPerRow);
      if (inlineRows < MIN_INLINE_ROWS) continue;
      const refusal = overloaded(served.name, o);
      models.push({ name: served.name, model: m.handle('createServer'), chunkRows: Math.min(o.maxBatchRows, inlineRows),
        overloadedBody: errorBody(refusal.code, refusal.message) });
      labels.push(served.labels);
    }
    if (models.length === 0) return null;
    const holder: { path: SocketPath | null } = { path: null };
    const native = addon.createSocketPath({
      models,
      tail: direct.keepAlive,
      retryAfter: String(o.retryAfterSeconds),
      maxBodyBytes: o.maxBodyBytes,
      maxQueueRows: o.maxQueueRows,
      maxPipelined: MAX_PIPELINED,
      headersTimeoutMs: o.headersTimeoutMs,
      keepAliveMs: direct.keepAliveMs,
      checkEveryMs,
      budget: ctx.bodyBudget.cell,
      latencyBuckets: ctx.metrics.latency.buckets,
      batchBuckets: ctx.metrics.batchRows.buckets,
      onRelease: (id, reason, unread, unwritten, served) => holder.path?.released(id, reason, unread, unwritten, served),
      onEnded: (ids) => holder.path?.ended(ids),
    });
    holder.path = new SocketPath(native, labels, direct);
    return holder.path;
  }

  /** Connections the native side holds now. */
  get size(): number {
    return this.owned.size;
  }

  /**
   * Takes the connection if the native side can poll it: the socket must not have been read
   * (the server sets pauseOnConnect) and must have a file descriptor.
   */
  adopt(socket: Socket): boolean {
    const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) return false;
    const id = this.nextId++;
    if (!this.native.adopt(id, fd)) return false;
    this.owned.set(id, { socket, openedAt: performance.now() });
    // Closed from JS while held here (a user's destroy(), say): the native side lets go too.
    socket.once('close', () => {
      if (this.owned.delete(id)) this.native.forget(id);
    });
    return true;
  }

  /** The native side gave a connection back (native/addon/socket_path.cpp's Release). */
  private released(id: number, reason: string, unread: Buffer | undefined, unwritten: Buffer | undefined, served: boolean): void {
    const owned = this.owned.get(id);
    if (owned === undefined) return;
    this.owned.delete(id);
    const { socket } = owned;
    try {
      // Idle past the keep-alive timeout: closed, as the direct path closes it.
      if (reason === 'idle') return void socket.destroy();
      // Nothing whole arrived within headersTimeoutMs of the connection's start: node's 408.
      if (reason === 'late') {
        // Read again, as the direct path's sockets are, so the client's FIN ends it at once.
        socket.resume();
        return this.direct.ctx.refuse(socket, 'ERR_HTTP_REQUEST_TIMEOUT', '');
      }
      // Reading first, so a pause the direct path makes while taking `unread` stands.
      socket.resume();
      this.direct.accept(socket, { unread, unwritten, openedAt: served ? 0 : owned.openedAt });
    } catch (err) {
      this.direct.ctx.log(`native socket path: a connection could not be handed back: ${(err as Error)?.stack ?? String(err)}`);
      socket.destroy();
    }
  }

  /**
   * Clients that closed or reset their side with nothing owed either way (a list per turn of the
   * loop): the direct path would only end such a socket, with nothing to count, so it is closed
   * here. (Its reads are done, so closing sends a FIN, not a reset.)
   */
  private ended(ids: Float64Array): void {
    for (const id of ids) {
      const owned = this.owned.get(id);
      if (owned === undefined) continue;
      this.owned.delete(id);
      owned.socket.destroy();
    }
  }

  /** Adds what the native side counted since the last call to the server's metrics. */
  collect(): void {
    const { metrics } = this.direct.ctx;
    this.native.takeStats().forEach((v, i) => {
      const labels = this.labels[i];
      if (v[0] > 0) metrics.countRequest(labels.model, '200', v[0]);
      if (v[1] > 0) metrics.countRequest(labels.model, '503', v[1]);
      let at = 2;
      at = metrics.latency.add(labels, v, at);
      at = metrics.batchRows.add(labels, v, at);
      metrics.batchRequests.add(labels, v, at);
    });
  }

  /** Hands every connection back to the direct path (server close) and takes no more. */
  close(): void {
    this.collect();
    this.native.close();
  }
}

// Dynamic micro-batching for one model: requests that arrive while others wait are merged into
// one predict call, and each gets its rows of the result.
//
// When a batch forms: Node parses every request that became readable in one poll of the event
// loop before it runs setImmediate callbacks, so a flush scheduled with setImmediate sees the
// whole burst at no extra wait. The first request of a turn that finds the model idle and the
// queue empty runs at once instead (at concurrency 1 it is the only one, and waiting a turn would
// only add latency); the rest of its burst queues behind it. Work above `inlineMacs` runs on the
// thread pool (predictAsync), one batch at a time per model, and whatever queued meanwhile
// becomes the next batch the moment it finishes. maxWaitUs > 0 additionally holds a partly full
// batch until its oldest request has waited that long.
//
// Admission: a full queue (maxQueueRows) refuses the request, and the server answers 503 with
// Retry-After; a request that waited longer than queueTimeoutMs is answered 503 when its turn
// comes. Memory stays bounded by the queue, not by the offered load. A request whose client
// went away while it waited (cancel) leaves the queue at once: it takes no slot from live
// requests and no rows from the next predict call.

import type { NormalizedServerOptions, ServableModel } from './options.js';
import { HttpError } from './errors.js';

export type Done = (err: Error | null, y: Float32Array | null) => void;

interface Pending {
  x: Float32Array;
  rows: number;
  at: number; // performance.now() when queued
  done: Done;
  /** In the queue (not yet taken into a predict call, not cancelled). */
  queued: boolean;
}

/** What submit() gives back for an admitted request: hand it to cancel() if its client leaves. */
export type Ticket = object;

type BatcherOptions = Pick<NormalizedServerOptions, 'batching' | 'maxBatchRows' | 'maxWaitUs' | 'maxQueueRows' | 'queueTimeoutMs' | 'inlineMacs' | 'retryAfterSeconds'>;

export class Batcher {
  private queue: (Pending | undefined)[] = [];
  private head = 0;
  private queuedRows = 0;
  /** Cancelled requests still in the queue array (skipped when reached). */
  private cancelled = 0;
  /** Rows inside predictAsync calls now. */
  private runningRows = 0;
  /** A batch is on the thread pool (batching mode runs one at a time and queues the rest). */
  private busy = false;
  /** A request ran at once in this event-loop turn: later ones in the turn queue behind it. */
  private burst = false;
  private scheduled = false;

  constructor(
    private readonly model: ServableModel,
    private readonly macsPerRow: number,
    private readonly options: BatcherOptions,
    private readonly observe: (requests: number, rows: number) => void,
  ) {}

  /** Requests waiting for a predict call. */
  get depth(): number {
    return this.queue.length - this.head - this.cancelled;
  }

  /**
   * Queues `rows` rows (x: rows x inputs); null when the queue is full (answer 503). `done` is
   * called once, unless the ticket is cancelled while the request still waits.
   */
  submit(x: Float32Array, rows: number, done: Done): Ticket | null {
    const o = this.options;
    if (!o.batching) {
      // One call per request; the bound is then on rows running on the thread pool at once.
      if (this.runningRows > 0 && this.runningRows + rows > o.maxQueueRows) return null;
      const p: Pending = { x, rows, at: 0, done, queued: false };
      this.run([p], rows);
      return p;
    }
    if (this.depth > 0 && this.queuedRows + rows > o.maxQueueRows) return null;
    const p: Pending = { x, rows, at: performance.now(), done, queued: false };
    if (!this.busy && !this.burst && this.depth === 0) {
      this.burst = true;
      setImmediate(this.endBurst);
      this.run([p], rows);
      return p;
    }
    p.queued = true;
    this.queue.push(p);
    this.queuedRows += rows;
    if (!this.busy) this.schedule(0);
    return p;
  }

  /** The request's client is gone: if it still waits, it leaves the queue and `done` is never called. */
  cancel(ticket: Ticket): void {
    const p = ticket as Pending;
    if (!p.queued) return; // running or answered: its predict call is under way
    p.queued = false;
    this.queuedRows -= p.rows;
    this.cancelled++;
    if (this.depth === 0) this.reset();
  }

  /** Empties the queue array (every entry left in it was taken or cancelled). */
  private reset(): void {
    this.queue.length = 0;
    this.head = 0;
    this.cancelled = 0;
  }

  /** Steps the head past cancelled entries. */
  private skipCancelled(): void {
    while (this.head < this.queue.length && !this.queue[this.head]!.queued) {
      this.queue[this.head++] = undefined;
      this.cancelled--;
    }
  }

  private readonly endBurst = (): void => {
    this.burst = false;
  };

  private schedule(delayMs: number): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // Timers have millisecond resolution; shorter waits poll once per event-loop turn.
    if (delayMs >= 1) setTimeout(this.onTimer, Math.floor(delayMs));
    else setImmediate(this.onTimer);
  }

  private readonly onTimer = (): void => {
    this.scheduled = false;
    if (this.busy || this.depth === 0) return;
    const o = this.options;
    this.skipCancelled();
    if (o.maxWaitUs > 0 && this.queuedRows < o.maxBatchRows) {
      const wait = this.queue[this.head]!.at + o.maxWaitUs / 1000 - performance.now();
      if (wait > 0) return this.schedule(wait);
    }
    this.drain();
  };

  /** Runs queued requests in batches of up to maxBatchRows until the queue is empty or a batch went to the thread pool. */
  private drain(): void {
    const o = this.options;
    while (this.depth > 0 && !this.busy) {
      const now = performance.now();
      const batch: Pending[] = [];
      let rows = 0;
      while (this.depth > 0) {
        this.skipCancelled();
        const p = this.queue[this.head]!;
        if (batch.length > 0 && rows + p.rows > o.maxBatchRows) break;
        this.queue[this.head++] = undefined;
        p.queued = false;
        this.queuedRows -= p.rows;
        if (now - p.at > o.queueTimeoutMs) {
          p.done(new HttpError(503, 'queue_timeout', `the request waited more than ${o.queueTimeoutMs} ms for the model; retry later`,
            { 'Retry-After': String(o.retryAfterSeconds) }), null);
          continue;
        }
        batch.push(p);
        rows += p.rows;
      }
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      if (batch.length > 0) this.run(batch, rows);
    }
    if (this.depth === 0) this.reset();
  }

  private run(batch: Pending[], rows: number): void {
    const inputs = this.model.inputs;
    let x = batch[0].x;
    if (batch.length > 1) {
      x = new Float32Array(rows * inputs);
      let at = 0;
      for (const p of batch) {
        x.set(p.x, at);
        at += p.x.length;
      }
    }
    try {
      this.observe(batch.length, rows);
    } catch (err) {
      // A throwing onBatch hook (user code) must not lose the batch or escape from setImmediate.
      process.stderr.write(`mlpkit server: the onBatch hook threw: ${(err as Error)?.stack ?? String(err)}\n`);
    }
    if (rows * this.macsPerRow <= this.options.inlineMacs) {
      let y: Float32Array;
      try {
        y = this.model.predict(x);
      } catch (err) {
        return fail(batch, err as Error);
      }
      return deliver(batch, y, this.model.outputs);
    }
    if (this.options.batching) this.busy = true;
    this.runningRows += rows;
    // Through a promise: a custom model whose predictAsync throws instead of rejecting would
    // otherwise leave busy set, and nothing would ever drain again.
    Promise.resolve(x).then((input) => this.model.predictAsync(input)).then(
      (y) => {
        this.finished(rows);
        deliver(batch, y, this.model.outputs);
      },
      (err: Error) => {
        this.finished(rows);
        fail(batch, err);
      },
    );
  }

  private finished(rows: number): void {
    this.runningRows -= rows;
    this.busy = false;
    // These requests have waited a whole predict call already: start the next batch before
    // answering the last one, so the thread pool works while the responses are written.
    if (this.depth > 0) this.drain();
  }
}

function deliver(batch: Pending[], y: Float32Array, outputs: number): void {
  let at = 0;
  for (const p of batch) {
    const n = p.rows * outputs;
    const mine = batch.length === 1 ? y : y.subarray(at, at + n);
    at += n;
    try {
      p.done(null, mine);
    } catch {
      // One failing response (a socket gone mid-write) must not cost the others theirs.
    }
  }
}

function fail(batch: Pending[], err: Error): void {
  for (const p of batch) {
    try {
      p.done(err, null);
    } catch {
      // as in deliver
    }
  }
}

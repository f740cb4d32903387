// How the reference backend runs calls, with the native backend's guarantees (see
// native/addon/async_work.h and native/core/sequencer.h):
//
// - Order: a model's calls take effect in the order they were made, as if one at a time. Async
//   calls wait in a per-model queue and run a slice at a time between macrotasks (so a large
//   batch never holds the event loop); a sync call first finishes every call queued before it.
// - Memory: an async call copies its inputs when it is made and writes the caller's `out` only
//   when it is done, after checking that `out` is still whole: the caller may detach, resize or
//   reuse any array meanwhile without tearing a result.
// - Allocation failures for the sizes a caller asked for are RangeErrors with a code.

import { outOfMemoryError, rangeError, typedArrayLength } from '../../errors.js';

/** One queued call: `step` does a slice of the work and returns true once the call is settled. */
export interface QueuedCall {
  step(): boolean;
}

/** A model's queue of async calls, run in order between macrotasks. */
export class CallQueue {
  private readonly calls: QueuedCall[] = [];
  private scheduled = false;

  push(call: QueuedCall): void {
    this.calls.push(call);
    this.schedule();
  }

  /** Runs every queued call to the end, now (a sync call comes after them). */
  drain(): void {
    while (this.calls.length > 0) {
      const call = this.calls[0];
      while (!call.step());
      this.calls.shift();
    }
  }

  private schedule(): void {
    if (this.scheduled || this.calls.length === 0) return;
    this.scheduled = true;
    setImmediate(this.pump);
  }

  private readonly pump = (): void => {
    this.scheduled = false;
    const call = this.calls[0];
    if (call && call.step()) this.calls.shift();
    this.schedule();
  };
}

/**
 * A queued call that runs `slices` in turn (each returns true when it did the last one) and
 * settles a promise with `finish()` after the last. Any exception settles it as a rejection.
 */
export function queuedCall<T>(
  run: () => boolean,
  finish: () => T,
): { call: QueuedCall; promise: Promise<T> } {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const call: QueuedCall = {
    step(): boolean {
      try {
        if (!run()) return false;
        resolve(finish());
      } catch (err) {
        reject(err);
      }
      return true;
    },
  };
  return { call, promise };
}

const float32Set = Float32Array.prototype.set;

/** A copy of x taken now (the intrinsic set: a subclass cannot intercept it). */
export function snapshot<T extends Float32Array | Int32Array>(x: T): T {
  const copy = (x instanceof Int32Array ? new Int32Array(typedArrayLength(x)) : new Float32Array(typedArrayLength(x))) as T;
  (x instanceof Int32Array ? Int32Array.prototype.set : float32Set).call(copy, x);
  return copy;
}

/** Copies a finished result into the caller's `out`, if `out` still has room for exactly it. */
export function deliver(what: string, y: Float32Array, out: Float32Array): void {
  const length = typedArrayLength(out);
  if (length !== y.length) {
    throw rangeError(`${what}: out was detached or resized while the call was in flight (expected ${y.length} elements, found ${length})`);
  }
  float32Set.call(out, y);
}

/** True when two arrays share bytes (out passed as x, or overlapping views of one buffer). */
export function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.buffer !== b.buffer) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/**
 * Runs body, turning V8's uncoded RangeErrors for arrays too large to allocate into
 * ERR_MLPKIT_OUT_OF_MEMORY (the reference backend allocates float64 scratch for its sizes).
 */
export function guardAllocation<T>(what: string, body: () => T): T {
  try {
    return body();
  } catch (err) {
    if (
      err instanceof RangeError &&
      (err as { code?: unknown }).code === undefined &&
      /allocation failed|Invalid typed array length|Invalid array buffer length|Invalid array length/.test(err.message)
    ) {
      throw outOfMemoryError(`${what}: ${err.message}`);
    }
    throw err;
  }
}

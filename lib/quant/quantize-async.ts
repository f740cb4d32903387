// net.quantizeAsync(options): net.quantize(options) in a worker thread, so that quantising a
// large model (seconds for a 4096 -> 16384 layer, more with calibration) does not stall the
// event loop. The main thread checks the options (the same checks and errors as quantize), copies
// the parameters and hands them to a worker (transferred, not cloned); the worker runs the very
// same quantize (QuantizedMlp.fromMlp's code) on them, its float layers on a CPU backend, and
// sends back the quantised model's description (its layers' arrays, transferred) and its
// calibration stats; the main thread builds the QuantizedMlp from them, as fromMlp builds its
// own. The result is bit for bit the model net.quantize(options) gives
// (tests/91.quant-async.test.ts).
//
// Not through safetensors bytes (toSafetensors / fromSafetensors), as first planned: reading an
// int8 file widens every I8 value through a DataView into an Int32Array (lib/io/safetensors.ts),
// 4.7 s for a 4096 -> 16384 layer on the main thread, more than quantize itself; and the file's
// checks guard against foreign files, not against this module's own worker.

import { Worker } from 'node:worker_threads';
import { nativeAvailable } from '../backend/index.js';
import type { BackendName } from '../backend/types.js';
import type { Mlp } from '../mlp.js';
import type { NormalizedSpec } from '../spec.js';
import { expectAllFinite, expectObject, isArray, rejectUnknownKeys } from '../validate.js';
import type { QuantStats } from './calibrate.js';
import type { QuantModelDescription } from './file.js';
import { checkQuantizableSpec, quantizedFromDescription, type QuantizedMlp } from './model.js';
import { QUANTIZE_OPTION_KEYS, normalizeQuantizeOptions, type QuantizeOptions, type QuantizeProgress } from './options.js';

/** What the worker (lib/quant/quantize-worker.ts) is given. */
export interface QuantizeWorkerData {
  spec: NormalizedSpec;
  /** net.getParameters(), transferred. */
  parameters: Float32Array;
  /** The caller's options read once into a plain object (calibration a copy, transferred). */
  options: QuantizeOptions;
  /** The backend of the worker's float layers: net.backend, or a CPU backend for a cuda model. */
  backend: Exclude<BackendName, 'cuda'>;
  /** A cuda model's own outputs on the calibration rows (see quantizeInWorker); else null. */
  floatOutputs: Float32Array | null;
  /** The caller gave onProgress: the worker posts a message after each step. */
  progress: boolean;
}

/** What the worker posts: a progress message per step when asked, then one answer, and it exits. */
export type QuantizeWorkerMessage =
  | { progress: QuantizeProgress }
  | { ok: true; description: QuantModelDescription; stats: QuantStats | null }
  | { ok: false; error: { name: string; message: string; code: unknown; stack?: string } };

/**
 * The worker's file. The package runs from dist (ESM), where it sits beside this module. Under
 * vitest the tests import lib/*.ts: there is no .js worker beside this file and Node cannot run
 * a .ts file in a worker, so the built one in dist/quant/ (relative to the repository root) is
 * used; run `npx tsc -p tsconfig.json` before the tests so that it is current.
 */
function defaultWorkerUrl(): URL {
  return import.meta.url.endsWith('.ts')
    ? new URL('../../dist/quant/quantize-worker.js', import.meta.url)
    : new URL('./quantize-worker.js', import.meta.url);
}

/**
 * The caller's options read once, each known name with one [[Get]] (inherited values count, as
 * they do for quantize), into a plain object: a getter or Proxy then cannot answer the checks one
 * thing and the worker another. Unknown names are refused first, as quantize does.
 */
function readOptionsOnce(value: unknown, layerCount: number): Record<string, unknown> {
  const o = expectObject('options', value);
  rejectUnknownKeys('options', o, QUANTIZE_OPTION_KEYS);
  const plain: Record<string, unknown> = {};
  for (const key of QUANTIZE_OPTION_KEYS) {
    const v = o[key];
    if (v === undefined) continue;
    // A list the caller may change after the call is copied, by index as quantize reads it; only
    // one of the right length (any other is refused next, without walking it).
    plain[key] = isArray(v) && v.length === layerCount ? Array.from({ length: layerCount }, (_, i) => v[i]) : v;
  }
  return plain;
}

/** The float backend of the worker's copy: as fromMlp's calibration, a cuda model's runs on a CPU backend. */
function workerFloatBackend(net: Mlp): Exclude<BackendName, 'cuda'> {
  return net.backend === 'cuda' ? (nativeAvailable() ? 'native' : 'reference') : net.backend;
}

/** The worker's error, rebuilt on this thread with its class (Error, TypeError, RangeError), message and code. */
function rebuildError(e: { name: string; message: string; code: unknown; stack?: string }): Error {
  const Ctor = e.name === 'TypeError' ? TypeError : e.name === 'RangeError' ? RangeError : Error;
  const err = new Ctor(String(e.message));
  if (Ctor === Error && typeof e.name === 'string' && e.name !== 'Error') {
    Object.defineProperty(err, 'name', { value: e.name, enumerable: false, writable: true, configurable: true });
  }
  if (e.code !== undefined) Object.defineProperty(err, 'code', { value: e.code, enumerable: true, writable: true, configurable: true });
  if (typeof e.stack === 'string') err.stack = `${err.stack}\n    in the quantizeAsync worker:\n${e.stack}`;
  return err;
}

/** An 'error' event of the worker (an uncaught exception there, a worker out of memory): an Error with its message and code. */
function workerFailure(value: unknown): Error {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return rebuildError({ name: value.name, message: `quantizeAsync: the worker failed: ${value.message}`, code, stack: value.stack });
  }
  return new Error(`quantizeAsync: the worker failed: ${String(value)}`);
}

/** p, or the signal's reason as soon as it aborts (p then runs on, unobserved). */
function abortable<T>(p: Promise<T>, signal: AbortSignal | null): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/**
 * net.quantize(options) in a worker thread (see the top of this file and Mlp.quantizeAsync).
 * @internal `internal.workerUrl` replaces the worker file (tests of its failures);
 * `internal.onWorker` is handed the worker once started (tests that it is ended).
 */
export async function quantizeInWorker(net: Mlp, options: QuantizeOptions, internal: { workerUrl?: URL; onWorker?: (worker: Worker) => void } = {}): Promise<QuantizedMlp> {
  // The checks quantize makes, in its order, so bad options reject with its errors.
  net.handle('quantizeAsync');
  const plain = readOptionsOnce(options, net.spec.layers.length);
  const opts = normalizeQuantizeOptions(plain, net.inputs, net.spec.layers.length);
  checkQuantizableSpec(net.spec);
  // The callback and the signal stay on this thread (neither can be sent to a worker): the
  // worker posts its steps, and an abort terminates it.
  const { onProgress, signal } = opts;
  delete plain.onProgress;
  delete plain.signal;
  signal?.throwIfAborted();
  const start = performance.now();
  const transfer: ArrayBuffer[] = [];
  let calibration: Float32Array | null = null;
  if (opts.calibration) {
    // The worker gets its own copy (on a shared buffer the caller could change it meanwhile;
    // checked again for that reason).
    calibration = new Float32Array(opts.calibration);
    expectAllFinite('options.calibration', calibration);
    plain.calibration = calibration;
    transfer.push(calibration.buffer as ArrayBuffer);
  }
  const spec = net.spec;
  const parameters = net.getParameters();
  transfer.push(parameters.buffer as ArrayBuffer);
  // quantize measures the stats against the float model's outputs; a cuda model's copy in the
  // worker runs on a CPU backend (which would round differently, and fp16/bf16 precision more
  // so), so the cuda model's own outputs go along (predictAsync: off the event loop too; it
  // copies its input).
  let floatOutputs: Float32Array | null = null;
  if (calibration && net.backend === 'cuda') {
    floatOutputs = await abortable(net.predictAsync(calibration), signal);
    transfer.push(floatOutputs.buffer as ArrayBuffer);
    signal?.throwIfAborted(); // an abort in the microtasks between predictAsync's end and here
  }
  const workerData: QuantizeWorkerData = {
    spec,
    parameters,
    options: plain as unknown as QuantizeOptions,
    backend: workerFloatBackend(net),
    floatOutputs,
    progress: onProgress !== null,
  };
  // execArgv: none of the host's: flags of its own entry (node --input-type=module -e '...')
  // refuse to start a worker from a file, and the worker needs none (its heap is its own).
  const worker = new Worker(internal.workerUrl ?? defaultWorkerUrl(), { workerData, transferList: transfer, execArgv: [] });
  internal.onWorker?.(worker);
  return new Promise<QuantizedMlp>((resolve, reject) => {
    let settled = false;
    // Settle once; the worker goes at once (it has answered or failed, or the call was aborted or
    // onProgress threw: then it is terminated mid-work), and is unref'd so that its teardown
    // never keeps the process alive. While the call is pending the worker keeps the process
    // alive, as any pending I/O does.
    const onAbort = (): void => settle(() => reject(signal!.reason));
    const settle = (outcome: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      worker.unref();
      worker.terminate().catch(() => {});
      outcome();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: QuantizeWorkerMessage) => {
      if (settled) return;
      if (!m || typeof m !== 'object') {
        settle(() => reject(new Error('quantizeAsync: the worker sent an unexpected message')));
      } else if ('progress' in m) {
        // The worker's clock started later (after the copy and its own start): this call's is
        // the one the caller knows.
        try {
          onProgress?.({ ...m.progress, elapsedSeconds: (performance.now() - start) / 1000 });
        } catch (err) {
          settle(() => reject(err));
        }
      } else if (m.ok) {
        let q: QuantizedMlp;
        try {
          q = quantizedFromDescription(m.description, opts.backend, m.stats);
        } catch (err) {
          settle(() => reject(err));
          return;
        }
        settle(() => resolve(q));
      } else {
        settle(() => reject(rebuildError(m.error)));
      }
    });
    // Kept for the worker's whole life: an 'error' event without a listener would crash the host.
    worker.on('error', (err) => settle(() => reject(workerFailure(err))));
    worker.on('exit', (code) => settle(() => reject(new Error(`quantizeAsync: the worker exited (code ${code}) before it sent the quantised model`))));
  });
}

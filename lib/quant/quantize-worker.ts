// The worker of net.quantizeAsync (lib/quant/quantize-async.ts): runs net.quantize's code
// (QuantizedMlp.fromMlp) on the copied parameters, posts back the quantised model's description
// (its arrays transferred) and its calibration stats, or the error, and exits.
//
// No float model (new Mlp) is built here: quantize reads only the parameters, and takes the float
// model's outputs on calibration rows from its own layer-by-layer calibration (a CPU model) or
// from the job (a cuda model's, computed on the GPU before the worker starts). A whole float model
// would copy every parameter once more (for a 4096 -> 16384 layer, 268 MB and ~1-3 s on a 2-core
// VM, longer than an int8 quantize).

import { parentPort, workerData } from 'node:worker_threads';
import type { QuantModelDescription } from './file.js';
import type { NormalizedSpec } from '../spec.js';
import { quantizeMlp, quantizedDescription, type QuantizeSource, type QuantizedMlp } from './model.js';
import type { QuantizeProgress } from './options.js';
import type { QuantizeWorkerData, QuantizeWorkerMessage } from './quantize-async.js';

function errorFields(err: unknown): { name: string; message: string; code: unknown; stack?: string } {
  if (err instanceof Error) {
    return { name: err.name, message: err.message, code: (err as { code?: unknown }).code, stack: err.stack };
  }
  return { name: 'Error', message: `quantizeAsync: the worker threw ${typeof err === 'string' ? err : typeof err}`, code: undefined };
}

type LayerArray = Int8Array | Uint8Array | Float32Array;

/** An array that owns its whole buffer as it is, else a copy that does (a view into a larger buffer would move all of it). */
function own<T extends LayerArray>(a: T): T {
  return a.byteOffset === 0 && a.byteLength === a.buffer.byteLength ? a : (a.slice() as T);
}

/**
 * The description with every array owning its own buffer, so that the arrays can be transferred
 * (one buffer each, none twice). The model is disposed right after: nothing reads them here.
 */
function transferable(d: QuantModelDescription): QuantModelDescription {
  const seen = new Set<ArrayBufferLike>();
  const once = <T extends LayerArray>(a: T): T => {
    const o = own(a);
    if (seen.has(o.buffer)) return o.slice() as T;
    seen.add(o.buffer);
    return o;
  };
  const layers = d.layers.map((l) => ({
    ...l,
    weights: once(l.weights),
    scales: once(l.scales),
    zeros: l.zeros ? once(l.zeros) : null,
    bias: l.bias ? once(l.bias) : null,
    inputScales: l.inputScales ? once(l.inputScales) : null,
  }));
  return { ...d, layers, layerActivations: [...d.layerActivations] };
}

function buffersOf(d: QuantModelDescription): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const l of d.layers) {
    for (const a of [l.weights, l.scales, l.zeros, l.bias, l.inputScales]) if (a) out.push(a.buffer as ArrayBuffer);
  }
  return out;
}

/** The float model as quantize reads it: the parameters. */
class FloatCopy implements QuantizeSource {
  readonly inputs: number;
  constructor(readonly spec: NormalizedSpec, private readonly parameters: Float32Array, readonly backend: QuantizeWorkerData['backend']) {
    this.inputs = spec.inputs;
  }

  handle(): void {}

  getParameters(): Float32Array {
    return this.parameters; // quantize reads it through views and never writes it
  }

  predict(): Float32Array {
    // quantize calls predict only on a cuda model without floatOutputs, never on this copy.
    throw new Error('quantizeAsync: the worker was asked for the float model\'s outputs, which quantize takes from its calibration');
  }
}

function run(data: QuantizeWorkerData): void {
  let q: QuantizedMlp | null = null;
  let message: QuantizeWorkerMessage;
  let transfer: ArrayBuffer[] = [];
  try {
    const net = new FloatCopy(data.spec, data.parameters!, data.backend);
    const onProgress = (progress: QuantizeProgress): void => parentPort!.postMessage({ progress } satisfies QuantizeWorkerMessage);
    q = quantizeMlp(net, data.progress ? { ...data.options, onProgress } : data.options, data.floatOutputs);
    const description = transferable(quantizedDescription(q));
    message = { ok: true, description, stats: q.stats };
    transfer = buffersOf(description);
  } catch (err) {
    message = { ok: false, error: errorFields(err) };
  } finally {
    q?.dispose();
  }
  parentPort!.postMessage(message, transfer);
}

run(workerData as QuantizeWorkerData);

// The reference quantised kernels: the oracle the native ones are tested against, written for
// clarity. 'float' activations (weight-only) dequantise W to f32(scale * q) and accumulate
// x . W^T + b in float64, rounding once per output; 'int8' activations (W8A8) follow the float32
// sequence of lib/quant/format.ts one Math.fround per operation, with exact integer dot products
// (JS numbers hold integers exactly up to 2^53, far beyond any int32 accumulator).

import { disposedError, rangeError } from '../errors.js';
import { activate } from '../backend/reference/activation.js';
import { encode, encodedWidthOf } from '../backend/reference/encoding.js';
import type { BackendQuantModel, QuantModelConfig } from '../backend/types.js';
import { CallQueue, deliver, guardAllocation, overlaps, queuedCall, snapshot } from '../backend/reference/calls.js';
import { checkQuantLayer } from './check.js';
import { unpackCodes } from './codes.js';
import { MAX_W8A8_INT8_INPUTS, QUANT_ACTIVATIONS, groupsPerRow, paddedInputs, type QuantActivations, type QuantLayer } from './format.js';
import { clamp, roundHalfEven } from './rounding.js';

const f32 = Math.fround;

// Rows per macrotask in predictAsync, as the float reference model: no chunk holds the event
// loop for long.
const ASYNC_CHUNK_FLOPS = 4e6;

/**
 * Quantise one input row x[offset .. offset + k) into xq[0 .. k) per format.ts and return sx:
 * sx = f32(max |x| / 127), xq = clamp(roundHalfEven(f32(x / sx)), -127, 127); sx = 0 gives
 * xq = 0. A row holding NaN or +-Infinity returns NaN (its outputs are NaN) and leaves xq as is.
 */
export function quantizeInputRow(x: ArrayLike<number>, offset: number, k: number, xq: Int32Array): number {
  let max = 0;
  for (let p = 0; p < k; p++) {
    const a = Math.abs(x[offset + p]);
    if (!(a < Infinity)) return NaN; // NaN fails the comparison too
    if (a > max) max = a;
  }
  const sx = f32(max / 127);
  if (sx === 0) {
    xq.fill(0, 0, k);
    return 0;
  }
  for (let p = 0; p < k; p++) xq[p] = clamp(roundHalfEven(f32(x[offset + p] / sx)), -127, 127);
  return sx;
}

/** A layer with what the kernels read precomputed: q per padded position, dequantised W. */
class PreparedLayer {
  readonly layer: QuantLayer;
  readonly q: Int8Array; // [n * kPadded]
  readonly kPadded: number;
  readonly groups: number;
  readonly alpha: number; // float32, as the native backend stores it
  private dequantized: Float32Array | null = null;

  constructor(layer: QuantLayer) {
    this.layer = layer;
    this.q = unpackCodes(layer);
    this.kPadded = paddedInputs(layer);
    this.groups = groupsPerRow(layer);
    this.alpha = f32(layer.alpha);
  }

  /** f32(scale * q) per real input, [n * k]; built on first use by the float path. */
  get weights(): Float32Array {
    if (this.dequantized) return this.dequantized;
    const { inputs: k, outputs: n, groupSize, scales } = this.layer;
    const w = new Float32Array(n * k);
    for (let j = 0; j < n; j++) {
      for (let p = 0; p < k; p++) w[j * k + p] = f32(scales[j * this.groups + Math.floor(p / groupSize)] * this.q[j * this.kPadded + p]);
    }
    this.dequantized = w;
    return w;
  }

  /** The activation of a pre-activation z already rounded to float32, rounded to float32. */
  finish(z: number): number {
    return f32(activate(this.layer.activation, z, this.alpha));
  }
}

/** out[batch x n] = act(x . dequant(W)^T + b), float64 accumulation, one rounding per output. */
function floatLayer(prep: PreparedLayer, x: Float32Array, batch: number, out: Float32Array): void {
  const { inputs: k, outputs: n, bias } = prep.layer;
  const w = prep.weights;
  for (let r = 0; r < batch; r++) {
    const xr = r * k;
    for (let j = 0; j < n; j++) {
      const wj = j * k;
      let sum = 0;
      for (let p = 0; p < k; p++) sum += x[xr + p] * w[wj + p];
      if (bias) sum += bias[j];
      out[r * n + j] = prep.finish(f32(sum));
    }
  }
}

/** out[batch x n] per the W8A8 sequence of format.ts. */
function int8Layer(prep: PreparedLayer, x: Float32Array, batch: number, out: Float32Array): void {
  const { inputs: k, outputs: n, groupSize, scales, bias } = prep.layer;
  const { q, kPadded, groups } = prep;
  const xq = new Int32Array(k);
  for (let r = 0; r < batch; r++) {
    const sx = quantizeInputRow(x, r * k, k, xq);
    for (let j = 0; j < n; j++) {
      let y = NaN;
      if (!Number.isNaN(sx)) {
        const qj = j * kPadded;
        for (let g = 0; g < groups; g++) {
          const p0 = g * groupSize;
          const p1 = Math.min(p0 + groupSize, k);
          let acc = 0;
          for (let p = p0; p < p1; p++) acc += xq[p] * q[qj + p];
          const term = f32(f32(sx * scales[j * groups + g]) * f32(acc));
          y = g === 0 ? term : f32(y + term);
        }
      }
      y = f32(y + (bias ? bias[j] : 0)); // no bias adds +0 (format.ts), which turns a -0 into +0
      out[r * n + j] = prep.finish(y);
    }
  }
}

/** x'_p = f32(x_p * inputScales_p) for a layer with input scales (format.ts), else x itself. */
function scaledInputs(layer: QuantLayer, x: Float32Array, batch: number): Float32Array {
  const s = layer.inputScales;
  if (!s) return x;
  const k = layer.inputs;
  const out = new Float32Array(batch * k);
  for (let r = 0; r < batch; r++) for (let p = 0; p < k; p++) out[r * k + p] = f32(x[r * k + p] * s[p]);
  return out;
}

function runLayer(prep: PreparedLayer, activations: number, input: Float32Array, batch: number, out: Float32Array): void {
  const x = scaledInputs(prep.layer, input, batch);
  if (activations === 1) int8Layer(prep, x, batch, out);
  else floatLayer(prep, x, batch, out);
}

/** W8A8 needs int8-weight layers narrow enough for an int32 accumulator (format.ts). */
export function checkW8A8Width(layer: QuantLayer, name: string): void {
  if (layer.format === 'int8' && layer.inputs > MAX_W8A8_INT8_INPUTS) {
    throw rangeError(
      `${name}: int8 activations with int8 weights need at most ${MAX_W8A8_INT8_INPUTS} inputs (an int32 accumulator) but the layer has ${layer.inputs}; ` +
        `use activations 'float' or int4 weights`,
    );
  }
}

function activationsCode(mode: QuantActivations | number): number {
  const code = typeof mode === 'number' ? mode : QUANT_ACTIVATIONS.indexOf(mode);
  if (code !== 0 && code !== 1) throw rangeError(`Expected activations 'float' (0) or 'int8' (1) but received ${String(mode)}`);
  return code;
}

/**
 * One quantised layer on the reference kernels: out[batch x outputs] from x[batch x inputs],
 * bias and activation included. The layer is checked (lib/quant/check.ts) first.
 */
export function referenceQmatmul(
  x: Float32Array,
  batch: number,
  layer: QuantLayer,
  activations: QuantActivations | number,
  out: Float32Array = new Float32Array(batch * layer.outputs),
): Float32Array {
  layer = checkQuantLayer(layer);
  const mode = activationsCode(activations);
  if (mode === 1) checkW8A8Width(layer, 'qmatmul');
  if (x.length !== batch * layer.inputs) throw rangeError(`qmatmul: x must have batch * ${layer.inputs} = ${batch * layer.inputs} elements, got ${x.length}`);
  if (out.length !== batch * layer.outputs) throw rangeError(`qmatmul: out must have batch * ${layer.outputs} = ${batch * layer.outputs} elements, got ${out.length}`);
  runLayer(new PreparedLayer(layer), mode, overlaps(x, out) ? snapshot(x) : x, batch, out);
  return out;
}

/** A quantised network on the reference kernels (BackendQuantModel; see lib/backend/types.ts). */
export class ReferenceQuantModel implements BackendQuantModel {
  readonly inputs: number;
  readonly outputs: number;
  private readonly config: QuantModelConfig;
  private readonly layers: PreparedLayer[];
  private readonly macsPerRow: number;
  private disposed = false;

  constructor(config: QuantModelConfig, layers: QuantLayer[]) {
    this.config = { ...config };
    activationsCode(config.activations);
    if (layers.length === 0) throw rangeError('QuantModel: needs at least one layer');
    let width = encodedWidthOf(config);
    this.layers = layers.map((raw, i) => {
      const layer = checkQuantLayer(raw, `layers[${i}]`, { copy: true });
      if (layer.inputs !== width) throw rangeError(`QuantModel: layers[${i}] takes ${layer.inputs} inputs but receives ${width}`);
      if (config.activations === 1) checkW8A8Width(layer, `QuantModel: layers[${i}]`);
      width = layer.outputs;
      return new PreparedLayer(layer);
    });
    this.inputs = config.inputs;
    this.outputs = width;
    this.macsPerRow = this.layers.reduce((sum, l) => sum + l.layer.inputs * l.layer.outputs, 0);
  }

  private live(what: string): void {
    if (this.disposed) throw disposedError(what);
  }

  private checkBatch(what: string, name: string, data: Float32Array, batch: number, width: number): void {
    if (!Number.isInteger(batch) || batch <= 0) throw rangeError(`${what}: batch must be a positive integer, got ${batch}`);
    if (data.length !== batch * width) {
      throw rangeError(`${what}: ${name} must have batch * ${width} = ${batch * width} elements, got ${data.length}`);
    }
  }

  /** Encoded inputs as float32 (the first layer reads float32, as on the native backend). */
  private encoded(x: Float32Array, batch: number): Float32Array {
    if (this.config.encoding === 0) return x;
    const enc = new Float64Array(batch * encodedWidthOf(this.config));
    encode(this.config, x, batch, enc);
    return Float32Array.from(enc);
  }

  private forward(x: Float32Array, batch: number, out: Float32Array): void {
    let a = this.encoded(x, batch);
    this.layers.forEach((prep, i) => {
      const last = i === this.layers.length - 1;
      const y = last ? out : new Float32Array(batch * prep.layer.outputs);
      runLayer(prep, this.config.activations, a, batch, y);
      a = y;
    });
  }

  predict(x: Float32Array, batch: number, out: Float32Array): void {
    this.live('predict');
    this.checkBatch('predict', 'x', x, batch, this.inputs);
    this.checkBatch('predict', 'out', out, batch, this.outputs);
    // Rows are written as they are computed: an out that overlaps x reads a copy of x.
    const input = overlaps(x, out) ? snapshot(x) : x;
    guardAllocation('predict', () => this.forward(input, batch, out));
  }

  /**
   * In slices between macrotasks. Nothing can change a quantised model, so its calls need no
   * order (./calls.ts); each has its own queue, only so that a slice runs per macrotask.
   */
  predictAsync(x: Float32Array, batch: number, out: Float32Array): Promise<void> {
    try {
      this.live('predictAsync');
      this.checkBatch('predictAsync', 'x', x, batch, this.inputs);
      this.checkBatch('predictAsync', 'out', out, batch, this.outputs);
    } catch (err) {
      return Promise.reject(err);
    }
    const input = snapshot(x);
    const y = new Float32Array(batch * this.outputs);
    const rows = Math.max(1, Math.floor(ASYNC_CHUNK_FLOPS / Math.max(1, 2 * this.macsPerRow)));
    let r0 = 0;
    const { call, promise } = queuedCall(
      () => {
        const n = Math.min(rows, batch - r0);
        guardAllocation('predictAsync', () =>
          this.forward(input.subarray(r0 * this.inputs, (r0 + n) * this.inputs), n, y.subarray(r0 * this.outputs, (r0 + n) * this.outputs)),
        );
        r0 += n;
        return r0 >= batch;
      },
      () => deliver('predictAsync', y, out),
    );
    new CallQueue().push(call);
    return promise;
  }

  dispose(): void {
    this.disposed = true;
  }
}

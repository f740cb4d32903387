// The pure-TypeScript model: every BackendModel operation, written for clarity and evaluated
// in float64 (parameters stored at float32 like the native backend, or float64 for gradient
// checks). It is the fallback when no native build loads and the oracle native is tested against.

import { disposedError, rangeError } from '../../errors.js';
import type { BackendModel, ModelConfig } from '../types.js';
import { activate, activateDerivative } from './activation.js';
import { encode, encodeBackward, encodedWidthOf } from './encoding.js';
import { lossAndGradient } from './loss.js';
import { clipGradients, optimizerUpdate, type FloatArray, type OptimizerState } from './optimizer.js';
import { CallQueue, deliver, guardAllocation, queuedCall, snapshot } from './calls.js';

interface Slot {
  inputs: number;
  outputs: number;
  rows: number; // pre-activations: 2 * outputs for a gated layer (gate, then up)
  gated: boolean;
  residual: boolean; // the output adds the input of the layer before
  w: number; // offset of W in the flat vector
  b: number; // offset of b, -1 without bias
  act: number;
  alpha: number;
}

/**
 * Activations kept by a training forward pass: per layer the pre-activations z (rows wide) and
 * the output a (outputs wide: act(z), or act(gate) * up, plus the residual).
 */
interface Trace {
  enc: Float64Array;
  z: Float64Array[];
  a: Float64Array[];
}

// Rows per macrotask in predictAsync, so a large batch never holds the event loop for long.
const ASYNC_CHUNK_FLOPS = 4e6;

export class ReferenceModel implements BackendModel {
  readonly paramCount: number;
  readonly outputs: number;
  readonly inputs: number;
  private readonly config: ModelConfig;
  private readonly slots: Slot[];
  private readonly encWidth: number;
  private params: FloatArray;
  private grads: FloatArray;
  private opt: OptimizerState;
  private disposed = false;
  // Async calls not yet done, in call order (./calls.ts); sync calls drain it first.
  private readonly queue = new CallQueue();

  constructor(config: ModelConfig, params: ArrayLike<number>, precision: 'f32' | 'f64' = 'f32') {
    this.config = config;
    this.encWidth = encodedWidthOf(config);
    this.inputs = config.inputs;
    const slots: Slot[] = [];
    let inputs = this.encWidth;
    let offset = 0;
    for (let l = 0; l < config.units.length; l++) {
      const outputs = config.units[l];
      const gated = config.gated[l] === 1;
      const rows = gated ? 2 * outputs : outputs;
      const w = offset;
      offset += rows * inputs;
      const b = config.bias[l] ? offset : -1;
      if (config.bias[l]) offset += rows;
      const residual = config.residual[l] === 1;
      if (residual && (l === 0 || outputs !== slots[l - 1].inputs)) {
        throw rangeError(`Model: layer ${l} is residual but its width ${outputs} does not match the input of the layer before`);
      }
      slots.push({ inputs, outputs, rows, gated, residual, w, b, act: config.activations[l], alpha: config.alphas[l] });
      inputs = outputs;
    }
    this.slots = slots;
    this.paramCount = offset;
    this.outputs = inputs;
    if (params.length !== offset) throw rangeError(`Model: params must have ${offset} elements, got ${params.length}`);
    const Ctor = precision === 'f64' ? Float64Array : Float32Array;
    this.params = Ctor.from(params);
    this.grads = new Ctor(offset);
    this.opt = { m: new Ctor(offset), v: new Ctor(offset), t: 0 };
  }

  private live(what: string): void {
    if (this.disposed) throw disposedError(what);
  }

  /** A sync call: checked, then run after every async call made before it. */
  private now(what: string): void {
    this.live(what);
    this.queue.drain();
  }

  /** Forward pass; with `trace` every layer's z and a are kept for backward. */
  private forward(x: ArrayLike<number>, batch: number, keep: boolean): { y: Float64Array; trace: Trace } {
    const enc = new Float64Array(batch * this.encWidth);
    encode(this.config, x, batch, enc);
    const trace: Trace = { enc, z: [], a: [] };
    const p = this.params;
    let a = enc;
    let blockInput = enc; // the input of the previous layer, for a residual layer
    for (const s of this.slots) {
      const z = new Float64Array(batch * s.rows);
      for (let r = 0; r < batch; r++) {
        const ar = r * s.inputs;
        for (let o = 0; o < s.rows; o++) {
          let sum = s.b >= 0 ? p[s.b + o] : 0;
          const wo = s.w + o * s.inputs;
          for (let i = 0; i < s.inputs; i++) sum += p[wo + i] * a[ar + i];
          z[r * s.rows + o] = sum;
        }
      }
      const next = new Float64Array(batch * s.outputs);
      for (let r = 0; r < batch; r++) {
        for (let o = 0; o < s.outputs; o++) {
          const gate = activate(s.act, z[r * s.rows + o], s.alpha);
          next[r * s.outputs + o] = s.gated ? gate * z[r * s.rows + s.outputs + o] : gate;
        }
      }
      if (s.residual) for (let i = 0; i < next.length; i++) next[i] += blockInput[i];
      if (keep) {
        trace.z.push(z);
        trace.a.push(next);
      }
      blockInput = a;
      a = next;
    }
    return { y: a, trace };
  }

  /** Backward from dL/dy; overwrites grads and fills dx when given. */
  private backwardFrom(
    x: ArrayLike<number>,
    batch: number,
    trace: Trace,
    dy: Float64Array,
    gradInput: FloatArray | null,
  ): void {
    const p = this.params;
    const g = this.grads;
    let dA = dy;
    // dL/d(output of layer l - 2) that a residual layer l sends past layer l - 1.
    let skip: Float64Array | null = null;
    for (let l = this.slots.length - 1; l >= 0; l--) {
      const s = this.slots[l];
      const z = trace.z[l];
      const prev = l === 0 ? trace.enc : trace.a[l - 1];
      const dZ = new Float64Array(batch * s.rows);
      for (let r = 0; r < batch; r++) {
        for (let o = 0; o < s.outputs; o++) {
          const d = dA[r * s.outputs + o];
          const zg = z[r * s.rows + o];
          if (s.gated) {
            // out = act(gate) * up: d gate = d * up * act'(gate), d up = d * act(gate).
            const up = z[r * s.rows + s.outputs + o];
            dZ[r * s.rows + o] = d * up * activateDerivative(s.act, zg, s.alpha);
            dZ[r * s.rows + s.outputs + o] = d * activate(s.act, zg, s.alpha);
          } else {
            dZ[r * s.rows + o] = d * activateDerivative(s.act, zg, s.alpha);
          }
        }
      }
      const passOn = s.residual ? dA : null;
      // Accumulate each weight row in float64 and round once, whatever the storage precision.
      const row = new Float64Array(s.inputs);
      for (let o = 0; o < s.rows; o++) {
        row.fill(0);
        let db = 0;
        for (let r = 0; r < batch; r++) {
          const d = dZ[r * s.rows + o];
          if (d === 0) continue;
          db += d;
          const pr = r * s.inputs;
          for (let i = 0; i < s.inputs; i++) row[i] += d * prev[pr + i];
        }
        g.set(row, s.w + o * s.inputs);
        if (s.b >= 0) g[s.b + o] = db;
      }
      if (l === 0 && !gradInput) break;
      const dPrev = new Float64Array(batch * s.inputs);
      for (let r = 0; r < batch; r++) {
        for (let o = 0; o < s.rows; o++) {
          const d = dZ[r * s.rows + o];
          if (d === 0) continue;
          const wo = s.w + o * s.inputs;
          const pr = r * s.inputs;
          for (let i = 0; i < s.inputs; i++) dPrev[pr + i] += d * p[wo + i];
        }
      }
      if (skip) for (let i = 0; i < dPrev.length; i++) dPrev[i] += skip[i];
      skip = passOn;
      dA = dPrev;
    }
    if (gradInput) {
      const dx = new Float64Array(batch * this.inputs);
      encodeBackward(this.config, x, batch, dA, dx);
      for (let i = 0; i < dx.length; i++) gradInput[i] = dx[i];
    }
  }

  private checkBatch(what: string, name: string, data: ArrayLike<number>, batch: number, width: number): void {
    if (!Number.isInteger(batch) || batch <= 0) throw rangeError(`${what}: batch must be a positive integer, got ${batch}`);
    if (data.length !== batch * width) {
      throw rangeError(`${what}: ${name} must have batch * ${width} = ${batch * width} elements, got ${data.length}`);
    }
  }

  predict(x: Float32Array, batch: number, out: Float32Array): void {
    this.live('predict');
    this.checkBatch('predict', 'x', x, batch, this.inputs);
    this.checkBatch('predict', 'out', out, batch, this.outputs);
    this.queue.drain();
    const { y } = guardAllocation('predict', () => this.forward(x, batch, false));
    out.set(y);
  }

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
    const flopsPerRow = Math.max(1, 2 * this.paramCount);
    const rows = Math.max(1, Math.floor(ASYNC_CHUNK_FLOPS / flopsPerRow));
    let r0 = 0;
    const { call, promise } = queuedCall(
      () => {
        const n = Math.min(rows, batch - r0);
        const { y: part } = guardAllocation('predictAsync', () => this.forward(input.subarray(r0 * this.inputs, (r0 + n) * this.inputs), n, false));
        y.set(part, r0 * this.outputs);
        r0 += n;
        return r0 >= batch;
      },
      () => deliver('predictAsync', y, out),
    );
    this.queue.push(call);
    return promise;
  }

  getParams(out: Float32Array): void {
    this.now('getParams');
    this.checkBatch('getParams', 'out', out, 1, this.paramCount);
    out.set(this.params);
  }

  setParams(params: Float32Array): void {
    this.now('setParams');
    this.checkBatch('setParams', 'params', params, 1, this.paramCount);
    this.params.set(params);
  }

  getGrads(out: Float32Array): void {
    this.now('getGrads');
    this.checkBatch('getGrads', 'out', out, 1, this.paramCount);
    out.set(this.grads);
  }

  setGrads(grads: Float32Array): void {
    this.now('setGrads');
    this.checkBatch('setGrads', 'grads', grads, 1, this.paramCount);
    this.grads.set(grads);
  }

  private checkLossArgs(what: string, x: Float32Array, batch: number, loss: number, target: Float32Array | Int32Array): void {
    this.checkBatch(what, 'x', x, batch, this.inputs);
    if (loss === 3) {
      this.checkBatch(what, 'target', target, batch, 1);
      for (let r = 0; r < batch; r++) {
        if (!(target[r] >= 0 && target[r] < this.outputs)) {
          throw rangeError(`${what}: label ${r} must be in [0, ${this.outputs}), got ${target[r]}`);
        }
      }
    } else this.checkBatch(what, 'target', target, batch, this.outputs);
  }

  lossGrad(
    x: Float32Array,
    batch: number,
    loss: number,
    lossParam: number,
    target: Float32Array | Int32Array,
    gradInput: Float32Array | null,
  ): number {
    this.now('lossGrad');
    this.checkLossArgs('lossGrad', x, batch, loss, target);
    if (gradInput) this.checkBatch('lossGrad', 'gradInput', gradInput, batch, this.inputs);
    return this.lossGradNow(x, batch, loss, lossParam, target, gradInput);
  }

  private lossGradNow(
    x: Float32Array,
    batch: number,
    loss: number,
    lossParam: number,
    target: Float32Array | Int32Array,
    gradInput: Float32Array | null,
  ): number {
    return guardAllocation('lossGrad', () => {
      const { y, trace } = this.forward(x, batch, true);
      const dy = new Float64Array(y.length);
      const value = lossAndGradient(loss, lossParam, y, target, batch, this.outputs, dy);
      this.backwardFrom(x, batch, trace, dy, gradInput);
      return value;
    });
  }

  backward(x: Float32Array, batch: number, gradOutput: Float32Array, gradInput: Float32Array | null): void {
    this.now('backward');
    this.checkBatch('backward', 'x', x, batch, this.inputs);
    this.checkBatch('backward', 'gradOutput', gradOutput, batch, this.outputs);
    if (gradInput) this.checkBatch('backward', 'gradInput', gradInput, batch, this.inputs);
    guardAllocation('backward', () => {
      const { trace } = this.forward(x, batch, true);
      this.backwardFrom(x, batch, trace, Float64Array.from(gradOutput), gradInput);
    });
  }

  optimizerStep(optimizer: number, hyper: Float64Array, clipNorm: number): number {
    this.now('optimizerStep');
    return this.optimizerStepNow(optimizer, hyper, clipNorm);
  }

  private optimizerStepNow(optimizer: number, hyper: Float64Array, clipNorm: number): number {
    // As native/core/model.cpp: a non-finite gradient would poison every weight; refuse the update.
    const g = this.grads;
    for (let i = 0; i < g.length; i++) {
      if (!Number.isFinite(g[i])) {
        throw rangeError(`gradient ${i} is ${g[i]} (the activations or gradients overflowed); the parameters were not updated`);
      }
    }
    const norm = clipGradients(this.grads, clipNorm);
    optimizerUpdate(optimizer, hyper, this.params, this.grads, this.opt);
    return norm;
  }

  resetOptimizer(): void {
    this.now('resetOptimizer');
    this.opt.m.fill(0);
    this.opt.v.fill(0);
    this.opt.t = 0;
  }

  trainStep(
    x: Float32Array,
    batch: number,
    loss: number,
    lossParam: number,
    target: Float32Array | Int32Array,
    optimizer: number,
    hyper: Float64Array,
    clipNorm: number,
  ): number {
    this.now('trainStep');
    this.checkLossArgs('trainStep', x, batch, loss, target);
    return this.trainStepNow(x, batch, loss, lossParam, target, optimizer, hyper, clipNorm);
  }

  private trainStepNow(
    x: Float32Array,
    batch: number,
    loss: number,
    lossParam: number,
    target: Float32Array | Int32Array,
    optimizer: number,
    hyper: Float64Array,
    clipNorm: number,
  ): number {
    const value = this.lossGradNow(x, batch, loss, lossParam, target, null);
    if (!Number.isFinite(value)) throw rangeError(`the loss is ${value} (the outputs overflowed); the parameters were not updated`);
    this.optimizerStepNow(optimizer, hyper, clipNorm);
    return value;
  }

  trainStepAsync(
    x: Float32Array,
    batch: number,
    loss: number,
    lossParam: number,
    target: Float32Array | Int32Array,
    optimizer: number,
    hyper: Float64Array,
    clipNorm: number,
  ): Promise<number> {
    try {
      this.live('trainStepAsync');
      this.checkLossArgs('trainStepAsync', x, batch, loss, target);
    } catch (err) {
      return Promise.reject(err);
    }
    const input = snapshot(x);
    const t = snapshot(target);
    const h = Float64Array.from(hyper);
    let value = 0;
    const { call, promise } = queuedCall(
      () => {
        value = this.trainStepNow(input, batch, loss, lossParam, t, optimizer, h, clipNorm);
        return true;
      },
      () => value,
    );
    this.queue.push(call);
    return promise;
  }

  dispose(): void {
    this.disposed = true;
  }
}

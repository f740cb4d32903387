// One training loop over a model: a loss, an optimizer, clipping and a schedule. `step` runs one
// fused forward + backward + update on the backend; `fit` walks a dataset in shuffled
// mini-batches off the event loop, with validation, progress and an AbortSignal to stop early.

import { describe, rangeError, typeError } from '../errors.js';
import { Rng } from '../init.js';
import { Mlp } from '../mlp.js';
import { snapshot } from '../backend/reference/calls.js';
import { lossAndGradient } from '../backend/reference/loss.js';
import {
  expectAllFinite, expectBatch, expectBoolean, expectInteger, expectNumber, expectObject, isInstanceOf, rejectUnknownKeys,
} from '../validate.js';
import { checkTarget, normalizeLoss, type LossOption, type LossSpec } from './loss-options.js';
import { normalizeOptimizer, type OptimizerOptions, type OptimizerSpec } from './optimizer-options.js';
import { makeSchedule, type Schedule, type ScheduleOptions } from './schedule.js';

export interface TrainerOptions {
  loss: LossOption;
  optimizer: OptimizerOptions;
  /** Clip the global gradient L2 norm to this before each update (off by default). */
  clipNorm?: number;
  /** Learning-rate schedule over optimizer steps. Default constant. */
  schedule?: ScheduleOptions;
}

export type Target = Float32Array | Int32Array | readonly number[];

export interface FitProgress {
  epoch: number; // 1-based
  epochs: number;
  step: number; // step within the epoch, 1-based
  stepsPerEpoch: number;
  /** Mean training loss over the epoch so far. */
  loss: number;
  samplesPerSecond: number;
  /** The learning rate of the last step taken. */
  lr: number;
  /** Present at the end of an epoch when validation data was given. */
  valLoss?: number;
  valAccuracy?: number;
  /** True for the call made at the end of an epoch. */
  epochEnd: boolean;
}

export interface FitOptions {
  epochs: number;
  batchSize?: number;
  shuffle?: boolean;
  /**
   * Seed of the shuffling, for an order that does not depend on earlier calls. Without it the
   * trainer's own generator (seeded 0, re-seeded by reset()) carries on from the last fit(), so
   * fit() called once per epoch still shuffles each epoch differently.
   */
  seed?: number;
  validation?: { x: Float32Array; target: Target };
  onProgress?: (progress: FitProgress) => void;
  /** Aborting stops training after the current step; fit then resolves with stopped: true. */
  signal?: AbortSignal;
}

export interface EpochRecord {
  epoch: number;
  loss: number;
  valLoss?: number;
  valAccuracy?: number;
}

export interface FitResult {
  /** One record per completed epoch (an epoch cut short by the signal has none). */
  history: EpochRecord[];
  /** True when options.signal aborted the fit. */
  stopped: boolean;
  /** Optimizer steps this fit() took (batches, not rows), a partial last epoch included. */
  steps: number;
  /** Training rows those steps took in (a short last batch counts its own rows). */
  rows: number;
  /** Training rows per second over the steps (validation passes not counted). */
  samplesPerSecond: number;
}

// Progress callbacks at most this often (plus one at every epoch end).
const PROGRESS_INTERVAL_MS = 100;

export class Trainer {
  private readonly net: Mlp;
  private readonly loss: LossSpec;
  private readonly optimizer: OptimizerSpec;
  private readonly baseLr: number;
  private readonly clipNorm: number;
  private readonly schedule: Schedule;
  private readonly needsTotal: boolean;
  // A cosine schedule without `steps` anneals over each fit()'s own steps: the window is the
  // step count at which the latest fit() started and how many steps it plans.
  private windowStart = 0;
  private windowSteps: number | undefined;
  private steps = 0;
  private shuffleRng = new Rng(0);

  constructor(net: Mlp, options: TrainerOptions) {
    if (!isInstanceOf(net, Mlp)) throw typeError(`Expected an Mlp for net but received ${describe(net)}`);
    const model = net.handle('trainer');
    const o = expectObject('options', options);
    rejectUnknownKeys('options', o, ['loss', 'optimizer', 'clipNorm', 'schedule']);
    this.net = net;
    this.loss = normalizeLoss(o.loss);
    if (this.loss.name === 'softmax-cross-entropy' && net.outputs < 2) {
      throw rangeError(`softmax-cross-entropy needs at least 2 outputs but the model has ${net.outputs}`);
    }
    this.optimizer = normalizeOptimizer(o.optimizer);
    this.baseLr = this.optimizer.hyper[0];
    this.clipNorm = o.clipNorm === undefined ? 0 : expectNumber('options.clipNorm', o.clipNorm, { min: 0, minExclusive: true });
    const { schedule, needsTotal } = makeSchedule(o.schedule);
    this.schedule = schedule;
    this.needsTotal = needsTotal;
    // A new trainer starts with empty moments, as a new torch optimizer does: the model keeps
    // them between steps, and another trainer's (SGD's momentum read as Adam's first moment, say)
    // would skew the first updates.
    model.resetOptimizer();
  }

  /** Optimizer steps taken so far. */
  get stepCount(): number {
    return this.steps;
  }

  /**
   * The learning rate the next step will use. For a cosine schedule without `steps` before any
   * fit(), the rate a fit() starts with (step() outside fit() needs `steps` then).
   */
  get lr(): number {
    if (this.needsTotal && this.windowSteps === undefined) return this.baseLr;
    return this.rate();
  }

  private rate(): number {
    return this.schedule(this.baseLr, this.steps - this.windowStart, this.windowSteps);
  }

  private prepare(what: string, x: unknown, target: unknown) {
    const model = this.net.handle(what);
    const batch = expectBatch('x', x, this.net.inputs);
    expectAllFinite('x', x as Float32Array);
    const t = checkTarget(this.loss.name, target, batch, this.net.outputs);
    this.optimizer.hyper[0] = this.rate();
    return { model, batch, t };
  }

  /** One forward + backward + optimizer update. Returns the batch's loss (before the update). */
  step(x: Float32Array, target: Target): number {
    const { model, batch, t } = this.prepare('step', x, target);
    const value = model.trainStep(x, batch, this.loss.code, this.loss.param, t, this.optimizer.code, this.optimizer.hyper, this.clipNorm);
    this.steps++;
    return value;
  }

  /** step() off the event loop. x and target are copied when the call is made: they may be changed or reused at once. */
  async stepAsync(x: Float32Array, target: Target): Promise<number> {
    const { model, batch, t } = this.prepare('stepAsync', x, target);
    const hyper = this.optimizer.hyper.slice();
    // Counted when issued, so steps in flight together get the learning rates of the same steps
    // made one after another; a step that fails (its loss overflowed, say) is uncounted again
    // when nothing was issued after it, as a failed step() is never counted.
    const issued = ++this.steps;
    try {
      return await model.trainStepAsync(x, batch, this.loss.code, this.loss.param, t, this.optimizer.code, hyper, this.clipNorm);
    } catch (err) {
      if (this.steps === issued) this.steps--;
      throw err;
    }
  }

  /** Forget the optimizer's moments, the step count and the schedule's progress (parameters stay). */
  reset(): void {
    this.net.handle('reset').resetOptimizer();
    this.steps = 0;
    this.windowStart = 0;
    this.windowSteps = undefined;
    this.shuffleRng = new Rng(0);
  }

  /**
   * Mean loss (and accuracy for classification losses) of the model on a dataset. x and target
   * are copied when the call is made (as stepAsync's): they may be changed or reused at once.
   */
  async evaluate(x: Float32Array, target: Target): Promise<{ loss: number; accuracy?: number }> {
    const batch = expectBatch('x', x, this.net.inputs);
    // Copied now: the loss is computed after the prediction resolves, and a label changed
    // meanwhile (out of range, say) would otherwise be read unchecked.
    const checked = checkTarget(this.loss.name, target, batch, this.net.outputs);
    const t = checked === target ? snapshot(checked) : checked;
    const y = await this.net.predictAsync(x);
    const outputs = this.net.outputs;
    const loss = lossAndGradient(this.loss.code, this.loss.param, Float64Array.from(y), t, batch, outputs, new Float64Array(y.length));
    if (this.loss.name === 'softmax-cross-entropy') {
      let hits = 0;
      for (let r = 0; r < batch; r++) {
        let best = 0;
        for (let j = 1; j < outputs; j++) if (y[r * outputs + j] > y[r * outputs + best]) best = j;
        if (best === t[r]) hits++;
      }
      return { loss, accuracy: hits / batch };
    }
    if (this.loss.name === 'bce-with-logits') {
      let hits = 0;
      for (let i = 0; i < y.length; i++) if ((y[i] > 0 ? 1 : 0) === (t[i] >= 0.5 ? 1 : 0)) hits++;
      return { loss, accuracy: hits / y.length };
    }
    return { loss };
  }

  /** Train for `epochs` passes over (x, target) in mini-batches. */
  async fit(x: Float32Array, target: Target, options: FitOptions): Promise<FitResult> {
    this.net.handle('fit');
    const o = expectObject('options', options);
    rejectUnknownKeys('options', o, ['epochs', 'batchSize', 'shuffle', 'seed', 'validation', 'onProgress', 'signal']);
    const n = expectBatch('x', x, this.net.inputs);
    expectAllFinite('x', x);
    const t = checkTarget(this.loss.name, target, n, this.net.outputs);
    const epochs = expectInteger('options.epochs', o.epochs, 1);
    const batchSize = o.batchSize === undefined ? 32 : expectInteger('options.batchSize', o.batchSize, 1);
    const shuffle = o.shuffle === undefined ? true : expectBoolean('options.shuffle', o.shuffle);
    const seed = o.seed === undefined ? undefined : expectInteger('options.seed', o.seed, 0, 2 ** 32 - 1);
    const onProgress = o.onProgress;
    if (onProgress !== undefined && typeof onProgress !== 'function') {
      throw typeError(`Expected a function for options.onProgress but received ${describe(onProgress)}`);
    }
    const signal = o.signal;
    if (signal !== undefined && !isInstanceOf(signal, AbortSignal)) {
      throw typeError(`Expected an AbortSignal for options.signal but received ${describe(signal)}`);
    }
    let validation: { x: Float32Array; t: Float32Array | Int32Array } | null = null;
    if (o.validation !== undefined) {
      const v = expectObject('options.validation', o.validation);
      rejectUnknownKeys('options.validation', v, ['x', 'target']);
      const vx = v.x; // read once: a getter could answer the checks one array and the epochs another
      const vn = expectBatch('options.validation.x', vx, this.net.inputs);
      expectAllFinite('options.validation.x', vx as Float32Array);
      validation = { x: vx as Float32Array, t: checkTarget(this.loss.name, v.target, vn, this.net.outputs, 'options.validation.target') };
    }

    const inputs = this.net.inputs;
    const targetWidth = this.loss.name === 'softmax-cross-entropy' ? 1 : this.net.outputs;
    const stepsPerEpoch = Math.ceil(n / batchSize);
    if (this.needsTotal) {
      this.windowStart = this.steps;
      this.windowSteps = epochs * stepsPerEpoch;
    }
    const order = Uint32Array.from({ length: n }, (_, i) => i);
    const rng = seed === undefined ? this.shuffleRng : new Rng(seed);
    const bx = new Float32Array(Math.min(batchSize, n) * inputs);
    const bt = t instanceof Int32Array ? new Int32Array(Math.min(batchSize, n)) : new Float32Array(Math.min(batchSize, n) * targetWidth);

    const history: EpochRecord[] = [];
    let trained = 0;
    let stepsTaken = 0;
    let trainMs = 0;
    let stopped = false;
    let lastReport = 0;
    let lastLr = this.lr;
    for (let epoch = 1; epoch <= epochs && !stopped; epoch++) {
      // Aborted at an epoch's end: stop before shuffling, so an unseeded fit() after this one
      // carries on from the order it would have had.
      if (signal?.aborted) {
        stopped = true;
        break;
      }
      if (shuffle) {
        for (let i = n - 1; i > 0; i--) {
          const j = rng.below(i + 1);
          const tmp = order[i];
          order[i] = order[j];
          order[j] = tmp;
        }
      }
      let lossSum = 0;
      let lossCount = 0;
      for (let s = 0; s < stepsPerEpoch; s++) {
        if (signal?.aborted) {
          stopped = true;
          break;
        }
        const start = s * batchSize;
        const rows = Math.min(batchSize, n - start);
        for (let r = 0; r < rows; r++) {
          const src = order[start + r];
          bx.set(x.subarray(src * inputs, (src + 1) * inputs), r * inputs);
          if (bt instanceof Int32Array) bt[r] = t[src];
          else bt.set((t as Float32Array).subarray(src * targetWidth, (src + 1) * targetWidth), r * targetWidth);
        }
        lastLr = this.rate();
        const t0 = performance.now();
        const stepLoss = await this.stepAsync(bx.subarray(0, rows * inputs), bt.subarray(0, rows * targetWidth));
        trainMs += performance.now() - t0;
        trained += rows;
        stepsTaken++;
        lossSum += stepLoss * rows;
        lossCount += rows;
        const now = performance.now();
        if (onProgress && now - lastReport >= PROGRESS_INTERVAL_MS && s + 1 < stepsPerEpoch) {
          lastReport = now;
          onProgress({
            epoch, epochs, step: s + 1, stepsPerEpoch, loss: lossSum / lossCount,
            samplesPerSecond: trained / (trainMs / 1000), lr: lastLr, epochEnd: false,
          });
        }
      }
      // An epoch cut short is not a completed epoch: no record, no validation pass.
      if (stopped || lossCount === 0) break;
      const record: EpochRecord = { epoch, loss: lossSum / lossCount };
      if (validation) {
        const v = await this.evaluate(validation.x, validation.t);
        record.valLoss = v.loss;
        if (v.accuracy !== undefined) record.valAccuracy = v.accuracy;
      }
      history.push(record);
      onProgress?.({
        epoch, epochs, step: stepsPerEpoch, stepsPerEpoch, loss: record.loss,
        samplesPerSecond: trained / (trainMs / 1000), lr: lastLr, epochEnd: true,
        ...(record.valLoss !== undefined ? { valLoss: record.valLoss } : {}),
        ...(record.valAccuracy !== undefined ? { valAccuracy: record.valAccuracy } : {}),
      });
    }
    return { history, stopped, steps: stepsTaken, rows: trained, samplesPerSecond: trainMs > 0 ? trained / (trainMs / 1000) : 0 };
  }
}

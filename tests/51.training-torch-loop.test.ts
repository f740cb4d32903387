// A PyTorch training loop ported to mlpkit, checked against an independent float64 emulation
// written here from torch's documented semantics (not mlpkit's reference backend): a
// 3 -> 4 tanh -> 2 net, several steps of SGD / Adam / AdamW with every option, each loss,
// clip_grad_norm_, StepLR and CosineAnnealingLR, fit() with a short last batch and validation,
// and evaluate()'s handling of the arrays it is given.

import { describe, expect, it } from 'vitest';
import { Mlp } from '../lib/index.js';
import { lossAndGradient } from '../lib/backend/reference/loss.js';
import { backendsUnderTest } from './helpers.js';

const I = 3;
const H = 4;
const O = 2;
const N = H * I + H + O * H + O; // W1 [4x3], b1, W2 [2x4], b2
const B1 = H * I;
const W2 = B1 + H;
const B2 = W2 + O * H;

type LossKey = 'mse' | 'l1' | 'huber' | 'bce' | 'ce';
const LOSS_OPTION = {
  mse: 'mse', l1: 'l1', huber: { type: 'huber', delta: 0.3 }, bce: 'bce-with-logits', ce: 'softmax-cross-entropy',
} as const;
const HUBER_DELTA = 0.3;

/** A small LCG, independent of mlpkit's generator. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function forward(p: Float64Array, x: ArrayLike<number>, batch: number) {
  const a1 = new Float64Array(batch * H);
  const y = new Float64Array(batch * O);
  for (let r = 0; r < batch; r++) {
    for (let h = 0; h < H; h++) {
      let s = p[B1 + h];
      for (let i = 0; i < I; i++) s += p[h * I + i] * x[r * I + i];
      a1[r * H + h] = Math.tanh(s);
    }
    for (let o = 0; o < O; o++) {
      let s = p[B2 + o];
      for (let h = 0; h < H; h++) s += p[W2 + o * H + h] * a1[r * H + h];
      y[r * O + o] = s;
    }
  }
  return { a1, y };
}

/** torch.nn.functional losses, reduction 'mean', and dL/dy. */
function torchLoss(loss: LossKey, y: Float64Array, t: ArrayLike<number>, batch: number) {
  const n = batch * O;
  const dy = new Float64Array(n);
  let sum = 0;
  if (loss === 'ce') {
    for (let r = 0; r < batch; r++) {
      const row = Array.from(y.subarray(r * O, r * O + O));
      const max = Math.max(...row);
      const e = row.map((v) => Math.exp(v - max));
      const s = e.reduce((a, b) => a + b);
      sum += Math.log(s) + max - row[t[r]];
      for (let o = 0; o < O; o++) dy[r * O + o] = (e[o] / s - (o === t[r] ? 1 : 0)) / batch;
    }
    return { loss: sum / batch, dy };
  }
  for (let i = 0; i < n; i++) {
    const d = y[i] - t[i];
    if (loss === 'mse') { sum += d * d; dy[i] = (2 * d) / n; }
    if (loss === 'l1') { sum += Math.abs(d); dy[i] = Math.sign(d) / n; }
    if (loss === 'huber') {
      const a = Math.abs(d);
      sum += a < HUBER_DELTA ? 0.5 * d * d : HUBER_DELTA * (a - 0.5 * HUBER_DELTA);
      dy[i] = (a < HUBER_DELTA ? d : HUBER_DELTA * Math.sign(d)) / n;
    }
    if (loss === 'bce') {
      const s = 1 / (1 + Math.exp(-y[i]));
      sum += -(t[i] * Math.log(s) + (1 - t[i]) * Math.log(1 - s));
      dy[i] = (s - t[i]) / n;
    }
  }
  return { loss: sum / n, dy };
}

function backward(p: Float64Array, x: ArrayLike<number>, batch: number, a1: Float64Array, dy: Float64Array): Float64Array {
  const g = new Float64Array(N);
  for (let r = 0; r < batch; r++) {
    const da = new Float64Array(H);
    for (let o = 0; o < O; o++) {
      const d = dy[r * O + o];
      g[B2 + o] += d;
      for (let h = 0; h < H; h++) {
        g[W2 + o * H + h] += d * a1[r * H + h];
        da[h] += d * p[W2 + o * H + h];
      }
    }
    for (let h = 0; h < H; h++) {
      const dz = da[h] * (1 - a1[r * H + h] ** 2);
      g[B1 + h] += dz;
      for (let i = 0; i < I; i++) g[h * I + i] += dz * x[r * I + i];
    }
  }
  return g;
}

type Opt =
  | { type: 'sgd'; lr: number; momentum?: number; dampening?: number; nesterov?: boolean; weightDecay?: number }
  | { type: 'adam' | 'adamw'; lr: number; betas?: [number, number]; eps?: number; weightDecay?: number };

/** torch.optim.SGD / Adam / AdamW, single-tensor (non-foreach) step, one param group. */
class TorchOptimizer {
  private buf: Float64Array | null = null;
  private readonly m = new Float64Array(N);
  private readonly v = new Float64Array(N);
  private t = 0;
  constructor(private readonly o: Opt) {}

  step(p: Float64Array, grad: Float64Array, lr: number): void {
    this.t++;
    const o = this.o;
    if (o.type === 'sgd') {
      const wd = o.weightDecay ?? 0;
      const mom = o.momentum ?? 0;
      const damp = o.dampening ?? 0;
      for (let i = 0; i < N; i++) {
        let d = grad[i] + wd * p[i];
        if (mom !== 0) {
          if (this.buf === null) this.buf = new Float64Array(N);
          // The buffer is a clone of d_p on the first step (no dampening), then mom * buf + (1 - damp) * d_p.
          this.buf[i] = this.t === 1 ? d : mom * this.buf[i] + (1 - damp) * d;
          d = o.nesterov ? d + mom * this.buf[i] : this.buf[i];
        }
        p[i] -= lr * d;
      }
      return;
    }
    const [b1, b2] = o.betas ?? [0.9, 0.999];
    const eps = o.eps ?? 1e-8;
    const wd = o.weightDecay ?? (o.type === 'adamw' ? 0.01 : 0);
    const bc1 = 1 - b1 ** this.t;
    const bc2 = 1 - b2 ** this.t;
    for (let i = 0; i < N; i++) {
      let g = grad[i];
      if (o.type === 'adamw') p[i] *= 1 - lr * wd;
      else g += wd * p[i];
      this.m[i] = b1 * this.m[i] + (1 - b1) * g;
      this.v[i] = b2 * this.v[i] + (1 - b2) * g * g;
      p[i] -= ((lr / bc1) * this.m[i]) / (Math.sqrt(this.v[i]) / Math.sqrt(bc2) + eps);
    }
  }
}

/** torch.nn.utils.clip_grad_norm_(max_norm), norm_type 2. */
function clipGradNorm(g: Float64Array, maxNorm: number): void {
  const total = Math.sqrt(g.reduce((a, b) => a + b * b, 0));
  const coef = Math.min(1, maxNorm / (total + 1e-6));
  for (let i = 0; i < N; i++) g[i] *= coef;
}

type Sched = { type: 'step'; stepSize: number; gamma: number } | { type: 'cosine'; steps: number; minLr: number };

/** StepLR / CosineAnnealingLR closed forms: the lr of the optimizer step taken after t scheduler steps. */
function torchLr(base: number, s: Sched | undefined, t: number): number {
  if (!s) return base;
  if (s.type === 'step') return base * s.gamma ** Math.floor(t / s.stepSize);
  // Past T_max torch's cosine rises again; mlpkit documents that it stays at minLr instead.
  return s.minLr + ((base - s.minLr) * (1 + Math.cos((Math.PI * Math.min(t, s.steps)) / s.steps))) / 2;
}

const spec = { inputs: I, layers: [{ units: H, activation: 'tanh' as const }, { units: O }] };

function initial(seed: number): Float32Array {
  const r = lcg(seed);
  return Float32Array.from({ length: N }, () => (2 * r() - 1) * 0.8);
}

function batchOf(loss: LossKey, r: () => number, batch: number) {
  const x = Float32Array.from({ length: batch * I }, () => (2 * r() - 1) * 2);
  const target = loss === 'ce'
    ? Int32Array.from({ length: batch }, () => Math.floor(r() * O))
    : Float32Array.from({ length: batch * O }, () => (loss === 'bce' ? (r() < 0.5 ? 0 : 1) : (2 * r() - 1) * 2));
  return { x, target };
}

const OPTIMIZERS: Opt[] = [
  { type: 'sgd', lr: 0.1 },
  { type: 'sgd', lr: 0.1, momentum: 0.9 },
  { type: 'sgd', lr: 0.1, momentum: 0.9, dampening: 0.3, weightDecay: 0.05 },
  { type: 'sgd', lr: 0.1, momentum: 0.8, nesterov: true, weightDecay: 0.02 },
  { type: 'adam', lr: 0.01 },
  { type: 'adam', lr: 0.01, weightDecay: 0.1, betas: [0.8, 0.95], eps: 1e-3 },
  { type: 'adamw', lr: 0.01 },
  { type: 'adamw', lr: 0.05, weightDecay: 0.3, eps: 1e-2 },
];

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe.each(backendsUnderTest())('a ported torch training loop on %s', (backend) => {
  const STEPS = 6;
  const BATCH = 5;

  function run(loss: LossKey, opt: Opt, clipNorm?: number, schedule?: Sched) {
    const p0 = initial(7);
    const net = new Mlp(spec, { backend, parameters: p0 });
    const trainer = net.trainer({
      loss: LOSS_OPTION[loss], optimizer: opt, ...(clipNorm ? { clipNorm } : {}), ...(schedule ? { schedule } : {}),
    });
    const p = Float64Array.from(p0);
    const torch = new TorchOptimizer(opt);
    const r = lcg(11);
    for (let s = 0; s < STEPS; s++) {
      const { x, target } = batchOf(loss, r, BATCH);
      const { a1, y } = forward(p, x, BATCH);
      const want = torchLoss(loss, y, target, BATCH);
      const g = backward(p, x, BATCH, a1, want.dy);
      if (clipNorm) clipGradNorm(g, clipNorm);
      const lr = torchLr(opt.lr, schedule, s);
      expect(trainer.lr, `lr before step ${s}`).toBeCloseTo(lr, 12);
      torch.step(p, g, lr);
      const got = trainer.step(x, target);
      expect(Math.abs(got - want.loss) / Math.max(1e-3, Math.abs(want.loss)), `loss of step ${s}`).toBeLessThan(1e-5);
    }
    return maxDiff(net.getParameters(), p);
  }

  for (const loss of ['mse', 'l1', 'huber', 'bce', 'ce'] as const) {
    it(`${loss}: six steps of every optimizer match torch.optim`, () => {
      for (const opt of OPTIMIZERS) expect(run(loss, opt), JSON.stringify(opt)).toBeLessThan(2e-5);
    });
  }

  it('clip_grad_norm_ and the StepLR / CosineAnnealingLR schedules match torch', () => {
    const cases: [number | undefined, Sched | undefined][] = [
      [0.05, undefined],
      [0.5, { type: 'step', stepSize: 2, gamma: 0.5 }],
      [undefined, { type: 'cosine', steps: 4, minLr: 0.001 }],
    ];
    for (const [clipNorm, schedule] of cases) {
      for (const opt of [OPTIMIZERS[2], OPTIMIZERS[5], OPTIMIZERS[7]]) {
        expect(run('mse', opt, clipNorm, schedule), `${clipNorm} ${JSON.stringify(schedule)} ${opt.type}`).toBeLessThan(2e-5);
      }
    }
  });

  it('weightDecay reaches the biases too, as torch with one param group', () => {
    const net = new Mlp({ inputs: 1, layers: [{ units: 1 }] }, { backend, parameters: Float32Array.of(2, 3) });
    const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1, weightDecay: 0.5 } });
    // x = 0 and target = bias: the loss gradient is 0 for both weight and bias.
    trainer.step(Float32Array.of(0), Float32Array.of(3));
    expect(Array.from(net.getParameters())).toEqual([Math.fround(2 - 0.1 * 0.5 * 2), Math.fround(3 - 0.1 * 0.5 * 3)]);
  });

  it('fit: a short last batch is the mean over its own rows, cosine over the fit, validation after each epoch', async () => {
    const p0 = initial(3);
    const r = lcg(5);
    const n = 7;
    const batchSize = 3;
    const epochs = 2;
    const x = Float32Array.from({ length: n * I }, () => 2 * r() - 1);
    const y = Float32Array.from({ length: n * O }, () => 2 * r() - 1);
    const vx = Float32Array.from({ length: 4 * I }, () => 2 * r() - 1);
    const vy = Float32Array.from({ length: 4 * O }, () => 2 * r() - 1);
    const opt: Opt = { type: 'sgd', lr: 0.2, momentum: 0.9, weightDecay: 0.01 };
    const net = new Mlp(spec, { backend, parameters: p0 });
    const trainer = net.trainer({ loss: 'mse', optimizer: opt, schedule: { type: 'cosine', minLr: 0.01 } });
    const lrs: number[] = [];
    const result = await trainer.fit(x, y, {
      epochs, batchSize, shuffle: false, validation: { x: vx, target: vy },
      onProgress: (pr) => { if (pr.epochEnd) lrs.push(pr.lr); },
    });

    const p = Float64Array.from(p0);
    const torch = new TorchOptimizer(opt);
    const T = epochs * Math.ceil(n / batchSize); // CosineAnnealingLR(T_max = the fit's steps)
    const sched: Sched = { type: 'cosine', steps: T, minLr: 0.01 };
    const want: { loss: number; valLoss: number }[] = [];
    const wantLrs: number[] = [];
    let s = 0;
    for (let e = 0; e < epochs; e++) {
      let sum = 0;
      for (let b = 0; b < n; b += batchSize) {
        const rows = Math.min(batchSize, n - b);
        const bx = x.subarray(b * I, (b + rows) * I);
        const by = y.subarray(b * O, (b + rows) * O);
        const { a1, y: out } = forward(p, bx, rows);
        const l = torchLoss('mse', out, by, rows);
        sum += l.loss * rows;
        const lr = torchLr(opt.lr, sched, s++);
        torch.step(p, backward(p, bx, rows, a1, l.dy), lr);
        if (b + batchSize >= n) wantLrs.push(lr);
      }
      want.push({ loss: sum / n, valLoss: torchLoss('mse', forward(p, vx, 4).y, vy, 4).loss });
    }
    expect(result.steps).toBe(6);
    expect(result.rows).toBe(14);
    expect(maxDiff(net.getParameters(), p)).toBeLessThan(1e-5);
    for (let e = 0; e < epochs; e++) {
      expect(result.history[e].loss).toBeCloseTo(want[e].loss, 5);
      expect(result.history[e].valLoss!).toBeCloseTo(want[e].valLoss, 5);
    }
    for (let e = 0; e < epochs; e++) expect(lrs[e]).toBeCloseTo(wantLrs[e], 12);
  });

  it('evaluate copies x and target when called: changing them at once does not change the result', async () => {
    const net = new Mlp({ inputs: 2, layers: [{ units: 3 }], seed: 1 }, { backend });
    const x = Float32Array.of(1, 2, 3, 4);
    const labels = Int32Array.of(0, 1);
    const trainer = net.trainer({ loss: 'softmax-cross-entropy', optimizer: { type: 'sgd', lr: 0.1 } });
    const expected = await trainer.evaluate(x, labels);
    expect(Number.isFinite(expected.loss)).toBe(true);
    const pending = trainer.evaluate(x, labels);
    // Reuse the buffers at once, as stepAsync and predictAsync allow: label 3 is out of range
    // for 3 outputs, and would read the next row's logit if it were read now.
    labels[0] = 3;
    labels[1] = 2;
    x.fill(7);
    expect(await pending).toEqual(expected);

    const mse = net.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 } });
    const x2 = Float32Array.of(1, 2, 3, 4);
    const y = new Float32Array(6);
    const before = await mse.evaluate(x2, y);
    const again = mse.evaluate(x2, y);
    y.fill(100);
    expect(await again).toEqual(before);
  });
});

describe('the reference loss', () => {
  it('rejects a class label out of range instead of reading another row', () => {
    const y = Float64Array.of(1, 2, 3, 4, 5, 6);
    const dy = new Float64Array(6);
    expect(lossAndGradient(3, 0, y, Int32Array.of(0, 2), 2, 3, dy)).toBeGreaterThan(0);
    for (const bad of [3, -1, 7]) {
      expect(() => lossAndGradient(3, 0, y, Int32Array.of(bad, 0), 2, 3, dy)).toThrow(/label 0 must be in \[0, 3\)/);
    }
    expect(() => lossAndGradient(3, 0, y, Float64Array.of(0, 1.5), 2, 3, dy)).toThrow(/label 1/);
  });
});

describe.each(backendsUnderTest())('huber delta on %s', (backend) => {
  it('gradients refuses two deltas (request.delta beside request.loss.delta) instead of ignoring one', () => {
    const net = new Mlp({ inputs: 1, layers: [{ units: 1, bias: false }] }, { backend, parameters: Float32Array.of(5) });
    const x = Float32Array.of(1);
    const target = Float32Array.of(0);
    // torch.nn.HuberLoss(delta): |d| = 5 >= delta gives delta * (|d| - delta / 2).
    expect(net.gradients(x, { loss: { type: 'huber', delta: 2 }, target }).loss).toBeCloseTo(8, 6);
    expect(net.gradients(x, { loss: 'huber', target, delta: 3 }).loss).toBeCloseTo(10.5, 6);
    expect(() => net.gradients(x, { loss: { type: 'huber', delta: 2 }, target, delta: 3 } as never))
      .toThrow(/request\.delta and request\.loss\.delta were both given/);
  });
});

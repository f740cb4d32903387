// The cuda backend (issue #7). Where the CUDA addon loads and reports a usable GPU, every
// operation is cross-checked against the CPU (native when it loads, else the reference):
// predict, gradients (parameters and input), a caller's dL/dy, training steps, async calls, and
// the argument errors. Elsewhere (no GPU, no driver, addon not built: CI) the cross-checks are
// skipped with the reason printed, and what is checked is the contract without a GPU: info()
// says why, backend 'cuda' throws ERR_MLPKIT_CUDA_UNAVAILABLE, and 'auto' stays on the CPU.
//
// Tolerances, relative to the largest value compared (helpers.relativeError):
//   fp32 1e-5 (as native vs reference: float32 accumulation, different summation order);
//   fp16 1e-2 (inputs, weights and hidden activations rounded to fp16's 10-bit mantissa,
//   ~5e-4 each, compounding over the layers); bf16 5e-2 (7-bit mantissa, ~4e-3 each).
// fp32 gradients get the same 1e-5. Reduced-precision gradients are compared by relative RMS
// error: twice the forward tolerance with smooth activations and losses; at a kink (relu' at 0,
// l1's sign) a rounding can flip the derivative of a fraction ~1.6 eps of the units, which moves
// the gradients by ~sqrt(2 p) RMS (~5% fp16, ~11% bf16) whatever the kernels do, so ReLU
// networks are held to 0.15 (fp16) / 0.3 (bf16): still far below the O(1) error of a real bug.

import { describe, expect, it } from 'vitest';
import { ERR_CUDA_UNAVAILABLE, ERR_DISPOSED, info, Mlp } from '../lib/index.js';
import { ACTIVATIONS, LOSSES, type ActivationName, type LossName, type PrecisionName } from '../lib/backend/types.js';
import type { MlpSpec } from '../lib/spec.js';
import { errorStats } from '../lib/quant/calibrate.js';
import { expectClose, hasNative, randomArray, randomLabels } from './helpers.js';

const cuda = info().cuda;
if (!cuda.available) console.log(`tests/93.cuda.test.ts: CUDA cross-checks skipped: ${cuda.reason}`);
else console.log(`tests/93.cuda.test.ts: CUDA devices: ${cuda.devices.map((d) => `${d.name} (sm_${d.computeCapability})`).join(', ')}`);

const ROWS = [1, 3, 17, 63, 65, 1000];
const TOL: Record<PrecisionName, number> = { fp32: 1e-5, fp16: 1e-2, bf16: 5e-2 };
const cpuBackend = () => (hasNative() ? 'native' : 'reference');

function targetFor(loss: LossName, batch: number, outputs: number, seed: number) {
  if (loss === 'softmax-cross-entropy') return randomLabels(batch, outputs, seed);
  if (loss === 'bce-with-logits') return randomArray(batch * outputs, seed).map((v) => (v > 0 ? 1 : 0));
  return randomArray(batch * outputs, seed);
}

function pair(spec: MlpSpec, precision: PrecisionName) {
  const cpu = new Mlp(spec, { backend: cpuBackend() });
  const gpu = new Mlp(spec, { backend: 'cuda', precision, parameters: cpu.getParameters() });
  return { cpu, gpu };
}

/** sqrt(sum (a - b)^2) / sqrt(sum b^2). */
function relativeRms(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += (a[i] - b[i]) ** 2;
    norm += b[i] ** 2;
  }
  return Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-30);
}

/** fp32: max error relative to the largest value; fp16 / bf16: relative RMS (see the header). */
function gradTolerance(precision: PrecisionName, kinks: boolean): number {
  if (precision === 'fp32') return TOL.fp32;
  if (kinks) return precision === 'fp16' ? 0.15 : 0.3;
  return 2 * TOL[precision];
}

function crossCheck(spec: MlpSpec, batch: number, precision: PrecisionName, loss: LossName, what: string, kinks = false) {
  const tol = TOL[precision];
  const gtol = gradTolerance(precision, kinks);
  const expectGradClose = (a: Float32Array, b: Float32Array, label: string) => {
    if (precision === 'fp32') return expectClose(a, b, gtol, label);
    const err = relativeRms(a, b);
    if (!(err <= gtol)) throw new Error(`${label}: relative RMS error ${err.toExponential(3)} exceeds ${gtol}`);
  };
  const { cpu, gpu } = pair(spec, precision);
  const x = randomArray(batch * cpu.inputs, batch + cpu.inputs, 2);
  expectClose(gpu.predict(x), cpu.predict(x), tol, `${what} predict`);
  const target = targetFor(loss, batch, cpu.outputs, batch + 1);
  const gc = cpu.gradients(x, { loss, target, delta: 0.3 });
  const gg = gpu.gradients(x, { loss, target, delta: 0.3 });
  expect(Math.abs(gg.loss! - gc.loss!) / Math.max(1e-6, Math.abs(gc.loss!))).toBeLessThan(tol);
  expectGradClose(gg.parameters, gc.parameters, `${what} dparams`);
  expectGradClose(gg.input, gc.input, `${what} dx`);
  const gradOutput = randomArray(batch * cpu.outputs, batch + 2, 0.1);
  const bc = cpu.gradients(x, { gradOutput });
  const bg = gpu.gradients(x, { gradOutput });
  expectGradClose(bg.parameters, bc.parameters, `${what} backward dparams`);
  expectGradClose(bg.input, bc.input, `${what} backward dx`);
  cpu.dispose();
  gpu.dispose();
}

describe('cuda backend: availability and errors', () => {
  it('info().cuda lists devices or says why none can be used', () => {
    expect(typeof cuda.available).toBe('boolean');
    expect(Array.isArray(cuda.devices)).toBe(true);
    if (cuda.available) {
      expect(cuda.devices.some((d) => d.supported)).toBe(true);
      for (const d of cuda.devices) {
        expect(d.computeCapability).toMatch(/^\d+\.\d+$/);
        expect(d.memoryBytes).toBeGreaterThan(0);
      }
    } else {
      expect(cuda.reason).toMatch(/\w/);
    }
  });

  it.runIf(!cuda.available)("backend 'cuda' throws ERR_MLPKIT_CUDA_UNAVAILABLE with the reason", () => {
    let caught: unknown;
    try {
      new Mlp({ inputs: 2, layers: [{ units: 1 }] }, { backend: 'cuda' });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(Error);
    expect((caught as { code?: string }).code).toBe(ERR_CUDA_UNAVAILABLE);
    expect((caught as Error).message).toContain(cuda.reason!);
    expect((caught as Error).message).toMatch(/cuda backend was requested/);
  });

  it.runIf(!cuda.available)("'auto' stays on the CPU and everything still works there", () => {
    const net = new Mlp({ inputs: 3, layers: [{ units: 4, activation: 'relu' }, { units: 2 }], seed: 1 }, { precision: 'fp16' });
    expect(net.backend).not.toBe('cuda');
    expect(net.predict(new Float32Array(3)).length).toBe(2);
    if (process.env.MLPKIT_BACKEND === undefined) expect(info().backend).toBe(hasNative() ? 'native' : 'reference');
  });

  it('options.precision is checked like every option', () => {
    const spec: MlpSpec = { inputs: 2, layers: [{ units: 1 }] };
    expect(() => new Mlp(spec, { precision: 'fp8' as PrecisionName })).toThrow(RangeError);
    expect(() => new Mlp(spec, { backend: 'gpu' as 'cuda' })).toThrow(RangeError);
  });
});

describe.runIf(cuda.available)('cuda vs CPU, fp32 (the tiled GEMM path)', () => {
  it('auto picks cuda when a GPU is usable', () => {
    if (process.env.MLPKIT_BACKEND === undefined) {
      expect(info().backend).toBe('cuda');
      expect(new Mlp({ inputs: 2, layers: [{ units: 1 }] }).backend).toBe('cuda');
    }
  });

  it.each(ACTIVATIONS.map((a) => [a]))('activation %s, rows 1..1000, widths 16..128', (activation) => {
    let i = 0;
    for (const batch of ROWS) {
      for (const width of [16, 17, 64, 128]) {
        const spec: MlpSpec = {
          inputs: width,
          layers: [{ units: width, activation: activation as ActivationName, alpha: 0.05 }, { units: 17, activation: activation as ActivationName }, { units: 3 }],
          seed: width * 31 + batch,
        };
        crossCheck(spec, batch, 'fp32', LOSSES[i++ % LOSSES.length], `fp32 ${activation} w${width} b${batch}`);
      }
    }
  });

  it('frequency encoding, bias-free layers, a wide layer', () => {
    crossCheck(
      { inputs: 3, encoding: { type: 'frequency', octaves: 5 }, layers: [{ units: 63, activation: 'gelu_tanh', bias: false }, { units: 2, activation: 'sigmoid' }], seed: 8 },
      65, 'fp32', 'mse', 'frequency',
    );
    crossCheck({ inputs: 300, layers: [{ units: 700, activation: 'relu' }, { units: 10 }], seed: 2 }, 17, 'fp32', 'softmax-cross-entropy', 'wide');
  });

  it('training: the same steps give the same trajectory as the CPU', async () => {
    const spec: MlpSpec = { inputs: 8, layers: [{ units: 64, activation: 'relu' }, { units: 64, activation: 'tanh' }, { units: 4 }], seed: 5 };
    const { cpu, gpu } = pair(spec, 'fp32');
    const options = { loss: 'mse' as const, optimizer: { type: 'adamw' as const, lr: 1e-3 }, clipNorm: 0.5 };
    const tc = cpu.trainer(options);
    const tg = gpu.trainer(options);
    for (let s = 0; s < 10; s++) {
      const x = randomArray(256 * 8, 100 + s);
      const t = randomArray(256 * 4, 200 + s);
      const lc = tc.step(x, t);
      const lg = s % 2 ? await tg.stepAsync(x, t) : tg.step(x, t);
      expect(Math.abs(lg - lc) / Math.abs(lc)).toBeLessThan(1e-5);
    }
    expectClose(gpu.getParameters(), cpu.getParameters(), 1e-5, 'parameters after 10 steps');
    const x = randomArray(65 * 8, 7);
    expectClose(await gpu.predictAsync(x), cpu.predict(x), 1e-5, 'predictAsync');
  });

  it('calibrated quantize measures against the GPU model\'s own outputs, quantizeAsync as quantize', async () => {
    // A CPU model's stats take the float outputs from calibration's CPU layers; a cuda model's
    // come from the cuda model itself (net.predict here, predictAsync in quantizeAsync).
    const net = new Mlp({ inputs: 16, encoding: { type: 'frequency', octaves: 2 }, layers: [{ units: 64, activation: 'relu' }, { units: 4 }], seed: 3 }, { backend: 'cuda' });
    const x = randomArray(200 * 16, 4);
    const q = net.quantize({ weights: 'int8', calibration: x });
    const qa = await net.quantizeAsync({ weights: 'int8', calibration: x });
    expect(JSON.stringify(qa.stats)).toBe(JSON.stringify(q.stats));
    const direct = errorStats(q.predict(x), net.predict(x));
    expect(Math.abs(q.stats!.output.relativeRms / direct.relativeRms - 1)).toBeLessThan(1e-6);
    for (const m of [q, qa, net]) m.dispose();
  });

  it('argument errors and dispose behave as on the CPU', () => {
    const net = new Mlp({ inputs: 3, layers: [{ units: 2 }] }, { backend: 'cuda' });
    expect(() => net.predict(new Float32Array(4))).toThrow(RangeError);
    expect(() => net.predict(new Float64Array(3) as unknown as Float32Array)).toThrow(TypeError);
    net.dispose();
    expect(() => net.predict(new Float32Array(3))).toThrow(expect.objectContaining({ code: ERR_DISPOSED }));
  });
});

describe.runIf(cuda.available).each([['fp16'], ['bf16']] as [PrecisionName][])('cuda vs CPU, %s (the fused tensor-core path)', (precision) => {
  it('widths 16..128, rows 1..1000: smooth activations and losses, and ReLU networks', () => {
    const smooth: ActivationName[] = ['none', 'gelu', 'gelu_tanh', 'silu', 'sigmoid', 'tanh', 'softplus'];
    const smoothLosses: LossName[] = ['mse', 'huber', 'softmax-cross-entropy', 'bce-with-logits'];
    let i = 0;
    for (const batch of ROWS) {
      for (let width = 16; width <= 128; width += 16) {
        const activation = smooth[i % smooth.length];
        const spec: MlpSpec = {
          inputs: width,
          layers: [{ units: width, activation }, { units: width, activation: 'tanh' }, { units: width, activation: 'sigmoid' }, { units: 7 }],
          seed: width + batch,
        };
        crossCheck(spec, batch, precision, smoothLosses[i++ % smoothLosses.length], `${precision} ${activation} w${width} b${batch}`);
        const relu: MlpSpec = {
          inputs: width,
          layers: [{ units: width, activation: 'relu' }, { units: width, activation: 'leaky_relu' }, { units: 7 }],
          seed: width * 3 + batch,
        };
        crossCheck(relu, batch, precision, 'mse', `${precision} relu w${width} b${batch}`, true);
      }
    }
  });

  it('runs the fused kernels up to width 128 and the fp32 path beyond', () => {
    const fused = new Mlp({ inputs: 2, encoding: { type: 'frequency', octaves: 8 }, layers: [{ units: 64, activation: 'relu' }, { units: 3 }] }, { backend: 'cuda', precision });
    expect(fused.handle('test').kernel).toBe(`fused-${precision}`);
    const wide = new Mlp({ inputs: 2, layers: [{ units: 200, activation: 'relu' }, { units: 3 }] }, { backend: 'cuda', precision });
    expect(wide.handle('test').kernel).toBe('gemm-fp32');
  });
});

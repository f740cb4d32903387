// The reference's analytic gradients against central finite differences, all in float64.
// Step h = 1e-6: truncation error ~h^2 |f'''| and rounding ~1e-16/h both stay far below the
// 1e-4 tolerance (relative to the largest gradient compared); inputs are random, so landing
// within h of a kink (relu at 0, l1 at 0, huber at delta) has negligible probability.

import { describe, expect, it } from 'vitest';
import { ACTIVATIONS, LOSSES } from '../lib/backend/types.js';
import { ReferenceModel } from '../lib/backend/reference/model.js';
import { activate, activateDerivative } from '../lib/backend/reference/activation.js';
import { erf } from '../lib/backend/reference/math.js';
import { normalizeSpec, toModelConfig, type MlpSpec } from '../lib/spec.js';
import { initParameters, Rng } from '../lib/init.js';
import { relativeError } from './helpers.js';

const H = 1e-6;
const TOL = 1e-4;

function f64(n: number, seed: number, scale = 1): Float64Array {
  const rng = new Rng(seed);
  return Float64Array.from({ length: n }, () => (2 * rng.uniform() - 1) * scale);
}

function setup(specIn: MlpSpec, batch: number, loss: number, seed: number) {
  const spec = normalizeSpec(specIn);
  const config = toModelConfig(spec);
  const params = Float64Array.from(initParameters(spec), (v) => v * 2); // larger weights: more curvature
  const model = new ReferenceModel(config, params, 'f64');
  const outputs = spec.layers[spec.layers.length - 1].units;
  const x = f64(batch * spec.inputs, seed + 1);
  const rng = new Rng(seed + 2);
  const target =
    loss === 3
      ? Int32Array.from({ length: batch }, () => rng.below(outputs))
      : loss === 4
        ? Float64Array.from({ length: batch * outputs }, () => rng.uniform())
        : f64(batch * outputs, seed + 3);
  return { model, params, x, target, outputs };
}

function checkGradients(specIn: MlpSpec, loss: number, lossParam = 1, batch = 3, seed = 7) {
  const { model, params, x, target } = setup(specIn, batch, loss, seed);
  const lossAt = (p: Float64Array, xs: Float64Array) => {
    model.setParams(p as never);
    return model.lossGrad(xs as never, batch, loss, lossParam, target as never, null);
  };
  model.setParams(params as never);
  const gx = new Float64Array(x.length);
  model.lossGrad(x as never, batch, loss, lossParam, target as never, gx as never);
  const gp = new Float64Array(params.length);
  model.getGrads(gp as never);

  const fdP = new Float64Array(params.length);
  for (let i = 0; i < params.length; i++) {
    const p = params.slice();
    p[i] += H;
    const up = lossAt(p, x);
    p[i] -= 2 * H;
    fdP[i] = (up - lossAt(p, x)) / (2 * H);
  }
  model.setParams(params as never);
  const fdX = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const xs = x.slice();
    xs[i] += H;
    const up = lossAt(params, xs);
    xs[i] -= 2 * H;
    fdX[i] = (up - lossAt(params, xs)) / (2 * H);
  }
  expect(relativeError(gp, fdP, 1e-8)).toBeLessThan(TOL);
  expect(relativeError(gx, fdX, 1e-8)).toBeLessThan(TOL);
}

describe('activation derivatives', () => {
  it.each(ACTIVATIONS.map((a, i) => [a, i] as const))('%s', (_name, code) => {
    for (const z of [-25, -3.1, -0.7, -1e-3, 0.3, 1.9, 4.2, 19.5, 21]) {
      const fd = (activate(code, z + 1e-6, 0.1) - activate(code, z - 1e-6, 0.1)) / 2e-6;
      expect(Math.abs(activateDerivative(code, z, 0.1) - fd)).toBeLessThan(1e-6 * Math.max(1, Math.abs(fd)));
    }
  });

  it('erf matches known values to 1e-13', () => {
    const known: [number, number][] = [
      [0, 0], [0.5, 0.5204998778130465], [1, 0.8427007929497149], [2, 0.9953222650189527],
      [2.9, 0.9999589021219005], [3.5, 0.9999992569016276], [-1.5, -0.9661051464753108],
    ];
    for (const [x, v] of known) expect(Math.abs(erf(x) - v)).toBeLessThan(1e-13);
  });
});

describe('backward vs finite differences (float64 reference)', () => {
  it.each(ACTIVATIONS.map((a) => [a]))('every parameter and the input, activation %s', (activation) => {
    checkGradients(
      { inputs: 3, layers: [{ units: 5, activation, alpha: 0.2 }, { units: 4, activation }, { units: 2 }], seed: 11 },
      0,
    );
  });

  it.each(LOSSES.map((l, i) => [l, i]))('loss %s', (_name, code) => {
    checkGradients({ inputs: 4, layers: [{ units: 6, activation: 'tanh' }, { units: 3 }], seed: 5 }, code, 0.5, 4);
  });

  it('frequency encoding, including dL/dx through sin/cos', () => {
    checkGradients(
      { inputs: 2, encoding: { type: 'frequency', octaves: 3 }, layers: [{ units: 6, activation: 'silu' }, { units: 2 }], seed: 2 },
      0,
    );
    checkGradients(
      { inputs: 2, encoding: { type: 'frequency', octaves: 2, includeInput: false }, layers: [{ units: 3, activation: 'softplus' }, { units: 1 }], seed: 4 },
      2,
      0.3,
    );
  });

  it.each(['silu', 'gelu', 'relu', 'tanh'].map((a) => [a]))('gated layer (GLU with %s) and residual blocks', (activation) => {
    // x + down(act(gate(x)) * up(x)), then a residual two-layer block with a plain activation.
    checkGradients(
      {
        inputs: 4,
        layers: [
          { units: 6, activation: activation as 'silu', gated: true },
          { units: 4, residual: true },
          { units: 5, activation: 'tanh' },
          { units: 4, activation: activation as 'silu', residual: true, bias: false },
          { units: 2, gated: true, activation: 'sigmoid' },
        ],
        seed: 13,
      },
      0,
    );
  });

  it('layers without bias, width 1 and batch 1', () => {
    checkGradients({ inputs: 1, layers: [{ units: 3, activation: 'gelu', bias: false }, { units: 1, bias: false }], seed: 9 }, 0, 1, 1);
  });
});

// Optimizer updates against numbers worked out by hand from PyTorch's documented formulas,
// on every backend. Parameters [1, -2] with gradients [0.5, 0.1] set directly.

import { describe, expect, it } from 'vitest';
import { Mlp } from '../lib/index.js';
import { OPTIMIZERS } from '../lib/backend/types.js';
import { normalizeOptimizer } from '../lib/train/optimizer-options.js';
import { backendsUnderTest } from './helpers.js';

function twoParams(backend: 'native' | 'reference') {
  const net = new Mlp({ inputs: 1, layers: [{ units: 2, bias: false }] }, { backend, parameters: Float32Array.of(1, -2) });
  const model = net.handle('test');
  const step = (opt: object, grads: number[], clip = 0) => {
    const { code, hyper } = normalizeOptimizer(opt);
    model.setGrads(Float32Array.from(grads));
    const norm = model.optimizerStep(code, hyper, clip);
    return { params: Array.from(net.getParameters()), norm };
  };
  return { net, step };
}

const close = (got: number[], want: number[]) => {
  for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 6);
};

describe.each(backendsUnderTest())('optimizers on %s', (backend) => {
  it('sgd: p -= lr * g', () => {
    const { step } = twoParams(backend);
    close(step({ type: 'sgd', lr: 0.1 }, [0.5, 0.1]).params, [0.95, -2.01]);
  });

  it('sgd with weight decay, momentum, dampening over two steps', () => {
    const { step } = twoParams(backend);
    // step 1: g = grad + 0.1 p = [0.6, -0.1]; buf = g; p = [1 - 0.06, -2 + 0.01]
    close(step({ type: 'sgd', lr: 0.1, momentum: 0.9, dampening: 0.5, weightDecay: 0.1 }, [0.5, 0.1]).params, [0.94, -1.99]);
    // step 2: g = [0.5 + 0.094, 0.1 - 0.199] = [0.594, -0.099]; buf = 0.9 [0.6, -0.1] + 0.5 g
    const buf = [0.9 * 0.6 + 0.5 * 0.594, 0.9 * -0.1 + 0.5 * -0.099];
    close(step({ type: 'sgd', lr: 0.1, momentum: 0.9, dampening: 0.5, weightDecay: 0.1 }, [0.5, 0.1]).params, [0.94 - 0.1 * buf[0], -1.99 - 0.1 * buf[1]]);
  });

  it('sgd nesterov: p -= lr * (g + momentum * buf)', () => {
    const { step } = twoParams(backend);
    // step 1: buf = g; update g + 0.9 g = 1.9 g
    close(step({ type: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true }, [0.5, 0.1]).params, [1 - 0.095, -2 - 0.019]);
    // step 2: buf = 0.9 g + g = 1.9 g; update g + 0.9 * 1.9 g = 2.71 g
    close(step({ type: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true }, [0.5, 0.1]).params, [0.905 - 0.1355, -2.019 - 0.0271]);
  });

  it('adam: two steps with bias correction', () => {
    const { step } = twoParams(backend);
    const g = [0.5, 0.1];
    // Step 1: m = 0.1 g, v = 0.001 g^2; mhat = g, vhat = g^2: p -= lr g / (|g| + eps).
    const p1 = [1 - (0.01 * 0.5) / (0.5 + 1e-8), -2 - (0.01 * 0.1) / (0.1 + 1e-8)];
    close(step({ type: 'adam', lr: 0.01 }, g).params, p1);
    // Step 2, gradient [-0.2, 0.3]: m = 0.9 m1 + 0.1 g2, v = 0.999 v1 + 0.001 g2^2.
    const g2 = [-0.2, 0.3];
    const p2 = p1.map((p, i) => {
      const m = 0.9 * 0.1 * g[i] + 0.1 * g2[i];
      const v = 0.999 * 0.001 * g[i] ** 2 + 0.001 * g2[i] ** 2;
      return p - (0.01 / (1 - 0.9 ** 2)) * m / (Math.sqrt(v) / Math.sqrt(1 - 0.999 ** 2) + 1e-8);
    });
    close(step({ type: 'adam', lr: 0.01 }, g2).params, p2);
  });

  it('adam with L2 weight decay adds wd * p to the gradient', () => {
    const { step } = twoParams(backend);
    // g = [0.5 + 0.1, 0.1 - 0.2] = [0.6, -0.1]; first step moves each by lr * sign(g).
    close(step({ type: 'adam', lr: 0.01, weightDecay: 0.1 }, [0.5, 0.1]).params, [0.99, -1.99]);
  });

  it('adamw decays the weights first, then takes an Adam step', () => {
    const { step } = twoParams(backend);
    // p * (1 - 0.01 * 0.1) = [0.999, -1.998], then -= 0.01 * sign(g)
    close(step({ type: 'adamw', lr: 0.01, weightDecay: 0.1 }, [0.5, 0.1]).params, [0.989, -2.008]);
  });

  it('global-norm clipping scales the gradient before the update and returns the norm', () => {
    const { step } = twoParams(backend);
    // |g| = 5 (3, 4); clip to 1 -> g * 1 / (5 + 1e-6)
    const { params, norm } = step({ type: 'sgd', lr: 1 }, [3, 4], 1);
    expect(norm).toBeCloseTo(5, 5);
    close(params, [1 - 3 / (5 + 1e-6), -2 - 4 / (5 + 1e-6)]);
  });

  it('resetOptimizer restarts bias correction', () => {
    const { net, step } = twoParams(backend);
    step({ type: 'adam', lr: 0.01 }, [0.5, 0.1]);
    net.handle('test').resetOptimizer();
    const before = net.getParameters();
    const after = step({ type: 'adam', lr: 0.01 }, [0.5, 0.1]).params;
    close(after, [before[0] - 0.01, before[1] - 0.01]);
  });

  // The native model allocates gradients and moments on the first training call; before it they
  // must read as zero and a step must act as on zero gradients.
  it('before any training call: zero gradients, resetOptimizer is harmless, a step sees zero gradients', () => {
    const { net } = twoParams(backend);
    const model = net.handle('test');
    const grads = Float32Array.of(7, 7);
    model.getGrads(grads);
    expect(Array.from(grads)).toEqual([0, 0]);
    model.resetOptimizer();
    const { code, hyper } = normalizeOptimizer({ type: 'sgd', lr: 0.1, weightDecay: 0.5 });
    model.optimizerStep(code, hyper, 0);
    close(Array.from(net.getParameters()), [1 - 0.1 * 0.5 * 1, -2 - 0.1 * 0.5 * -2]);
    model.getGrads(grads);
    expect(Array.from(grads)).toEqual([0, 0]);
  });

  it('knows every optimizer', () => {
    expect(OPTIMIZERS).toEqual(['sgd', 'adam', 'adamw']);
  });
});

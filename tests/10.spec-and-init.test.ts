import { describe, expect, it } from 'vitest';
import { Mlp } from '../lib/index.js';
import { Rng } from '../lib/init.js';
import { encodedWidth, normalizeSpec, parameterLayout } from '../lib/spec.js';

describe('spec', () => {
  it('fills defaults and computes the parameter layout', () => {
    const spec = normalizeSpec({ inputs: 3, layers: [{ units: 4, activation: 'relu' }, { units: 2, bias: false }] });
    expect(spec).toEqual({
      inputs: 3,
      encoding: { type: 'identity' },
      layers: [
        { units: 4, activation: 'relu', bias: true, alpha: 0.01, gated: false, residual: false },
        { units: 2, activation: 'none', bias: false, alpha: 0.01, gated: false, residual: false },
      ],
      init: 'torch',
      seed: 0,
    });
    const { slots, count } = parameterLayout(spec);
    expect(count).toBe(3 * 4 + 4 + 4 * 2);
    expect(slots[1]).toEqual({ inputs: 4, outputs: 2, rows: 2, weightOffset: 16, biasOffset: -1 });
  });

  it('lays out a gated layer as [2 * units, inputs] (gate rows, then up rows) and checks residual widths', () => {
    const spec = normalizeSpec({ inputs: 3, layers: [{ units: 5, activation: 'silu', gated: true }, { units: 3, residual: true }] });
    const { slots, count } = parameterLayout(spec);
    expect(slots[0]).toEqual({ inputs: 3, outputs: 5, rows: 10, weightOffset: 0, biasOffset: 30 });
    expect(count).toBe(10 * 3 + 10 + 5 * 3 + 3);
    expect(() => normalizeSpec({ inputs: 3, layers: [{ units: 3, residual: true }] })).toThrow(/layer 0 has none/);
    expect(() => normalizeSpec({ inputs: 3, layers: [{ units: 5 }, { units: 4, residual: true }] })).toThrow(/must equal that width \(3\) but are 4/);
    expect(() => normalizeSpec({ inputs: 3, layers: [{ units: 5, gated: 1 }] })).toThrow(/gated/);
    const net = new Mlp({ inputs: 3, layers: [{ units: 5, activation: 'silu', gated: true }, { units: 3, residual: true }] }, { backend: 'reference' });
    const back = Mlp.fromSafetensors(net.toSafetensors(), { backend: 'reference' });
    expect(back.spec).toEqual(net.spec);
    expect(back.getLayers()[0]).toMatchObject({ outputs: 5, gated: true });
    expect(back.getLayers()[0].weight.length).toBe(30);
    expect(Array.from(back.getParameters())).toEqual(Array.from(net.getParameters()));
  });

  it('sizes the frequency encoding', () => {
    const spec = normalizeSpec({ inputs: 2, encoding: { type: 'frequency', octaves: 6 }, layers: [{ units: 1 }] });
    expect(encodedWidth(spec)).toBe(2 + 2 * 6 * 2);
    const noInput = normalizeSpec({ inputs: 2, encoding: { type: 'frequency', octaves: 6, includeInput: false }, layers: [{ units: 1 }] });
    expect(encodedWidth(noInput)).toBe(24);
  });

  it('spec is plain JSON and survives a round trip', () => {
    const net = new Mlp({ inputs: 5, layers: [{ units: 7, activation: 'gelu' }, { units: 1 }], seed: 3 }, { backend: 'reference' });
    expect(normalizeSpec(JSON.parse(JSON.stringify(net.spec)))).toEqual(net.spec);
  });
});

describe('initialisers', () => {
  const make = (init: string, seed = 1) =>
    new Mlp({ inputs: 400, layers: [{ units: 300 }], init: init as never, seed }, { backend: 'reference' });

  it('are deterministic for a seed and differ across seeds', () => {
    expect(make('torch', 5).getParameters()).toEqual(make('torch', 5).getParameters());
    expect(make('torch', 5).getParameters()).not.toEqual(make('torch', 6).getParameters());
  });

  it("torch: weights and biases uniform in +-1/sqrt(fan_in), as nn.Linear", () => {
    const [layer] = make('torch').getLayers();
    const bound = 1 / Math.sqrt(400);
    const maxAbs = [...layer.weight, ...layer.bias!].reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(maxAbs).toBeLessThanOrEqual(bound);
    // Uniform variance is bound^2 / 3.
    const variance = layer.weight.reduce((s, v) => s + v * v, 0) / layer.weight.length;
    expect(variance / (bound * bound / 3)).toBeCloseTo(1, 1);
  });

  it.each([
    ['xavier-uniform', 2 / 700],
    ['xavier-normal', 2 / 700],
    ['he-uniform', 2 / 400],
    ['he-normal', 2 / 400],
  ])('%s: zero bias and the expected weight variance', (init, expected) => {
    const [layer] = make(init).getLayers();
    expect([...layer.bias!].every((b) => b === 0)).toBe(true);
    const mean = layer.weight.reduce((s, v) => s + v, 0) / layer.weight.length;
    const variance = layer.weight.reduce((s, v) => s + (v - mean) ** 2, 0) / layer.weight.length;
    expect(Math.abs(mean)).toBeLessThan(0.01 * Math.sqrt(expected) * 10);
    expect(variance / expected).toBeCloseTo(1, 1);
  });
  // initParameters fills whole layers in loops that keep the generator's state in locals; the
  // values must be those of the one-call-per-value methods, or every seeded model would change.
  it.each([0, 1, 7, 0x9e3779b9, 0xffffffff])('fillSymmetric and fillNormal give the values and state of uniform() and normal() calls (seed %i)', (seed) => {
    const bound = 0.0371;
    const a = new Rng(seed);
    const b = new Rng(seed);
    // Runs longer than the fills' buffer of 1024 uniforms (512 normals), with remainders.
    const fast = new Float32Array(3703);
    a.fillSymmetric(fast, 0, 2500, bound);
    a.fillNormal(fast, 2500, 3700, 1.7);
    a.fillSymmetric(fast, 3700, 3703, 3);
    const slow = new Float32Array(3703);
    for (let i = 0; i < 2500; i++) slow[i] = (2 * b.uniform() - 1) * bound;
    for (let i = 2500; i < 3700; i++) slow[i] = b.normal() * 1.7;
    for (let i = 3700; i < 3703; i++) slow[i] = (2 * b.uniform() - 1) * 3;
    expect(fast).toEqual(slow);
    for (let i = 0; i < 8; i++) expect(a.nextU32()).toBe(b.nextU32());
  });
});

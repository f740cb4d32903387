// Seeded, deterministic weight initialisers. The distributions match PyTorch's (the numbers
// cannot: PyTorch's generator is not ours), so a freshly made net trains like a fresh nn.Linear.

import { parameterLayout, type NormalizedSpec } from './spec.js';
import { allocFloat32 } from './validate.js';

/** xoshiro128** seeded through splitmix32: fast, small state, good enough statistics. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let x = seed >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    return (this.nextU32() * 2 ** 21 + (this.nextU32() >>> 11)) / 2 ** 53;
  }

  /** Standard normal via Box-Muller (one value per call; simple beats fast here). */
  normal(): number {
    const u1 = 1 - this.uniform();
    const u2 = this.uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** Uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * Fill a flat parameter vector.
 * - torch:          W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))   (nn.Linear.reset_parameters)
 * - xavier-uniform: W ~ U(+-sqrt(6/(fan_in+fan_out))), b = 0
 * - xavier-normal:  W ~ N(0, 2/(fan_in+fan_out)), b = 0
 * - he-uniform:     W ~ U(+-sqrt(6/fan_in)), b = 0             (kaiming, ReLU gain)
 * - he-normal:      W ~ N(0, 2/fan_in), b = 0
 */
export function initParameters(spec: NormalizedSpec): Float32Array {
  const { slots, count } = parameterLayout(spec);
  const params = allocFloat32('the parameters', count);
  const rng = new Rng(spec.seed);
  for (const slot of slots) {
    const fanIn = slot.inputs;
    // A gated layer is two Linear maps of the same input: each gets the usual bounds.
    const fanOut = slot.outputs;
    const nW = fanIn * slot.rows;
    let sampleW: () => number;
    let sampleB: (() => number) | null = null;
    switch (spec.init) {
      case 'torch': {
        const bound = 1 / Math.sqrt(fanIn);
        sampleW = () => (2 * rng.uniform() - 1) * bound;
        sampleB = sampleW;
        break;
      }
      case 'xavier-uniform': {
        const bound = Math.sqrt(6 / (fanIn + fanOut));
        sampleW = () => (2 * rng.uniform() - 1) * bound;
        break;
      }
      case 'xavier-normal': {
        const std = Math.sqrt(2 / (fanIn + fanOut));
        sampleW = () => rng.normal() * std;
        break;
      }
      case 'he-uniform': {
        const bound = Math.sqrt(6 / fanIn);
        sampleW = () => (2 * rng.uniform() - 1) * bound;
        break;
      }
      case 'he-normal': {
        const std = Math.sqrt(2 / fanIn);
        sampleW = () => rng.normal() * std;
        break;
      }
    }
    for (let i = 0; i < nW; i++) params[slot.weightOffset + i] = sampleW();
    if (slot.biasOffset >= 0 && sampleB) {
      for (let i = 0; i < slot.rows; i++) params[slot.biasOffset + i] = sampleB();
    }
  }
  return params;
}

// Seeded, deterministic weight initialisers. The distributions match PyTorch's (the numbers
// cannot: PyTorch's generator is not ours), so a freshly made net trains like a fresh nn.Linear.

import { parameterLayout, type NormalizedSpec } from './spec.js';
import { allocFloat32 } from './validate.js';
import { offerHugePages } from './huge-pages.js';

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

  /**
   * buf[0, count) = the next count uniform() values, and the state those calls leave. The
   * generator's state lives in locals for the loop: the calls, each reading and writing four
   * fields and boxing the uint32s, made a 67M-weight layer's initialisation ~3 s.
   */
  private uniforms(buf: Float64Array, count: number): void {
    let s0 = this.s0;
    let s1 = this.s1;
    let s2 = this.s2;
    let s3 = this.s3;
    for (let i = 0; i < count; i++) {
      // nextU32, twice, on int32 bit patterns (every step is a bit operation or Math.imul, so
      // the signedness of the locals never shows).
      let r = Math.imul(s1, 5);
      const hi = Math.imul((r << 7) | (r >>> 25), 9) >>> 0;
      let t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
      r = Math.imul(s1, 5);
      const lo = Math.imul((r << 7) | (r >>> 25), 9) >>> 11;
      t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
      buf[i] = (hi * 2 ** 21 + lo) / 2 ** 53;
    }
    this.s0 = s0 >>> 0;
    this.s1 = s1 >>> 0;
    this.s2 = s2 >>> 0;
    this.s3 = s3 >>> 0;
  }

  /** out[from, to) = (2 * uniform() - 1) * bound, the values and end state of as many calls. */
  fillSymmetric(out: Float32Array, from: number, to: number, bound: number): void {
    const buf = uniformScratch();
    for (let i0 = from; i0 < to; i0 += buf.length) {
      const count = Math.min(buf.length, to - i0);
      this.uniforms(buf, count);
      for (let i = 0; i < count; i++) out[i0 + i] = (2 * buf[i] - 1) * bound;
    }
  }

  /** out[from, to) = normal() * std, the values and end state of as many calls. */
  fillNormal(out: Float32Array, from: number, to: number, std: number): void {
    const buf = uniformScratch();
    const per = buf.length >> 1;
    for (let i0 = from; i0 < to; i0 += per) {
      const count = Math.min(per, to - i0);
      this.uniforms(buf, 2 * count);
      for (let i = 0; i < count; i++) out[i0 + i] = Math.sqrt(-2 * Math.log(1 - buf[2 * i])) * Math.cos(2 * Math.PI * buf[2 * i + 1]) * std;
    }
  }

  /** Uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}

let scratch: Float64Array | null = null;

/** The fills' buffer of uniforms: 1024 of them (8 KiB, in L1), shared, as JS is single-threaded. */
function uniformScratch(): Float64Array {
  scratch ??= new Float64Array(1024);
  return scratch;
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
  // Written here, in JavaScript (outputs are offered by the addon that fills them).
  const params = offerHugePages(allocFloat32('the parameters', count));
  const rng = new Rng(spec.seed);
  for (const slot of slots) {
    const fanIn = slot.inputs;
    // A gated layer is two Linear maps of the same input: each gets the usual bounds.
    const fanOut = slot.outputs;
    const w0 = slot.weightOffset;
    const w1 = w0 + fanIn * slot.rows;
    switch (spec.init) {
      case 'torch': {
        const bound = 1 / Math.sqrt(fanIn);
        rng.fillSymmetric(params, w0, w1, bound);
        if (slot.biasOffset >= 0) rng.fillSymmetric(params, slot.biasOffset, slot.biasOffset + slot.rows, bound);
        break;
      }
      case 'xavier-uniform':
        rng.fillSymmetric(params, w0, w1, Math.sqrt(6 / (fanIn + fanOut)));
        break;
      case 'xavier-normal':
        rng.fillNormal(params, w0, w1, Math.sqrt(2 / (fanIn + fanOut)));
        break;
      case 'he-uniform':
        rng.fillSymmetric(params, w0, w1, Math.sqrt(6 / fanIn));
        break;
      case 'he-normal':
        rng.fillNormal(params, w0, w1, Math.sqrt(2 / fanIn));
        break;
    }
  }
  return params;
}

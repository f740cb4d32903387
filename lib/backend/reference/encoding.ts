// Input encodings, row by row, in float64. Feature order is fixed by ModelConfig's comment in
// ../types.ts: [x] if includeInput, then per octave k: sin(2^k pi x) for every input, then cos.

import type { ModelConfig } from '../types.js';

/** The fields of a model's config the encoding reads (a QuantModelConfig has them too). */
export type EncodingConfig = Pick<ModelConfig, 'inputs' | 'encoding' | 'octaves' | 'includeInput'>;

export function encodedWidthOf(config: EncodingConfig): number {
  if (config.encoding === 0) return config.inputs;
  return (config.includeInput ? config.inputs : 0) + 2 * config.octaves * config.inputs;
}

/** enc[batch x width] from x[batch x inputs]. */
export function encode(config: EncodingConfig, x: ArrayLike<number>, batch: number, enc: Float64Array): void {
  const d = config.inputs;
  if (config.encoding === 0) {
    for (let i = 0; i < batch * d; i++) enc[i] = x[i];
    return;
  }
  const width = encodedWidthOf(config);
  for (let r = 0; r < batch; r++) {
    const xo = r * d;
    let o = r * width;
    if (config.includeInput) for (let i = 0; i < d; i++) enc[o++] = x[xo + i];
    for (let k = 0; k < config.octaves; k++) {
      const f = Math.PI * 2 ** k;
      for (let i = 0; i < d; i++) enc[o + i] = Math.sin(f * x[xo + i]);
      for (let i = 0; i < d; i++) enc[o + d + i] = Math.cos(f * x[xo + i]);
      o += 2 * d;
    }
  }
}

/** dx[batch x inputs] from dEnc[batch x width] (chain rule through the encoding). */
export function encodeBackward(
  config: EncodingConfig,
  x: ArrayLike<number>,
  batch: number,
  dEnc: Float64Array,
  dx: Float64Array,
): void {
  const d = config.inputs;
  if (config.encoding === 0) {
    for (let i = 0; i < batch * d; i++) dx[i] = dEnc[i];
    return;
  }
  const width = encodedWidthOf(config);
  for (let r = 0; r < batch; r++) {
    const xo = r * d;
    let o = r * width;
    for (let i = 0; i < d; i++) dx[xo + i] = config.includeInput ? dEnc[o + i] : 0;
    if (config.includeInput) o += d;
    for (let k = 0; k < config.octaves; k++) {
      const f = Math.PI * 2 ** k;
      for (let i = 0; i < d; i++) {
        const u = f * x[xo + i];
        dx[xo + i] += f * (dEnc[o + i] * Math.cos(u) - dEnc[o + d + i] * Math.sin(u));
      }
      o += 2 * d;
    }
  }
}

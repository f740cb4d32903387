// quantize's steps as onProgress sees them (QuantizeOptions.onProgress, .signal): one step per
// layer quantised, then, with calibration, one per layer calibrated. The signal is checked after
// every report (quantize checks it once before it starts), so an abort from inside onProgress
// stops the call right there, before the next step begins. onProgress's return value is
// ignored: an async callback's rejection is not seen.

import type { NormalizedQuantizeOptions, QuantizeProgress } from './options.js';

export interface QuantizeSteps {
  /** Reports a step done, then stops with the signal's reason if it has aborted. */
  done(stage: QuantizeProgress['stage'], layer: number): void;
}

export function quantizeSteps(opts: Pick<NormalizedQuantizeOptions, 'onProgress' | 'signal' | 'calibration'>, layers: number): QuantizeSteps {
  const { onProgress, signal } = opts;
  const start = performance.now();
  const steps = opts.calibration ? 2 * layers : layers;
  let step = 0;
  return {
    done(stage, layer) {
      step++;
      onProgress?.({ stage, layer, layers, step, steps, elapsedSeconds: (performance.now() - start) / 1000 });
      signal?.throwIfAborted();
    },
  };
}

// quantize's steps as onProgress sees them (QuantizeOptions.onProgress, .signal): one step per
// layer quantised; with calibration, one per layer calibrated, and one at the end for the
// quantised model run and measured end to end. That last step is a large share of a calibrated
// call (a 4096 -> 16384 int4 layer with 8192 rows: 8 s of 23 s), and without it the last report
// came long before the call returned. The clock starts when the call does. The signal is
// checked after every report (quantize checks it once before it starts), so an abort from inside
// onProgress stops the call right there, before the next step begins. onProgress's return value
// is ignored: an async callback's rejection is not seen.

import type { NormalizedQuantizeOptions, QuantizeProgress } from './options.js';

export interface QuantizeSteps {
  /**
   * Reports a step done, then stops with the signal's reason if it has aborted. layer: the layer
   * of a 'quantize' or 'calibrate' step; null for 'measure', which spans the model.
   */
  done(stage: QuantizeProgress['stage'], layer: number | null): void;
}

export function quantizeSteps(opts: Pick<NormalizedQuantizeOptions, 'onProgress' | 'signal' | 'calibration'>, layers: number): QuantizeSteps {
  const { onProgress, signal } = opts;
  const start = performance.now();
  const steps = opts.calibration !== null ? 2 * layers + 1 : layers;
  let step = 0;
  return {
    done(stage, layer) {
      step++;
      onProgress?.({ stage, layer, layers, step, steps, elapsedSeconds: (performance.now() - start) / 1000 });
      signal?.throwIfAborted();
    },
  };
}

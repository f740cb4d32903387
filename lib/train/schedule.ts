// Learning-rate schedules as pure functions of the step count (0-based), so a resumed or
// replayed run gets the same rates.

import { rangeError } from '../errors.js';
import { expectInteger, expectNumber, expectObject, expectOneOf, rejectUnknownKeys } from '../validate.js';

export type ScheduleOptions =
  | { type: 'constant' }
  | { type: 'step'; stepSize: number; gamma?: number }
  /**
   * lr to minLr over `steps` optimizer steps, then minLr (torch's CosineAnnealingLR would rise
   * again). Without `steps`, each fit() anneals over its own steps.
   */
  | { type: 'cosine'; steps?: number; minLr?: number };

/** The names each schedule type takes. */
export const SCHEDULE_KEYS = {
  constant: ['type'],
  step: ['type', 'stepSize', 'gamma'],
  cosine: ['type', 'steps', 'minLr'],
} as const;

export type Schedule = (baseLr: number, step: number, totalSteps: number | undefined) => number;

export function makeSchedule(value: unknown): { schedule: Schedule; needsTotal: boolean } {
  if (value === undefined) return { schedule: (lr) => lr, needsTotal: false };
  const o = expectObject('options.schedule', value);
  const type = expectOneOf('options.schedule.type', o.type, ['constant', 'step', 'cosine'] as const);
  rejectUnknownKeys('options.schedule', o, SCHEDULE_KEYS[type], `schedule type '${type}'`);
  if (type === 'constant') return { schedule: (lr) => lr, needsTotal: false };
  if (type === 'step') {
    const stepSize = expectInteger('options.schedule.stepSize', o.stepSize, 1);
    const gamma = o.gamma === undefined ? 0.1 : expectNumber('options.schedule.gamma', o.gamma, { min: 0 });
    return { schedule: (lr, t) => lr * gamma ** Math.floor(t / stepSize), needsTotal: false };
  }
  const fixed = o.steps === undefined ? undefined : expectInteger('options.schedule.steps', o.steps, 1);
  const minLr = o.minLr === undefined ? 0 : expectNumber('options.schedule.minLr', o.minLr, { min: 0 });
  return {
    needsTotal: fixed === undefined,
    schedule: (lr, t, total) => {
      const T = fixed ?? total;
      if (T === undefined) {
        throw rangeError('options.schedule.steps is required for a cosine schedule when step() runs before any fit() (fit() anneals over its own steps)');
      }
      const progress = Math.min(t, T) / T;
      return minLr + ((lr - minLr) * (1 + Math.cos(Math.PI * progress))) / 2;
    },
  };
}

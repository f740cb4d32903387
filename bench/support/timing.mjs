// Median time per call, as bench/run.mjs always measured it: calls are grouped in rounds of at
// least 2 ms (so timer resolution and per-round overhead vanish even for microsecond calls),
// rounds repeat until the budget is spent (and at least MIN_ROUNDS ran), and the median round
// is reported: robust to the odd descheduling on a 2-core machine shared with builds.

import { usageError } from './args.mjs';

const ROUND_MS = 2;
const MIN_ROUNDS = 5;
const MAX_ROUNDS = 2000;

export function medianOf(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}

/**
 * Median microseconds per call of a synchronous `fn`, after one warm-up call unless told not to,
 * over at least `minRounds` rounds.
 */
export function medianUs(fn, budgetMs, { warmup = true, minRounds = MIN_ROUNDS } = {}) {
  if (warmup) fn();
  const times = [];
  const start = performance.now();
  while ((performance.now() - start < budgetMs || times.length < minRounds) && times.length < MAX_ROUNDS) {
    const t0 = performance.now();
    let reps = 0;
    do {
      fn();
      reps++;
    } while (performance.now() - t0 < ROUND_MS);
    times.push(((performance.now() - t0) * 1000) / reps);
  }
  return medianOf(times);
}

/** The same for an async `fn`: each call is awaited before the next starts (latency, not overlap). */
export async function medianUsAsync(fn, budgetMs, { warmup = true, minRounds = MIN_ROUNDS } = {}) {
  if (warmup) await fn();
  const times = [];
  const start = performance.now();
  while ((performance.now() - start < budgetMs || times.length < minRounds) && times.length < MAX_ROUNDS) {
    const t0 = performance.now();
    let reps = 0;
    do {
      await fn();
      reps++;
    } while (performance.now() - t0 < ROUND_MS);
    times.push(((performance.now() - t0) * 1000) / reps);
  }
  return medianOf(times);
}

/** The --seconds option as a per-cell budget in milliseconds (a positive number, else a usage error). */
export function budgetFromSeconds(raw) {
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0) usageError(`--seconds must be a positive number, got '${raw}'`);
  return seconds * 1000;
}

/**
 * Microseconds per call of each contender ({ run, isAsync }), timed in `passes` passes that
 * alternate between them (budgetMs / passes each per pass; the machine's load drifts over a
 * run, and alternating spreads the drift over all of them): per contender, each pass's median.
 * Each pass times at least `minRounds` rounds (calls of 100 ms and more would otherwise spend
 * MIN_ROUNDS of them per pass, far over the budget). `settleMs` idles between contenders: a
 * thread pool that spins after its call (onnxruntime's does) would otherwise take a core from
 * the next contender (measured: mlpkit float32 at 2x its time right after onnxruntime).
 */
export async function interleavedPasses(contenders, budgetMs, passes, { warmup = true, minRounds = MIN_ROUNDS, settleMs = 0 } = {}) {
  const per = contenders.map(() => []);
  for (let pass = 0; pass < passes; pass++) {
    for (const [i, c] of contenders.entries()) {
      if (settleMs > 0) await new Promise((resolve) => setTimeout(resolve, settleMs));
      const options = { warmup: warmup && pass === 0, minRounds };
      per[i].push(c.isAsync ? await medianUsAsync(c.run, budgetMs / passes, options) : medianUs(c.run, budgetMs / passes, options));
    }
  }
  return per;
}

/** interleavedPasses, then the median of each contender's pass medians. */
export async function interleavedMedians(contenders, budgetMs, passes) {
  return (await interleavedPasses(contenders, budgetMs, passes)).map(medianOf);
}

/**
 * The median over passes of a's time over b's in the same pass (from interleavedPasses): the
 * two measured seconds apart, so a drift in the machine's load cancels out of each ratio.
 */
export function pairedRatio(a, b) {
  return medianOf(a.map((t, i) => t / b[i]));
}

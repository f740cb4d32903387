// Small timing helpers for the demo's predict benchmarks.

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Time `fn` call by call: `warmup` untimed calls, then `runs` timed ones, stopping
 * early once `maxMs` of timed calls have passed (but never before `minRuns`).
 * Returns { medianMs, runs }.
 */
export function timeCalls(fn, { warmup = 10, runs = 1000, minRuns = 3, maxMs = Infinity } = {}) {
  for (let i = 0; i < warmup; i++) fn();
  const times = [];
  const start = performance.now();
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (times.length >= minRuns && performance.now() - start > maxMs) break;
  }
  return { medianMs: median(times), runs: times.length };
}

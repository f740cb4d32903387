// Load runs with autocannon: N keep-alive connections posting the same request for a fixed
// time. autocannon's own latency histogram has 1 ms resolution, too coarse for ~100 us requests,
// so every response time (fractional ms, from its 'response' event) is kept here instead, and
// runs of the same cell can be pooled (bench/serve.mjs alternates the servers' order in rounds,
// so a noisy moment on a shared machine does not land on one server only).

import autocannon from 'autocannon';

/** One run: { times (ms of each 2xx response), seconds (measured), statuses: { code: count }, timeouts, errors }. */
export async function load({ url, connections, seconds, body, headers = { 'content-type': 'application/json' }, timeoutSeconds = 10 }) {
  let times = new Float64Array(1 << 16);
  let n = 0;
  const statuses = {};
  const instance = autocannon({ url, connections, duration: seconds, method: 'POST', headers, body, timeout: timeoutSeconds });
  instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
    statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
    if (statusCode < 200 || statusCode >= 300) return;
    if (n === times.length) {
      const grown = new Float64Array(times.length * 2);
      grown.set(times);
      times = grown;
    }
    times[n++] = responseTimeMs;
  });
  const t0 = performance.now();
  const result = await instance;
  // The measured length: autocannon rounds the duration to whole timer ticks.
  const elapsed = (performance.now() - t0) / 1000;
  return { times: times.slice(0, n), seconds: elapsed, statuses, timeouts: result.timeouts, errors: result.errors };
}

function percentile(sorted, p) {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/** Pools runs into { ok, rps, p50Us, p99Us, statuses, timeouts, errors } (rps and latencies: 2xx only). */
export function summarize(runs) {
  const list = Array.isArray(runs) ? runs : [runs];
  const all = new Float64Array(list.reduce((k, r) => k + r.times.length, 0));
  let at = 0;
  const statuses = {};
  let timeouts = 0;
  let errors = 0;
  let seconds = 0;
  for (const r of list) {
    all.set(r.times, at);
    at += r.times.length;
    for (const [code, count] of Object.entries(r.statuses)) statuses[code] = (statuses[code] ?? 0) + count;
    timeouts += r.timeouts;
    errors += r.errors;
    seconds += r.seconds;
  }
  all.sort();
  return { ok: all.length, rps: all.length / seconds, p50Us: percentile(all, 0.5) * 1000, p99Us: percentile(all, 0.99) * 1000, statuses, timeouts, errors };
}

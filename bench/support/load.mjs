// Load runs: N keep-alive connections posting the same request for a fixed time, from wrk when
// it is installed (apt-get install wrk) and from autocannon otherwise.
//
// Why wrk first: on a 2-core machine the load generator shares the cores with the server it
// measures. autocannon spends ~30 us of CPU per request here, as much as a node:http server,
// so at 16-64 connections it, not the server, set the pace: the bare constant server and
// onnxruntime's came out 1.5x apart under autocannon and 2.6x apart under wrk (~15 us per
// request, most of it the kernel's loopback TCP). The bench reports which generator it used.
//
// Latencies are kept as weighted microsecond values (from wrk, 1000 quantiles of its own
// histogram; from autocannon, every response time from its 'response' event, since its
// histogram has 1 ms resolution), so runs of the same cell can be pooled (bench/serve.mjs alternates the servers' order in rounds,
// so a noisy moment on a shared machine does not land on one server only).

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const WRK_SCRIPT = String.raw`
local body = assert(io.open(os.getenv("MLPKIT_WRK_BODY"), "rb"))
wrk.method = "POST"
wrk.body = body:read("*a")
body:close()
for name, value in string.gmatch(os.getenv("MLPKIT_WRK_HEADERS"), "([^\n:]+): ([^\n]*)") do wrk.headers[name] = value end

local threads = {}
function setup(thread) table.insert(threads, thread) end

-- Counting statuses makes wrk parse every answer in Lua: only when asked (overload runs).
if os.getenv("MLPKIT_WRK_STATUSES") == "1" then
  statuses = {}
  function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
end

function done(summary, latency, requests)
  -- The latency distribution as 1000 quantiles, the middles of equal slices of 0.1% (wrk 4.1,
  -- as Debian ships it, gives its histogram to scripts only through percentile()).
  local quantiles = {}
  for i = 0, 999 do quantiles[#quantiles + 1] = latency:percentile((i + 0.5) / 10) end
  local codes = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    if s then for code, count in pairs(s) do codes[#codes + 1] = '"' .. code .. '":' .. count end end
  end
  local e = summary.errors
  io.write(string.format('MLPKIT_WRK {"requests":%d,"durationUs":%d,"statusErrors":%d,"timeouts":%d,"socketErrors":%d,"statuses":{%s},"quantiles":[%s]}\n',
    summary.requests, summary.duration, e.status, e.timeout, e.connect + e.read + e.write, table.concat(codes, ","), table.concat(quantiles, ",")))
end
`;

let wrkFound;
/** Whether wrk is on the PATH. */
export function hasWrk() {
  wrkFound ??= !spawnSync('wrk', ['--version'], { stdio: 'ignore' }).error;
  return wrkFound;
}

/** The generator load() uses: MLPKIT_LOAD_GENERATOR=wrk|autocannon, else wrk when installed. */
export function loadGenerator() {
  const asked = process.env.MLPKIT_LOAD_GENERATOR;
  if (asked !== undefined && asked !== 'wrk' && asked !== 'autocannon') {
    throw new RangeError(`MLPKIT_LOAD_GENERATOR must be wrk or autocannon, got '${asked}'`);
  }
  if (asked === 'wrk' && !hasWrk()) throw new Error('MLPKIT_LOAD_GENERATOR=wrk but wrk is not on the PATH (apt-get install wrk)');
  return asked ?? (hasWrk() ? 'wrk' : 'autocannon');
}

/**
 * One run: { latency: { us: Float64Array, count: Float64Array } (every answer for wrk, 2xx only
 * for autocannon), ok (2xx answers), seconds (measured), statuses: { code: count }, timeouts, errors }.
 * countStatuses: split the answers by status code (wrk: costs generator CPU; autocannon always does).
 */
export async function load({ url, connections, seconds, body, headers = { 'content-type': 'application/json' }, timeoutSeconds = 10, countStatuses = false }) {
  return loadGenerator() === 'wrk'
    ? loadWrk({ url, connections, seconds, body, headers, timeoutSeconds, countStatuses })
    : loadAutocannon({ url, connections, seconds, body, headers, timeoutSeconds });
}

async function loadWrk({ url, connections, seconds, body, headers, timeoutSeconds, countStatuses }) {
  const dir = mkdtempSync(join(tmpdir(), 'mlpkit-wrk-'));
  try {
    writeFileSync(join(dir, 'body'), body);
    writeFileSync(join(dir, 'run.lua'), WRK_SCRIPT);
    const env = {
      ...process.env,
      MLPKIT_WRK_BODY: join(dir, 'body'),
      MLPKIT_WRK_HEADERS: Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\n'),
      MLPKIT_WRK_STATUSES: countStatuses ? '1' : '0',
    };
    // One thread: the servers under test need the other core.
    const args = ['-t1', `-c${connections}`, `-d${Math.max(1, Math.round(seconds))}s`, `--timeout`, `${timeoutSeconds}s`, '-s', join(dir, 'run.lua'), url];
    const { code, stdout, stderr } = await run('wrk', args, env);
    const line = stdout.split('\n').find((l) => l.startsWith('MLPKIT_WRK '));
    if (code !== 0 || !line) throw new Error(`wrk ${args.join(' ')} failed (exit ${code}): ${stderr.trim() || stdout.trim()}`);
    const r = JSON.parse(line.slice('MLPKIT_WRK '.length));
    // Each quantile stands for an equal share of the answers.
    const share = r.requests / r.quantiles.length;
    const statuses = countStatuses ? r.statuses : { 200: r.requests - r.statusErrors, ...(r.statusErrors ? { 'non-2xx': r.statusErrors } : {}) };
    return {
      latency: { us: Float64Array.from(r.requests ? r.quantiles : []), count: new Float64Array(r.requests ? r.quantiles.length : 0).fill(share) },
      ok: r.requests - r.statusErrors,
      seconds: r.durationUs / 1e6,
      statuses,
      timeouts: r.timeouts,
      errors: r.socketErrors,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function run(command, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function loadAutocannon({ url, connections, seconds, body, headers, timeoutSeconds }) {
  const { default: autocannon } = await import('autocannon');
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
    times[n++] = responseTimeMs * 1000;
  });
  const t0 = performance.now();
  const result = await instance;
  // The measured length: autocannon rounds the duration to whole timer ticks.
  const elapsed = (performance.now() - t0) / 1000;
  return { latency: { us: times.slice(0, n), count: new Float64Array(n).fill(1) }, ok: n, seconds: elapsed, statuses, timeouts: result.timeouts, errors: result.errors };
}

/** The value below which a fraction p of the pooled answers fall. */
function percentile(us, count, total, p) {
  if (total === 0) return NaN;
  const order = Array.from(us.keys()).sort((a, b) => us[a] - us[b]);
  const want = Math.min(total - 1, Math.floor(p * total));
  let seen = 0;
  for (const i of order) {
    seen += count[i];
    if (seen > want) return us[i];
  }
  return us[order[order.length - 1]];
}

/** Pools runs into { ok, rps, p50Us, p99Us, statuses, timeouts, errors } (rps: 2xx answers). */
export function summarize(runs) {
  const list = Array.isArray(runs) ? runs : [runs];
  const size = list.reduce((k, r) => k + r.latency.us.length, 0);
  const us = new Float64Array(size);
  const count = new Float64Array(size);
  let at = 0;
  const statuses = {};
  let ok = 0;
  let timeouts = 0;
  let errors = 0;
  let seconds = 0;
  for (const r of list) {
    us.set(r.latency.us, at);
    count.set(r.latency.count, at);
    at += r.latency.us.length;
    for (const [code, c] of Object.entries(r.statuses)) statuses[code] = (statuses[code] ?? 0) + c;
    ok += r.ok;
    timeouts += r.timeouts;
    errors += r.errors;
    seconds += r.seconds;
  }
  const total = count.reduce((a, b) => a + b, 0);
  return { ok, rps: ok / seconds, p50Us: percentile(us, count, total, 0.5), p99Us: percentile(us, count, total, 0.99), statuses, timeouts, errors };
}

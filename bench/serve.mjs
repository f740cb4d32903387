// Load test of mlpkit's inference server (issue #8): the demo model 32-64x4-16 ReLU served by
//   - mlpkit serve, micro-batching on (the default) and off,
//   - onnxruntime-node behind a minimal node:http server, one session.run per request
//     (bench/support/ort-server.mjs: same model, same JSON format, same decoder and encoder),
//   - a bare node:http server answering a constant body of the same size (the latency floor),
//   - mlpkit serve --workers 2 and the onnxruntime server in 2 processes (both cores),
// each in its own process(es), loaded by wrk (or autocannon where wrk is not installed:
// bench/support/load.mjs) with 1, 16, 64 and 256 keep-alive connections posting one row as JSON. Then overload runs: 1024 connections against mlpkit
// serve with its default queue bound and with a bound below the connection count, watching its
// memory, the 503s and timeouts, with runs at 16 connections before and after to see it
// recover. Last, a wider model (512-2048-2048-16, where one row costs ~1 ms of weights to read)
// at 64 connections, where merging requests pays. Every server's answer is checked against
// mlpkit's predict before timing.
//
// Prints markdown to stdout (progress to stderr) and writes bench/results/serve.md and serve.svg.
//
// The issue's 64-connection target is then measured once more as paired rounds: mlpkit (one
// process, --workers 2 and --node-http), the onnxruntime server, the node:http constant server
// and a node:net one (bench/support/net-constant-server.mjs: the ceiling of any server on Node's
// sockets) loaded one after another, round after round in rotating order, the ratio taken per round and its median
// reported. Why: this shared VM's speed drifts by 1.5x within a minute, so two servers timed a
// minute apart (the table above) can differ by that much for no reason of their own.
//
//   node bench/serve.mjs [--seconds S] [--rounds N] [--only latency,overload,wide,paired] [--no-write]

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs, usageError } from './support/args.mjs';
import { Mlp, info } from '../dist/index.js';
import { groupedBarChartSvg } from './support/bar-chart.mjs';
import { startServer } from './support/child-server.mjs';
import { cpuName } from './support/cpu.mjs';
import { randomFloats } from './support/data.mjs';
import { load, loadGenerator, summarize } from './support/load.mjs';
import { formatRate } from './support/report.mjs';
import { budgetFromSeconds } from './support/timing.mjs';

const USAGE = `Usage: node bench/serve.mjs [--seconds S] [--rounds N] [--only LIST] [--no-write]
  --seconds S   time per measured cell, whole seconds (default 4: the whole bench then takes ~4 minutes)
  --rounds N    paired rounds of 2 s per server for the 64-connection target (default 10)
  --only LIST   some of latency, overload, wide, paired (default all four)
  --no-write    print only; do not write bench/results/serve.md and serve.svg
  --help`;

const { values: args } = benchArgs(USAGE, {
  options: {
    seconds: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '10' },
    only: { type: 'string', default: 'latency,overload,wide,paired' },
    'no-write': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
// autocannon runs whole seconds; a cell is two runs of half the time.
const seconds = Math.max(2, 2 * Math.round(budgetFromSeconds(args.seconds) / 2000));
const only = new Set(args.only.split(',').map((s) => s.trim()));
const PARTS = ['latency', 'overload', 'wide', 'paired'];
const rounds = Number(args.rounds);
if (!Number.isInteger(rounds) || rounds < 1) usageError(`--rounds must be a positive integer, got '${args.rounds}'`);
const PAIRED_CONNECTIONS = 64;
const PAIRED_SECONDS = 2;
for (const part of only) if (!PARTS.includes(part)) usageError(`--only: unknown part '${part}' (expected some of ${PARTS.join(', ')})`);

const CONCURRENCY = [1, 16, 64, 256];
const OVERLOAD_CONNECTIONS = 1024;
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const progress = (text) => process.stderr.write(`${text}\n`);
/** "wrk 4.1.0": wrk -v prints its version and usage, and exits 1. */
function wrkVersion() {
  try {
    return execFileSync('wrk', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0].split(' [')[0];
  } catch (err) {
    return String(err.stdout ?? 'wrk').split('\n')[0].split(' [')[0].trim() || 'wrk';
  }
}

const dir = mkdtempSync(join(tmpdir(), 'mlpkit-serve-bench-'));
const cli = join(repoRoot, 'dist', 'cli', 'main.js');
const support = (name) => join(repoRoot, 'bench', 'support', name);

/** A model saved for the servers, one JSON request row and the answer mlpkit's predict gives. */
function prepareModel(name, inputs, hidden, outputs, seed) {
  const net = new Mlp({ inputs, layers: hidden.map((units) => ({ units, activation: 'relu' })).concat([{ units: outputs }]), seed });
  const path = join(dir, `${name}.safetensors`);
  net.saveSync(path);
  const row = randomFloats(inputs, seed + 7);
  const want = net.predict(row);
  net.dispose();
  return { name, path, body: JSON.stringify({ inputs: [Array.from(row)] }), want, answer: JSON.stringify({ outputs: [Array.from(want)] }) };
}

// One thread per server: the load generator needs the other core of a 2-core machine, and at
// one row per request neither mlpkit nor onnxruntime has work to share out.
function targets(model, serveFlags = []) {
  const serve = (extra) => [cli, 'serve', `demo=${model.path}`, '--port', '0', '--threads', '1', ...serveFlags, ...extra];
  return [
    { key: 'batching', label: 'mlpkit serve (batching)', color: '#08519c', args: serve([]), path: '/v1/models/demo/predict' },
    { key: 'nobatch', label: 'mlpkit serve (no batching)', color: '#6baed6', args: serve(['--no-batching']), path: '/v1/models/demo/predict' },
    // Every request through node:http, as before the direct path (lib/server/direct-http.ts).
    { key: 'nodehttp', label: 'mlpkit serve --node-http (batching)', color: '#9ecae1', args: serve(['--node-http']), path: '/v1/models/demo/predict' },
    // The TypeScript direct path alone, without the native socket path (lib/server/socket-path.ts).
    { key: 'tshttp', label: 'mlpkit serve --no-native-http (batching)', color: '#4292c6', args: serve(['--no-native-http']), path: '/v1/models/demo/predict' },
    { key: 'ort', label: 'onnxruntime-node (run per request)', color: '#d94801', args: [support('ort-server.mjs'), '--model', model.path, '--threads', '1'], path: '' },
    // Both cores: two processes of each server sharing the port (node:cluster).
    { key: 'batching2', label: 'mlpkit serve --workers 2 (batching)', color: '#41ab5d', args: serve(['--workers', '2']), path: '/v1/models/demo/predict', workers: 2 },
    { key: 'ort2', label: 'onnxruntime-node, 2 processes', color: '#fdae6b', args: [support('ort-server.mjs'), '--model', model.path, '--threads', '1', '--workers', '2'], path: '', workers: 2 },
    { key: 'constant', label: 'node:http constant (floor)', color: '#969696', args: [support('constant-server.mjs'), '--response', model.answer], path: '' },
  ];
}

// The demo model of the README's benchmarks, and a wider one whose rows cost ~1 ms each alone.
const demo = prepareModel('demo', 32, [64, 64, 64, 64], 16, 1);
const wide = prepareModel('wide', 512, [2048, 2048], 16, 2);
const TARGETS = targets(demo);
// Only in the paired rounds: the ceiling of a server on node:net sockets (see its file).
const NET_FLOOR = { key: 'netconst', label: 'node:net constant (socket ceiling)', color: '#525252',
  args: [support('net-constant-server.mjs'), '--response', demo.answer], path: '' };

/**
 * Three requests, each answered like mlpkit's predict (the constant server answers exactly that):
 * more than one, since a server's later requests can take other paths than its first (pooled
 * buffers at other offsets, a warmed-up decoder).
 */
async function checkAnswer(target, url, model) {
  for (let k = 0; k < 3; k++) await checkOneAnswer(target, url, model);
}

async function checkOneAnswer(target, url, { body, want }) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${target.label}: status ${res.status}: ${text}`);
  const got = Float32Array.from(JSON.parse(text).outputs.flat());
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  if (!(diff / scale <= 1e-5)) throw new Error(`${target.label}: answers ${got.slice(0, 3)} ... instead of ${want.slice(0, 3)} ...`);
}

const us = (v) => (Number.isFinite(v) ? (v >= 10_000 ? `${(v / 1000).toFixed(1)} ms` : `${v.toFixed(0)} us`) : '-');
const mib = (b) => (b === null ? '-' : `${(b / 2 ** 20).toFixed(0)} MiB`);
const statusText = (s) => Object.entries(s).map(([code, count]) => `${code}: ${count}`).join(', ') || 'none';

/**
 * Starts each server of `list` (into `running`, for the caller to stop), checks its answer, and
 * warms it up; returns the ones that run. A server that fails to start is noted and left out.
 */
async function startAll(model, list, running, notes) {
  for (const target of list) {
    try {
      const server = await startServer(target.label, target.args);
      running.push({ target, server, url: server.url + target.path });
      await checkAnswer(target, server.url + target.path, model);
    } catch (err) {
      notes.push(`${target.label}: not run (${err.message.split('\n')[0]})`);
      progress(`${target.label}: not run: ${err.message}`);
    }
  }
  const live = running.filter((r) => !notes.some((n) => n.startsWith(r.target.label)));
  for (const { url } of live) await load({ url, connections: 16, seconds: Math.min(1, seconds), body: model.body }); // warm-up: JIT, connections
  return live;
}

/**
 * Every server of `list` started at once, then per connection count two rounds of half the time
 * each, in opposite orders, pooled: on a shared machine the noise then falls on all of them.
 */
async function latencyRuns(model, list, concurrency) {
  const results = new Map(); // `${key}:${connections}` -> summarize() of the pooled runs
  const notes = [];
  const body = model.body;
  const running = [];
  try {
    const live = await startAll(model, list, running, notes);
    for (const connections of concurrency) {
      const runs = new Map(live.map((r) => [r.target.key, []]));
      for (const order of [live, [...live].reverse()]) {
        for (const { target, url } of order) runs.get(target.key).push(await load({ url, connections, seconds: seconds / 2, body }));
      }
      for (const { target } of live) {
        const r = summarize(runs.get(target.key));
        results.set(`${target.key}:${connections}`, r);
        const bad = Object.entries(r.statuses).filter(([c]) => c !== '200');
        progress(`  ${target.label}, ${connections} connections: ${formatRate(r.rps)} req/s, p50 ${us(r.p50Us)}, p99 ${us(r.p99Us)}` +
          `${bad.length || r.errors ? ` (other answers: ${statusText(Object.fromEntries(bad))}; errors ${r.errors})` : ''}`);
      }
    }
  } finally {
    for (const { server } of running) await server.stop();
  }
  return { results, notes };
}

/**
 * The 64-connection target as paired rounds: each round loads every server of `list` for
 * PAIRED_SECONDS, in an order rotated from round to round; per round, each server's throughput
 * over the onnxruntime server's. Returns per key the pooled run (latency over all rounds) and
 * the per-round ratios, sorted.
 */
async function pairedRuns(model, list, n) {
  const notes = [];
  const running = [];
  const runs = new Map();
  const ratios = new Map();
  try {
    const live = await startAll(model, list, running, notes);
    for (const { target } of live) {
      runs.set(target.key, []);
      ratios.set(target.key, []);
    }
    for (let round = 0; round < n; round++) {
      const order = live.map((_, k) => live[(k + round) % live.length]);
      const rps = new Map();
      for (const { target, url } of order) {
        const r = await load({ url, connections: PAIRED_CONNECTIONS, seconds: PAIRED_SECONDS, body: model.body });
        runs.get(target.key).push(r);
        rps.set(target.key, summarize(r).rps);
      }
      const ort = rps.get('ort');
      if (ort) for (const [key, v] of rps) ratios.get(key).push(v / ort);
      progress(`  round ${round + 1}/${n}: ${[...rps].map(([key, v]) => `${key} ${formatRate(v)}`).join(', ')} req/s`);
    }
  } finally {
    for (const { server } of running) await server.stop();
  }
  const out = new Map();
  // byRound keeps the rounds' order, so two servers' ratios can be divided round by round.
  for (const [key, list] of runs) out.set(key, { pooled: summarize(list), byRound: [...ratios.get(key)], ratios: ratios.get(key).sort((a, b) => a - b) });
  return { results: out, notes };
}

async function overloadRun(serveFlags) {
  const target = targets(demo, serveFlags)[0];
  const body = demo.body;
  const server = await startServer(target.label, target.args);
  const url = server.url + target.path;
  const rss = [];
  const sampler = setInterval(() => rss.push(server.rssBytes()), 250);
  try {
    await checkAnswer(target, url, demo);
    const before = summarize(await load({ url, connections: 16, seconds, body }));
    const rssBefore = server.rssBytes();
    progress(`  overload ${serveFlags.join(' ') || '(defaults)'}: before, 16 connections: ${formatRate(before.rps)} req/s, p99 ${us(before.p99Us)}, RSS ${mib(rssBefore)}`);
    const from = rss.length;
    const during = summarize(await load({ url, connections: OVERLOAD_CONNECTIONS, seconds: 2 * seconds, body, countStatuses: true }));
    const samples = rss.slice(from).filter((v) => v !== null);
    const peak = samples.length ? Math.max(...samples) : null;
    progress(`  overload: ${OVERLOAD_CONNECTIONS} connections: ${formatRate(during.rps)} req/s, answers ${statusText(during.statuses)}, ` +
      `timeouts ${during.timeouts}, errors ${during.errors}, peak RSS ${mib(peak)}`);
    const after = summarize(await load({ url, connections: 16, seconds, body }));
    const rssAfter = server.rssBytes();
    const alive = server.alive();
    progress(`  overload: after, 16 connections: ${formatRate(after.rps)} req/s, p99 ${us(after.p99Us)}, RSS ${mib(rssAfter)}, server ${alive ? 'alive' : 'DEAD'}`);
    return { flags: serveFlags, before, during, after, rssBefore, peak, rssAfter, alive };
  } finally {
    clearInterval(sampler);
    await server.stop();
  }
}

function latencyTable(results, list, concurrency) {
  const lines = [
    '| server | connections | throughput (req/s) | p50 | p99 |',
    '|---|---:|---:|---:|---:|',
  ];
  for (const t of list) {
    for (const c of concurrency) {
      const r = results.get(`${t.key}:${c}`);
      if (r) lines.push(`| ${t.label} | ${c} | ${formatRate(r.rps)} | ${us(r.p50Us)} | ${us(r.p99Us)} |`);
    }
  }
  return lines.join('\n');
}

function overloadTable(o) {
  const row = (phase, connections, r, rss) =>
    `| ${phase} | ${connections} | ${formatRate(r.rps)} | ${us(r.p50Us)} | ${us(r.p99Us)} | ${statusText(r.statuses)} | ${r.timeouts} | ${r.errors} | ${rss} |`;
  return [
    '| phase | connections | throughput (2xx/s) | p50 | p99 | answers | timeouts | errors | RSS |',
    '|---|---:|---:|---:|---:|---|---:|---:|---:|',
    row('before', 16, o.before, mib(o.rssBefore)),
    row('overload', OVERLOAD_CONNECTIONS, o.during, `peak ${mib(o.peak)}`),
    row('after', 16, o.after, mib(o.rssAfter)),
  ].join('\n');
}

const median = (sorted) => (sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2);
/** "2.42x (rounds 2.15-2.92x)" from sorted per-round ratios. */
const ratiosText = (sorted) => `${median(sorted).toFixed(2)}x (rounds ${sorted[0].toFixed(2)}-${sorted.at(-1).toFixed(2)}x)`;

function targetRows(results, overloads, paired) {
  const get = (key, c) => results?.get(`${key}:${c}`);
  const rows = [];
  const mine = paired?.get('batching');
  const ort = paired?.get('ort');
  if (mine && ort && mine.ratios.length) {
    const ratio = median(mine.ratios);
    rows.push([`64 connections: throughput >= 3x the onnxruntime server, at <= its p99 (median of ${mine.ratios.length} paired rounds)`,
      `${ratiosText(mine.ratios)}; p99 ${us(mine.pooled.p99Us)} vs ${us(ort.pooled.p99Us)}`,
      ratio >= 3 && mine.pooled.p99Us <= ort.pooled.p99Us ? 'PASS' : 'FAIL']);
    const floor = paired.get('constant');
    if (floor?.ratios.length) {
      rows.push(['(bound) the bare node:http constant server vs the onnxruntime server, same rounds',
        `${ratiosText(floor.ratios)}: a node:http server doing nothing`, 'info']);
      const share = mine.byRound.map((r, k) => r / floor.byRound[k]).sort((a, b) => a - b);
      rows.push(['mlpkit serve vs that constant server, same rounds',
        `${share.length ? ratiosText(share) : 'n/a'}`, 'info']);
    }
    const socketFloor = paired.get('netconst');
    if (socketFloor?.ratios.length) {
      rows.push(['(bound) a node:net server answering a constant (request framing only), same rounds',
        `${ratiosText(socketFloor.ratios)}: the most any server on node:net sockets reaches here`, 'info']);
      const share = mine.byRound.map((r, k) => r / socketFloor.byRound[k]).sort((a, b) => a - b);
      rows.push(['mlpkit serve vs that node:net server, same rounds', `${share.length ? ratiosText(share) : 'n/a'}`, 'info']);
    }
    const viaTs = paired.get('tshttp');
    if (viaTs?.ratios.length) {
      const gain = mine.byRound.map((r, k) => r / viaTs.byRound[k]).sort((a, b) => a - b);
      rows.push(['mlpkit serve (native socket path) vs mlpkit serve --no-native-http (the TypeScript direct path), same rounds',
        `${gain.length ? ratiosText(gain) : 'n/a'}; --no-native-http alone: ${ratiosText(viaTs.ratios)} of onnxruntime`, 'info']);
    }
    const viaNode = paired.get('nodehttp');
    if (viaNode?.ratios.length) {
      const gain = mine.byRound.map((r, k) => r / viaNode.byRound[k]).sort((a, b) => a - b);
      rows.push(['mlpkit serve vs mlpkit serve --node-http (every request through node:http), same rounds',
        `${gain.length ? ratiosText(gain) : 'n/a'}; --node-http alone: ${ratiosText(viaNode.ratios)} of onnxruntime`, 'info']);
    }
    const both = paired.get('batching2');
    if (both?.ratios.length) {
      rows.push(['mlpkit serve --workers 2 (both cores) vs the one-process onnxruntime server, same rounds',
        `${ratiosText(both.ratios)}; p99 ${us(both.pooled.p99Us)} vs ${us(ort.pooled.p99Us)}`, 'info']);
    }
  }
  const mine64 = get('batching', 64);
  const ort64 = get('ort', 64);
  if (mine64 && ort64) {
    const ratio = mine64.rps / ort64.rps;
    rows.push(['64 connections, the table above (one cell each, timed up to a minute apart)',
      `${ratio.toFixed(2)}x (${formatRate(mine64.rps)} vs ${formatRate(ort64.rps)} req/s); p99 ${us(mine64.p99Us)} vs ${us(ort64.p99Us)}`, 'info']);
  }
  const both64 = get('batching2', 64);
  const ortBoth64 = get('ort2', 64);
  if (both64 && ortBoth64) {
    rows.push(['64 connections, both cores: mlpkit serve --workers 2 vs onnxruntime in 2 processes',
      `${(both64.rps / ortBoth64.rps).toFixed(2)}x (${formatRate(both64.rps)} vs ${formatRate(ortBoth64.rps)} req/s); p99 ${us(both64.p99Us)} vs ${us(ortBoth64.p99Us)}`, 'info']);
  }
  const mine1 = get('batching', 1);
  const floor1 = get('constant', 1);
  if (mine1 && floor1) {
    const ratio = mine1.p50Us / floor1.p50Us;
    rows.push(['1 connection: p50 within 2x of the bare constant server', `${ratio.toFixed(2)}x (${us(mine1.p50Us)} vs ${us(floor1.p50Us)})`, ratio <= 2 ? 'PASS' : 'FAIL']);
  }
  for (const o of overloads) {
    const setting = o.flags.length ? o.flags.join(' ') : 'defaults';
    const grew = o.peak !== null && o.rssBefore !== null ? o.peak - o.rssBefore : null;
    rows.push([`overload, ${setting}: bounded memory (peak RSS < 256 MiB above the start)`,
      `RSS ${mib(o.rssBefore)} before, peak ${mib(o.peak)}, ${mib(o.rssAfter)} after`, grew !== null && grew < 256 * 2 ** 20 ? 'PASS' : 'FAIL']);
    const refused = o.during.statuses[503] ?? 0;
    rows.push([`overload, ${setting}: 503s rather than timeouts, no crash`,
      `${o.during.ok} answered 200, ${refused} answered 503, ${o.during.timeouts} timeouts, ${o.during.errors} errors; server ${o.alive ? 'alive' : 'died'}`,
      o.during.timeouts === 0 && o.during.errors === 0 && o.alive ? (refused > 0 ? 'PASS' : 'PASS (no 503 needed)') : 'FAIL']);
    // A factor of 2: runs on this shared 2-core machine move by ~30% on their own; a server that
    // stays degraded (a leak, a stuck queue) is off by far more, or answers errors.
    const recovered = o.after.rps >= 0.5 * o.before.rps && o.after.p99Us <= 3 * o.before.p99Us &&
      Object.keys(o.after.statuses).every((c) => c === '200') && o.after.errors === 0;
    rows.push([`overload, ${setting}: recovers (only 200s, throughput >= 1/2 and p99 <= 3x of before)`,
      `${formatRate(o.after.rps)} req/s, p99 ${us(o.after.p99Us)} after; ${formatRate(o.before.rps)}, ${us(o.before.p99Us)} before`,
      recovered ? 'PASS' : 'FAIL']);
  }
  return rows;
}

function chart(results, wideResults, subtitle) {
  const groups = (metric) => CONCURRENCY.map((c) => ({
    label: String(c),
    values: TARGETS.map((t) => {
      const r = results?.get(`${t.key}:${c}`);
      return r ? r[metric] : null;
    }),
  }));
  const panels = [
    { title: 'demo 32-64x4-16: throughput (higher is better)', xLabel: 'concurrent connections', yLabel: 'requests/s', groups: groups('rps') },
    { title: 'demo: p50 latency (lower is better)', xLabel: 'concurrent connections', yLabel: 'microseconds', groups: groups('p50Us') },
    { title: 'demo: p99 latency (lower is better)', xLabel: 'concurrent connections', yLabel: 'microseconds', groups: groups('p99Us') },
  ];
  if (wideResults) {
    const metric = (m) => [{ label: '64', values: TARGETS.map((t) => wideResults.get(`${t.key}:64`)?.[m]) }];
    panels.push(
      { title: 'wide 512-2048-2048-16: throughput', xLabel: 'concurrent connections', yLabel: 'requests/s', groups: metric('rps') },
      { title: 'wide: p50 latency', xLabel: 'concurrent connections', yLabel: 'microseconds', groups: metric('p50Us') },
      { title: 'wide: p99 latency', xLabel: 'concurrent connections', yLabel: 'microseconds', groups: metric('p99Us') },
    );
  }
  return groupedBarChartSvg({
    title: 'mlpkit serve vs onnxruntime-node (a session.run per request) and a bare node:http server (log scale)',
    subtitle,
    series: TARGETS.map((t) => ({ label: t.label, color: t.color })),
    columns: 3,
    panelWidth: 440,
    panels,
  });
}

const started = performance.now();
const i = info();
const generator = loadGenerator();
const generatorLine = generator === 'wrk'
  ? `- load generator: ${wrkVersion()}, one thread (its own process); latency = wrk's time per answer, every answer`
  : '- load generator: autocannon (wrk is not installed: `apt-get install wrk`), in the bench process; autocannon costs about as much CPU per request as the servers, so on 2 cores it caps every server near the same rate; latency = its time per response, 2xx only';
const machine = `${cpuName()}, ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`;
const loadAtStart = loadavg()[0];
progress(`mlpkit ${i.version}, ${i.backend} (${i.isa}), Node ${process.versions.node}; ${machine}; load average ${loadAtStart.toFixed(2)}`);
let latency = null;
const overloads = [];
let wideRun = null;
let pairedRun = null;
const PAIRED_TARGETS = [...TARGETS.filter((t) => ['batching', 'ort', 'constant', 'batching2', 'nodehttp', 'tshttp'].includes(t.key)), NET_FLOOR];
const WIDE_TARGETS = targets(wide).filter((t) => t.key !== 'constant' && !t.workers);
try {
  if (only.has('latency')) {
    progress('latency and throughput, demo model:');
    latency = await latencyRuns(demo, TARGETS, CONCURRENCY);
  }
  if (only.has('overload')) {
    progress('overload:');
    // The default bound (1024 rows) holds one request per connection here, so it never fills:
    // the second run sets it below the connection count to exercise the 503 path.
    overloads.push(await overloadRun([]));
    overloads.push(await overloadRun(['--max-queue-rows', '256']));
  }
  if (only.has('wide')) {
    progress('wide model, 64 connections:');
    wideRun = await latencyRuns(wide, WIDE_TARGETS, [64]);
  }
  if (only.has('paired')) {
    progress(`paired rounds, demo model, ${PAIRED_CONNECTIONS} connections:`);
    pairedRun = await pairedRuns(demo, PAIRED_TARGETS, rounds);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const elapsed = ((performance.now() - started) / 1000).toFixed(0);

const targetTable = targetRows(latency?.results, overloads, pairedRun?.results);
const md = [
  '# mlpkit serve: load test',
  '',
  `- command: \`node bench/serve.mjs --seconds ${seconds}${rounds !== 10 ? ` --rounds ${rounds}` : ''}${only.size < PARTS.length ? ` --only ${[...only].join(',')}` : ''}\` (${elapsed} s in all)`,
  `- date: ${new Date().toISOString()}; machine: ${machine}; load average ${loadAtStart.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end`,
  `- mlpkit ${i.version} (${i.backend}, ${i.isa}), Node ${process.versions.node}; one row per JSON request`,
  '- each server in its own process with one thread (mlpkit --threads 1, onnxruntime intraOpNumThreads 1), or two such processes',
  '  sharing the port (`--workers 2` rows; RSS is the sum of the primary and its workers); keep-alive connections; per cell two runs of',
  `  ${seconds / 2} s in opposite server orders, pooled, after a 1 s warm-up`,
  generatorLine,
  '',
];
if (latency) {
  md.push('## Demo model 32-64-64-64-64-16 ReLU: throughput and latency', '', latencyTable(latency.results, TARGETS, CONCURRENCY), '');
  if (latency.notes.length) md.push(...latency.notes.map((n) => `- ${n}`), '');
}
for (const o of overloads) {
  md.push(`## Overload, ${o.flags.length ? o.flags.join(' ') : 'default limits (1024 queued rows per model, 10 s queue timeout)'}`, '',
    `mlpkit serve (batching), ${OVERLOAD_CONNECTIONS} connections for ${2 * seconds} s, between two runs at 16 connections:`, '',
    overloadTable(o), '');
}
if (wideRun) {
  md.push('## Wide model 512-2048-2048-16 ReLU (21 MB of weights; ~1 ms per row alone), 64 connections', '',
    latencyTable(wideRun.results, WIDE_TARGETS, [64]), '');
  if (wideRun.notes.length) md.push(...wideRun.notes.map((n) => `- ${n}`), '');
}
if (pairedRun) {
  md.push(`## Paired rounds, demo model, ${PAIRED_CONNECTIONS} connections`, '',
    `${rounds} rounds; in each, every server below loaded for ${PAIRED_SECONDS} s, one after another (order rotated per round);`,
    'throughput ratios to the onnxruntime server taken per round. Latency pooled over all rounds.', '',
    '| server | median throughput ratio to onnxruntime | range over rounds | throughput (pooled) | p50 | p99 |',
    '|---|---:|---:|---:|---:|---:|',
    ...PAIRED_TARGETS.filter((t) => pairedRun.results.has(t.key)).map((t) => {
      const r = pairedRun.results.get(t.key);
      return `| ${t.label} | ${median(r.ratios).toFixed(2)}x | ${r.ratios[0].toFixed(2)}-${r.ratios.at(-1).toFixed(2)}x | ${formatRate(r.pooled.rps)} | ${us(r.pooled.p50Us)} | ${us(r.pooled.p99Us)} |`;
    }), '');
  if (pairedRun.notes.length) md.push(...pairedRun.notes.map((n) => `- ${n}`), '');
}
if (targetTable.length) {
  md.push('## Targets (issue #8, demo model)', '', '| target | measured | result |', '|---|---|---|', ...targetTable.map((t) => `| ${t.join(' | ')} |`), '');
}
const text = md.join('\n');
console.log(text);

if (!args['no-write'] && only.size === PARTS.length) {
  const resultsDir = join(repoRoot, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, 'serve.md'), text);
  writeFileSync(join(resultsDir, 'serve.svg'), chart(latency.results, wideRun?.results, `${machine}; ${seconds} s per run; one JSON row per request`));
  progress(`wrote ${join('bench', 'results', 'serve.md')} and ${join('bench', 'results', 'serve.svg')}`);
} else if (!args['no-write']) progress('partial run (--only): bench/results not written');

// Quantised matmul bench and accuracy report (issue #4).
//
// speed: one Linear layer 4096 -> 16384 (Gaussian weights std 0.02, bias) at batch 1, 8, 64, 256:
//   mlpkit float32, mlpkit int8 / int4 g32, g64, g128 with float activations (weight-only) and
//   with int8 activations (W8A8 / W4A8), onnxruntime-node float Gemm, DynamicQuantizeLinear +
//   MatMulInteger, and com.microsoft MatMulNBits (accuracy_level 0 and 4), all on the same
//   weights. Every model is checked against a float reference before it is timed. Batch 1 also
//   gets the weight bytes read per second, against this machine's read bandwidth measured here.
// accuracy: relative output error vs float for Gaussian layers, a neural-field MLP like the demo's,
//   and the accuracy of a small trained classifier, per format, group size, symmetry, activations.
//
// The mlpkit rows go through net.quantize({ weights, groupSize, activations }) when the build has
// it; until then they print '-' with the reason, and the accuracy numbers come from this bench's
// JavaScript twin of lib/quant/format.ts (bench/support/onnx-quant.mjs), labelled as such.
//
//   node bench/quant.mjs [--seconds S] [--only speed,accuracy,classifier] [--small] [--write]

import { execFileSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs, usageError } from './support/args.mjs';
import * as mlpkit from '../dist/index.js';
import { renderScene } from '../examples/support/scene.mjs';
import { psnr8, toBytes } from '../examples/support/image-utils.mjs';
import { CheckError, expectClose, relativeError } from './support/check.mjs';
import {
  dequantize, gemmOnnx, linearF64, linearOrtInt8, linearW8A8, matMulIntegerOnnx, matMulNBitsOnnx, nativeWeightBytes, quantizeLinear, weightBytes,
} from './support/onnx-quant.mjs';
import { cpuName } from './support/cpu.mjs';
import { loadOrt, ortSessionOptions } from './support/ort.mjs';
import { formatTime } from './support/report.mjs';
import { budgetFromSeconds, interleavedPasses, medianOf, medianUs, pairedRatio } from './support/timing.mjs';

const { Mlp, info } = mlpkit;

const USAGE = `Usage: node bench/quant.mjs [--seconds S] [--only LIST] [--small] [--write]
  --seconds S   time budget per timed cell (default 1, or 0.2 with --small); each cell runs >= 5 rounds
  --only LIST   sections, comma-separated: speed, accuracy, classifier (default all three)
  --small       smoke mode: a 512 -> 2048 layer, small accuracy shapes, short training
  --write       write bench/results/quant.md and quant.svg even for a --small or --only run
                (a full run always writes them)
  --help`;

const { values: args } = benchArgs(USAGE, {
  options: {
    seconds: { type: 'string' },
    only: { type: 'string', default: 'speed,accuracy,classifier' },
    small: { type: 'boolean', default: false },
    write: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});
const small = args.small;
const budgetMs = budgetFromSeconds(args.seconds ?? (small ? '0.2' : '1'));
const seconds = budgetMs / 1000;
const SECTIONS = ['speed', 'accuracy', 'classifier'];
const only = args.only.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
for (const s of only) if (!SECTIONS.includes(s)) usageError(`--only: unknown section '${s}' (expected some of ${SECTIONS.join(',')})`);
const fullRun = !small && SECTIONS.every((s) => only.includes(s));

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const progress = (text) => process.stderr.write(`${text}\n`);
const THREADS = availableParallelism();

// ---- sizes -------------------------------------------------------------------------------------

const LAYER = small ? { k: 512, n: 2048 } : { k: 4096, n: 16384 };
const BATCHES = [1, 8, 64, 256];
const PASSES = 5; // interleaved timing passes per batch (see speedSection)
// Idle time before each row's turn in a pass: onnxruntime's intra-op pool spins for ~40 ms of
// CPU after every run (its default allow_spinning; measured with process.cpuUsage over a sleep),
// and a row timed inside that window ran at up to 1/3 of its speed on the 2 cores.
const SETTLE_MS = 100;
const WEIGHT_STD = 0.02;
const CHECK_ROWS = 3; // rows of the pre-timing agreement check (a float64 JS reference of 4096 x 16384 is slow)
// Gaussian layers of the accuracy section [inputs, outputs]: 1000 is not a multiple of any int4
// group size, so its last group is padded (format.ts).
const ACCURACY_SHAPES = small ? [[256, 256], [200, 300], [512, 1024]] : [[512, 512], [1000, 1000], [4096, 1024]];
const ACCURACY_BATCH = 64;
const BANDWIDTH_BYTES = (small ? 256 : 1024) * 2 ** 20;

// Agreement tolerances (max |got - want| / max |want|, bench/support/check.mjs).
const TOL = {
  float: 1e-4, // float32 accumulation vs the float64 reference of the same (dequantised) weights
  w8a8: 1e-4, // mlpkit W8A8 vs format.ts's float32 order emulated in JS: bit-exact expected, one rounding flip allowed
  ortInt8Exact: 1e-4, // ORT MatMulInteger vs its own DynamicQuantizeLinear emulated: integer part exact
  ortInt8Loose: 5e-2, // ORT int8 (asymmetric uint8 activations per tensor) vs dequantised-weight float: loose
  nbitsAcc4: 5e-2, // MatMulNBits accuracy_level 4 quantises activations per block inside ORT: loose
  chain: 1e-3, // multi-layer mlpkit quantised predict vs the JS twin (a rounding flip in a later layer's input is allowed)
};

// ---- formats -------------------------------------------------------------------------------------

/** Every quantisation setting the accuracy section reports; `speed` marks the timed ones. */
const FORMATS = [
  { key: 'int8', weights: 'int8', activations: 'float', label: 'int8', speed: true },
  { key: 'w8a8', weights: 'int8', activations: 'int8', label: 'int8 W8A8', speed: true },
  ...[32, 64, 128].flatMap((g) => [
    { key: `int4-g${g}`, weights: 'int4', groupSize: g, symmetric: true, activations: 'float', label: `int4 g${g}`, speed: true },
    { key: `int4a-g${g}`, weights: 'int4', groupSize: g, symmetric: false, activations: 'float', label: `int4 g${g} asym` },
    { key: `w4a8-g${g}`, weights: 'int4', groupSize: g, symmetric: true, activations: 'int8', label: `int4 g${g} W4A8`, speed: true },
    { key: `w4a8a-g${g}`, weights: 'int4', groupSize: g, symmetric: false, activations: 'int8', label: `int4 g${g} asym W4A8` },
  ]),
];
const formatOf = (key) => FORMATS.find((f) => f.key === key);

/**
 * quantize()'s options for a format (symmetric only named when false, the default being true).
 * equalize: false: each row is the format itself, which the JS twin checks value for value;
 * per-input equalisation (a quantiser choice on top, docs/QUANTIZATION.md) would make the twin
 * disagree wherever it steps in (a trained first layer with a feature it barely uses).
 */
function quantizeOptions(f) {
  const o = { weights: f.weights, activations: f.activations, equalize: false };
  if (f.weights === 'int4') {
    o.groupSize = f.groupSize;
    if (!f.symmetric) o.symmetric = false;
  }
  return o;
}

const mismatchHint = (f) =>
  f.symmetric === false
    ? 'mlpkit and format.ts disagree; an error near 1e-1 suggests quantize() ignored symmetric: false'
    : 'mlpkit and the JS twin of format.ts disagree (scale rounding, group padding or the W8A8 float order)';

const twinOptions = (f) => ({ format: f.weights, groupSize: f.groupSize, symmetric: f.symmetric ?? true });

// ---- numbers -----------------------------------------------------------------------------------

/** n Gaussian floats (mean 0, std `std`) from a seeded xorshift128+ and Box-Muller. */
function gaussian(n, seed, std = 1) {
  let s0 = (seed * 0x9e3779b9 + 0x7f4a7c15) >>> 0 || 1;
  let s1 = (seed * 0x85ebca6b + 0x2545f491) >>> 0 || 2;
  const uniform = () => {
    // xorshift32 pair, 53 random bits -> (0, 1)
    s0 ^= s0 << 13; s0 >>>= 0; s0 ^= s0 >>> 17; s0 ^= s0 << 5; s0 >>>= 0;
    s1 ^= s1 << 13; s1 >>>= 0; s1 ^= s1 >>> 17; s1 ^= s1 << 5; s1 >>>= 0;
    return ((s0 >>> 5) * 67108864 + (s1 >>> 6) + 0.5) / 9007199254740992;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const t = 2 * Math.PI * uniform();
    out[i] = std * r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = std * r * Math.sin(t);
  }
  return out;
}

/** Output error of `got` against `want`: max |d| / max |want| and sqrt(sum d^2 / sum want^2). */
function outputError(got, want) {
  let dmax = 0;
  let wmax = 0;
  let d2 = 0;
  let w2 = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    dmax = Math.max(dmax, d);
    wmax = Math.max(wmax, Math.abs(want[i]));
    d2 += d * d;
    w2 += want[i] * want[i];
  }
  return { max: dmax / wmax, rms: Math.sqrt(d2 / w2) };
}

const pct = (v) => (v === undefined ? '-' : v < 1e-5 ? `${(v * 100).toExponential(1)}%` : `${(v * 100).toFixed(v < 0.001 ? 4 : v < 0.1 ? 3 : 2)}%`);
const ratio = (r) => (r === undefined ? '-' : `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`);
const gbps = (bytes, us) => bytes / us / 1e3;
const mb = (bytes) => `${(bytes / 1e6).toFixed(bytes < 1e7 ? 2 : 1)} MB`;

function parameters(weight, bias) {
  const p = new Float32Array(weight.length + bias.length);
  p.set(weight);
  p.set(bias, weight.length);
  return p;
}

/** Many agreement checks of one kind, reported as one line: the largest error over all of them. */
class CheckSummary {
  constructor() {
    this.groups = new Map();
  }

  add(group, err, tol) {
    const g = this.groups.get(group) ?? { max: 0, count: 0, tol };
    g.max = Math.max(g.max, err);
    g.count++;
    this.groups.set(group, g);
  }

  lines() {
    return [...this.groups].map(([group, g]) => `${group}: largest ${g.max.toExponential(1)} over ${g.count} (tolerance ${g.tol.toExponential(0)})`);
  }
}

// ---- what the mlpkit build offers ------------------------------------------------------------

function detectQuantApi() {
  const exportsPresent = ['QuantizedMlp', 'qmatmul', 'quantizeLayer'].filter((name) => name in mlpkit);
  const nativeOk = info().native.available;
  const quantize = typeof Mlp.prototype.quantize === 'function';
  return {
    quantize,
    nativeOk,
    exportsPresent,
    reason: !quantize
      ? 'mlpkit has no net.quantize() yet (lib/quant API not in this build of dist/)'
      : '',
    summary:
      `net.quantize ${quantize ? 'present' : 'MISSING'}; exports ${['QuantizedMlp', 'qmatmul', 'quantizeLayer']
        .map((n) => `${n} ${exportsPresent.includes(n) ? 'present' : 'missing'}`)
        .join(', ')}`,
  };
}
const quantApi = detectQuantApi();

/** net.quantize(format) -> { q } or { missing: reason }. */
function mlpkitQuantize(net, f) {
  if (!quantApi.quantize) return { missing: quantApi.reason };
  const opts = quantizeOptions(f);
  try {
    const q = net.quantize(opts);
    if (!q || typeof q.predict !== 'function') return { missing: `net.quantize(${JSON.stringify(opts)}) returned no model with predict()` };
    return { q };
  } catch (err) {
    return { missing: `net.quantize(${JSON.stringify(opts)}) threw: ${err.message}` };
  }
}

/**
 * mlpkit's own quantizeLayer(weight, bias, inputs, outputs, activation, alpha, { format, groupSize,
 * symmetric }) when the build exports it -> { layer } or { missing }.
 */
function mlpkitQuantizeLayer(twin, weight, bias) {
  if (typeof mlpkit.quantizeLayer !== 'function') return { missing: 'mlpkit exports no quantizeLayer' };
  const options = twin.format === 'int8' ? { format: 'int8' } : { format: 'int4', groupSize: twin.groupSize, symmetric: twin.symmetric };
  try {
    return { layer: mlpkit.quantizeLayer(weight, bias, twin.inputs, twin.outputs, 'none', 0, options) };
  } catch (err) {
    return { missing: `quantizeLayer(..., ${JSON.stringify(options)}) threw: ${err.message}` };
  }
}

function compareLayers(mine, theirs) {
  const diff = (a, b) => {
    if (!a && !b) return 0;
    if (!a || !b || a.length !== b.length) return Infinity;
    let d = 0;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) d++;
    return d;
  };
  const w = diff(mine.weights, theirs.weights);
  const s = diff(mine.scales, theirs.scales);
  const z = diff(mine.zeros, theirs.zeros ?? null);
  return w === 0 && s === 0 && z === 0
    ? 'bytes identical to the JS twin of format.ts'
    : `differs from the JS twin in ${w} weight bytes, ${s} scales, ${z} zero points`;
}

const disposeQuietly = (m) => {
  try {
    m?.dispose?.();
  } catch {
    // already gone
  }
};

// ---- onnxruntime ---------------------------------------------------------------------------------

const { ort, reason: ortReason } = await loadOrt();
const sessionOptions = ortSessionOptions(THREADS);

async function ortSession(bytes) {
  return ort.InferenceSession.create(bytes, sessionOptions);
}

async function ortRun(session, x, batch, k, n, out = new Float32Array(batch * n)) {
  await session.run({ x: new ort.Tensor('float32', x, [batch, k]) }, { y: new ort.Tensor('float32', out, [batch, n]) });
  return out;
}

// ---- machine facts -----------------------------------------------------------------------------

function readText(path) {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}

/** 'shared L3 of 480 MiB' from sysfs, or a vaguer phrase off Linux. */
function l3Text() {
  const size = readText('/sys/devices/system/cpu/cpu0/cache/index3/size');
  const m = /^(\d+)K$/.exec(size);
  return m ? `shared L3 of ${Math.round(Number(m[1]) / 1024)} MiB` : 'large shared L3';
}

/** The int8 matrix instructions the CPU reports (Linux /proc/cpuinfo). */
function int8Flags() {
  const flags = new Set((/^flags\s*:(.*)$/m.exec(readText('/proc/cpuinfo'))?.[1] ?? '').trim().split(/\s+/));
  return ['avx512_vnni', 'avx_vnni', 'amx_int8'].filter((f) => flags.has(f));
}

// ---- read bandwidth --------------------------------------------------------------------------------

// Each worker scans its share of one shared buffer with Buffer.indexOf(byte), which is memchr:
// SIMD C reading memory at the rate the cores can pull it, without the JS loop being the limit.
const SCAN_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const b = Buffer.from(workerData.sab, workerData.start, workerData.length);
parentPort.on('message', (reps) => {
  if (reps === 0) return process.exit(0);
  let found = 0;
  for (let r = 0; r < reps; r++) found += b.indexOf(1); // the buffer holds zeros: full scans
  parentPort.postMessage(found);
});
parentPort.postMessage('ready');
`;

/**
 * Median GB/s over `rounds` of parallel full scans of a `bytes` buffer by `threads` workers, each
 * round scanning it often enough to read >= 256 MiB (a message round trip is ~0.1 ms).
 */
async function scanBandwidth(bytes, threads, rounds = 9) {
  const reps = Math.max(1, Math.ceil(2 ** 28 / bytes));
  const sab = new SharedArrayBuffer(bytes);
  new Uint8Array(sab).fill(0); // commit the pages before timing
  const share = Math.floor(bytes / threads / 4096) * 4096;
  const workers = [];
  for (let t = 0; t < threads; t++) {
    const w = new Worker(SCAN_WORKER, { eval: true, workerData: { sab, start: t * share, length: t === threads - 1 ? bytes - t * share : share } });
    await new Promise((resolve) => w.once('message', resolve));
    workers.push(w);
  }
  const times = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    await Promise.all(workers.map((w) => new Promise((resolve) => { w.once('message', resolve); w.postMessage(reps); })));
    times.push(performance.now() - t0);
  }
  for (const w of workers) w.postMessage(0);
  times.sort((a, b) => a - b);
  return (bytes * reps) / (times[times.length >> 1] * 1e6);
}

// The scanner the batch-1 passes time next to the rows: one zero-filled buffer as large as the
// largest row, each call a full memchr scan of its first `bytes` by every worker (enough repeats
// to read >= 256 MiB, so the ~0.1 ms message round trip stays near 1% of a call). Timed in the
// same passes as the rows, its GB/s is paired with theirs: this VM's bandwidth drifts by 1.5x
// within a minute, and a scan measured a minute apart gave 29 and 52 GB/s for the same 268 MB.
const RANGE_SCAN_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const b = Buffer.from(workerData.sab);
parentPort.on('message', (m) => {
  if (m === 0) return process.exit(0);
  const part = b.subarray(m.start, m.end);
  let found = 0;
  for (let r = 0; r < m.reps; r++) found += part.indexOf(1);
  parentPort.postMessage(found);
});
parentPort.postMessage('ready');
`;

async function openScanner(maxBytes, threads) {
  const sab = new SharedArrayBuffer(maxBytes);
  new Uint8Array(sab).fill(0);
  const workers = [];
  for (let t = 0; t < threads; t++) {
    const w = new Worker(RANGE_SCAN_WORKER, { eval: true, workerData: { sab } });
    await new Promise((resolve) => w.once('message', resolve));
    workers.push(w);
  }
  const repsFor = (bytes) => Math.max(1, Math.ceil(2 ** 28 / bytes));
  return {
    /** Bytes one call of scanOf(bytes) reads. */
    bytesRead: (bytes) => bytes * repsFor(bytes),
    scanOf(bytes) {
      const reps = repsFor(bytes);
      const share = Math.floor(bytes / threads / 4096) * 4096;
      return () => Promise.all(workers.map((w, t) => new Promise((resolve) => {
        w.once('message', resolve);
        w.postMessage({ start: t * share, end: t === threads - 1 ? bytes : (t + 1) * share, reps });
      })));
    },
    close: () => workers.forEach((w) => w.postMessage(0)),
  };
}

// ---- speed section ---------------------------------------------------------------------------------

const ORT_INT8_LABEL = 'onnxruntime DynamicQuantizeLinear + MatMulInteger (W8A8)';
const nbitsKey = (g, acc) => `ort-nbits-g${g}-acc${acc}`;

/** The timed rows, in table order. counterpart: the onnxruntime row that computes the same thing. */
function speedRows(twins) {
  const rows = [
    { key: 'f32', engine: 'mlpkit', label: 'mlpkit float32', bytes: LAYER.n * LAYER.k * 4, counterpart: 'ort-f32' },
    ...FORMATS.filter((f) => f.speed).map((f) => ({
      key: f.key,
      engine: 'mlpkit',
      label: `mlpkit ${f.label}`,
      format: f,
      bytes: nativeWeightBytes(twins.get(twinKey(f)), f.activations),
      counterpart: f.weights === 'int8' ? 'ort-int8' : nbitsKey(f.groupSize, f.activations === 'int8' ? 4 : 0),
    })),
    { key: 'ort-f32', engine: 'ort', label: 'onnxruntime Gemm float32', bytes: LAYER.n * LAYER.k * 4 },
    { key: 'ort-int8', engine: 'ort', label: ORT_INT8_LABEL, bytes: weightBytes(twins.get('int8')) },
  ];
  for (const acc of [0, 4]) {
    for (const g of [32, 64, 128]) {
      rows.push({
        key: nbitsKey(g, acc),
        engine: 'ort',
        label: `onnxruntime MatMulNBits int4 g${g} accuracy_level ${acc}`,
        bytes: weightBytes(twins.get(`int4-g${g}`)),
        groupSize: g,
        accuracyLevel: acc,
      });
    }
  }
  return rows;
}

/**
 * MatMulNBits layout checks on an odd shape (K = 1000: no group size divides it, so the last
 * block of every row is padded): symmetric (default zero point 8) and asymmetric (packed zero
 * points) at every block size, against float64 over the dequantised weights; and a negative
 * control, the same model with the two nibbles of every byte swapped, which must fail the check.
 */
async function nbitsLayoutChecks() {
  const k = 1000;
  const n = 96;
  const batch = 3;
  const weight = gaussian(n * k, 7, WEIGHT_STD);
  const bias = gaussian(n, 8, WEIGHT_STD);
  const x = gaussian(batch * k, 9);
  const lines = [];
  for (const symmetric of [true, false]) {
    for (const g of [32, 64, 128]) {
      const layer = quantizeLinear(weight, bias, n, k, { format: 'int4', groupSize: g, symmetric });
      const what = `MatMulNBits layout, ${k} -> ${n} int4 g${g} ${symmetric ? 'symmetric (default zero point)' : 'asymmetric (packed zero points)'} accuracy_level 0`;
      const session = await ortSession(matMulNBitsOnnx(layer));
      const got = await ortRun(session, x, batch, k, n);
      await session.release();
      const want = linearF64(x, batch, dequantize(layer), bias, n, k);
      lines.push(`${what} vs float64 of the dequantised weights: ${expectClose(what, got, want, TOL.float).toExponential(1)} (tolerance ${TOL.float.toExponential(0)})`);
      if (symmetric && g === 32) {
        const swapped = { ...layer, weights: layer.weights.map((b) => ((b & 15) << 4) | (b >> 4)) };
        const control = await ortSession(matMulNBitsOnnx(swapped));
        const bad = relativeError(await ortRun(control, x, batch, k, n), want);
        await control.release();
        if (!(bad > 100 * TOL.float)) throw new CheckError(`negative control: MatMulNBits with swapped nibbles is only ${bad.toExponential(1)} off, the layout check cannot tell`);
        lines.push(`negative control: the same g32 model with the two nibbles of every byte swapped is ${bad.toExponential(1)} off (so the layout check can see a nibble-order error)`);
      }
    }
  }
  return lines;
}

const twinKey = (f) => (f.weights === 'int8' ? 'int8' : `int4${f.symmetric === false ? 'a' : ''}-g${f.groupSize}`);

async function speedSection() {
  const { k, n } = LAYER;
  progress(`speed: layer ${k} -> ${n}, Gaussian weights std ${WEIGHT_STD}`);
  const weight = gaussian(n * k, 1, WEIGHT_STD);
  const bias = gaussian(n, 2, WEIGHT_STD);

  // The quantised weights every row uses: the JS twin of format.ts (mlpkit's own are compared to
  // them, and checked through their outputs).
  const twins = new Map();
  twins.set('int8', quantizeLinear(weight, bias, n, k, { format: 'int8' }));
  for (const g of [32, 64, 128]) twins.set(`int4-g${g}`, quantizeLinear(weight, bias, n, k, { format: 'int4', groupSize: g }));
  const checks = [];
  const notes = [];
  // mlpkit's own quantiser, when exported, must produce the very same bytes; its layers are then
  // the ones onnxruntime gets (they are what net.quantize stores).
  for (const [key, twin] of twins) {
    const got = mlpkitQuantizeLayer(twin, weight, bias);
    if (got.missing) {
      notes.push(`${key}: onnxruntime gets the JS twin's bytes (${got.missing})`);
      continue;
    }
    notes.push(`${key} ${LAYER.k} -> ${LAYER.n}: mlpkit quantizeLayer ${compareLayers(twin, got.layer)}; onnxruntime gets mlpkit's bytes`);
    twins.set(key, got.layer);
  }
  const rows = speedRows(twins);
  const handles = new Map(); // key -> { predict(x, batch, out) -> void | Promise, async } | { missing }

  // mlpkit float32 and its quantised models.
  let net = null;
  if (!quantApi.nativeOk) {
    for (const r of rows.filter((row) => row.engine === 'mlpkit')) handles.set(r.key, { missing: `mlpkit native addon not loaded: ${info().native.error}` });
  } else {
    net = new Mlp({ inputs: k, layers: [{ units: n }] }, { backend: 'native' });
    net.setParameters(parameters(weight, bias));
    handles.set('f32', { predict: (x, batch, out) => net.predict(x, out) });
    for (const r of rows.filter((row) => row.format)) {
      const got = mlpkitQuantize(net, r.format);
      if (got.missing) {
        handles.set(r.key, { missing: got.missing });
        continue;
      }
      const q = got.q;
      const backend = q.backend ?? 'unknown backend';
      notes.push(`mlpkit ${r.format.label}: net.quantize(${JSON.stringify(quantizeOptions(r.format))}) runs on ${backend}${q.sizeBytes ? `, sizeBytes ${q.sizeBytes}` : ''}`);
      handles.set(r.key, { predict: (x, batch, out) => q.predict(x, out), close: () => disposeQuietly(q), backend });
    }
  }

  // onnxruntime sessions.
  for (const r of rows.filter((row) => row.engine === 'ort')) {
    if (!ort) {
      handles.set(r.key, { missing: ortReason });
      continue;
    }
    try {
      const bytes =
        r.key === 'ort-f32' ? gemmOnnx(weight, bias, n, k)
          : r.key === 'ort-int8' ? matMulIntegerOnnx(twins.get('int8'))
            : matMulNBitsOnnx(twins.get(`int4-g${r.groupSize}`), { accuracyLevel: r.accuracyLevel });
      const session = await ortSession(bytes);
      handles.set(r.key, {
        async: true,
        session,
        predict: null, // set per batch with preallocated tensors
        close: () => session.release(),
      });
    } catch (err) {
      handles.set(r.key, { missing: `onnxruntime could not build ${r.label}: ${err.message}` });
      progress(`  ${r.label}: FAILED to build: ${err.message}`);
    }
  }

  // Agreement before anything is timed: each row against a float64 JS reference of what it
  // should compute (dequantised weights for weight-only rows; the exact integer pipelines for
  // W8A8 and for onnxruntime's MatMulInteger).
  progress('  checking every model against its reference ...');
  const xc = gaussian(CHECK_ROWS * k, 3);
  const yFloat = linearF64(xc, CHECK_ROWS, weight, bias, n, k);
  const refs = new Map(); // twin key -> { deq, w8a8 }
  const refOf = (key, which) => {
    if (!refs.has(key)) refs.set(key, {});
    const entry = refs.get(key);
    if (!(which in entry)) {
      const layer = twins.get(key);
      entry[which] = which === 'deq'
        ? linearF64(xc, CHECK_ROWS, dequantize(layer), bias, n, k)
        : which === 'w8a8' ? linearW8A8(xc, CHECK_ROWS, layer) : linearOrtInt8(xc, CHECK_ROWS, layer);
    }
    return entry[which];
  };
  const accuracyOfRow = new Map(); // key -> { max, rms } vs float, on the check rows
  for (const r of rows) {
    const h = handles.get(r.key);
    if (h.missing) continue;
    const got = new Float32Array(CHECK_ROWS * n);
    try {
      if (h.async) await ortRun(h.session, xc, CHECK_ROWS, k, n, got);
      else h.predict(xc, CHECK_ROWS, got);
    } catch (err) {
      handles.set(r.key, { missing: `${r.label} failed: ${err.message}` });
      progress(`  ${r.label}: FAILED ${err.message}`);
      h.close?.();
      continue;
    }
    const line = (what, err, tol) => checks.push(`${r.label} vs ${what}: ${err.toExponential(1)} (tolerance ${tol.toExponential(0)})`);
    const check = (what, want, tol, hint) => line(what, expectClose(`${r.label} vs ${what}`, got, want, tol, hint), tol);
    if (r.key === 'f32' || r.key === 'ort-f32') check('float64 reference', yFloat, TOL.float);
    else if (r.key === 'ort-int8') {
      // Exact where onnxruntime's integer kernel is (VNNI); on AVX2 without VNNI its u8 x s8
      // products are summed in pairs into int16 with saturation (vpmaddubsw: 2 x 255 x 127 can
      // pass 32767), which the exact emulation does not do. Reported, not fatal: the loose check
      // below still bounds the peer's answer.
      const exactErr = relativeError(got, refOf('int8', 'ortInt8'));
      if (exactErr <= TOL.ortInt8Exact) line('its DynamicQuantizeLinear + integer matmul emulated in JS', exactErr, TOL.ortInt8Exact);
      else {
        checks.push(`${r.label} vs its DynamicQuantizeLinear + integer matmul emulated in JS: ${exactErr.toExponential(1)}, NOT exact on this machine ` +
          `(tolerance ${TOL.ortInt8Exact.toExponential(0)}; its int16 pair sums saturate without VNNI); timed anyway`);
        progress(`  ${r.label}: not exact here (relative error ${exactErr.toExponential(1)} against exact integer arithmetic); timed anyway`);
      }
      check('float64 of the dequantised int8 weights (loose: asymmetric uint8 activations per tensor)', refOf('int8', 'deq'), TOL.ortInt8Loose);
    } else if (r.engine === 'ort') {
      const key = `int4-g${r.groupSize}`;
      if (r.accuracyLevel === 0) {
        check('float64 of the dequantised int4 weights', refOf(key, 'deq'), TOL.float, 'a layout mismatch (nibble order, block order, zero point) shows as an error near 1');
      } else check('float64 of the dequantised int4 weights (loose: int8 activations per block inside ORT)', refOf(key, 'deq'), TOL.nbitsAcc4);
    } else {
      const key = twinKey(r.format);
      if (r.format.activations === 'float') check('float64 of the JS twin\'s dequantised weights', refOf(key, 'deq'), TOL.float);
      else check('the JS twin of format.ts W8A8 (float32 order)', refOf(key, 'w8a8'), TOL.w8a8);
    }
    accuracyOfRow.set(r.key, outputError(got, yFloat));
  }
  refs.clear();
  if (ort) checks.push(...(await nbitsLayoutChecks()));

  // Read bandwidth of this machine, two ways; the larger is the reference for the % column.
  progress(`  measuring read bandwidth (memchr over ${mb(BANDWIDTH_BYTES)} with ${THREADS} workers) ...`);
  const scanBig = await scanBandwidth(BANDWIDTH_BYTES, THREADS);
  // And at each working-set size the rows read, in the batch-1 passes: a 67 MB int8 layer is
  // partly served by the large shared L3 this VM reports, so it is held against a scan of the
  // same size timed next to it.
  const scanSizes = [...new Set(rows.map((r) => r.bytes))].sort((a, b) => b - a);
  const scanner = await openScanner(scanSizes[0], THREADS);
  const scanPasses = new Map(); // bytes -> GB/s in each batch-1 pass

  // Timing, batch by batch: every row once (a row on a slow fallback is skipped), then all of a
  // batch's rows in interleaved passes. This VM's read bandwidth drifts by 1.5x within a minute
  // (a float32 batch-1 call took 5.2 ms in one pass and 8-9 ms in the next), so rows timed one
  // after another compared times from different machines; interleaved, each ratio column is
  // the median over passes of the two rows' times in the same pass.
  const cells = new Map(); // `${key}:${batch}` -> { us, passes } | { skip }
  for (const batch of BATCHES) {
    const x = gaussian(batch * k, 100 + batch);
    const out = new Float32Array(batch * n);
    let f32Ms;
    const timed = [];
    for (const r of rows) {
      const h = handles.get(r.key);
      const cell = `${r.key}:${batch}`;
      if (h.missing) {
        cells.set(cell, { skip: h.missing });
        continue;
      }
      let run;
      if (h.async) {
        const feeds = { x: new ort.Tensor('float32', x, [batch, k]) };
        const fetches = { y: new ort.Tensor('float32', out, [batch, n]) };
        run = () => h.session.run(feeds, fetches);
      } else run = () => h.predict(x, batch, out);
      // One call first: a quantised model running on a slow fallback would take minutes per cell.
      const t0 = performance.now();
      await run();
      const firstMs = performance.now() - t0;
      if (r.key === 'f32') f32Ms = firstMs;
      const limitMs = f32Ms === undefined ? 10000 : Math.max(2000, f32Ms * 50);
      if (r.engine === 'mlpkit' && r.key !== 'f32' && firstMs > limitMs) {
        cells.set(cell, { skip: `${r.label} took ${(firstMs / 1000).toFixed(1)} s per call at batch ${batch} (${h.backend}): no fast kernel yet, not timed` });
        progress(`  batch ${batch} ${r.label}: skipped, ${(firstMs / 1000).toFixed(1)} s for one call`);
        continue;
      }
      timed.push({ r, contender: { run, isAsync: Boolean(h.async) } });
    }
    const scans = batch === 1 ? scanSizes.map((bytes) => ({ bytes, contender: { run: scanner.scanOf(bytes), isAsync: true } })) : [];
    progress(`  batch ${batch}: ${timed.length} rows${scans.length ? ` and ${scans.length} memchr scans` : ''} in ${PASSES} interleaved passes ...`);
    const passes = await interleavedPasses([...timed, ...scans].map((t) => t.contender), budgetMs, PASSES, { warmup: false, minRounds: 2, settleMs: SETTLE_MS });
    scans.forEach(({ bytes }, i) => {
      const perPass = passes[timed.length + i].map((us) => gbps(scanner.bytesRead(bytes), us));
      scanPasses.set(bytes, perPass);
      progress(`  batch 1 memchr scan of ${mb(bytes)}: ${medianOf(perPass).toFixed(1)} GB/s (passes: ${perPass.map((v) => v.toFixed(1)).join(', ')})`);
    });
    timed.forEach(({ r }, i) => {
      const us = medianOf(passes[i]);
      cells.set(`${r.key}:${batch}`, { us, passes: passes[i] });
      progress(`  batch ${batch} ${r.label}: ${formatTime(us)} (passes: ${passes[i].map(formatTime).join(', ')})`);
    });
  }
  // Stability: the float32 batch-1 cell once more, after everything else. Other work on the
  // shared cores shows up as a difference between the two.
  let f32Again;
  if (!handles.get('f32').missing) {
    const x = gaussian(k, 101);
    const out = new Float32Array(n);
    f32Again = medianUs(() => net.predict(x, out), budgetMs);
  }
  for (const h of handles.values()) h.close?.();
  scanner.close();
  net?.dispose();

  const f32b1 = cells.get('f32:1')?.us;
  const scanAt = new Map([...scanPasses].map(([bytes, v]) => [bytes, medianOf(v)]));
  const bandwidth = {
    scanBig,
    scanAt,
    f32: f32b1 === undefined ? undefined : gbps(rows[0].bytes, f32b1),
  };
  // The float32 layer reads as a bandwidth only when its weights are far beyond the private
  // caches (the --small layer's 4 MB stay in cache and would read as ~100 GB/s). It streams
  // faster than memchr does from DRAM (memchr tops out near 11 GB/s per core here), so it is the
  // better measure of what two cores can pull, and a floor for every smaller working set.
  bandwidth.f32Counts = bandwidth.f32 !== undefined && rows[0].bytes >= 2 ** 28;
  bandwidth.dram = Math.max(scanBig, bandwidth.f32Counts ? bandwidth.f32 : 0);
  bandwidth.dramFrom = bandwidth.dram === scanBig ? `memchr scan of ${mb(BANDWIDTH_BYTES)}` : 'mlpkit float32 predict at batch 1';
  /**
   * A batch-1 row's weight GB/s over the read bandwidth at its size, paired: in each pass the
   * reference is the larger of the float32 row's GB/s (when it counts) and the scan of the row's
   * size in that pass; the median over passes of the row over its reference.
   */
  bandwidth.fractionFor = (r) => {
    const rowPasses = cells.get(`${r.key}:1`)?.passes;
    const scan = scanPasses.get(r.bytes);
    if (!rowPasses || !scan) return undefined;
    const f32Passes = cells.get('f32:1')?.passes;
    return medianOf(rowPasses.map((us, i) => {
      const ref = Math.max(scan[i], bandwidth.f32Counts && f32Passes ? gbps(rows[0].bytes, f32Passes[i]) : 0);
      return gbps(r.bytes, us) / ref;
    }));
  };
  return { rows, cells, checks, notes, bandwidth, accuracyOfRow, f32Again };
}

// ---- accuracy: Gaussian layers ---------------------------------------------------------------------

async function gaussianLayersSection() {
  const results = []; // { shape, format, max, rms, source } | { shape, format, skip }
  const checks = [];
  let seed = 10;
  let compared = 0;
  let identical = 0;
  const summary = new CheckSummary();
  for (const [k, n] of ACCURACY_SHAPES) {
    progress(`accuracy: Gaussian layer ${k} -> ${n}`);
    const weight = gaussian(n * k, seed++, WEIGHT_STD);
    const bias = gaussian(n, seed++, WEIGHT_STD);
    const x = gaussian(ACCURACY_BATCH * k, seed++);
    const yFloat = linearF64(x, ACCURACY_BATCH, weight, bias, n, k);
    const net = quantApi.quantize ? new Mlp({ inputs: k, layers: [{ units: n }] }, { parameters: parameters(weight, bias) }) : null;
    for (const f of FORMATS) {
      const twin = quantizeLinear(weight, bias, n, k, twinOptions(f));
      if (f.activations === 'float') {
        const theirs = mlpkitQuantizeLayer(twin, weight, bias);
        if (!theirs.missing) {
          const same = compareLayers(twin, theirs.layer);
          if (same.startsWith('bytes identical')) identical++;
          else checks.push(`${k} -> ${n} ${f.label}: mlpkit quantizeLayer ${same}`);
          compared++;
        }
      }
      const yTwin = f.activations === 'float' ? linearF64(x, ACCURACY_BATCH, dequantize(twin), bias, n, k) : linearW8A8(x, ACCURACY_BATCH, twin);
      const row = { shape: `${k} -> ${n}`, format: f, bytes: weightBytes(twin) };
      const got = net ? mlpkitQuantize(net, f) : { missing: quantApi.reason };
      if (got.missing) {
        results.push({ ...row, ...outputError(yTwin, yFloat), source: 'JS twin', why: got.missing });
        continue;
      }
      try {
        const y = got.q.predict(x, new Float32Array(ACCURACY_BATCH * n));
        const tol = f.activations === 'float' ? TOL.float : TOL.w8a8;
        const err = expectClose(`mlpkit ${f.label} ${k}->${n} vs the JS twin of format.ts`, y, yTwin, tol, mismatchHint(f));
        summary.add(`Gaussian layers: mlpkit ${f.activations === 'float' ? 'weight-only' : 'W8A8 / W4A8'} predict vs the JS twin of format.ts`, err, tol);
        results.push({ ...row, ...outputError(y, yFloat), source: `mlpkit (${got.q.backend ?? 'predict'})` });
      } catch (err) {
        if (err instanceof CheckError) throw err;
        results.push({ ...row, ...outputError(yTwin, yFloat), source: 'JS twin', why: `mlpkit predict failed: ${err.message}` });
      } finally {
        disposeQuietly(got.q);
      }
    }
    net?.dispose();
  }
  if (compared) checks.unshift(`mlpkit quantizeLayer vs the JS twin of format.ts: ${identical} of ${compared} Gaussian layer/format pairs byte-identical (weights, scales, zero points)`);
  checks.push(...summary.lines());
  return { results, checks };
}

// ---- accuracy: whole MLPs (neural field, classifier) --------------------------------------------------

const ACT = {
  none: (v) => v,
  relu: (v) => (v > 0 ? v : 0),
};

function frequencyEncode(x, batch, d, octaves, includeInput) {
  const width = (includeInput ? d : 0) + 2 * octaves * d;
  const enc = new Float32Array(batch * width);
  for (let r = 0; r < batch; r++) {
    let o = r * width;
    if (includeInput) for (let i = 0; i < d; i++) enc[o++] = x[r * d + i];
    for (let k = 0; k < octaves; k++) {
      const f = Math.PI * 2 ** k;
      for (let i = 0; i < d; i++) {
        enc[o + i] = Math.sin(f * x[r * d + i]);
        enc[o + d + i] = Math.cos(f * x[r * d + i]);
      }
      o += 2 * d;
    }
  }
  return { enc, width };
}

/** The network in JS: float64 layers, or quantised (JS twin) when `format` is given. */
function jsForward(net, x, batch, format) {
  const spec = net.spec;
  let h = x;
  if (spec.encoding.type === 'frequency') h = frequencyEncode(x, batch, spec.inputs, spec.encoding.octaves, spec.encoding.includeInput).enc;
  net.getLayers().forEach((layer, i) => {
    const { inputs: k, outputs: n, weight, bias } = layer;
    let y;
    if (!format) y = linearF64(h, batch, weight, bias, n, k);
    else {
      const q = quantizeLinear(weight, bias, n, k, twinOptions(format));
      y = format.activations === 'float' ? linearF64(h, batch, dequantize(q), bias, n, k) : linearW8A8(h, batch, q);
    }
    const act = ACT[spec.layers[i].activation];
    if (!act) throw new Error(`jsForward: activation '${spec.layers[i].activation}' not reproduced here`);
    for (let j = 0; j < y.length; j++) y[j] = act(y[j]);
    h = y;
  });
  return h;
}

/** Per format: the quantised network's outputs (mlpkit's, else the JS twin's). */
function quantisedOutputs(net, x, batch, name, checks) {
  const yJsFloat = jsForward(net, x, batch, null);
  const yFloat = net.predict(x);
  const e = expectClose(`${name}: JS float forward vs mlpkit float predict`, yJsFloat, yFloat, TOL.float, 'the JS encoding or layer order is off');
  checks.push(`${name}: JS float forward vs mlpkit predict ${e.toExponential(1)} (tolerance ${TOL.float.toExponential(0)})`);
  const out = [];
  const summary = new CheckSummary();
  for (const f of FORMATS) {
    const yTwin = jsForward(net, x, batch, f);
    const got = mlpkitQuantize(net, f);
    if (got.missing) {
      out.push({ format: f, y: yTwin, source: 'JS twin', why: got.missing });
      continue;
    }
    try {
      const y = got.q.predict(x);
      const err = expectClose(`${name}: mlpkit ${f.label} vs the JS twin`, y, yTwin, TOL.chain, mismatchHint(f));
      summary.add(`${name}: mlpkit ${f.activations === 'float' ? 'weight-only' : 'W8A8 / W4A8'} predict vs the JS twin of format.ts (whole network)`, err, TOL.chain);
      out.push({ format: f, y, source: `mlpkit (${got.q.backend ?? 'predict'})` });
    } catch (err) {
      if (err instanceof CheckError) throw err;
      out.push({ format: f, y: yTwin, source: 'JS twin', why: `mlpkit predict failed: ${err.message}` });
    } finally {
      disposeQuietly(got.q);
    }
  }
  checks.push(...summary.lines());
  return { yFloat, out };
}

// Calibrated rows: net.quantize with calibration rows (bias correction, per-input equalisation
// where it helps, and the rounding named), weight-only, for the formats where rounding matters
// most. No JS twin: GPTQ is a choice of codes, not a format, and the codes it picks are checked
// like any layer's (tests/91.quant-gptq.test.ts). The rows are scored on the section's test
// rows, which the calibration rows are not among.
/** Calibration rows of the calibrated rows: >= 2 per input of every layer of both models (GPTQ's 'auto' rule). */
const CALIBRATION_ROWS = 1024;
const CALIBRATED = [formatOf('int8'), formatOf('int4-g32'), formatOf('int4a-g32')];
// 'auto' is the default: GPTQ per layer where it wins on calibration rows held back from its fit.
const ROUNDINGS = ['nearest', 'gptq', 'auto'];

/** `rows` points uniform in [-1, 1]^2 (a seeded xorshift32), the neural field's input square. */
function uniformSquare(rows, seed) {
  let state = (seed * 0x9e3779b9) >>> 0 || 1;
  return Float32Array.from({ length: 2 * rows }, () => {
    state ^= state << 13; state >>>= 0; state ^= state >>> 17; state ^= state << 5; state >>>= 0;
    return ((state + 0.5) / 4294967296) * 2 - 1;
  });
}

function calibratedOutputs(net, x, calibration) {
  const rows = calibration.length / net.inputs;
  const out = [];
  // Per-layer formats: the first layer, small and fed the raw (or encoded) inputs, in int8.
  const layerCount = net.spec.layers.length;
  const firstInt8 = { key: 'int8-first', weights: ['int8', ...Array(layerCount - 1).fill('int4')], activations: 'float', label: 'int8 first layer, int4 g32 after' };
  for (const f of [...CALIBRATED, firstInt8]) {
    for (const rounding of ROUNDINGS) {
      const opts = { ...quantizeOptions(f), equalize: 'auto', calibration, rounding };
      let label = `${f.label}, calibrated, ${rounding}`;
      let q;
      try {
        q = net.quantize(opts);
        if (rounding === 'auto') {
          // What 'auto' chose per layer, with GPTQ's held-back error over nearest rounding's.
          const perLayer = q.stats.layers.map((l) => `${l.rounding}${l.gptqCheck ? ` ${(l.gptqCheck.gptq / l.gptqCheck.nearest).toFixed(2)}` : ''}`);
          label += ` (per layer: ${perLayer.join(', ')})`;
        }
        out.push({ format: { ...f, label }, y: q.predict(x), source: `mlpkit (${q.backend}), ${rows} calibration rows` });
      } catch (err) {
        out.push({ format: { ...f, label }, y: null, source: 'not run', why: `net.quantize(${JSON.stringify({ ...opts, calibration: `${rows} rows` })}) threw: ${err.message}` });
      } finally {
        disposeQuietly(q);
      }
    }
  }
  return out.filter((o) => o.y);
}

async function fitFor(net, x, target, { loss, lr, batchSize, seconds: fitSeconds, schedule }) {
  const trainer = net.trainer({ loss, optimizer: { type: 'adam', lr }, ...(schedule ? { schedule } : {}) });
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), fitSeconds * 1000);
  const result = await trainer.fit(x, target, { epochs: 100000, batchSize, shuffle: true, seed: 3, signal: controller.signal });
  clearTimeout(timer);
  return result;
}

async function neuralFieldSection() {
  const size = small ? 48 : 96;
  const fitSeconds = small ? 1.5 : 5;
  progress(`accuracy: neural field (demo MLP) on a ${size}x${size} scene, ${fitSeconds} s of training`);
  const { coords, colors } = renderScene(size);
  const spec = {
    inputs: 2,
    encoding: { type: 'frequency', octaves: 8 },
    layers: [{ units: 64, activation: 'relu' }, { units: 64, activation: 'relu' }, { units: 64, activation: 'relu' }, { units: 3 }],
    seed: 1,
  };
  const net = new Mlp(spec);
  const fit = await fitFor(net, coords, colors, { loss: 'mse', lr: 1e-2, batchSize: 2048, seconds: fitSeconds });
  const checks = [];
  const { yFloat, out } = quantisedOutputs(net, coords, size * size, 'neural field', checks);
  // Calibration: random coordinates of the same square, not the image's grid points.
  const calibration = uniformSquare(CALIBRATION_ROWS, 61);
  out.push(...calibratedOutputs(net, coords, calibration));
  const target = toBytes(colors);
  const psnrFloat = psnr8(toBytes(yFloat), target);
  const rows = out.map((o) => ({ ...o, ...outputError(o.y, yFloat), psnr: psnr8(toBytes(o.y), target) }));
  const widest = Math.max(...net.getLayers().map((l) => l.inputs));
  const note = widest <= 64
    ? `No layer has more than ${widest} inputs, so int4 g64 and g128 both hold one group per row in every layer (the first layer's 34 encoded inputs padded to 64 or 128) and give the same numbers.`
    : '';
  net.dispose();
  return { note, title: `MLP 2 -> freq(8) 34 -> 64 -> 64 -> 64 -> 3 (the demo's), fitted ${fit.history.length} epochs (${fitSeconds} s) to a ${size}x${size} scene`, psnrFloat, rows, checks };
}

/** Gaussian blobs: `classes` centres in `dims` dimensions, unit noise; a few percent confusable. */
function blobs(count, dims, classes, centres, seed) {
  const noise = gaussian(count * dims, seed);
  const x = new Float32Array(count * dims);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const c = i % classes;
    labels[i] = c;
    for (let d = 0; d < dims; d++) x[i * dims + d] = centres[c * dims + d] + noise[i * dims + d];
  }
  return { x, labels };
}

const argmaxAccuracy = (y, labels, classes) => {
  let hits = 0;
  for (let i = 0; i < labels.length; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (y[i * classes + c] > y[i * classes + best]) best = c;
    if (best === labels[i]) hits++;
  }
  return hits / labels.length;
};

async function classifierSection() {
  const dims = 64;
  const classes = 16;
  const hidden = small ? 128 : 256;
  const trainCount = small ? 8192 : 32768;
  const testCount = small ? 2048 : 4096;
  const fitSeconds = small ? 1.5 : 6;
  progress(`classifier: ${classes} Gaussian blobs in ${dims} dims, MLP ${dims}-${hidden}-${hidden}-${classes}, ${fitSeconds} s of training`);
  const centres = gaussian(classes * dims, 50, 0.42); // spacing chosen so float accuracy lands near 90%
  const train = blobs(trainCount, dims, classes, centres, 51);
  const test = blobs(testCount, dims, classes, centres, 52);
  const spec = { inputs: dims, layers: [{ units: hidden, activation: 'relu' }, { units: hidden, activation: 'relu' }, { units: classes }], seed: 2 };
  const net = new Mlp(spec);
  const fit = await fitFor(net, train.x, train.labels, { loss: 'softmax-cross-entropy', lr: 1e-3, batchSize: 128, seconds: fitSeconds });
  const checks = [];
  const { yFloat, out } = quantisedOutputs(net, test.x, testCount, 'classifier', checks);
  out.push(...calibratedOutputs(net, test.x, train.x.subarray(0, CALIBRATION_ROWS * dims)));
  const accFloat = argmaxAccuracy(yFloat, test.labels, classes);
  const rows = out.map((o) => {
    let agree = 0; // predictions equal to the float model's
    for (let i = 0; i < testCount; i++) {
      let a = 0;
      let b = 0;
      for (let c = 1; c < classes; c++) {
        if (o.y[i * classes + c] > o.y[i * classes + a]) a = c;
        if (yFloat[i * classes + c] > yFloat[i * classes + b]) b = c;
      }
      if (a === b) agree++;
    }
    return { ...o, ...outputError(o.y, yFloat), accuracy: argmaxAccuracy(o.y, test.labels, classes), agree: agree / testCount };
  });
  net.dispose();
  return {
    title: `${classes}-class Gaussian blobs in ${dims} dims (centres N(0, 0.42^2), unit noise), MLP ${dims}-${hidden}-${hidden}-${classes} ReLU, ` +
      `${fit.history.length} epochs (${fitSeconds} s) of Adam on ${trainCount} samples, tested on ${testCount}`,
    accFloat,
    rows,
    checks,
  };
}

// ---- report ------------------------------------------------------------------------------------------

/**
 * How many times faster the row `fastKey` ran than `slowKey` at `batch`: the median over the
 * interleaved passes of the two rows' time ratio within a pass; undefined when either was not timed.
 */
function speedup(cells, slowKey, fastKey, batch) {
  const a = cells.get(`${slowKey}:${batch}`)?.passes;
  const b = cells.get(`${fastKey}:${batch}`)?.passes;
  return a && b ? pairedRatio(a, b) : undefined;
}

function speedMarkdown(s) {
  const { rows, cells, bandwidth } = s;
  const byKey = new Map(rows.map((r) => [r.key, r]));
  const us = (key, batch) => cells.get(`${key}:${batch}`)?.us;
  const lines = [
    `### Speed: one Linear layer ${LAYER.k} -> ${LAYER.n} (+ bias)`,
    '',
    `Read bandwidth of this machine (${THREADS} threads), measured here: ${bandwidth.scanBig.toFixed(1)} GB/s scanning ${mb(BANDWIDTH_BYTES)} with memchr` +
      ` (Buffer.indexOf in ${THREADS} workers); ${bandwidth.f32 === undefined ? 'mlpkit float32 not measured' : `${bandwidth.f32.toFixed(1)} GB/s streamed by mlpkit float32 predict at batch 1 (${mb(rows[0].bytes)} of weights${bandwidth.f32Counts ? '' : ', cache-resident: not used as a bandwidth'})`};` +
      ` DRAM read bandwidth taken as the larger, ${bandwidth.dram.toFixed(1)} GB/s (${bandwidth.dramFrom}).` +
      ` Smaller working sets read faster (lscpu reports a ${l3Text()} on this VM): a memchr scan of each row's weight size, timed in the batch-1 passes next to the rows, gives (median) ` +
      `${[...bandwidth.scanAt].map(([bytes, v]) => `${v.toFixed(1)} GB/s at ${mb(bytes)}`).join(', ')}.` +
      ' The "% of read BW" column is paired: in each pass, the row\'s weight GB/s over the larger of mlpkit float32\'s GB/s and the scan of the row\'s size in the same pass; the median over passes.',
    '',
    '| batch | engine and format | weight bytes | time per call | weight GB/s | % of read BW | vs mlpkit f32 | vs onnxruntime |',
    '|---:|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const batch of BATCHES) {
    const vsF32 = (key) => speedup(cells, 'f32', key, batch);
    for (const r of rows) {
      const t = us(r.key, batch);
      if (t === undefined) {
        lines.push(`| ${batch} | ${r.label} | ${mb(r.bytes)} | - | - | - | - | - |`);
        continue;
      }
      const bw = batch === 1 ? gbps(r.bytes, t) : undefined;
      const frac = batch === 1 ? bandwidth.fractionFor(r) : undefined;
      const cp = r.counterpart ? speedup(cells, r.counterpart, r.key, batch) : undefined;
      const vsOrt = r.counterpart ? (cp === undefined ? '-' : `${ratio(cp)} (vs ${byKey.get(r.counterpart).label.replace('onnxruntime ', '')})`) : '';
      lines.push(
        `| ${batch} | ${r.label} | ${mb(r.bytes)} | ${formatTime(t)} | ${bw === undefined ? '' : bw.toFixed(1)} | ${frac === undefined ? '' : `${(frac * 100).toFixed(0)}%`} |` +
          ` ${r.key === 'f32' ? 'baseline' : vsF32(r.key) === undefined ? '-' : ratio(vsF32(r.key))} | ${vsOrt} |`,
      );
    }
  }
  const skips = [...new Set([...cells.values()].filter((c) => c.skip).map((c) => c.skip))];
  if (skips.length) lines.push('', `'-': ${skips.join('; ')}.`);
  lines.push(
    '',
    'weight bytes: quantised values + scales (+ zero points) read per call, the bias and x not counted. mlpkit rows count what its native layout reads (native/core/quant/qlayer.h: int4 W8A8 layers keep their bfloat16-valued scales in 2 bytes; zero points are 4-byte lanes, read for asymmetric layers only);' +
      ' onnxruntime rows count the format\'s bytes, float32 scales (its prepacked layout may differ a little).',
    'vs mlpkit f32: mlpkit float32 time over the row\'s (above 1: the row is faster). vs onnxruntime: the time of the onnxruntime operator that computes the same thing over the mlpkit row\'s (above 1: mlpkit is faster).' +
      ' Both are medians over the interleaved passes of the ratio within a pass, so they can differ a little from the ratio of the two time columns;',
    'weight-only int8 has no onnxruntime counterpart with float activations, so it is set against MatMulInteger too.',
    '',
    '#### Speedup over mlpkit float32 at the same batch',
    '',
    `| engine and format | ${BATCHES.map((b) => `batch ${b}`).join(' | ')} |`,
    `|---|${BATCHES.map(() => '---:').join('|')}|`,
  );
  for (const r of rows) {
    lines.push(`| ${r.label} | ${BATCHES.map((b) => {
      const v = speedup(cells, 'f32', r.key, b);
      return v === undefined ? '-' : ratio(v);
    }).join(' | ')} |`);
  }
  if (s.accuracyOfRow.size) {
    lines.push(
      '',
      `#### Output error of each row on this layer (the ${CHECK_ROWS} Gaussian check rows, vs float64 of the float weights)`,
      '',
      '| engine and format | rel. max error | rel. RMS error |',
      '|---|---:|---:|',
      ...rows.filter((r) => s.accuracyOfRow.has(r.key)).map((r) => {
        const e = s.accuracyOfRow.get(r.key);
        return `| ${r.label} | ${pct(e.max)} | ${pct(e.rms)} |`;
      }),
    );
  }
  lines.push('', '#### Observations (computed from the tables above)', '');
  if (s.f32Again !== undefined && us('f32', 1) !== undefined) {
    const drift = s.f32Again / us('f32', 1);
    lines.push(`- Stability: mlpkit float32 at batch 1 re-timed after all the cells: ${formatTime(s.f32Again)}, ${drift.toFixed(2)}x its first time` +
      `${Math.abs(drift - 1) > 0.15 ? ' (more than 15% apart: other work on the shared cores during the run, read the ratios with care)' : ''}.`);
  }
  const big = BATCHES[BATCHES.length - 1];
  const ops = 2 * big * LAYER.k * LAYER.n;
  const rate = (key) => {
    const t = us(key, big);
    return t === undefined ? '-' : `${((ops / t) * 1e-6).toFixed(2)}`;
  };
  const flags = int8Flags();
  lines.push(
    `- Throughput at batch ${big} (2 x batch x ${LAYER.k} x ${LAYER.n} operations per call): float32 in TFLOP/s, mlpkit ${rate('f32')}, onnxruntime Gemm ${rate('ort-f32')};` +
      ` int8 in TOP/s, mlpkit W8A8 ${rate('w8a8')}, onnxruntime MatMulInteger ${rate('ort-int8')}.` +
      ` The CPU reports ${flags.length ? flags.join(', ') : 'none of avx512_vnni, avx_vnni, amx_int8'}; mlpkit's int8 kernels are AVX-512 VNNI (vpdpbusd).` +
      (flags.includes('amx_int8') && us('ort-int8', big) * 2 < us('w8a8', big)
        ? ' onnxruntime\'s MLAS has AMX-INT8 kernels for its u8s8 GEMM, which would explain its MatMulInteger running this far above mlpkit\'s VNNI W8A8 (an inference from the numbers, not traced).'
        : ''),
  );
  const f1 = us('f32', 1);
  const f8 = us('f32', 8);
  const o1 = us('ort-f32', 1);
  const o8 = us('ort-f32', 8);
  if (f1 && f8) {
    lines.push(
      `- mlpkit float32 takes ${(f8 / f1).toFixed(1)}x its batch-1 time at batch 8${o1 && o8 ? ` (onnxruntime Gemm: ${(o8 / o1).toFixed(1)}x)` : ''}; a layer this wide is still weight-bandwidth bound at batch 8,` +
        ' so that ratio should be near 1. ' + (f8 / f1 > 3 ? 'The batch-8 float32 baseline is slow, and every batch-8 speedup over it is inflated by as much.' : ''),
    );
  }
  return lines.join('\n');
}

function evaluateTargets(s, gl) {
  const targets = [];
  const us = (key, batch) => s?.cells.get(`${key}:${batch}`)?.us;
  const push = (what, target, measured, pass) => targets.push({ what, target, measured, result: pass === undefined ? 'N/A' : pass ? 'PASS' : 'FAIL' });
  const fastest = (keys, batch) => keys.map((key) => ({ key, t: us(key, batch) })).filter((e) => e.t !== undefined).sort((a, b) => a.t - b.t)[0];
  const label = (key) => s.rows.find((r) => r.key === key).label;
  const layer = `${LAYER.k} -> ${LAYER.n}`;
  if (s) {
    const i8 = fastest(['int8', 'w8a8'], 1);
    const i8f = i8 && speedup(s.cells, 'f32', i8.key, 1);
    push(`${layer}, batch 1, int8 weights (the faster of weight-only and W8A8)`, '>= 3.3x mlpkit float32',
      i8f ? `${ratio(i8f)} (${label(i8.key)})` : 'not measured', i8f ? i8f >= 3.3 : undefined);
    const i8row = i8 && s.rows.find((r) => r.key === i8.key);
    const bw = i8 ? gbps(i8row.bytes, i8.t) : undefined;
    const frac = i8row ? s.bandwidth.fractionFor(i8row) : undefined;
    const scanRef = i8row ? s.bandwidth.scanAt.get(i8row.bytes) : undefined;
    push(`${layer}, batch 1, int8 weights: weight bytes per second (the same row)`,
      `>= 80% of measured read bandwidth (paired per pass: the larger of mlpkit float32's GB/s and a memchr scan of the same ${i8row ? mb(i8row.bytes) : '-'}; medians ${s.bandwidth.f32?.toFixed(1) ?? '-'} and ${scanRef?.toFixed(1) ?? '-'} GB/s)`,
      bw === undefined || frac === undefined ? 'not measured' : `${bw.toFixed(1)} GB/s = ${(frac * 100).toFixed(0)}% (${((bw / s.bandwidth.dram) * 100).toFixed(0)}% of the DRAM figure)`,
      frac === undefined ? undefined : frac >= 0.8);
    const i4 = fastest(['int4-g32', 'w4a8-g32'], 1);
    const i4f = i4 && speedup(s.cells, 'f32', i4.key, 1);
    push(`${layer}, batch 1, int4 g32 (the faster of weight-only and W4A8)`, '>= 5.5x mlpkit float32',
      i4f ? `${ratio(i4f)} (${label(i4.key)})` : 'not measured', i4f ? i4f >= 5.5 : undefined);
    const w8 = speedup(s.cells, 'f32', 'w8a8', 64);
    push(`${layer}, batch 64, int8 W8A8`, '>= 1.8x mlpkit float32', w8 ? ratio(w8) : 'not measured', w8 ? w8 >= 1.8 : undefined);
    const ortI8 = i8 && speedup(s.cells, 'ort-int8', i8.key, 1);
    push(`${layer}, batch 1, int8: fastest mlpkit int8 row vs onnxruntime MatMulInteger`, '>= 1.2x',
      ortI8 ? `${ratio(ortI8)} (${label(i8.key)})` : 'not measured', ortI8 ? ortI8 >= 1.2 : undefined);
    const ortI4 = fastest([nbitsKey(32, 0), nbitsKey(32, 4)], 1);
    const vsNbits = i4 && ortI4 && speedup(s.cells, ortI4.key, i4.key, 1);
    push(`${layer}, batch 1, int4 g32: fastest mlpkit int4 g32 row vs fastest onnxruntime MatMulNBits g32`, '>= 1.2x',
      vsNbits ? `${ratio(vsNbits)} (${label(i4.key)} vs ${label(ortI4.key).replace('onnxruntime ', '')})` : 'not measured',
      vsNbits ? vsNbits >= 1.2 : undefined);
  }
  if (gl) {
    const worst = (key) => {
      const rs = gl.results.filter((r) => r.format.key === key);
      return rs.length ? rs.reduce((a, b) => (b.rms > a.rms ? b : a)) : undefined;
    };
    for (const [key, limit, name] of [['int8', 0.01, 'int8 (weight-only)'], ['int4-g32', 0.05, 'int4 g32 symmetric (weight-only)']]) {
      const w = worst(key);
      push(`relative RMS output error, Gaussian layers, ${name}, worst shape`, `<= ${limit * 100}%`,
        w ? `${pct(w.rms)} (${w.shape}; ${w.source})` : 'not measured', w ? w.rms <= limit : undefined);
    }
  }
  return targets;
}

/**
 * The 'computed by' cell of each row and the footnotes saying why a row fell back to the JS twin
 * (one numbered note per distinct reason).
 */
function sources(rows) {
  const reasons = [];
  const cells = rows.map((r) => {
    if (!r.why) return r.source;
    let i = reasons.indexOf(r.why);
    if (i < 0) i = reasons.push(r.why) - 1;
    return `${r.source} [${i + 1}]`;
  });
  const notes = reasons.length
    ? ['', 'JS twin: this bench\'s JavaScript implementation of lib/quant/format.ts (quantisation, dequantisation, the W8A8 float32 order), used because',
      ...reasons.map((why, i) => `[${i + 1}] ${why}.`)]
    : [];
  return { cells, notes };
}

function accuracyMarkdown(gl, nf) {
  const lines = [];
  if (gl) {
    lines.push(
      `### Accuracy: Gaussian layers (weights and bias N(0, ${WEIGHT_STD}^2), ${ACCURACY_BATCH} Gaussian input rows)`,
      '',
      'Relative output error vs the float64 output of the float weights: max |y_q - y| / max |y| and sqrt(sum (y_q - y)^2 / sum y^2).',
      '',
      '| layer | format | group | symmetric | activations | weight bytes | rel. max error | rel. RMS error | computed by |',
      '|---|---|---:|---|---|---:|---:|---:|---|',
    );
    const src = sources(gl.results);
    gl.results.forEach((r, i) => {
      const f = r.format;
      lines.push(`| ${r.shape} | ${f.weights} | ${f.weights === 'int8' ? 'row' : f.groupSize} | ${f.symmetric === false ? 'no' : 'yes'} | ${f.activations} | ${mb(r.bytes)} | ${pct(r.max)} | ${pct(r.rms)} | ${src.cells[i]} |`);
    });
    lines.push(...src.notes, '');
  }
  if (nf) {
    lines.push(`### Accuracy: neural field, ${nf.title}`, '', `Float PSNR vs the target image: ${nf.psnrFloat.toFixed(2)} dB.`, '',
      '| format | PSNR | PSNR change | rel. max error | rel. RMS error | computed by |', '|---|---:|---:|---:|---:|---|');
    const src = sources(nf.rows);
    nf.rows.forEach((r, i) => {
      const d = r.psnr - nf.psnrFloat;
      lines.push(`| ${r.format.label} | ${r.psnr.toFixed(2)} dB | ${d >= 0 ? '+' : ''}${d.toFixed(2)} dB | ${pct(r.max)} | ${pct(r.rms)} | ${src.cells[i]} |`);
    });
    lines.push(...src.notes, '', nf.note, '');
  }
  return lines.join('\n');
}

function classifierMarkdown(cl) {
  const lines = [`### Accuracy: classifier, ${cl.title}`, '', `Float test accuracy: ${(cl.accFloat * 100).toFixed(2)}%.`, '',
    '| format | test accuracy | change | predictions equal to float | rel. RMS logit error | computed by |', '|---|---:|---:|---:|---:|---|'];
  const src = sources(cl.rows);
  cl.rows.forEach((r, i) => {
    const d = (r.accuracy - cl.accFloat) * 100;
    lines.push(`| ${r.format.label} | ${(r.accuracy * 100).toFixed(2)}% | ${d >= 0 ? '+' : ''}${d.toFixed(2)} pt | ${(r.agree * 100).toFixed(2)}% | ${pct(r.rms)} | ${src.cells[i]} |`);
  });
  lines.push(...src.notes, '');
  return lines.join('\n');
}

// ---- chart (hand-written SVG: grouped bars on a log2 speedup axis, a line at 1x) -------------------

function escapeXml(s) {
  return String(s).replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]);
}

const PALETTE = {
  f32: '#08306b', int8: '#2171b5', w8a8: '#6baed6',
  'int4-g32': '#238b45', 'int4-g64': '#41ab5d', 'int4-g128': '#74c476',
  'w4a8-g32': '#6a51a3', 'w4a8-g64': '#807dba', 'w4a8-g128': '#9e9ac8',
  'ort-f32': '#7f2704', 'ort-int8': '#d94801',
  [nbitsKey(32, 0)]: '#f16913', [nbitsKey(64, 0)]: '#fd8d3c', [nbitsKey(128, 0)]: '#fdae6b',
  [nbitsKey(32, 4)]: '#a50f15', [nbitsKey(64, 4)]: '#de2d26', [nbitsKey(128, 4)]: '#fb6a4a',
};

const tickLabel = (e) => (e >= 0 ? `${2 ** e}x` : `1/${2 ** -e}x`);

/** Two panels (mlpkit, onnxruntime), batch groups, one bar per row: speedup over mlpkit float32. */
function speedupSvg(s, subtitle) {
  const f = (v) => v.toFixed(1);
  const panels = [
    { title: 'mlpkit (dashed: mlpkit float32 = 1x)', rows: s.rows.filter((r) => r.engine === 'mlpkit') },
    { title: 'onnxruntime-node, on the same weights (dashed: mlpkit float32 = 1x)', rows: s.rows.filter((r) => r.engine === 'ort') },
  ];
  const value = (key, batch) => speedup(s.cells, 'f32', key, batch) ?? null;
  const all = panels.flatMap((p) => p.rows.flatMap((r) => BATCHES.map((b) => value(r.key, b)))).filter((v) => v !== null && v > 0);
  // One log2 axis for both panels, whole powers of two, 1x always inside.
  const e0 = Math.min(-1, Math.floor(Math.log2(Math.min(1, ...all))));
  const e1 = Math.max(1, Math.ceil(Math.log2(Math.max(1, ...all))));
  const width = 1180;
  const panelHeight = 340;
  const legendRows = 3;
  const out = [];
  let y0 = 56;
  for (const panel of panels) {
    const m = { left: 56, right: 16, top: 24, bottom: 34 + legendRows * 16 };
    const pw = width - m.left - m.right;
    const ph = panelHeight - m.top - m.bottom;
    const sy = (v) => y0 + m.top + ph - ((Math.log2(v) - e0) / (e1 - e0)) * ph;
    const floor = sy(2 ** e0);
    out.push(`<text x="${f(m.left + pw / 2)}" y="${f(y0 + 14)}" text-anchor="middle" font-weight="bold">${escapeXml(panel.title)}</text>`);
    for (let e = e0; e <= e1; e++) {
      out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${f(sy(2 ** e))}" y2="${f(sy(2 ** e))}" stroke="${e === 0 ? 'black' : '#e0e0e0'}"${e === 0 ? ' stroke-dasharray="5 3"' : ''}/>`);
      out.push(`<text x="${m.left - 6}" y="${f(sy(2 ** e) + 4)}" text-anchor="end">${tickLabel(e)}</text>`);
    }
    const groupWidth = pw / BATCHES.length;
    const barWidth = Math.min(24, (groupWidth * 0.86) / panel.rows.length);
    BATCHES.forEach((batch, gi) => {
      const gx = m.left + gi * groupWidth + (groupWidth - barWidth * panel.rows.length) / 2;
      panel.rows.forEach((r, si) => {
        const v = value(r.key, batch);
        const bx = gx + si * barWidth;
        const cx = f(bx + barWidth / 2);
        if (v === null) {
          out.push(`<text x="${cx}" y="${f(floor - 4)}" font-size="8" fill="#888" text-anchor="middle" transform="rotate(-90 ${cx} ${f(floor - 4)})" dy="3">n/a</text>`);
          return;
        }
        const top = sy(v);
        out.push(
          `<rect x="${f(bx)}" y="${f(top)}" width="${f(barWidth - 1)}" height="${f(floor - top)}" fill="${PALETTE[r.key] ?? '#333'}">` +
            `<title>${escapeXml(`${r.label}, batch ${batch}: ${ratio(v)} (${formatTime(s.cells.get(`${r.key}:${batch}`).us)} per call)`)}</title></rect>`,
        );
        out.push(`<text x="${cx}" y="${f(top - 3)}" font-size="8" text-anchor="middle" fill="#333">${v >= 10 ? v.toFixed(0) : v.toFixed(1)}</text>`);
      });
      out.push(`<text x="${f(m.left + (gi + 0.5) * groupWidth)}" y="${f(floor + 15)}" text-anchor="middle">batch ${batch}</text>`);
    });
    out.push(`<rect x="${m.left}" y="${y0 + m.top}" width="${pw}" height="${ph}" fill="none" stroke="black"/>`);
    out.push(`<text transform="translate(16 ${f(y0 + m.top + ph / 2)}) rotate(-90)" text-anchor="middle">speedup (log scale)</text>`);
    const perRow = Math.ceil(panel.rows.length / legendRows);
    const itemWidth = pw / perRow;
    panel.rows.forEach((r, i) => {
      const lx = m.left + (i % perRow) * itemWidth;
      const ly = floor + 32 + Math.floor(i / perRow) * 16;
      out.push(`<rect x="${f(lx)}" y="${f(ly - 9)}" width="10" height="10" fill="${PALETTE[r.key] ?? '#333'}"/>`);
      out.push(`<text x="${f(lx + 14)}" y="${f(ly)}" font-size="10">${escapeXml(r.label.replace('onnxruntime ', ''))}</text>`);
    });
    y0 += panelHeight;
  }
  const height = y0 + 8;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(`Linear ${LAYER.k} -> ${LAYER.n}: time of mlpkit float32 over each row's time at the same batch (higher is faster)`)}</text>`,
    `<text x="${width / 2}" y="40" text-anchor="middle" fill="#444">${escapeXml(subtitle)}</text>`,
    ...out,
    '</svg>',
    '',
  ].join('\n');
}

// ---- main --------------------------------------------------------------------------------------------

/** 'commit abc1234' plus a word on uncommitted changes to what the bench runs (lib/, native/). */
function treeState() {
  try {
    const git = (a) => execFileSync('git', a, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = git(['status', '--porcelain', '--', 'lib', 'native']).split('\n').filter(Boolean).length;
    return `commit ${git(['rev-parse', '--short', 'HEAD'])}${dirty ? ` + ${dirty} uncommitted change(s) under lib/ and native/` : ''} (dist/ and the addon as built at run time)`;
  } catch {
    return 'not a git checkout';
  }
}

function header() {
  const i = info();
  const cpu = cpuName();
  const machine = `${cpu}, ${THREADS} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, ${process.platform}-${process.arch}, node ${process.versions.node}`;
  const ortVersion = ort ? (ort.env?.versions?.node ?? ort.env?.versions?.common ?? '?') : null;
  return {
    machine,
    lines: [
      '# mlpkit quantised matmuls: speed and accuracy (issue #4)',
      '',
      `- date: ${new Date().toISOString()}; command: node bench/quant.mjs --seconds ${seconds}${small ? ' --small' : ''} --only ${only.join(',')}`,
      `- machine: ${machine}`,
      `- tree: ${treeState()}`,
      `- mlpkit info(): version ${i.version}, backend ${i.backend}, isa ${i.isa}, threads ${i.threads}` +
        (i.native.available ? `, native isas ${i.native.isas.join('/')}${i.native.compiler ? ` (${i.native.compiler})` : ''}` : `, native unavailable: ${i.native.error}`),
      `- mlpkit quantisation API: ${quantApi.summary}`,
      `- onnxruntime-node: ${ort ? `${ortVersion}, cpu EP, intraOpNumThreads ${THREADS}, interOpNumThreads 1, graphOptimizationLevel all, output tensors preallocated` : `NOT LOADED (${ortReason})`}`,
      `- timing: each batch's rows in ${PASSES} interleaved passes (bench/support/timing.mjs), ${seconds} s budget per row split over the passes, each pass the median of >= 2 rounds of >= 2 ms of back-to-back calls;` +
        ' a row\'s time is the median of its pass times, and a ratio between two rows the median over passes of their time ratio within the pass (this VM\'s read bandwidth drifts by up to 1.5x within a minute);' +
        ' onnxruntime\'s run awaited one at a time',
      '- onnxruntime int8 is DynamicQuantizeLinear (asymmetric uint8, one scale and zero point for the whole x tensor) + MatMulInteger, where mlpkit W8A8 quantises x symmetric int8 per row:' +
        ' the two are different quantisations of the same int8 weights and agree only loosely (checked within 5%); MatMulNBits accuracy_level 4 quantises x to int8 per block inside the operator (checked within 5%), accuracy_level 0 keeps x float (checked within 1e-4 of the dequantised weights)',
    ],
  };
}

const loadAtStart = loadavg()[0];
const head = header();
let speed = null;
let gl = null;
let nf = null;
let cl = null;
try {
  if (only.includes('speed')) speed = await speedSection();
  if (only.includes('accuracy')) {
    gl = await gaussianLayersSection();
    nf = await neuralFieldSection();
  }
  if (only.includes('classifier')) cl = await classifierSection();
} catch (err) {
  if (!(err instanceof CheckError)) throw err;
  console.error(`\nAGREEMENT CHECK FAILED, nothing is reported:\n  ${err.message}`);
  process.exit(1);
}

const targets = evaluateTargets(speed, gl);
const checks = [...(speed?.checks ?? []), ...(gl?.checks ?? []), ...(nf?.checks ?? []), ...(cl?.checks ?? [])];
const markdown = [
  ...head.lines,
  `- 1-minute load average: ${loadAtStart.toFixed(2)} at start, ${loadavg()[0].toFixed(2)} at end (other work on the ${THREADS} cores skews the numbers)`,
  '',
  speed ? speedMarkdown(speed) : '',
  '',
  '### Targets (issue #4)',
  '',
  '| what | target | measured | result |',
  '|---|---|---|---|',
  ...targets.map((t) => `| ${t.what} | ${t.target} | ${t.measured} | ${t.result} |`),
  '',
  accuracyMarkdown(gl, nf),
  cl ? classifierMarkdown(cl) : '',
  '### Agreement checks (max |got - want| / max |want|), run before anything is timed or reported',
  '',
  ...checks.map((c) => `- ${c}`),
  ...(speed?.notes.length ? ['', '### Notes', '', ...speed.notes.map((nt) => `- ${nt}`)] : []),
  '',
].join('\n');
console.log(markdown);

if (fullRun || args.write) {
  const resultsDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, 'quant.md'), markdown);
  if (speed) {
    const i = info();
    writeFileSync(join(resultsDir, 'quant.svg'), speedupSvg(speed, `${head.machine}; mlpkit ${i.isa}, ${i.threads} threads; onnxruntime ${THREADS} threads; ${seconds} s per cell; ${new Date().toISOString().slice(0, 10)}`));
  }
  progress(`wrote ${join('bench', 'results', 'quant.md')}${speed ? ` and ${join('bench', 'results', 'quant.svg')}` : ''}`);
} else progress('partial run (--small or --only): bench/results not written (add --write to write them)');

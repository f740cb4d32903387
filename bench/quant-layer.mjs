// Times one quantised Linear layer at one shape and batch: the quick check of a kernel change,
// where bench/quant.mjs (~8 minutes, every format against onnxruntime) is the full report.
//
//   node bench/quant-layer.mjs [--inputs 4096] [--outputs 16384] [--batch 64]
//                              [--weights int8|int4|float32] [--group-size 32] [--activations int8|float]
//                              [--rounds 15] [--threads N]
//
// Prints the median time per call over rounds of back-to-back calls and the multiply-adds per
// second. To compare two builds, alternate them in separate processes and compare medians
// (MLPKIT_ADDON_PATH=path/to/mlpkit.node picks the addon): this VM's speed drifts by up to 1.5x
// within a minute, so one run of each says little.

import { benchArgs, usageError } from './support/args.mjs';
import { Mlp, info, setThreads } from '../dist/index.js';

const USAGE = 'Usage: node bench/quant-layer.mjs [--inputs N] [--outputs N] [--batch N] [--weights int8|int4|float32] ' +
  '[--group-size 32|64|128] [--activations int8|float] [--rounds N] [--threads N]';

const { values: args } = benchArgs(USAGE, {
  options: {
    inputs: { type: 'string', default: '4096' },
    outputs: { type: 'string', default: '16384' },
    batch: { type: 'string', default: '64' },
    weights: { type: 'string', default: 'int8' },
    'group-size': { type: 'string', default: '32' },
    activations: { type: 'string', default: 'int8' },
    rounds: { type: 'string', default: '15' },
    threads: { type: 'string' },
    help: { type: 'boolean' },
  },
});
const positive = (name) => {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < 1) usageError(`--${name} must be a positive integer, got '${args[name]}'`);
  return v;
};
const [k, n, batch, rounds] = ['inputs', 'outputs', 'batch', 'rounds'].map(positive);
if (!['int8', 'int4', 'float32'].includes(args.weights)) usageError(`--weights must be int8, int4 or float32, got '${args.weights}'`);

if (args.threads !== undefined) setThreads(positive('threads'));
const net = new Mlp({ inputs: k, layers: [{ units: n }], seed: 1 }, { backend: 'native' });
const model = args.weights === 'float32'
  ? net
  : net.quantize({
    weights: args.weights,
    activations: args.activations,
    ...(args.weights === 'int4' ? { groupSize: positive('group-size') } : {}),
  });
const x = new Float32Array(batch * k).map((_, i) => Math.sin(i * 0.618) * 1.5);
const out = new Float32Array(batch * n);

// Calls per round: enough for ~20 ms, so the timer's resolution does not matter.
let t = performance.now();
model.predict(x, out);
const once = performance.now() - t;
const calls = Math.max(1, Math.ceil(20 / Math.max(once, 1e-3)));
for (let i = 0; i < calls; i++) model.predict(x, out);
const times = [];
for (let r = 0; r < rounds; r++) {
  t = performance.now();
  for (let i = 0; i < calls; i++) model.predict(x, out);
  times.push((performance.now() - t) / calls);
}
times.sort((a, b) => a - b);
const ms = times[times.length >> 1];
const format = args.weights === 'float32' ? 'float32' :
  `${args.weights}${args.weights === 'int4' ? ` g${args['group-size']}` : ''} ${args.activations === 'int8' ? (args.weights === 'int4' ? 'W4A8' : 'W8A8') : 'weight-only'}`;
const { isa, threads } = info();
const time = (v) => (v < 1 ? `${(v * 1000).toFixed(1)} us` : `${v.toFixed(2)} ms`);
console.log(`${k} -> ${n}, batch ${batch}, ${format} (${isa}, ${threads} threads): ${time(ms)} per call ` +
  `(rounds ${time(times[0])} - ${time(times[times.length - 1])}), ${(k * n * batch / ms / 1e6).toFixed(1)} GMAC/s`);

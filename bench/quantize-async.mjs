// Event-loop blocking and wall time of net.quantize vs net.quantizeAsync for one 4096 -> 16384
// layer: the longest gap between ticks of a 5 ms interval timer while the call runs.
// Run: npx tsc -p tsconfig.json && node bench/quantize-async.mjs [--backend native|reference]
import { Mlp } from '../dist/index.js';
import { quantizedDescription, quantizedFromDescription } from '../dist/quant/model.js';

const backend = process.argv.includes('--backend') ? process.argv[process.argv.indexOf('--backend') + 1] : 'native';
const net = new Mlp({ inputs: 4096, layers: [{ units: 16384 }] }, { backend });
const calibration = new Float32Array(64 * 4096);
for (let i = 0; i < calibration.length; i++) calibration[i] = Math.sin(i * 12.9898) * 2;

async function measure(fn) {
  let last = performance.now();
  let maxGap = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 5);
  await new Promise((r) => setTimeout(r, 30));
  maxGap = 0;
  ticks = 0;
  last = performance.now();
  const t0 = performance.now();
  const q = await fn();
  const wall = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 30));
  clearInterval(timer);
  return { q, wall, maxGap: Math.max(maxGap, performance.now() - last), ticks };
}

// The main thread's own parts of quantizeAsync: the parameter copy, and building the model from
// the worker's description (internal functions of dist/quant/model.js).
for (const options of [{ weights: 'int8' }, { weights: 'int4', groupSize: 32 }]) {
  const t0 = performance.now();
  const p = net.getParameters();
  const t1 = performance.now();
  const q = net.quantize(options);
  const t2 = performance.now();
  const r = quantizedFromDescription(quantizedDescription(q), 'auto', null);
  const t3 = performance.now();
  console.log(`main thread, ${options.weights}: getParameters ${(t1 - t0).toFixed(0)} ms (${(p.byteLength / 1e6).toFixed(0)} MB), model from the worker's description ${(t3 - t2).toFixed(0)} ms`);
  q.dispose();
  r.dispose();
}

const cases = [
  ['int8', { weights: 'int8' }],
  ['int4 g32', { weights: 'int4', groupSize: 32 }],
  ['int8 + 64 cal rows', { weights: 'int8', calibration }],
  ['int4 g32 + 64 cal rows', { weights: 'int4', groupSize: 32, calibration }],
];
console.log(`backend ${net.backend}`);
console.log('| options | quantize wall | quantize longest gap | quantizeAsync wall | quantizeAsync longest gap | ticks (async) | identical |');
console.log('|---|---|---|---|---|---|---|');
for (const [name, options] of cases) {
  const s = await measure(() => net.quantize(options));
  const a = await measure(() => net.quantizeAsync(options));
  const same = Buffer.compare(Buffer.from(s.q.toSafetensors()), Buffer.from(a.q.toSafetensors())) === 0 &&
    JSON.stringify(s.q.stats) === JSON.stringify(a.q.stats);
  s.q.dispose();
  a.q.dispose();
  const f = (x) => `${(x / 1000).toFixed(2)} s`;
  const g = (x) => `${x.toFixed(0)} ms`;
  console.log(`| ${name} | ${f(s.wall)} | ${g(s.maxGap)} | ${f(a.wall)} | ${g(a.maxGap)} | ${a.ticks} | ${same} |`);
}
net.dispose();

// Quick throughput table: mlpkit's native backend against its reference backend on the
// 32-64-64-64-64-16 ReLU MLP, for inference and training. Medians of repeated runs; ratios
// between backends are measured in the same process. Peers (onnxruntime-node, tfjs) come with
// the fast-kernels work.
//
//   npm run bench [-- --seconds 0.5]

import { parseArgs } from 'node:util';
import { Mlp, info } from '../dist/index.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '0.3' } } });
const budgetMs = Number(values.seconds) * 1000;

const spec = {
  inputs: 32,
  layers: [64, 64, 64, 64].map((units) => ({ units, activation: 'relu' })).concat([{ units: 16 }]),
  seed: 1,
};

/** Median time per call in microseconds, running `fn` in rounds until the budget is spent. */
function median(fn, budget = budgetMs) {
  fn(); // warm up
  const times = [];
  const start = performance.now();
  while (performance.now() - start < budget || times.length < 5) {
    const t0 = performance.now();
    let reps = 0;
    do {
      fn();
      reps++;
    } while (performance.now() - t0 < 2);
    times.push(((performance.now() - t0) * 1000) / reps);
    if (times.length > 2000) break;
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1];
}

function random(n, seed) {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

const backends = info().native.available ? ['native', 'reference'] : ['reference'];
const rows = [];
for (const batch of [1, 16, 256, 16384]) {
  const x = random(batch * 32, batch);
  const target = random(batch * 16, batch + 1);
  const row = { batch };
  for (const backend of backends) {
    if (backend === 'reference' && batch > 256) continue; // minutes, and says nothing new
    const net = new Mlp(spec, { backend });
    const out = new Float32Array(batch * 16);
    const predictUs = median(() => net.predict(x, out));
    const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-4 } });
    const trainUs = median(() => trainer.step(x, target));
    row[`${backend} predict`] = predictUs;
    row[`${backend} train`] = trainUs;
    net.dispose();
  }
  rows.push(row);
}

const fmt = (us) => (us === undefined ? '-' : us < 1000 ? `${us.toFixed(1)} us` : `${(us / 1000).toFixed(2)} ms`);
const rate = (batch, us) => (us === undefined ? '-' : `${((batch / us) * 1e6).toExponential(2)}/s`);
const i = info();
console.log(`mlpkit ${i.version}, backend ${i.backend} (isa ${i.isa}, ${i.threads} thread(s)), node ${i.node}`);
console.log('MLP 32-64-64-64-64-16 ReLU, medians per call (samples/s)\n');
const header = ['batch', ...backends.flatMap((b) => [`${b} predict`, `${b} train step`])];
console.log(`| ${header.join(' | ')} |`);
console.log(`|${header.map(() => '---').join('|')}|`);
for (const r of rows) {
  const cells = backends.flatMap((b) => [
    `${fmt(r[`${b} predict`])} (${rate(r.batch, r[`${b} predict`])})`,
    `${fmt(r[`${b} train`])} (${rate(r.batch, r[`${b} train`])})`,
  ]);
  console.log(`| ${r.batch} | ${cells.join(' | ')} |`);
}

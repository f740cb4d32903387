// qmatmul against QuantizedMlp.fromLayers on the same layer: qmatmul repacks the layer into the
// kernels' layout on every call, fromLayers once. Time per call at batch 1 and 64, median of
// 5 rounds of >= 200 ms each (microseconds), on the backend 'auto' picks.
// Run: npx tsc -p tsconfig.json && node bench/qmatmul.mjs [--sizes 256,1024,4096]
import { QuantizedMlp, info, qmatmul, quantizeLayer } from '../dist/index.js';
import { benchArgs, usageError } from './support/args.mjs';
import { formatTime } from './support/report.mjs';

const USAGE = `Usage: node bench/qmatmul.mjs [--sizes LIST]
  --sizes LIST  square layer widths, comma-separated (default 256,1024,4096)
  --help`;
const { values: args } = benchArgs(USAGE, { options: { sizes: { type: 'string', default: '256,1024,4096' } } });
const sizes = args.sizes.split(',').map(Number);
if (sizes.some((s) => !Number.isInteger(s) || s < 1 || s > 16384)) usageError(`--sizes: expected widths from 1 to 16384 but received '${args.sizes}'`);

function perCall(fn) {
  for (let i = 0; i < 3; i++) fn();
  const rounds = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    let calls = 0;
    do {
      fn();
      calls++;
    } while (performance.now() - t0 < 200);
    rounds.push(((performance.now() - t0) / calls) * 1000);
  }
  return rounds.sort((a, b) => a - b)[2];
}

function gaussian(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = ((s >>> 8) / 2 ** 24 - 0.5) * 0.1;
  }
  return a;
}

const i = info();
console.log(`backend: ${i.backend} (${i.isa}, ${i.threads} threads), ${new Date().toISOString()}`);
console.log('| layer | format | activations | batch | qmatmul | fromLayers predict | ratio |');
console.log('|---|---|---|---:|---:|---:|---:|');
for (const k of sizes) {
  const weight = gaussian(k * k, k);
  for (const format of [{ format: 'int8' }, { format: 'int4', groupSize: 32 }]) {
    const layer = quantizeLayer(weight, null, k, k, 'none', 0, format);
    for (const activations of ['float', 'int8']) {
      const model = QuantizedMlp.fromLayers([layer], { activations });
      for (const batch of [1, 64]) {
        const x = gaussian(batch * k, batch);
        const out = new Float32Array(batch * k);
        const a = perCall(() => qmatmul(x, layer, { activations, out }));
        const b = perCall(() => model.predict(x, out));
        const name = format.format === 'int8' ? 'int8' : 'int4 g32';
        console.log(`| ${k} -> ${k} | ${name} | ${activations} | ${batch} | ${formatTime(a)} | ${formatTime(b)} | ${(a / b).toFixed(1)}x |`);
      }
      model.dispose();
    }
  }
}

// Time of GPTQ rounding (lib/quant/gptq.ts) for one int4 g32 layer, on the addon's loops
// (native/core/quant/gptq.cpp) and on the TypeScript ones, which give the same bytes (checked
// here on every shape timed both ways). Calibration rows are ReLU-like: a third of the values 0.
// Run: npx tsc -p tsconfig.json && node bench/gptq.mjs [--rows M] [--typescript-up-to K]
//   --rows M               calibration rows (default 1024)
//   --typescript-up-to K   time the TypeScript loops too for layers of at most K inputs (default
//                          1024; above that they take minutes)
import { parseArgs } from 'node:util';
import { quantizeLayer } from '../dist/index.js';
import { gptqLayer } from '../dist/quant/gptq.js';
import { nativeWeightQuantizer, setNativeWeightQuantizer } from '../dist/quant/quantize.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1024' }, 'typescript-up-to': { type: 'string', default: '1024' } } });
const rows = Number(values.rows);
const tsUpTo = Number(values['typescript-up-to']);
const SHAPES = [[256, 256], [1024, 1024], [1024, 4096], [2048, 8192], [4096, 4096], [4096, 16384]];

/** Seeded values in [-0.5, 0.5) (xorshift32), so runs time the same data. */
function values01(n, seed) {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

function timed(fn) {
  const t0 = performance.now();
  const result = fn();
  return { result, seconds: (performance.now() - t0) / 1000 };
}

const native = nativeWeightQuantizer();
if (!native?.gptqRound) {
  // The addon installs its quantisers when the first layer is quantised.
  quantizeLayer(new Float32Array(1), null, 1, 1, 'none', 0, { format: 'int8' });
}
const hasNative = !!nativeWeightQuantizer()?.gptqRound;
console.log(`GPTQ rounding, int4 g32 symmetric, ${rows} calibration rows; addon loops: ${hasNative ? 'yes' : 'no (TypeScript only)'}`);
console.log('| layer | addon | TypeScript | same bytes |');
console.log('|---|---:|---:|---|');
for (const [k, n] of SHAPES) {
  const w = Float32Array.from(values01(n * k, k + n), (v) => v * 0.05);
  const x = Float32Array.from(values01(rows * k, 7 * k), (v) => Math.max(0, v + 0.17));
  const layer = quantizeLayer(w, null, k, n, 'none', 0, { format: 'int4', groupSize: 32 });
  const a = hasNative ? timed(() => gptqLayer(layer, w, x)) : null;
  let b = null;
  if (k <= tsUpTo || !hasNative) {
    const installed = setNativeWeightQuantizer(null);
    try {
      b = timed(() => gptqLayer(layer, w, x));
    } finally {
      setNativeWeightQuantizer(installed);
    }
  }
  const same = a && b ? Buffer.from(a.result.weights).equals(Buffer.from(b.result.weights)) && Buffer.from(a.result.scales.buffer).equals(Buffer.from(b.result.scales.buffer)) : null;
  if (same === false) throw new Error(`${k} -> ${n}: the addon and TypeScript gave different bytes`);
  console.log(`| ${k} -> ${n} | ${a ? `${a.seconds.toFixed(2)} s` : '-'} | ${b ? `${b.seconds.toFixed(2)} s` : '-'} | ${same === null ? '-' : 'yes'} |`);
}

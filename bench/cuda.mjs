// mlpkit's cuda backend on the shapes of bench/cuda.py (issue #7): MLPs 32 -> W x 4 (ReLU) -> 16,
// W = 64 and 128, batches 2^14, 2^18, 2^21, at precision fp32 (tiled GEMM path), fp16 and bf16
// (fused tensor-core path). Training: steps/s of trainer.step (Adam + MSE, forward + backward +
// update, the loss read back every step); inference: samples/s of predict into a preallocated
// output. Every call takes host arrays: the batch goes host -> device and the output (or the
// loss) comes back in each timed call, unlike bench/cuda.py, whose tensors stay on the device.
//
// Without a usable GPU it prints why and writes that to the result file, then exits 0.
// NOT YET RUN ON A GPU.
//
//   node bench/cuda.mjs [--seconds S] [--out DIR] [--batches 14,18,21] [--precisions fp32,fp16,bf16]

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchArgs } from './support/args.mjs';
import { Mlp, info } from '../dist/index.js';
import { randomFloats } from './support/data.mjs';
import { formatRate } from './support/report.mjs';
import { budgetFromSeconds, medianUs } from './support/timing.mjs';

const USAGE = `Usage: node bench/cuda.mjs [--seconds S] [--out DIR] [--batches 14,18,21] [--precisions fp32,fp16,bf16]
  --seconds S     time budget per timed cell (default 1)
  --out DIR       where cuda-mlpkit.json and cuda-mlpkit.md go (default out/bench-cuda)
  --batches       log2 of the batch sizes (default 14,18,21)
  --precisions    (default fp32,fp16,bf16)`;

const { values: opts } = benchArgs(USAGE, {
  options: {
    seconds: { type: 'string', default: '1' },
    out: { type: 'string', default: 'out/bench-cuda' },
    batches: { type: 'string', default: '14,18,21' },
    precisions: { type: 'string', default: 'fp32,fp16,bf16' },
    help: { type: 'boolean', default: false },
  },
});
const budgetMs = budgetFromSeconds(opts.seconds);
const logBatches = opts.batches.split(',').map(Number);
const precisions = opts.precisions.split(',');
const INPUTS = 32;
const OUTPUTS = 16;
const WIDTHS = [64, 128];

mkdirSync(opts.out, { recursive: true });
const sys = info();
const result = { date: new Date().toISOString(), cuda: sys.cuda, node: sys.node, budgetMs, rows: [] };
const save = (markdown) => {
  writeFileSync(join(opts.out, 'cuda-mlpkit.json'), JSON.stringify(result, null, 2) + '\n');
  writeFileSync(join(opts.out, 'cuda-mlpkit.md'), markdown);
};

if (!sys.cuda.available) {
  const why = `mlpkit cuda bench skipped: ${sys.cuda.reason}`;
  console.log(why);
  result.skipped = sys.cuda.reason;
  save(`${why}\n`);
  process.exit(0);
}
console.error(`devices: ${sys.cuda.devices.map((d) => `${d.name} (sm_${d.computeCapability})`).join(', ')}`);

const data = new Map();
function batchData(logB) {
  if (!data.has(logB)) {
    const rows = 2 ** logB;
    data.set(logB, { rows, x: randomFloats(rows * INPUTS, 1 + logB), target: randomFloats(rows * OUTPUTS, 100 + logB) });
  }
  return data.get(logB);
}

for (const width of WIDTHS) {
  const spec = {
    inputs: INPUTS,
    layers: [...Array.from({ length: 4 }, () => ({ units: width, activation: 'relu' })), { units: OUTPUTS }],
    seed: 1,
  };
  for (const precision of precisions) {
    for (const logB of logBatches) {
      const { rows, x, target } = batchData(logB);
      const row = { width, precision, batch: rows };
      let net;
      try {
        net = new Mlp(spec, { backend: 'cuda', precision });
        row.kernel = net.handle('bench').kernel;
        const out = new Float32Array(rows * OUTPUTS);
        const predictUs = medianUs(() => net.predict(x, out), budgetMs);
        row.inferSamplesPerSecond = rows / (predictUs / 1e6);
        const trainer = net.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: 1e-3 } });
        const stepUs = medianUs(() => trainer.step(x, target), budgetMs);
        row.trainStepsPerSecond = 1e6 / stepUs;
        row.trainSamplesPerSecond = rows / (stepUs / 1e6);
        row.finalLoss = trainer.step(x, target);
      } catch (err) {
        row.error = err instanceof Error ? err.message : String(err);
      } finally {
        net?.dispose();
      }
      result.rows.push(row);
      console.error(JSON.stringify(row));
    }
  }
}

const lines = [
  `mlpkit cuda backend, ${result.date}, ${sys.cuda.devices.map((d) => d.name).join(', ')} (CUDA runtime ${sys.cuda.runtime}, driver ${sys.cuda.driver})`,
  '',
  'MLP 32 -> W x 4 (ReLU) -> 16; Adam + MSE. Each call moves its batch host -> device and the result back.',
  '',
  '| width | precision | kernel | batch | train steps/s | train samples/s | inference samples/s |',
  '|---:|---|---|---:|---:|---:|---:|',
  ...result.rows.map((r) =>
    r.error
      ? `| ${r.width} | ${r.precision} | ${r.kernel ?? '-'} | ${r.batch} | error: ${r.error} | | |`
      : `| ${r.width} | ${r.precision} | ${r.kernel} | ${r.batch} | ${r.trainStepsPerSecond.toPrecision(3)} | ${formatRate(r.trainSamplesPerSecond)} | ${formatRate(r.inferSamplesPerSecond)} |`,
  ),
  '',
];
const markdown = lines.join('\n');
console.log(markdown);
save(markdown);

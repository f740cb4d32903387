// Peer benchmark for issue #3: mlpkit (native sync, predictAsync, reference) against
// onnxruntime-node and tfjs on its wasm backend, on three MLP shapes, for predict and for an
// Adam training step. Every backend gets the same weights and inputs; its outputs (and the losses
// of its first two training steps) are checked against mlpkit's before anything is timed, and all are measured
// back to back in this one process. Prints markdown to stdout (progress goes to stderr), writes
// bench/results/peers.md and bench/results/peers.svg.
//
//   npm run bench [-- --seconds 0.2 --only A,C]

import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs, usageError } from './support/args.mjs';
import { Mlp, info } from '../dist/index.js';
import { createAdapters, loadAdapters } from './support/backends.mjs';
import { CheckError, expectClose } from './support/check.mjs';
import { cpuName } from './support/cpu.mjs';
import { randomFloats, randomLabels } from './support/data.mjs';
import { cellKey, evaluateTargets, formatTime, resultsSvg, shapeTable, targetsTable } from './support/report.mjs';
import { budgetFromSeconds, medianUs, medianUsAsync } from './support/timing.mjs';

const USAGE = `Usage: node bench/peers.mjs [--seconds S] [--only A,B,C] [--write]
  --seconds S   time budget per cell in seconds (default 1; the whole bench then takes ~1 min); each cell also runs >= 5 rounds
  --only LIST   shapes to run, comma-separated (default A,B,C)
  --write       write bench/results/peers.md and .svg even for a partial run (a full run always does)
  --help`;

const { values: args } = benchArgs(USAGE, {
  options: {
    seconds: { type: 'string', default: '1' },
    only: { type: 'string', default: 'A,B,C' },
    write: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
const budgetMs = budgetFromSeconds(args.seconds);
const seconds = budgetMs / 1000;

// Agreement with mlpkit native: outputs (relative to the output's scale) and the losses of the
// first two training steps.
const PREDICT_TOLERANCE = 1e-4;
// Looser for losses: tfjs sums the squared errors in float32 one after another, which at batch
// 16384 x 16 outputs already puts its MSE ~6e-5 (relative) away from mlpkit's (whose native and
// float64 reference agree to 1e-9). A wrong loss, reduction or optimizer setting is off by far more.
const LOSS_TOLERANCE = 1e-3;

const mlp = (inputs, hidden, outputs) => ({
  inputs,
  layers: hidden.map((units) => ({ units, activation: 'relu' })).concat([{ units: outputs }]),
  seed: 1,
});
const predictOp = (batches) => ({ key: 'predict', label: 'predict', short: 'predict', batches });
const trainOp = (loss, lossLabel, batches) => ({ key: 'train', label: `train step (Adam, ${lossLabel})`, short: 'train', loss, batches });

const SHAPES = {
  A: { title: '32-64-64-64-64-16 ReLU', spec: mlp(32, [64, 64, 64, 64], 16), ops: [predictOp([1, 16, 256, 16384]), trainOp('mse', 'MSE', [1, 16, 256, 16384])] },
  B: { title: '784-256-128-10 ReLU', spec: mlp(784, [256, 128], 10), ops: [trainOp('softmax-cross-entropy', 'softmax CE', [128]), predictOp([1, 128])] },
  C: { title: '1024-1024-1024 ReLU', spec: mlp(1024, [1024], 1024), ops: [predictOp([1, 4096])] },
};

const only = [...new Set(args.only.split(',').map((s) => s.trim().toUpperCase()).filter(Boolean))];
if (only.length === 0) usageError(`--only: no shape given (expected some of ${Object.keys(SHAPES).join(',')})`);
// The committed results (and the README tables quoted from them) come from full runs only.
const fullRun = Object.keys(SHAPES).every((k) => only.includes(k)) && seconds >= 1;
for (const key of only) if (!(key in SHAPES)) usageError(`--only: unknown shape '${key}' (expected some of ${Object.keys(SHAPES).join(',')})`);

const progress = (text) => process.stderr.write(`${text}\n`);
const isThenable = (v) => v !== null && typeof v === 'object' && typeof v.then === 'function';

/** Median us per call of `run`, sync or async, the call before serving as the warm-up. */
async function timeCall(run, isAsync) {
  return isAsync ? medianUsAsync(run, budgetMs, { warmup: false }) : medianUs(run, budgetMs, { warmup: false });
}

async function measurePredict(shape, handles, adapters, op, batch, cells) {
  const x = randomFloats(batch * shape.spec.inputs, 1000 + batch);
  let want = null; // the first output measured: mlpkit native's when it runs
  for (const a of adapters) {
    const key = cellKey(op.key, batch, a.key);
    const handle = handles.get(a.key);
    if (handle.missing) {
      cells.set(key, { skip: handle.missing });
      continue;
    }
    if (batch > a.maxBatch) {
      cells.set(key, { skip: `${a.label} skipped above batch ${a.maxBatch} (minutes per cell)` });
      continue;
    }
    let p;
    try {
      p = handle.predictor(x, batch);
      const first = p.run();
      const isAsync = isThenable(first);
      await first;
      if (want === null) want = { label: a.label, out: p.output().slice() };
      else {
        const err = expectClose(`${shape.key} predict batch ${batch}: ${a.label} vs ${want.label}`, p.output(), want.out, PREDICT_TOLERANCE);
        shape.checks.push(`${shape.key} predict ${batch}: ${a.label} vs ${want.label} ${err.toExponential(1)}`);
      }
      const us = await timeCall(p.run, isAsync);
      cells.set(key, { us });
      progress(`  ${shape.key} ${op.label} batch ${batch} ${a.label}: ${formatTime(us)}`);
    } catch (err) {
      if (err instanceof CheckError) throw err;
      cells.set(key, { skip: `${a.label} failed: ${err.message}` });
      progress(`  ${shape.key} ${op.label} batch ${batch} ${a.label}: FAILED ${err.message}`);
    } finally {
      p?.close();
    }
  }
}

async function measureTrain(shape, handles, adapters, op, batch, cells) {
  const outputs = shape.spec.layers[shape.spec.layers.length - 1].units;
  const x = randomFloats(batch * shape.spec.inputs, 2000 + batch);
  const target = op.loss === 'mse' ? randomFloats(batch * outputs, 3000 + batch) : randomLabels(batch, outputs, 3000 + batch);
  let want = null;
  for (const a of adapters) {
    const key = cellKey(op.key, batch, a.key);
    if (a.predictOnly) continue; // no row at all, rather than a '-'
    const handle = handles.get(a.key);
    if (handle.missing) {
      cells.set(key, { skip: handle.missing });
      continue;
    }
    if (!a.trains) {
      cells.set(key, { skip: `${a.label}: ${a.noTrainReason}` });
      continue;
    }
    if (batch > a.maxBatch) {
      cells.set(key, { skip: `${a.label} skipped above batch ${a.maxBatch} (minutes per cell)` });
      continue;
    }
    let t;
    try {
      t = handle.trainer(op.loss, x, target, batch);
      // The first step's loss comes from identical weights and data, before any update: it must
      // agree, or the sides do not train the same model on the same loss. The second one follows
      // one Adam update: it agrees only if lr, betas, eps and the bias correction do too.
      const first = t.step();
      const isAsync = isThenable(first);
      const losses = [await first, await t.step()];
      if (want === null) want = { label: a.label, losses };
      else {
        const err = expectClose(
          `${shape.key} ${op.label} batch ${batch}: losses of the first two steps, ${a.label} vs ${want.label}`,
          losses, want.losses, LOSS_TOLERANCE,
        );
        shape.checks.push(`${shape.key} train ${batch} losses of steps 1-2: ${a.label} vs ${want.label} ${err.toExponential(1)}`);
      }
      const us = await timeCall(t.step, isAsync);
      cells.set(key, { us });
      progress(`  ${shape.key} ${op.label} batch ${batch} ${a.label}: ${formatTime(us)}`);
    } catch (err) {
      if (err instanceof CheckError) throw err;
      cells.set(key, { skip: `${a.label} failed: ${err.message}` });
      progress(`  ${shape.key} ${op.label} batch ${batch} ${a.label}: FAILED ${err.message}`);
    } finally {
      t?.close();
    }
  }
}

async function runShape(key, adapters) {
  const def = SHAPES[key];
  const shape = { key, ...def, cells: new Map(), checks: [] };
  progress(`shape ${key}: ${def.title}`);
  // One set of initial weights (seed 1, torch init) for every backend.
  const init = new Mlp(def.spec, { backend: 'reference' });
  const parameters = init.getParameters();
  init.dispose();
  const handles = new Map();
  for (const a of adapters) {
    if (!a.available) {
      handles.set(a.key, { missing: `${a.label} not loaded` });
      continue;
    }
    try {
      handles.set(a.key, await a.open(def.spec, parameters));
    } catch (err) {
      handles.set(a.key, { missing: `${a.label} could not build shape ${key}: ${err.message}` });
      progress(`  ${a.label} cannot run shape ${key}: ${err.message}`);
    }
  }
  try {
    for (const op of def.ops) {
      for (const batch of op.batches) {
        if (op.key === 'predict') await measurePredict(shape, handles, adapters, op, batch, shape.cells);
        else await measureTrain(shape, handles, adapters, op, batch, shape.cells);
      }
    }
  } finally {
    for (const h of handles.values()) if (!h.missing) await h.close();
  }
  return shape;
}

function header(adapters) {
  const i = info();
  const cpu = cpuName();
  const machine = `${cpu}, ${availableParallelism()} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, ${process.platform}-${process.arch}, node ${process.versions.node}`;
  const lines = [
    '# mlpkit vs peers',
    '',
    `- date: ${new Date().toISOString()}; options: --seconds ${seconds} --only ${only.join(',')}`,
    `- machine: ${machine}`,
    `- mlpkit info(): version ${i.version}, backend ${i.backend}, isa ${i.isa}, threads ${i.threads}` +
      (i.native.available ? `, native isa ${i.native.isa}${i.native.compiler ? ` (${i.native.compiler})` : ''}` : `, native unavailable: ${i.native.error}`),
  ];
  for (const a of adapters.filter((ad) => ad.key === 'ort' || ad.key === 'tfjs')) {
    lines.push(`- ${a.label}: ${a.available ? a.details : `NOT LOADED (${a.reason})`}`);
  }
  lines.push(
    `- timing: median over rounds of >= 2 ms of back-to-back calls, ${seconds} s budget and >= 5 rounds per cell;` +
      ' async calls awaited one at a time; inputs prepared outside the timed calls',
    "- mlpkit vs peer: the row's time per call over mlpkit native's at the same op and batch (above 1: mlpkit native is faster)",
  );
  const threads = adapters
    .filter((a) => a.available && a.threads !== undefined)
    .map((a) => `${a.label} ${a.threads}`)
    .join(', ');
  const chartSubtitle =
    `${machine}; threads: mlpkit ${i.threads} (${i.isa})${threads ? `, ${threads}` : ''}; ${seconds} s per cell; ` +
    new Date().toISOString().slice(0, 10);
  return { text: lines.join('\n'), chartSubtitle };
}

// The machine is shared (2 cores, builds running beside the bench): the load average before and
// after says how much to trust a run.
const loadAtStart = loadavg()[0];
const adapters = await loadAdapters(createAdapters());
for (const a of adapters) if (!a.available) progress(`${a.label} not loaded: ${a.reason}`);
const head = header(adapters);

const shapes = [];
try {
  for (const key of only) shapes.push(await runShape(key, adapters));
} catch (err) {
  if (!(err instanceof CheckError)) throw err;
  // A peer computing something else makes every ratio meaningless: stop, say what disagreed.
  console.error(`\nAGREEMENT CHECK FAILED, nothing timed is reported:\n  ${err.message}`);
  process.exit(1);
}

const targets = evaluateTargets(shapes);
const markdown = [
  head.text,
  `- 1-minute load average: ${loadAtStart.toFixed(2)} at start, ${loadavg()[0].toFixed(2)} at end (other work on the cores skews the numbers)`,
  '',
  ...shapes.flatMap((s) => [shapeTable(s, adapters), '']),
  '### Targets (issue #3)',
  '',
  targetsTable(targets),
  '',
  `### Agreement checks (max |peer - mlpkit| / max |mlpkit|; tolerance ${PREDICT_TOLERANCE.toExponential(0)} for outputs, ${LOSS_TOLERANCE.toExponential(0)} for losses)`,
  '',
  ...shapes.flatMap((s) => s.checks.map((c) => `- ${c}`)),
  '',
].join('\n');
console.log(markdown);

if (fullRun || args.write) {
  const resultsDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, 'peers.md'), markdown);
  writeFileSync(join(resultsDir, 'peers.svg'), resultsSvg(shapes, adapters, head.chartSubtitle));
  progress(`wrote ${join('bench', 'results', 'peers.md')} and ${join('bench', 'results', 'peers.svg')}`);
} else progress('partial run (--only or --seconds): bench/results not written (--write to write them anyway)');

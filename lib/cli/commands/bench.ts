// `mlpkit bench`: a quick look at predict speed on this machine, mlpkit native against the
// reference backend and, when it is installed, onnxruntime-node on the same weights. The
// project's full benchmarks are in bench/; this one answers "how fast here, for my model".

import { availableParallelism } from 'node:os';
import { info, setThreads } from '../../info.js';
import { mlpToOnnx, onnxExportProblem } from '../../io/onnx.js';
import { Mlp } from '../../mlp.js';
import type { MlpSpec } from '../../spec.js';
import { intListOption, intOption, numberOption, parseCommand, type Command } from '../args.js';
import { loadModelFile, type AnyModel } from '../model-file.js';
import { usageError } from '../errors.js';

const usage = `Usage: mlpkit bench [MODEL] [options]

Times predict at a few batch sizes: mlpkit native, the reference backend (small batches only)
and onnxruntime-node when it is installed (npm install onnxruntime-node), on the same weights,
after checking that they agree. MODEL defaults to the demo 32-64-64-64-64-16 ReLU MLP.

  --batch LIST     batch sizes (default 1,16,256,4096; at most 65536, and 2^28 input floats)
  --seconds S      time per cell (default 0.3)
  --threads N      threads for mlpkit native and onnxruntime (default: all cores)

Median time per call over rounds of >= 2 ms; expect ~10% noise on a busy machine.`;

/** The model of the README's benchmarks and of bench/serve.mjs: 32-64-64-64-64-16 ReLU. */
const DEMO_SPEC: MlpSpec = {
  inputs: 32,
  layers: [{ units: 64, activation: 'relu' }, { units: 64, activation: 'relu' }, { units: 64, activation: 'relu' }, { units: 64, activation: 'relu' }, { units: 16 }],
  seed: 1,
};
const MAX_BATCH = 65536;
const MAX_INPUT_FLOATS = 2 ** 28;
const REFERENCE_MAX_BATCH = 256; // float64 TypeScript: larger batches take long and show nothing new

interface Runner {
  label: string;
  run(x: Float32Array, batch: number, out: Float32Array): unknown;
  skip?(batch: number): string | null;
  close(): void;
}

/**
 * Median microseconds per call over rounds of >= 2 ms, within the budget (at least 5 rounds),
 * after a warm-up of a fifth of the budget and at least 30 ms: the reference backend's code is
 * compiled by V8 over its first tens of calls (one warm-up call left a 0.02 s cell 16x slow).
 */
async function medianUs(call: () => unknown, budgetMs: number): Promise<number> {
  const times: number[] = [];
  const isAsync = call() instanceof Promise;
  const warmUntil = performance.now() + Math.max(30, budgetMs / 5);
  do {
    if (isAsync) await call();
    else call();
  } while (performance.now() < warmUntil);
  const start = performance.now();
  while ((performance.now() - start < budgetMs || times.length < 5) && times.length < 1000) {
    const t0 = performance.now();
    let reps = 0;
    do {
      if (isAsync) await call();
      else call();
      reps++;
    } while (performance.now() - t0 < 2);
    times.push(((performance.now() - t0) * 1000) / reps);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1];
}

function formatTime(us: number): string {
  if (us < 10) return `${us.toFixed(2)} us`;
  if (us < 1000) return `${us.toFixed(1)} us`;
  return us < 1e6 ? `${(us / 1000).toFixed(2)} ms` : `${(us / 1e6).toFixed(2)} s`;
}

function formatRate(perSecond: number): string {
  for (const [scale, suffix] of [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']] as const) {
    if (perSecond >= scale) return `${(perSecond / scale).toPrecision(3)}${suffix}`;
  }
  return perSecond.toPrecision(3);
}

async function onnxRunner(net: Mlp, threads: number): Promise<Runner | string> {
  const problem = onnxExportProblem(net.spec);
  if (problem) return `onnxruntime-node: skipped, ${problem}`;
  let ort: any; // an optional package without our types: its API is used as documented
  try {
    const name = 'onnxruntime-node'; // a variable, so TypeScript does not require the package
    const mod = await import(name);
    ort = mod.default ?? mod;
  } catch {
    return 'onnxruntime-node: not installed (npm install onnxruntime-node to compare)';
  }
  let session: any;
  try {
    session = await ort.InferenceSession.create(mlpToOnnx(net.spec, net.getLayers()), {
      intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionProviders: ['cpu'],
    });
  } catch (err) {
    // The peer is a comparison, not the job: its failure is a note, and mlpkit's rows still run.
    return `onnxruntime-node: skipped, it could not load the model (${(err as Error).message.replace(/^mlpToOnnx: /, '')})`;
  }
  const feeds = new Map<number, unknown>();
  return {
    label: 'onnxruntime-node',
    run(x, batch, out) {
      // Tensors made once per batch size, output preallocated: its fastest session.run. They
      // wrap the arrays they were made with: a row repeating a batch size brings new ones.
      let io = feeds.get(batch) as { x: Float32Array; out: Float32Array; feeds: unknown; fetches: unknown } | undefined;
      if (!io || io.x !== x || io.out !== out) {
        io = {
          x,
          out,
          feeds: { x: new ort.Tensor('float32', x, [batch, net.inputs]) },
          fetches: { y: new ort.Tensor('float32', out, [batch, net.outputs]) },
        };
        feeds.set(batch, io);
      }
      return session.run(io.feeds, io.fetches);
    },
    close: () => void session.release(),
  };
}

function modelRunner(label: string, model: AnyModel, maxBatch = Infinity): Runner {
  return {
    label,
    run: (x, _batch, out) => model.predict(x, out),
    skip: (batch) => (batch > maxBatch ? `batch > ${maxBatch}` : null),
    close: () => model.dispose(),
  };
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'quick predict timings: native vs reference vs onnxruntime-node',
  usage,
  async run(argv, io) {
    const { values, positionals, help } = parseCommand('bench', argv, {
      batch: { type: 'string' }, seconds: { type: 'string' }, threads: { type: 'string' },
    }, { min: 0, max: 1, names: 'at most one MODEL file' });
    if (help) return void io.stdout.write(`${usage}\n`);
    const batches = intListOption(values, 'batch', [1, 16, 256, 4096], 1, MAX_BATCH);
    const budgetMs = numberOption(values, 'seconds', 0.3, 0.001) * 1000;
    const threads = intOption(values, 'threads', availableParallelism(), 1, 256);
    setThreads(threads);

    const path = positionals[0];
    const i = info();
    const notes: string[] = [];
    const runners: Runner[] = [];
    let base: AnyModel;
    if (path === undefined) {
      base = new Mlp(DEMO_SPEC, { backend: 'reference' });
    } else base = (await loadModelFile(path, 'reference')).model;
    const parameters = base instanceof Mlp ? base.getParameters() : null;
    if (i.native.available) {
      runners.push(modelRunner(`mlpkit native (${i.native.isa})`, base instanceof Mlp
        ? new Mlp(base.spec, { backend: 'native', parameters: parameters! })
        : (await loadModelFile(path!, 'native')).model));
    } else notes.push(`mlpkit native: not loaded (${i.native.error})`);
    runners.push(modelRunner('mlpkit reference', base, REFERENCE_MAX_BATCH));
    if (base instanceof Mlp) {
      const ort = await onnxRunner(base, threads);
      if (typeof ort === 'string') notes.push(ort);
      else runners.push(ort);
    } else notes.push('onnxruntime-node: skipped, only float models are exported to ONNX here');

    // A quick table: inputs of a GiB or more would take minutes per cell, or all the memory.
    const widest = Math.max(...batches);
    if (widest * base.inputs > MAX_INPUT_FLOATS) {
      throw usageError(`--batch: ${widest} rows of ${base.inputs} inputs is ${widest * base.inputs} floats, over the ${MAX_INPUT_FLOATS} this command allows`,
        `use batches up to ${Math.floor(MAX_INPUT_FLOATS / base.inputs)} for this model`);
    }
    const name = path ?? 'demo MLP 32-64-64-64-64-16 ReLU';
    io.stdout.write(`mlpkit bench: ${name}; ${threads} threads; ${budgetMs / 1000} s per cell\n\n`);
    io.stdout.write(`| batch | ${runners.map((r) => r.label).join(' | ')} |\n|---:|${runners.map(() => '---:').join('|')}|\n`);
    for (const batch of batches) {
      const x = new Float32Array(batch * base.inputs).map((_, k) => Math.sin(k * 0.37 + batch));
      const want = base.predict(x.subarray(0, Math.min(batch, 16) * base.inputs));
      const cells: string[] = [];
      for (const r of runners) {
        const why = r.skip?.(batch);
        if (why) {
          cells.push('-');
          continue;
        }
        const out = new Float32Array(batch * base.outputs);
        await r.run(x, batch, out);
        let diff = 0;
        let scale = 1e-6;
        for (let k = 0; k < want.length; k++) {
          diff = Math.max(diff, Math.abs(out[k] - want[k]));
          scale = Math.max(scale, Math.abs(want[k]));
        }
        const disagrees = !(diff / scale <= 1e-3);
        const us = await medianUs(() => r.run(x, batch, out), budgetMs);
        cells.push(`${formatTime(us)} (${formatRate((batch / us) * 1e6)} rows/s)${disagrees ? ' DISAGREES' : ''}`);
      }
      io.stdout.write(`| ${batch} | ${cells.join(' | ')} |\n`);
    }
    if (notes.length) io.stdout.write(`\n${notes.join('\n')}\n`);
    for (const r of runners) r.close();
  },
};

// Neural field demo: fit an MLP that maps a pixel's coordinates (x, y) to its colour (r, g, b)
// on a procedurally drawn image, then report how well and how fast it went.
//
//   npm run demo                      # tsc, then this script with the defaults
//   node examples/neural-field.mjs --size 160 --seconds 30 --out /tmp/nf
//   MLPKIT_BACKEND=reference npm run demo   # the pure-TypeScript backend, same time budget
//
// Writes target.png, reconstruction.png, comparison.png (target | reconstruction | error x4)
// and loss.svg under --out (default out/neural-field).

import { mkdirSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { Mlp, info } from 'mlpkit';

import { parseDemoArgs, USAGE } from './support/args.mjs';
import { renderScene } from './support/scene.mjs';
import { writePng } from './support/png.mjs';
import { toBytes, psnr8, errorImage, sideBySide } from './support/image-utils.mjs';
import { createProgress } from './support/progress.mjs';
import { writeLossCurveSvg } from './support/svg-plot.mjs';
import { timeCalls } from './support/timing.mjs';

const wallStart = performance.now();

let args;
try {
  args = parseDemoArgs();
} catch (err) {
  console.error(`${err.message}\n\n${USAGE}`);
  process.exit(2);
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

// ---- model and training settings -------------------------------------------------------------
//
// Input: (x, y) through the frequency encoding, sin/cos(2^k * pi * x) for k = 0..7. With pixel
// coordinates in [-1, 1] the top octave has a period of 1/64, a few pixels at 128x128, which is
// what the sharp edges and stripes need; a plain (x, y) MLP would blur them (spectral bias).
//
// Output: 3 linear units ('none') trained with MSE, clamped to [0, 1] only when turned into
// pixels. A sigmoid output would keep predictions in range, but its gradient vanishes exactly
// where the target is near 0 or 1 (the white dot, the dark outline, the saturated stripes),
// which slows the fit of those regions; a linear output keeps the MSE gradient proportional
// to the error everywhere, and the clamp costs nothing.
const OCTAVES = 8;
const HIDDEN = [64, 64, 64];
const spec = {
  inputs: 2,
  encoding: { type: 'frequency', octaves: OCTAVES },
  layers: [...HIDDEN.map((units) => ({ units, activation: 'relu' })), { units: 3, activation: 'none' }],
  // Default 'torch' init: in short trial runs it beat 'he-uniform', whose larger initial weights
  // on 34 sin/cos features start from a noisy, high-loss field.
  seed: 1,
};
const BATCH_SIZE = 2048;
const LR = 1e-2;
// Cosine decay over the whole run: a large step size early, fine detail at the end.
const trainerOptions = {
  loss: 'mse',
  optimizer: { type: 'adam', lr: LR },
  schedule: { type: 'cosine', minLr: LR / 10 },
};

// ---- target image ----------------------------------------------------------------------------
const { size } = args;
const outDir = args.out;
mkdirSync(outDir, { recursive: true });
const paths = {
  target: join(outDir, 'target.png'),
  reconstruction: join(outDir, 'reconstruction.png'),
  comparison: join(outDir, 'comparison.png'),
  loss: join(outDir, 'loss.svg'),
};

const { coords, colors } = renderScene(size);
const n = size * size;
const targetBytes = toBytes(colors);
writePng(paths.target, size, size, targetBytes);

const sys = info();
const net = new Mlp(spec);
const backend = net.backend;
console.log(
  `mlpkit ${sys.version}: ${backend} backend (isa ${sys.isa}, ${sys.threads} thread${sys.threads === 1 ? '' : 's'})`,
);
console.log(
  `target ${size}x${size} = ${n} pixels; MLP 2 -> freq(${OCTAVES}) ${2 + 4 * OCTAVES} -> ` +
    `${HIDDEN.join(' -> ')} -> 3, Adam lr ${LR} cosine, batch ${BATCH_SIZE}`,
);

// ---- choose the number of epochs --------------------------------------------------------------
// Unless --epochs is given, measure the training rate on a throwaway copy of the network for about
// a second and pick the number of epochs that fills the time budget, so the cosine schedule ends
// when the budget does. An AbortSignal is the hard stop in case the estimate is off.
//
// The rate is measured with trainer.fit itself, in wall-clock time, because that is what the
// budget is spent on: fit runs each step on a worker thread and gathers shuffled batches in JS,
// and on this machine that ran ~30% slower than back-to-back synchronous trainer.step calls.
let epochs = args.epochs;
let fitSeconds = args.seconds;
if (epochs === undefined) {
  const rate = await measureFitRate();
  // The time spent measuring comes out of the budget; keep 3% slack for the epoch-end callbacks.
  fitSeconds = Math.max(1, args.seconds - (performance.now() - wallStart) / 1000);
  epochs = Math.max(1, Math.floor((0.97 * fitSeconds * rate) / n));
  console.log(
    `measured ~${formatRate(rate)} samples/s -> ${epochs} epochs to fit a ${fitSeconds.toFixed(0)} s budget`,
  );
}

// ---- train -----------------------------------------------------------------------------------
const trainer = net.trainer(trainerOptions);
const controller = new AbortController();
const hardStopSeconds = args.epochs === undefined ? fitSeconds * 1.1 : args.secondsGiven ? args.seconds : Infinity;
const timer = Number.isFinite(hardStopSeconds)
  ? setTimeout(() => controller.abort(), hardStopSeconds * 1000)
  : undefined;

const bar = createProgress({ label: 'train ' });
let lastText = '';
const trainStart = performance.now();
const result = await trainer.fit(coords, colors, {
  epochs,
  batchSize: BATCH_SIZE,
  shuffle: true,
  seed: 7,
  signal: controller.signal,
  onProgress(p) {
    const fraction = (p.epoch - 1 + p.step / p.stepsPerEpoch) / p.epochs;
    lastText =
      `epoch ${String(p.epoch).padStart(String(p.epochs).length)}/${p.epochs}` +
      `  loss ${p.loss.toExponential(3)}  ${formatRate(p.samplesPerSecond)} samples/s`;
    bar.update(fraction, lastText);
  },
});
clearTimeout(timer);
const trainSeconds = (performance.now() - trainStart) / 1000;
const epochsDone = result.history.length;
const wallRate = result.rows / trainSeconds;
bar.done(lastText + (result.stopped ? '  (time budget reached)' : ''), epochsDone / epochs);

// ---- reconstruct and score -------------------------------------------------------------------
const predicted = net.predict(coords);
const reconBytes = toBytes(predicted);
const psnr = psnr8(targetBytes, reconBytes);
writePng(paths.reconstruction, size, size, reconBytes);
const panel = sideBySide([targetBytes, reconBytes, errorImage(targetBytes, reconBytes, 4)], size, size);
writePng(paths.comparison, panel.width, panel.height, panel.rgb);
writeLossCurveSvg(
  paths.loss,
  result.history.map((h) => ({ x: h.epoch, y: h.loss })),
  {
    title: `Neural field training loss (${backend} backend, ${size}x${size})`,
    xLabel: 'epoch',
    yLabel: 'mean squared error per channel (log scale)',
  },
);

// ---- predict benchmarks ----------------------------------------------------------------------
// Batch 1: the latency of one synchronous call, median over many.
const one = new Float32Array([0.25, -0.5]);
const oneOut = new Float32Array(3);
const lat = timeCalls(() => net.predict(one, oneOut), { warmup: 200, runs: 5000, maxMs: 1500 });
// Batch 16384: throughput, median of a few calls (the image's coordinates, tiled or cut to fit).
const BIG = 16384;
const big = new Float32Array(BIG * 2);
for (let i = 0; i < big.length; i++) big[i] = coords[i % coords.length];
const bigOut = new Float32Array(BIG * 3);
const thr = timeCalls(() => net.predict(big, bigOut), { warmup: 1, runs: 7, minRuns: 3, maxMs: 3000 });
net.dispose();

// ---- report ----------------------------------------------------------------------------------
// Paths relative to the working directory when they lie under it, absolute otherwise.
const rel = (p) => {
  const r = relative(process.cwd(), p);
  return r && !r.startsWith('..') && !isAbsolute(r) ? r : resolve(p);
};
console.log('');
console.log(`PSNR                      ${psnr.toFixed(2)} dB  (8-bit reconstruction vs target)`);
console.log(
  `training                  ${epochsDone} epochs of ${n} samples in ${trainSeconds.toFixed(1)} s, ` +
    `final loss ${result.history.at(-1)?.loss.toExponential(3) ?? 'n/a'}` +
    (result.stopped ? ' (stopped by the time budget)' : ''),
);
console.log(
  `training throughput       ${formatRate(wallRate)} samples/s wall clock ` +
    `(${formatRate(result.samplesPerSecond)} samples/s inside the steps, as fit reports it)`,
);
console.log(`predict latency, batch 1  ${(lat.medianMs * 1000).toFixed(1)} us  (median of ${lat.runs} sync calls)`);
console.log(
  `predict batch ${BIG}      ${formatRate(BIG / (thr.medianMs / 1000))} samples/s  ` +
    `(${thr.medianMs.toFixed(2)} ms, median of ${thr.runs})`,
);
console.log(
  `backend                   ${sys.backend} (isa ${sys.isa}, threads ${sys.threads}, cuda ${sys.cuda.available ? sys.cuda.devices.map((d) => d.name).join(', ') : 'no'})`,
);
for (const [what, p] of Object.entries(paths)) console.log(`wrote ${what.padEnd(20)}${rel(p)}`);
if (backend === 'reference') {
  const why =
    process.env.MLPKIT_BACKEND === 'reference'
      ? 'available but not used: MLPKIT_BACKEND=reference'
      : (sys.native?.error ?? sys.nativeError);
  console.log(
    '\nnote: this ran on the pure-TypeScript reference backend, which is much slower than the native ' +
      'kernels; with the same time budget it trains far fewer epochs, so the PSNR is lower.' +
      (why ? `\n      native addon: ${why.split('\n')[0]}` : ''),
  );
}
console.log(`total ${((performance.now() - wallStart) / 1000).toFixed(1)} s`);

/** Wall-clock training samples/s of trainer.fit on a throwaway network with the same spec. */
async function measureFitRate() {
  const probe = new Mlp(spec, { backend });
  const probeTrainer = probe.trainer({ loss: 'mse', optimizer: { type: 'adam', lr: LR } });
  const runFor = async (epochs, ms) => {
    const stop = new AbortController();
    const t = setTimeout(() => stop.abort(), ms);
    const t0 = performance.now();
    const r = await probeTrainer.fit(coords, colors, { epochs, batchSize: BATCH_SIZE, signal: stop.signal });
    clearTimeout(t);
    return r.rows / ((performance.now() - t0) / 1000);
  };
  // Warm-up first, untimed: one epoch (at most 2 s) for allocations, first touch of the buffers
  // and, on the reference backend, the JIT, whose first steps run well below its steady speed
  // (a 0.3 s warm-up there underestimated the rate by a third).
  await runFor(1, 2000);
  const rate = await runFor(1e6, 1000);
  probe.dispose();
  return rate;
}

function formatRate(r) {
  if (!Number.isFinite(r)) return 'n/a';
  if (r >= 1e6) return `${(r / 1e6).toFixed(2)}M`;
  if (r >= 1e3) return `${(r / 1e3).toFixed(1)}k`;
  return r.toFixed(0);
}

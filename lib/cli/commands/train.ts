// `mlpkit train`: fit an MLP to the columns of a CSV or NPY file, save it with a loss plot.
//
// Inputs (and regression targets) are standardised for training, since raw columns in
// different units (metres next to millions) train badly with one learning rate; the shift and
// scale are then folded into the first and last layers, so the saved model takes and returns
// raw values and nothing else needs to travel with it.

import { realpath } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { ACTIVATIONS, OPTIMIZERS, type ActivationName, type OptimizerName } from '../../backend/types.js';
import { BACKEND_CHOICES, type BackendChoice } from '../../backend/index.js';
import { Rng } from '../../init.js';
import { Mlp } from '../../mlp.js';
import { MAX_WIDTH, normalizeSpec } from '../../spec.js';
import type { FitProgress } from '../../train/trainer.js';
import {
  choiceOption, flag, HEADER_OPTIONS, HEADER_USAGE, headerOption, intListOption, intOption, numberOption, parseCommand, stringOption,
  type Command, type Io,
} from '../args.js';
import { formatFloat32 } from '../csv.js';
import { CliError, usageError } from '../errors.js';
import { saveModelFile, type ModelColumns } from '../model-file.js';
import { checkOutputPath, checkOutputsDistinct, writeOutput } from '../output.js';
import { createProgress } from '../progress.js';
import { lineChartSvg, type PlotPoint } from '../svg-plot.js';
import { columnsAsFloat32, numericColumns, readTable, resolveColumns, rowPlace, type Table } from '../table.js';

const TASKS = ['regression', 'classification'] as const;

const usage = `Usage: mlpkit train DATA [options]

Trains an MLP on the rows of DATA (a CSV file with a header row, or a 2-D .npy array) and writes
it as safetensors, with an SVG plot of the loss per epoch.

Data
  --inputs COLS        input columns: names, 0-based indices or ranges (0-31), comma-separated
                       (default: every numeric column that is not a target)
  --target COLS        target columns (default: the last column)
  --target-file FILE   targets from another CSV/NPY file with the same rows (--target then picks
                       among its columns; default: all of them)
  --task T             regression (MSE; default) or classification (softmax cross-entropy on one
                       column of integer labels 0..K-1)
  --val-split F        fraction of rows held out for validation (default 0.1; 0 for none)
  --no-standardize     train on the raw values (default: standardise inputs and regression
                       targets, then fold the scaling into the saved model)
${HEADER_USAGE}
Model
  --layers LIST        hidden layer widths (default 64,64)
  --activation A       activation of the hidden layers (default relu; ${ACTIVATIONS.filter((a) => a !== 'none').join(', ')})
Training
  --epochs N           passes over the data (default 20)
  --batch-size N       rows per step (default 32)
  --lr X               learning rate (default 0.001)
  --optimizer O        adam (default), adamw or sgd
  --seed N             initialisation, shuffling and split seed (default 0)
  --backend B          auto (default), native or reference
Output
  --out FILE           model file (default model.safetensors)
  --plot FILE          loss plot (default: beside --out, NAME.loss.svg)
  --quiet              no progress output

Progress goes to stderr (a bar on a terminal; otherwise a line per epoch, or per N epochs so
that a run prints about 20); Ctrl-C stops after the current step, still saves the model and
exits with code 130. If the loss overflows (too high a --lr), nothing is saved but the plot.
Without --inputs, text columns are left out (with a note) and a column of numbers with blank or
text cells is an error.

Example
  mlpkit train houses.csv --target price --layers 64,64 --epochs 50 --out houses.safetensors`;

interface Split {
  trainX: Float32Array;
  trainY: Float32Array;
  valX: Float32Array | null;
  valY: Float32Array | null;
  trainRows: number;
  valRows: number;
}

function meanStd(data: Float32Array, rows: number, cols: number): { mean: Float64Array; std: Float64Array } {
  const mean = new Float64Array(cols);
  const std = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) mean[c] += data[r * cols + c];
  for (let c = 0; c < cols; c++) mean[c] /= rows;
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) std[c] += (data[r * cols + c] - mean[c]) ** 2;
  // A constant column keeps scale 1: dividing by ~0 would blow up whatever rounding noise it
  // has. Constant is relative to the column's own size (float32 holds ~7 digits), so a column
  // in small units (farads, 1e-13) is still scaled.
  for (let c = 0; c < cols; c++) {
    const s = Math.sqrt(std[c] / rows);
    std[c] = s > 1e-6 * Math.abs(mean[c]) && s > 0 ? s : 1;
  }
  return { mean, std };
}

function standardized(data: Float32Array, cols: number, s: { mean: Float64Array; std: Float64Array }): Float32Array {
  return data.map((v, i) => (v - s.mean[i % cols]) / s.std[i % cols]);
}

/**
 * Folds x' = (x - mean_in) / std_in into the first layer and y = y' * std_out + mean_out into
 * the last (whose activation is 'none'), so the model maps raw inputs to raw outputs.
 */
function foldScaling(net: Mlp, input: { mean: Float64Array; std: Float64Array }, output: { mean: Float64Array; std: Float64Array } | null): void {
  const layers = net.getLayers();
  const first = layers[0];
  for (let o = 0; o < first.outputs; o++) {
    let shift = 0;
    for (let i = 0; i < first.inputs; i++) {
      const w = first.weight[o * first.inputs + i] / input.std[i];
      first.weight[o * first.inputs + i] = w;
      shift += w * input.mean[i];
    }
    first.bias![o] -= shift;
  }
  if (output) {
    const last = layers[layers.length - 1];
    for (let o = 0; o < last.outputs; o++) {
      for (let i = 0; i < last.inputs; i++) last.weight[o * last.inputs + i] *= output.std[o];
      last.bias![o] = last.bias![o] * output.std[o] + output.mean[o];
    }
  }
  const flat = new Float32Array(net.parameterCount);
  let at = 0;
  for (const l of layers) {
    flat.set(l.weight, at);
    at += l.weight.length;
    if (l.bias) {
      flat.set(l.bias, at);
      at += l.bias.length;
    }
  }
  net.setParameters(flat);
}

function splitRows(x: Float32Array, y: Float32Array, rows: number, inputs: number, targets: number, valFraction: number, seed: number): Split {
  const valRows = Math.min(rows - 1, Math.floor(rows * valFraction));
  const order = Uint32Array.from({ length: rows }, (_, i) => i);
  const rng = new Rng(seed ^ 0x5eed);
  for (let i = rows - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const take = (from: number, count: number) => {
    const bx = new Float32Array(count * inputs);
    const by = new Float32Array(count * targets);
    for (let k = 0; k < count; k++) {
      const r = order[from + k];
      bx.set(x.subarray(r * inputs, (r + 1) * inputs), k * inputs);
      by.set(y.subarray(r * targets, (r + 1) * targets), k * targets);
    }
    return { bx, by };
  };
  const train = take(valRows, rows - valRows);
  const val = valRows > 0 ? take(0, valRows) : null;
  return { trainX: train.bx, trainY: train.by, valX: val?.bx ?? null, valY: val?.by ?? null, trainRows: rows - valRows, valRows };
}

function labelsOf(y: Float32Array, name: string, place: (row: number) => string): { labels: Int32Array; classes: number } {
  let classes = 0;
  const labels = new Int32Array(y.length);
  for (let i = 0; i < y.length; i++) {
    const v = y[i];
    if (!Number.isInteger(v) || v < 0) {
      throw new CliError(`--task classification: target '${name}' holds ${formatFloat32(v)} on ${place(i)}; expected integer class labels 0, 1, 2, ...`, 1,
        'for a numeric target use --task regression');
    }
    labels[i] = v;
    classes = Math.max(classes, v + 1);
  }
  // Labels far past the row count are not class labels (a price, an id): the model would get one
  // output per value up to the largest (hundreds of thousands) and learn nothing.
  if (classes > y.length) {
    throw new CliError(`--task classification: target '${name}' holds labels up to ${classes - 1} but the data has only ${y.length} rows; ` +
      'expected class labels 0, 1, 2, ... of a few classes', 1, 'for a numeric target use --task regression');
  }
  if (classes < 2) throw new CliError(`--task classification: target '${name}' holds a single class (0); expected labels of at least 2 classes`);
  return { labels, classes };
}

function chooseColumns(data: Table, targetTable: Table, inputList: string | undefined, targetList: string | undefined, separate: boolean) {
  const targets = targetList !== undefined
    ? resolveColumns(targetTable, targetList, '--target')
    : separate ? targetTable.names.map((_, i) => i) : [targetTable.names.length - 1];
  let inputs: number[];
  const textColumns: string[] = [];
  if (inputList !== undefined) inputs = resolveColumns(data, inputList, '--inputs');
  else {
    // Text columns (no number in any row) are left out, and said so. A column of numbers with
    // some blank or text cells is an error: leaving a feature out because of one missing value
    // would train a different model without a word.
    const candidates = data.names.map((_, c) => c).filter((c) => separate || !targets.includes(c));
    for (const c of candidates) {
      const text = data.firstText[c];
      if (text === null) continue;
      let numbers = 0;
      for (let r = 0; r < data.rows; r++) if (!Number.isNaN(data.data[r * data.names.length + c])) numbers++;
      if (numbers > 0) {
        throw new CliError(
          `${data.source}: column '${data.names[c]}' holds numbers in ${numbers} of ${data.rows} rows but ` +
            `${text.text === '' ? 'an empty cell' : `'${text.text}'`} on line ${text.line}`, 1,
          'fill or drop the rows with missing values, or choose the input columns with --inputs');
      }
      textColumns.push(data.names[c]);
    }
    inputs = numericColumns(data).filter((c) => separate || !targets.includes(c));
    if (inputs.length === 0) throw new CliError(`${data.source}: no numeric columns left for the inputs`, 1, 'choose them with --inputs');
  }
  if (!separate) {
    const both = inputs.find((c) => targets.includes(c));
    if (both !== undefined) throw usageError(`column '${data.names[both]}' is both an input and a target`, 'drop it from --inputs or --target');
  }
  return { inputs, targets, textColumns };
}

function fmt(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '-' : Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(3) : v.toPrecision(4);
}

export const trainCommand: Command = {
  name: 'train',
  summary: 'train an MLP on a CSV or NPY file; writes safetensors and a loss plot',
  usage,
  async run(argv: string[], io: Io) {
    const { values, positionals, help } = parseCommand('train', argv, {
      inputs: { type: 'string' }, target: { type: 'string' }, 'target-file': { type: 'string' },
      task: { type: 'string' }, 'val-split': { type: 'string' }, 'no-standardize': { type: 'boolean' },
      layers: { type: 'string' }, activation: { type: 'string' },
      epochs: { type: 'string' }, 'batch-size': { type: 'string' }, lr: { type: 'string' }, optimizer: { type: 'string' },
      seed: { type: 'string' }, backend: { type: 'string' },
      out: { type: 'string', short: 'o' }, plot: { type: 'string' }, quiet: { type: 'boolean', short: 'q' },
      ...HEADER_OPTIONS,
    }, { min: 1, max: 1, names: 'one DATA file (CSV or NPY)' });
    if (help) return void io.stdout.write(`${usage}\n`);

    const task = choiceOption(values, 'task', TASKS, 'regression');
    const hidden = intListOption(values, 'layers', [64, 64], 1, MAX_WIDTH);
    const activation = choiceOption<ActivationName>(values, 'activation', ACTIVATIONS, 'relu');
    const epochs = intOption(values, 'epochs', 20);
    const batchSize = intOption(values, 'batch-size', 32);
    const lr = numberOption(values, 'lr', 1e-3, Number.MIN_VALUE);
    const optimizer = choiceOption<OptimizerName>(values, 'optimizer', OPTIMIZERS, 'adam');
    const seed = intOption(values, 'seed', 0, 0, 2 ** 32 - 1);
    const valSplit = numberOption(values, 'val-split', 0.1, 0, 0.9);
    const backend = choiceOption<BackendChoice>(values, 'backend', BACKEND_CHOICES, 'auto');
    const standardize = !flag(values, 'no-standardize');
    const quiet = flag(values, 'quiet');
    const header = headerOption(values);
    const out = stringOption(values, 'out') ?? 'model.safetensors';
    const plot = stringOption(values, 'plot') ?? join(dirname(out), `${basename(out, extname(out))}.loss.svg`);

    if (/\.(png|jpe?g|gif|webp|pdf)$/i.test(plot)) throw usageError(`--plot ${plot}: the loss plot is an SVG file`, 'give a name ending in .svg');
    // Found out before training, not after: a typo in --out would otherwise cost the whole run.
    await checkOutputPath('--out', out);
    await checkOutputPath('--plot', plot);
    await checkOutputsDistinct([{ option: '--out', file: out }, { option: '--plot', file: plot }],
      [{ what: 'the training data', file: positionals[0] }, { what: 'the target file', file: stringOption(values, 'target-file') }]);
    const started = performance.now();
    const data = await readTable(positionals[0], header);
    let targetFile = stringOption(values, 'target-file');
    // The data file named again as the target file is one table: its targets must not also be
    // the default inputs.
    if (targetFile !== undefined && (await realpath(targetFile)) === (await realpath(positionals[0]))) targetFile = undefined;
    const targetTable = targetFile === undefined ? data : await readTable(targetFile, header);
    if (targetTable.rows !== data.rows) {
      throw new CliError(`--target-file: ${targetFile} has ${targetTable.rows} rows but ${data.source} has ${data.rows}`);
    }
    const { inputs, targets, textColumns } = chooseColumns(
      data, targetTable, stringOption(values, 'inputs'), stringOption(values, 'target'), targetFile !== undefined);
    if (textColumns.length && !quiet) {
      io.stderr.write(`note: leaving out the text column${textColumns.length > 1 ? 's' : ''} ${textColumns.map((n) => `'${n}'`).join(', ')} ` +
        '(inputs must be numbers; choose the columns with --inputs)\n');
    }
    if (task === 'classification' && targets.length !== 1) {
      throw usageError(`--task classification: expected one target column of class labels but ${targets.length} were chosen`, 'pick it with --target');
    }
    const labelText = targetTable.firstText[targets[0]];
    if (task === 'classification' && labelText && labelText.text !== '') {
      throw new CliError(`--task classification: target '${targetTable.names[targets[0]]}' holds '${labelText.text}' on line ${labelText.line}; ` +
        'expected integer class labels 0, 1, 2, ...', 1, 'map the text labels to numbers 0..K-1 first (e.g. pandas: df[col].astype("category").cat.codes)');
    }
    const x = columnsAsFloat32(data, inputs, '--inputs');
    const y = columnsAsFloat32(targetTable, targets, '--target');
    const split = splitRows(x, y, data.rows, inputs.length, targets.length, valSplit, seed);
    if (valSplit > 0 && split.valRows === 0 && !quiet) {
      io.stderr.write(`note: ${data.rows} row${data.rows > 1 ? 's are' : ' is'} too few to hold out ${valSplit * 100}%; training without validation\n`);
    }

    const inputNames = inputs.map((c) => data.names[c]);
    const targetNames = targets.map((c) => targetTable.names[c]);
    let outputs = targets.length;
    let trainTarget: Float32Array | Int32Array = split.trainY;
    let valTarget: Float32Array | Int32Array | null = split.valY;
    let outputNames = targetNames;
    if (task === 'classification') {
      const all = labelsOf(y, targetNames[0], (r) => rowPlace(targetTable, r));
      outputs = all.classes;
      trainTarget = Int32Array.from(split.trainY);
      valTarget = split.valY ? Int32Array.from(split.valY) : null;
      outputNames = Array.from({ length: outputs }, (_, k) => `class_${k}`);
    }
    const inputScale = standardize ? meanStd(split.trainX, split.trainRows, inputs.length) : null;
    const targetScale = standardize && task === 'regression' ? meanStd(split.trainY, split.trainRows, outputs) : null;
    const fitX = inputScale ? standardized(split.trainX, inputs.length, inputScale) : split.trainX;
    const fitValX = inputScale && split.valX ? standardized(split.valX, inputs.length, inputScale) : split.valX;
    if (targetScale) {
      trainTarget = standardized(split.trainY, outputs, targetScale);
      valTarget = split.valY ? standardized(split.valY, outputs, targetScale) : null;
    }

    const spec = { inputs: inputs.length, layers: [...hidden.map((units) => ({ units, activation })), { units: outputs }], seed };
    // The spec's own check (at most MAX_PARAMETERS), said as a mistake in --layers.
    try {
      normalizeSpec(spec);
    } catch (err) {
      if (err instanceof RangeError) throw usageError(`--layers ${hidden.join(',')}: ${err.message}`, 'choose narrower or fewer hidden layers');
      throw err;
    }
    const net = new Mlp(spec, { backend });
    const loss = task === 'classification' ? 'softmax-cross-entropy' : 'mse';
    const trainer = net.trainer({ loss, optimizer: { type: optimizer, lr } });
    const shape = [inputs.length, ...hidden, outputs].join('-');
    const trainCurve: PlotPoint[] = [];
    const valCurve: PlotPoint[] = [];
    const tty = Boolean(io.stderr.isTTY);
    const bar = !quiet && tty ? createProgress({ stream: io.stderr, label: 'train ' }) : null;
    const lineEvery = Math.max(1, Math.ceil(epochs / 20));
    const controller = new AbortController();
    const onInterrupt = () => controller.abort();
    process.once('SIGINT', onInterrupt);
    // Said after the listener is in place: a Ctrl-C prompted by this line stops the run cleanly
    // (without a listener SIGINT ends the process at once).
    if (!quiet) {
      io.stderr.write(`training ${shape} (${activation}, ${net.backend}) on ${split.trainRows} rows` +
        `${split.valRows ? `, validating on ${split.valRows}` : ''}: ${epochs} epochs of batch ${batchSize}, ${optimizer} lr ${lr}\n`);
    }
    const title = `mlpkit train ${basename(data.source)}: ${shape} ${activation}, ${loss}${targetScale ? ' (standardised targets)' : ''}`;
    const writePlot = () => writeOutput(plot, lineChartSvg(
      [{ label: 'train', points: trainCurve }, ...(valCurve.length ? [{ label: 'validation', points: valCurve }] : [])],
      { title, xLabel: 'epoch', yLabel: `${loss} loss` },
    ));
    let result;
    try {
      result = await trainer.fit(fitX, trainTarget, {
        epochs, batchSize, shuffle: true, seed, signal: controller.signal,
        ...(fitValX && valTarget ? { validation: { x: fitValX, target: valTarget } } : {}),
        onProgress: (p: FitProgress) => {
          const text = `epoch ${p.epoch}/${p.epochs} loss ${fmt(p.loss)}` +
            (p.valLoss !== undefined ? ` val ${fmt(p.valLoss)}` : '') +
            (p.valAccuracy !== undefined ? ` acc ${(p.valAccuracy * 100).toFixed(1)}%` : '');
          if (p.epochEnd) {
            trainCurve.push({ x: p.epoch, y: p.loss });
            if (p.valLoss !== undefined) valCurve.push({ x: p.epoch, y: p.valLoss });
            if (!quiet && !tty && (p.epoch % lineEvery === 0 || p.epoch === p.epochs)) {
              io.stderr.write(`${text} ${Math.round(p.samplesPerSecond)} rows/s\n`);
            }
          }
          bar?.update((p.epoch - 1 + p.step / p.stepsPerEpoch) / p.epochs, text);
        },
      });
    } catch (err) {
      // The trainer refuses a step whose loss or gradients are not finite (a RangeError that
      // names them): the run diverged. The plot shows how; the model is not worth saving.
      bar?.done('stopped', trainCurve.length / epochs);
      net.dispose();
      if (!(err instanceof RangeError) || !/NaN|Infinity|finite|overflow/.test(err.message)) throw err;
      const epoch = trainCurve.length + 1;
      // A plot needs a finished epoch: one that diverged in the first would be an empty chart.
      if (trainCurve.length > 0) await writePlot();
      const why = err.message.replace(/^\w+: /, '');
      const written = trainCurve.length > 0 ? `no model was written (the loss so far is in ${plot})` : 'no model or plot was written';
      throw new CliError(`training diverged in epoch ${epoch}: ${why}; ${written}`, 1,
        `lower --lr (now ${lr})${standardize ? '' : ', or drop --no-standardize'}`);
    } finally {
      process.removeListener('SIGINT', onInterrupt);
    }
    const last = result.history[result.history.length - 1];
    bar?.done(last ? `epoch ${last.epoch}/${epochs} loss ${fmt(last.loss)}` : 'stopped', last ? last.epoch / epochs : 0);
    if (result.stopped && !quiet) io.stderr.write(`interrupted after ${result.history.length} complete epochs (${result.steps} steps): saving the model trained so far\n`);

    if (inputScale) foldScaling(net, inputScale, targetScale);
    const columns: ModelColumns = { inputs: inputNames, outputs: outputNames, task };
    await saveModelFile(out, net, columns);
    await writePlot();

    // The report is on the saved model and raw values, whatever was standardised for training.
    const report = (rx: Float32Array, ry: Float32Array, rows: number) => {
      const pred = net.predict(rx);
      if (task === 'classification') {
        let hits = 0;
        for (let r = 0; r < rows; r++) {
          let best = 0;
          for (let k = 1; k < outputs; k++) if (pred[r * outputs + k] > pred[r * outputs + best]) best = k;
          if (best === ry[r]) hits++;
        }
        return `accuracy ${((hits / rows) * 100).toFixed(1)}%`;
      }
      let se = 0;
      for (let i = 0; i < pred.length; i++) se += (pred[i] - ry[i]) ** 2;
      return `RMSE ${fmt(Math.sqrt(se / pred.length))}`;
    };
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    io.stdout.write(
      `trained ${shape} (${activation}) for ${result.history.length} epochs in ${seconds} s; ` +
        `${report(split.trainX, split.trainY, split.trainRows)} on the training rows` +
        (split.valX && split.valY ? `, ${report(split.valX, split.valY, split.valRows)} on the ${split.valRows} held out` : '') +
        `\nwrote ${out} and ${plot}\n`,
    );
    net.dispose();
    return result.stopped ? 130 : 0;
  },
};

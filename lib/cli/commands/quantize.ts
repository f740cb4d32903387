// `mlpkit quantize`: a quantised copy of a float model file, with the accuracy report of
// net.quantize(...).stats when calibration rows are given.

import { BACKEND_CHOICES, type BackendChoice } from '../../backend/index.js';
import { Mlp } from '../../mlp.js';
import type { QuantErrorStats } from '../../quant/calibrate.js';
import { QUANT_ACTIVATIONS, QUANT_FORMATS, type QuantActivations, type QuantFormat } from '../../quant/format.js';
import { GPTQ_AUTO_MAX_WORK_NATIVE, GPTQ_ROWS_PER_INPUT, QUANT_ROUNDINGS, gptqWork, type QuantizeOptions, type QuantizeProgress } from '../../quant/options.js';
import { parameterLayout } from '../../spec.js';
import { choiceOption, flag, intOption, parseCommand, stringOption, HEADER_OPTIONS, HEADER_USAGE, headerOption, type Command } from '../args.js';
import { CliError, usageError } from '../errors.js';
import { loadModelFile, saveModelFile } from '../model-file.js';
import { checkOutputPath, checkOutputsDistinct } from '../output.js';
import { createProgress } from '../progress.js';
import { columnsAsFloat32, modelInputColumns, readTable } from '../table.js';

const usage = `Usage: mlpkit quantize MODEL --out FILE [options]

Writes a quantised copy of MODEL (a float .safetensors file from mlpkit): int8 weights with a
scale per output, or int4 weights in groups with a scale per group (docs/QUANTIZATION.md).
\`mlpkit predict\` and \`mlpkit serve\` run the result like any model.

  --out FILE           the quantised model (required)
  --weights W          int8 (default) or int4, or one per layer, comma-separated (int8,int4,int4,int8:
                       a small first or last layer, whose error counts most, kept in int8)
  --group-size N       int4: inputs per scale, 32 (default), 64 or 128
  --asymmetric         int4: a zero point per group as well as a scale
  --activations A      float (default: weight-only) or int8 (W8A8: each layer's input rows
                       quantised on the fly)
  --calibration FILE   rows of typical inputs (CSV or NPY): prints the error of every layer and
                       of the whole model against the float model; with --activations int8,
                       layers whose inputs int8 would hurt keep float inputs
  --equalize E         auto (default), on or off: per-input equalisation, each input column's
                       weights scaled by a power of two (undone on the inputs), for layers whose
                       columns differ in scale by orders of magnitude. auto: with calibration,
                       the layers where it clearly lowers the error (if the whole model gains);
                       without, only a first layer where one scale per output would round most
                       of an input column to 0. With calibration, biases are also corrected for
                       the mean weight error on those rows
  --rounding R         auto (default), nearest or gptq: how codes are chosen. gptq (needs
                       --calibration) pushes each weight's rounding error onto the weights not yet
                       rounded, as the calibration rows' inputs co-vary, so outputs stay closer;
                       auto tries it on layers with >= 2 calibration rows per input (seconds of
                       work at most) and keeps it where it beats nearest on calibration rows held
                       back from its fit
  --inputs COLS        columns of the calibration file (default: as mlpkit predict)
${HEADER_USAGE}
  --rows N             use the first N calibration rows (default: 1024, or 2 per input of the
                       widest layer where that is more, as --rounding auto needs for GPTQ there)
  --backend B          auto (default), native or reference
  --quiet              no progress bar (shown on stderr when it is a terminal)

Example
  mlpkit quantize model.safetensors --weights int8 --activations int8 --calibration sample.csv --out model.w8a8.safetensors`;

// Above this relative RMS error of the whole model the report warns: int8 weights typically
// land near 1%, int4 g32 near 5-9% on Gaussian-like layers (docs/QUANTIZATION.md).
const LARGE_ERROR = 0.1;

// What the bar says a step has done (QuantizeProgress.stage).
const STAGE_TEXT: Record<QuantizeProgress['stage'], string> = {
  quantize: 'quantised', calibrate: 'calibrated', measure: 'quantised model measured',
};

/** The bar's text for a report: 'layer 2/3 calibrated', or the stage alone for a whole-model step. */
export function progressText(p: QuantizeProgress): string {
  return p.layer === null ? STAGE_TEXT[p.stage] : `layer ${p.layer + 1}/${p.layers} ${STAGE_TEXT[p.stage]}`;
}

const pct = (v: number) => `${(v * 100).toPrecision(3)}%`;
const kb = (bytes: number) => (bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`);

export const quantizeCommand: Command = {
  name: 'quantize',
  summary: 'int8/int4 copy of a model, with an accuracy report on calibration data',
  usage,
  async run(argv, io) {
    const { values, positionals, help } = parseCommand('quantize', argv, {
      ...HEADER_OPTIONS,
      out: { type: 'string', short: 'o' }, weights: { type: 'string' }, 'group-size': { type: 'string' },
      asymmetric: { type: 'boolean' }, activations: { type: 'string' }, calibration: { type: 'string' },
      inputs: { type: 'string' }, rows: { type: 'string' }, backend: { type: 'string' }, equalize: { type: 'string' },
      rounding: { type: 'string' }, quiet: { type: 'boolean', short: 'q' },
    }, { min: 1, max: 1, names: 'one MODEL file' });
    if (help) return void io.stdout.write(`${usage}\n`);
    const out = stringOption(values, 'out');
    if (out === undefined) throw usageError('mlpkit quantize: --out FILE is required (where to write the quantised model)');
    await checkOutputPath('--out', out);
    await checkOutputsDistinct([{ option: '--out', file: out }],
      [{ what: 'the model being quantised', file: positionals[0] }, { what: 'the calibration file', file: stringOption(values, 'calibration') }]);
    const weightList = (stringOption(values, 'weights') ?? 'int8').split(',').map((w) => w.trim());
    for (const w of weightList) {
      if (!(QUANT_FORMATS as readonly string[]).includes(w)) {
        throw usageError(`--weights: expected ${QUANT_FORMATS.join(' or ')}, or one per layer separated by commas, but received '${w}'` +
          (weightList.length > 1 ? ` in '${stringOption(values, 'weights')}'` : ''));
      }
    }
    const perLayer = weightList.length > 1 && weightList.some((w) => w !== weightList[0]);
    const hasInt4 = weightList.includes('int4');
    const weights = weightList[0] as QuantFormat;
    const activations = choiceOption<QuantActivations>(values, 'activations', QUANT_ACTIVATIONS, 'float');
    const groupText = stringOption(values, 'group-size');
    const groupSize = choiceOption(values, 'group-size', ['32', '64', '128'] as const, '32');
    if (!hasInt4 && (groupText !== undefined || flag(values, 'asymmetric'))) {
      throw usageError('--group-size and --asymmetric apply to int4 layers only, and --weights names none (int8 has one scale per output)');
    }
    const backend = choiceOption<BackendChoice>(values, 'backend', BACKEND_CHOICES, 'auto');
    const equalize = choiceOption(values, 'equalize', ['auto', 'on', 'off'] as const, 'auto');
    const rounding = choiceOption(values, 'rounding', ['auto', ...QUANT_ROUNDINGS] as const, 'auto');

    const { model, columns, kind } = await loadModelFile(positionals[0], backend);
    if (!(model instanceof Mlp)) {
      model.dispose();
      throw new CliError(`${positionals[0]} is ${kind === 'sparse' ? 'a sparse model' : 'already quantised'}`, 1, 'quantize the float model it was made from');
    }
    if (weightList.length > 1 && weightList.length !== model.spec.layers.length) {
      const n = model.spec.layers.length;
      model.dispose();
      throw usageError(`--weights lists ${weightList.length} formats, and ${positionals[0]} has ${n} layers: give one format, or one per layer`);
    }
    const options: QuantizeOptions = {
      weights: perLayer ? (weightList as QuantFormat[]) : weights, activations, backend, equalize: equalize === 'auto' ? 'auto' : equalize === 'on', rounding,
    };
    if (hasInt4) {
      options.groupSize = Number(groupSize) as 32 | 64 | 128;
      options.symmetric = !flag(values, 'asymmetric');
    }
    let calibrationNote = '';
    const calibrationPath = stringOption(values, 'calibration');
    for (const option of ['rows', 'inputs']) {
      if (calibrationPath === undefined && values[option] !== undefined) throw usageError(`--${option} chooses calibration rows, and no --calibration FILE was given`);
    }
    if (calibrationPath === undefined && rounding === 'gptq') throw usageError('--rounding gptq chooses codes from calibration rows, and no --calibration FILE was given');
    if (calibrationPath !== undefined) {
      const table = await readTable(calibrationPath, headerOption(values));
      const chosen = modelInputColumns(table, model.inputs, columns?.inputs ?? null, stringOption(values, 'inputs'));
      const x = columnsAsFloat32(table, chosen, '--calibration');
      const rows = Math.min(intOption(values, 'rows', defaultCalibrationRows(model, rounding)), table.rows);
      options.calibration = x.subarray(0, rows * model.inputs);
      calibrationNote = `${rows} rows of ${calibrationPath}`;
    }
    // A bar on a terminal only: quantize runs on this thread and reports each step as it goes
    // (a layer with GPTQ can take seconds); in a log the report below says it all.
    const bar = !flag(values, 'quiet') && io.stderr.isTTY ? createProgress({ stream: io.stderr, label: 'quantize ' }) : null;
    let fraction = 0;
    if (bar) {
      options.onProgress = (p) => {
        fraction = p.step / p.steps;
        bar.update(fraction, progressText(p));
      };
    }
    let q;
    try {
      q = model.quantize(options);
    } catch (err) {
      bar?.done('failed', fraction); // ends the bar's line before the error is printed
      model.dispose();
      throw err;
    }
    bar?.done();
    await saveModelFile(out, q, columns);

    const shape = [model.inputs, ...q.layers.map((l) => l.outputs)].join('-');
    const int4Name = `int4 g${groupSize} ${options.symmetric ? 'symmetric' : 'asymmetric'}`;
    const format = perLayer ? `per layer (${weightList.map((w) => (w === 'int4' ? int4Name : w)).join(', ')})` : weights === 'int4' ? int4Name : 'int8';
    const lines = [
      `quantised ${shape}: ${format} weights, ${activations} activations`,
      `size: ${kb(q.floatBytes)} float32 -> ${kb(q.sizeBytes)} (${(q.floatBytes / q.sizeBytes).toFixed(1)}x smaller)`,
    ];
    const stats = q.stats;
    if (stats) {
      const row = (name: string, l: { inputs: number; outputs: number } | null, acts: string, e: QuantErrorStats) =>
        `| ${name} | ${l ? `${l.inputs} -> ${l.outputs}` : ''} | ${acts} | ${pct(e.relativeRms)} | ${pct(e.relativeMax)} |`;
      lines.push(
        `error against the float model on ${calibrationNote} (relative to the output's scale):`,
        '',
        '| layer | shape | activations | rel. RMS error | rel. max error |',
        '|---|---|---|---:|---:|',
        ...stats.layers.map((s, i) => row(String(i), q.layers[i], s.activations + (s.equalized ? ', equalised' : '') + (s.rounding === 'gptq' ? ', gptq' : ''), s)),
        row('model', null, '', stats.output),
        '',
      );
      if (stats.layers.some((s) => s.rounding === 'gptq')) {
        lines.push('(gptq layers chose their codes on these same rows: on other rows their error reads higher)', '');
      }
      if (stats.output.relativeRms > LARGE_ERROR) {
        lines.push(
          `warning: the quantised model's outputs are ${pct(stats.output.relativeRms)} (RMS) away from the float model's; ` +
            (hasInt4 ? 'int8 weights, for every layer or (--weights int8,int4,...) for those with the largest errors above, may do better' : 'check the layers with the largest errors above'),
          '',
        );
      }
    } else {
      lines.push('no accuracy report: pass --calibration FILE with rows of typical inputs for one');
      const equalized = q.layers.flatMap((l, i) => (l.equalized ? [String(i)] : []));
      if (equalized.length) lines.push(`equalised layers (an input column would otherwise have quantised to ~0): ${equalized.join(', ')}`);
    }
    lines.push(`wrote ${out}`);
    io.stdout.write(lines.join('\n') + '\n');
    q.dispose();
    model.dispose();
  },
};

/**
 * --rows when not given: 1024, or where rounding may use GPTQ, GPTQ_ROWS_PER_INPUT per input of
 * the widest layer it could run on (work within GPTQ_AUTO_MAX_WORK_NATIVE at those rows), so
 * that 'auto' is not held to nearest rounding there by the row count alone.
 */
function defaultCalibrationRows(model: Mlp, rounding: string): number {
  let rows = 1024;
  if (rounding === 'nearest') return rows;
  for (const { inputs, outputs } of parameterLayout(model.spec).slots) {
    const wanted = GPTQ_ROWS_PER_INPUT * inputs;
    if (wanted > rows && gptqWork(inputs, outputs, wanted) <= GPTQ_AUTO_MAX_WORK_NATIVE) rows = wanted;
  }
  return rows;
}

// `mlpkit sparsify`: a sparse-activation copy of a float model file (net.sparsify), with the
// per-layer report of its stats (density, threshold or k, predictor recall) and the output
// error against the dense model when calibration rows are given.

import { BACKEND_CHOICES, type BackendChoice } from '../../backend/index.js';
import { Mlp } from '../../mlp.js';
import { SPARSE_TILE_ROWS, SPARSIFY_MODES, type SparsifyMode } from '../../sparse/format.js';
import type { SparseLayerInfo, SparseMlp } from '../../sparse/model.js';
import { SPARSE_WEIGHTS, type SparseWeights, type SparsifyOptions } from '../../sparse/options.js';
import { choiceOption, intListOption, intOption, numberOption, parseCommand, stringOption, HEADER_OPTIONS, HEADER_USAGE, headerOption, type Command } from '../args.js';
import { CliError, usageError } from '../errors.js';
import { loadModelFile, saveModelFile } from '../model-file.js';
import { checkOutputPath, checkOutputsDistinct } from '../output.js';
import { columnsAsFloat32, modelInputColumns, readTable } from '../table.js';

const usage = `Usage: mlpkit sparsify MODEL --out FILE --mode M [options]

Writes a sparse-activation copy of MODEL (a float .safetensors file from mlpkit): after the
chosen hidden layers only some units are kept per row, and the next layer reads only their
weights. \`mlpkit predict\` and \`mlpkit serve\` run the result like any model; the file also
holds the float model whole (Mlp.load reads it back dense).

  --out FILE           the sparse model (required)
  --mode M             how units are kept (required):
                         exact      the units a ReLU left nonzero (no approximation)
                         threshold  units with |h| > T (--threshold), or the cutoff that keeps
                                    a fraction D on the calibration rows (--density)
                         topk       the K largest |h| per row (--k, or --density D of the units)
                         predictor  K units per row picked before the layer is computed by a
                                    low-rank predictor trained on the calibration rows
  --density D          fraction of each layer's units to keep, in (0, 1] (threshold, topk,
                       predictor)
  --threshold T        threshold mode: the cutoff, >= 0
  --k K                topk and predictor modes: units kept per row
  --layers L           hidden layers to sparsify, 0-based, comma-separated (default: every
                       hidden layer that is not residual; exact mode: every ReLU one)
  --calibration FILE   rows of typical inputs (CSV or NPY): thresholds (--density) and
                       predictors are fitted on them, and the report measures density, recall
                       and the output error against the dense model there; required for
                       predictor mode and for threshold mode with --density
  --inputs COLS        columns of the calibration file (default: as mlpkit predict)
${HEADER_USAGE}
  --rows N             use the first N calibration rows (default 1024)
  --rank R             predictor mode: the predictor's inner width (default min(128, units / 4),
                       capped so the predictor costs at most a quarter of the layer)
  --epochs E           predictor mode: training epochs (default 20)
  --seed S             predictor mode: seed of its initialisation and shuffling (default 0)
  --dense-from-rows N  predictor mode: a tile of at least N rows of a batch (tiles have 16)
                       skips the predictor and computes the layer exactly, at dense speed;
                       auto (default) picks N where the rows' picks on the calibration rows
                       would cover most units anyway; 0: never
  --weights W          float (default), or int8: the layers read sparsely get int8 weights with a
                       scale per output (the native kernels read their kept rows as 1-byte codes)
  --backend B          auto (default), native or reference

Examples
  mlpkit sparsify model.safetensors --mode exact --out model.exact.safetensors
  mlpkit sparsify model.safetensors --mode predictor --density 0.1 --calibration sample.csv --out model.sparse.safetensors`;

const pct = (v: number) => (Number.isFinite(v) ? `${(v * 100).toPrecision(3)}%` : String(v));

/** The library's option names in its messages, as the flags of this command. */
const FLAGS: [RegExp, string][] = [
  [/options\.targetDensity/g, '--density'], [/options\.threshold/g, '--threshold'], [/options\.k\b/g, '--k'],
  [/options\.layers/g, '--layers'], [/options\.calibration/g, '--calibration'], [/options\.rank/g, '--rank'],
  [/options\.epochs/g, '--epochs'], [/options\.seed/g, '--seed'], [/options\.denseFromRows/g, '--dense-from-rows'],
];

export const sparsifyCommand: Command = {
  name: 'sparsify',
  summary: 'sparse-activation copy of a model (exact, threshold, top-k, predictor), with a report',
  usage,
  async run(argv, io) {
    const { values, positionals, help } = parseCommand('sparsify', argv, {
      ...HEADER_OPTIONS,
      out: { type: 'string', short: 'o' }, mode: { type: 'string' }, density: { type: 'string' }, threshold: { type: 'string' },
      k: { type: 'string' }, layers: { type: 'string' }, calibration: { type: 'string' }, inputs: { type: 'string' },
      rows: { type: 'string' }, rank: { type: 'string' }, epochs: { type: 'string' }, seed: { type: 'string' }, backend: { type: 'string' },
      weights: { type: 'string' }, 'dense-from-rows': { type: 'string' },
    }, { min: 1, max: 1, names: 'one MODEL file' });
    if (help) return void io.stdout.write(`${usage}\n`);
    const out = stringOption(values, 'out');
    if (out === undefined) throw usageError('mlpkit sparsify: --out FILE is required (where to write the sparse model)');
    if (stringOption(values, 'mode') === undefined) {
      throw usageError(`mlpkit sparsify: --mode is required: one of ${SPARSIFY_MODES.join(', ')}`, 'see mlpkit sparsify --help');
    }
    const mode = choiceOption<SparsifyMode>(values, 'mode', SPARSIFY_MODES, 'exact');
    const given = (name: string) => stringOption(values, name) !== undefined;
    const settings: Record<SparsifyMode, string[]> = { exact: [], threshold: ['threshold', 'density'], topk: ['k', 'density'], predictor: ['k', 'density'] };
    for (const name of ['density', 'threshold', 'k']) {
      if (given(name) && !settings[mode].includes(name)) throw usageError(`--${name} does not apply to --mode ${mode}`);
    }
    const set = settings[mode].filter(given);
    if (mode !== 'exact' && set.length !== 1) {
      throw usageError(`--mode ${mode} needs exactly one of ${settings[mode].map((s) => `--${s}`).join(' or ')}, received ${set.length === 0 ? 'neither' : 'both'}`);
    }
    for (const name of ['rank', 'epochs', 'seed', 'dense-from-rows']) {
      if (given(name) && mode !== 'predictor') throw usageError(`--${name} applies to --mode predictor only`);
    }
    const calibrationPath = stringOption(values, 'calibration');
    for (const option of ['rows', 'inputs']) {
      if (calibrationPath === undefined && values[option] !== undefined) throw usageError(`--${option} chooses calibration rows, and no --calibration FILE was given`);
    }
    if (calibrationPath === undefined && (mode === 'predictor' || (mode === 'threshold' && given('density')))) {
      throw usageError(`--mode ${mode}${mode === 'threshold' ? ' with --density' : ''} needs --calibration FILE (rows of typical inputs to fit ${mode === 'predictor' ? 'the predictors' : 'the thresholds'} on)`);
    }
    const options: SparsifyOptions = { mode, backend: choiceOption<BackendChoice>(values, 'backend', BACKEND_CHOICES, 'auto') };
    if (given('density')) options.targetDensity = numberOption(values, 'density', 1, 0, 1);
    if (given('threshold')) options.threshold = numberOption(values, 'threshold', 0, 0);
    if (given('k')) options.k = intOption(values, 'k', 1, 1);
    if (given('layers')) options.layers = intListOption(values, 'layers', [], 0);
    if (given('rank')) options.rank = intOption(values, 'rank', 1, 1, 1 << 16);
    if (given('epochs')) options.epochs = intOption(values, 'epochs', 20, 1, 1_000_000);
    if (given('seed')) options.seed = intOption(values, 'seed', 0, 0, 2 ** 32 - 1);
    if (given('dense-from-rows') && stringOption(values, 'dense-from-rows') !== 'auto') {
      options.denseFromRows = intOption(values, 'dense-from-rows', 0, 0, SPARSE_TILE_ROWS);
    }
    options.weights = choiceOption<SparseWeights>(values, 'weights', SPARSE_WEIGHTS, 'float');
    const rowLimit = intOption(values, 'rows', 1024);

    // Found out before a predictor is trained, not after.
    await checkOutputPath('--out', out);
    await checkOutputsDistinct([{ option: '--out', file: out }],
      [{ what: 'the model being sparsified', file: positionals[0] }, { what: 'the calibration file', file: calibrationPath }]);

    const { model, columns, kind } = await loadModelFile(positionals[0], options.backend);
    if (!(model instanceof Mlp)) {
      model.dispose();
      throw new CliError(`${positionals[0]} is ${kind === 'sparse' ? 'already sparse' : 'a quantised model'}`, 1, 'sparsify the float model it was made from');
    }
    let calibrationNote = '';
    if (calibrationPath !== undefined) {
      const table = await readTable(calibrationPath, headerOption(values));
      const chosen = modelInputColumns(table, model.inputs, columns?.inputs ?? null, stringOption(values, 'inputs'));
      const x = columnsAsFloat32(table, chosen, '--calibration');
      const rows = Math.min(rowLimit, table.rows);
      options.calibration = x.subarray(0, rows * model.inputs);
      calibrationNote = `${rows} rows of ${calibrationPath}`;
    }
    let sparse: SparseMlp;
    try {
      sparse = await model.sparsify(options);
    } catch (err) {
      model.dispose();
      // The library names its options (options.targetDensity); say the flags instead. An
      // argument error about a flag (a --k wider than the layer) is a command-line mistake:
      // exit code 2, as the checks above.
      if (err instanceof Error && typeof (err as { code?: unknown }).code === 'string') {
        const message = FLAGS.reduce((m, [from, to]) => m.replace(from, to), err.message);
        const code = (err as unknown as { code: string }).code;
        if (message !== err.message && (code === 'ERR_OUT_OF_RANGE' || code === 'ERR_INVALID_ARG_TYPE')) throw usageError(message, 'see mlpkit sparsify --help');
        err.message = message;
      }
      throw err;
    }
    await saveModelFile(out, sparse, columns);

    const shape = [model.inputs, ...sparse.layers.map((l) => l.outputs)].join('-');
    const chosenLayers = sparse.layers.flatMap((l, i) => (l.mode === 'dense' ? [] : [i]));
    const lines = [`sparsified ${shape}: ${mode} mode on layer${chosenLayers.length === 1 ? '' : 's'} ${chosenLayers.join(', ')}`];
    const stats = sparse.stats;
    const byLayer = new Map((stats?.layers ?? []).map((s) => [s.layer, s]));
    const setting = (l: Readonly<SparseLayerInfo>) =>
      l.mode === 'threshold'
        ? `threshold ${Number(l.threshold!.toPrecision(4))}`
        : l.k !== null
          ? `k ${l.k}${l.rank !== null ? `, rank ${l.rank}` : ''}${l.denseFromRows ? `, exact in tiles of ${l.denseFromRows}+ rows` : ''}`
          : '';
    lines.push(
      '',
      `| layer | shape | mode | ${stats ? 'density | ' : ''}setting |${mode === 'predictor' && stats ? ' recall |' : ''}`,
      `|---|---|---|${stats ? '---:|' : ''}---|${mode === 'predictor' && stats ? '---:|' : ''}`,
      ...sparse.layers.map((l, i) => {
        const s = byLayer.get(i);
        const density = stats ? `${s ? pct(s.density) : ''} | ` : '';
        const recall = mode === 'predictor' && stats ? ` ${s?.recall != null ? pct(s.recall) : ''} |` : '';
        const what = [setting(l), l.weights === 'int8' ? 'int8 weights' : ''].filter(Boolean).join(', ');
        return `| ${i} | ${l.inputs} -> ${l.outputs} | ${l.mode} | ${density}${what} |${recall}`;
      }),
      '',
    );
    if (stats) {
      lines.push(`error against the dense model on ${calibrationNote} (relative to the output's scale): ` +
        `RMS ${pct(stats.output.relativeRms)}, max ${pct(stats.output.relativeMax)}`);
      if (mode === 'predictor') lines.push('recall: of the units the dense layer has among its k largest, the share the predictor picked (rows held out of its training)');
    } else lines.push('no density or error report: pass --calibration FILE with rows of typical inputs for one');
    lines.push(`wrote ${out}`);
    io.stdout.write(lines.join('\n') + '\n');
    sparse.dispose();
    model.dispose();
  },
};

// `mlpkit predict`: run a saved model (float, quantised or sparse) on the rows of a CSV or NPY file.

import { extname } from 'node:path';
import { BACKEND_CHOICES, type BackendChoice } from '../../backend/index.js';
import { choiceOption, HEADER_OPTIONS, HEADER_USAGE, headerOption, parseCommand, stringOption, type Command } from '../args.js';
import { formatCsv } from '../csv.js';
import { usageError } from '../errors.js';
import { loadModelFile } from '../model-file.js';
import { writeNpy } from '../npy.js';
import { checkOutputPath, checkOutputsDistinct, writeOutput } from '../output.js';
import { columnsAsFloat32, modelInputColumns, readTable } from '../table.js';

const usage = `Usage: mlpkit predict MODEL INPUT [options]

Runs MODEL (a .safetensors file from mlpkit: float, quantised or sparse) on every row of INPUT
(a CSV file with a header row, or a 2-D .npy array) and writes one row of outputs per input row.

  --inputs COLS    input columns: names, 0-based indices or ranges (0-31), comma-separated
                   (default: the columns the model was trained on, when INPUT has them by name;
                   else every numeric column, which must number the model's inputs)
  --out FILE       write to FILE, .csv or .npy (default: CSV to stdout)
  --format F       csv or npy (default: from --out's extension, else csv)
  --backend B      auto (default), native or reference
${HEADER_USAGE.replace(/^ {4}/gm, '')}

CSV output has one column per model output (the target names from \`mlpkit train\`, else y0,
y1, ...) and, for classifiers, a last column 'label' with the most likely class (a classifier's
class_k columns are logits: softmax them for probabilities). NPY output is
float32 [rows, outputs].

Example
  mlpkit predict houses.safetensors new-houses.csv --out prices.csv`;

export const predictCommand: Command = {
  name: 'predict',
  summary: 'run a saved model on a CSV or NPY file; CSV or NPY out',
  usage,
  async run(argv, io) {
    const { values, positionals, help } = parseCommand('predict', argv, {
      inputs: { type: 'string' }, out: { type: 'string', short: 'o' }, format: { type: 'string' }, backend: { type: 'string' },
      ...HEADER_OPTIONS,
    }, { min: 2, max: 2, names: 'MODEL and INPUT files' });
    if (help) return void io.stdout.write(`${usage}\n`);
    const out = stringOption(values, 'out');
    const byExtension = out !== undefined && extname(out).toLowerCase() === '.npy' ? 'npy' : 'csv';
    const format = choiceOption(values, 'format', ['csv', 'npy'] as const, byExtension);
    const extension = out === undefined ? '' : extname(out).toLowerCase();
    if ((extension === '.csv' || extension === '.npy') && extension !== `.${format}`) {
      throw usageError(`--format ${format} contradicts --out ${out}`, `drop --format (the extension chooses), or name the file .${format}`);
    }
    const backend = choiceOption<BackendChoice>(values, 'backend', BACKEND_CHOICES, 'auto');
    const header = headerOption(values);
    // (train and quantize may read a CSV and an NPY file with one --header; predict reads one.)
    if (header !== 'auto' && extname(positionals[1]).toLowerCase() === '.npy') {
      throw usageError(`--${header === 'yes' ? '' : 'no-'}header applies to CSV files, and ${positionals[1]} is an NPY array`, 'drop it');
    }
    if (out !== undefined) {
      await checkOutputPath('--out', out);
      await checkOutputsDistinct([{ option: '--out', file: out }], [{ what: 'the model', file: positionals[0] }, { what: 'the input file', file: positionals[1] }]);
    }

    const { model, columns } = await loadModelFile(positionals[0], backend);
    const table = await readTable(positionals[1], header);
    const chosen = modelInputColumns(table, model.inputs, columns?.inputs ?? null, stringOption(values, 'inputs'));
    const x = columnsAsFloat32(table, chosen, 'input');
    const y = await model.predictAsync(x);
    const rows = table.rows;
    const width = model.outputs;
    model.dispose();

    let bytes: Uint8Array | string;
    if (format === 'npy') bytes = writeNpy(y, [rows, width]);
    else {
      // Targets read from an NPY file are named by index; a header of bare numbers would read
      // back as a file without one, so they are written y0, y1, ...
      const names = columns?.outputs.length === width
        ? columns.outputs.map((n) => (/^\d+$/.test(n) ? `y${n}` : n))
        : Array.from({ length: width }, (_, k) => `y${k}`);
      const classifier = columns?.task === 'classification';
      if (classifier) names.push('label');
      bytes = formatCsv(names, rows, (r, c) => {
        if (c < width) return y[r * width + c];
        let best = 0;
        for (let k = 1; k < width; k++) if (y[r * width + k] > y[r * width + best]) best = k;
        return best;
      });
    }
    if (out === undefined) io.stdout.write(bytes);
    else {
      await writeOutput(out, bytes);
      io.stderr.write(`wrote ${rows} rows of ${width} outputs to ${out}\n`);
    }
  },
};

// Tables of numbers from CSV or NPY files, and the column choices of the CLI (`--inputs a,b`,
// `--target 3`, `--inputs 0-31`): a name from the header, a 0-based index, or a range of
// indices. NPY columns are named by their index.

import { readFile, stat } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseCsv, type CsvHeader } from './csv.js';
import { FileFormatError } from '../errors.js';
import { CliError, usageError } from './errors.js';
import { naming, sniffContent } from './file-errors.js';
import { isNpy, readNpy } from './npy.js';

export interface Table {
  source: string;
  names: string[];
  /** false when the columns are named by their 0-based index (NPY, or a CSV read with --no-header). */
  named: boolean;
  rows: number;
  /** CSV: the 1-based line of the file each row starts on; NPY: null (rows are 0-based indices). */
  lines: Int32Array | null;
  /** rows x names.length, row-major; NaN where a CSV cell is not a number. */
  data: Float64Array;
  /** Per column, the first cell that is not a number (CSV only), or null. */
  firstText: ({ line: number; text: string } | null)[];
}

// Whole-file readers: a CSV becomes one JavaScript string (at most 2^29 - 24 characters), an
// NPY one Buffer (readFile stops at 2 GiB). Said up front, not as a stack trace from V8.
const CSV_MAX_BYTES = 2 ** 29 - 24;
const NPY_MAX_BYTES = 2 ** 31 - 1;

export async function readTable(path: string, header: CsvHeader = 'auto'): Promise<Table> {
  const size = (await stat(path)).size;
  const npy = extname(path).toLowerCase() === '.npy';
  if (size > (npy ? NPY_MAX_BYTES : CSV_MAX_BYTES)) {
    throw new CliError(`${path} is ${(size / 2 ** 20).toFixed(0)} MiB; mlpkit reads ${npy ? 'NPY files up to 2 GiB' : 'CSV files up to 512 MiB'}`, 1,
      npy ? 'split the rows over several files' : 'convert it to .npy (float32 rows), which reads up to 2 GiB');
  }
  let bytes: Buffer | undefined;
  try {
    bytes = await naming(path, readFile(path));
    return parseTable(path, bytes, header);
  } catch (err) {
    // The NPY and CSV readers say what is wrong, not in which file (a command may read two).
    if (err instanceof FileFormatError) {
      const found = bytes === undefined ? null : sniffContent(bytes);
      if (found === 'a safetensors model') throw new CliError(`${path} is a safetensors model, not a data table`, 1, 'give a CSV or NPY file of rows here');
      throw new CliError(`${path}: ${err.message}`);
    }
    throw err;
  }
}

function parseTable(path: string, bytes: Buffer, header: CsvHeader): Table {
  if (isNpy(bytes)) {
    const npy = readNpy(bytes);
    if (npy.shape.length < 1 || npy.shape.length > 2) {
      throw new CliError(`${path}: expected a 1-D or 2-D array (rows x columns) but it has shape (${npy.shape.join(', ')})`);
    }
    const rows = npy.shape[0];
    const cols = npy.shape.length === 2 ? npy.shape[1] : 1;
    if (rows === 0 || cols === 0) throw new CliError(`${path}: the array is empty (shape (${npy.shape.join(', ')}))`);
    const data = npy.data instanceof BigInt64Array ? Float64Array.from(npy.data, (v) => Number(v)) : Float64Array.from(npy.data);
    const names = Array.from({ length: cols }, (_, i) => String(i));
    return { source: path, names, named: false, rows, lines: null, data, firstText: Array(cols).fill(null) };
  }
  if (extname(path).toLowerCase() === '.npy') throw new CliError(`${path}: not a .npy file (it does not start with \\x93NUMPY)`);
  const table = parseCsv(bytes.toString('utf8'), header);
  return { source: path, ...table };
}

/** Where row r is, for messages: a CSV's line, an NPY's 0-based row index. */
export function rowPlace(table: Table, r: number): string {
  return table.lines ? `line ${table.lines[r]}` : `row ${r} (0-based)`;
}

function describeColumns(table: Table): string {
  const shown = table.names.slice(0, 12).map((n, i) => (n === String(i) ? n : `${i}:${n}`));
  return shown.join(', ') + (table.names.length > 12 ? `, ... (${table.names.length} in all)` : '');
}

/** Each column name's position (names are unique: csv.ts refuses duplicates). */
function columnIndex(table: Table): Map<string, number> {
  return new Map(table.names.map((n, i) => [n, i]));
}

/** Column indices from a comma-separated list of names, indices and ranges (`2-5`). */
export function resolveColumns(table: Table, list: string, option: string): number[] {
  const at = columnIndex(table);
  // A name that itself holds commas ("price, usd") can only be the whole list.
  const whole = at.get(list.trim());
  if (whole !== undefined && list.includes(',')) return [whole];
  const out: number[] = [];
  for (const raw of list.split(',')) {
    const item = raw.trim();
    // 'a,,b' is a typo, as in --layers.
    if (item === '') throw usageError(`${option}: expected a comma-separated list of columns but received '${list}'`, 'for example x1,x2 or 0-3');
    const named = at.get(item) ?? -1;
    if (named >= 0) {
      out.push(named);
      continue;
    }
    const range = /^(\d+)(?:-(\d+))?$/.exec(item);
    const first = range ? Number(range[1]) : -1;
    const last = range ? Number(range[2] ?? range[1]) : -1;
    if (!range || last < first || last >= table.names.length) {
      throw usageError(`${option}: ${table.source} has no column '${item}'`,
        `columns are: ${describeColumns(table)} (names, 0-based indices, or ranges like 0-3)`);
    }
    // In a file whose header has number names away from their own positions (a pandas index
    // column shifts 0, 1, 2 one to the right), '0-1' could mean positions or names; a single
    // '0' is the name (above), so a range reading positions there would pick other columns.
    if (range[2] !== undefined) {
      for (let c = first; c <= last; c++) {
        const where = at.get(String(c));
        if (where !== undefined && where !== c) {
          throw usageError(`${option}: '${item}' is ambiguous in ${table.source}: its column named '${c}' is at position ${where}, not ${c}`,
            'list the columns one by one: a number that is a column name picks that column');
        }
      }
    }
    for (let c = first; c <= last; c++) out.push(c);
  }
  if (out.length === 0) throw usageError(`${option}: no columns given`);
  const seen = new Set<number>();
  const dup = out.find((c) => seen.size === seen.add(c).size);
  if (dup !== undefined) throw usageError(`${option}: column '${table.names[dup]}' is listed twice`);
  return out;
}

/** Columns that hold numbers in every row (text columns are left out of default choices). */
export function numericColumns(table: Table): number[] {
  return table.names.map((_, i) => i).filter((i) => table.firstText[i] === null);
}

/** The chosen columns as a rows x columns.length Float32Array; text or non-finite cells are errors. */
export function columnsAsFloat32(table: Table, columns: number[], what: string): Float32Array {
  const width = table.names.length;
  const out = new Float32Array(table.rows * columns.length);
  for (const c of columns) {
    const text = table.firstText[c];
    if (text) {
      const cell = text.text === '' ? 'an empty cell' : `'${text.text}'`;
      throw new CliError(`${what}: column '${table.names[c]}' of ${table.source} holds ${cell} on line ${text.line}, not a number`);
    }
  }
  for (let r = 0; r < table.rows; r++) {
    for (let j = 0; j < columns.length; j++) {
      const v = table.data[r * width + columns[j]];
      // Checked after rounding: 1e39 is finite as a double but Infinity as the float32 the model reads.
      const f = Math.fround(v);
      if (!Number.isFinite(f)) {
        const beyond = Number.isFinite(v) ? ', beyond the float32 range (±3.4e38)' : '';
        throw new CliError(`${what}: column '${table.names[columns[j]]}' of ${table.source} holds ${v} on ${rowPlace(table, r)}${beyond}; ` +
          'every value must be a finite float32 number');
      }
      out[r * columns.length + j] = f;
    }
  }
  return out;
}

/**
 * The columns that feed a model of `width` inputs: --inputs when given, else the columns the
 * model was trained on (by name) when the table has them all, else every numeric column when
 * there are exactly `width` of them.
 */
export function modelInputColumns(table: Table, width: number, trainedOn: string[] | null, list: string | undefined, option = '--inputs'): number[] {
  let columns: number[];
  // A model trained on a file without names (NPY, a headerless CSV) knows its inputs by position
  // only ('0', '1', ...): any file's numeric columns in order fit it, as a named model's fit NPY.
  const positional = trainedOn !== null && trainedOn.every((n, i) => n === String(i));
  // Names looked up in a map: files of 10^5 columns took seconds in includes / indexOf.
  const at = columnIndex(table);
  if (list !== undefined) {
    columns = resolveColumns(table, list, option);
    // The model's own columns in another order would feed each feature to another's weights.
    const chosen = columns.map((c) => table.names[c]);
    if (trainedOn && !positional && table.named && chosen.length === trainedOn.length && chosen.join('\u0000') !== trainedOn.join('\u0000') &&
      [...chosen].sort().join('\u0000') === [...trainedOn].sort().join('\u0000')) {
      throw usageError(`${option} ${list} names the model's columns in another order (it was trained on ${trainedOn.join(',')})`,
        `give them in the model's order, or leave ${option} out`);
    }
  } else if (trainedOn && trainedOn.length === width && trainedOn.every((n) => at.has(n))) {
    columns = trainedOn.map((n) => at.get(n)!);
  } else if (trainedOn && trainedOn.length === width && table.named && !positional) {
    // The file has names but not all of the model's: taking columns by position instead would
    // feed a different feature without a word.
    const missing = trainedOn.filter((n) => !at.has(n));
    throw new CliError(`${table.source} has no column ${missing.map((n) => `'${n}'`).join(', ')} ` +
      `(the model was trained on ${trainedOn.join(', ')})`, 1, `rename the columns, or choose them with ${option}`);
  } else {
    columns = numericColumns(table);
    if (columns.length !== width) {
      throw new CliError(`${table.source} has ${columns.length} numeric columns but the model takes ${width} inputs`, 1,
        `choose them with ${option}` + (trainedOn && !positional ? ` (the model was trained on ${trainedOn.join(', ')})` : ''));
    }
  }
  if (columns.length !== width) {
    throw new CliError(`${option}: ${columns.length} columns chosen but the model takes ${width} inputs`);
  }
  return columns;
}

// Tables of numbers from CSV or NPY files, and the column choices of the CLI (`--inputs a,b`,
// `--target 3`, `--inputs 0-31`): a name from the header, a 0-based index, or a range of
// indices. NPY columns are named by their index.

import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseCsv } from './csv.js';
import { FileFormatError } from '../errors.js';
import { CliError, usageError } from './errors.js';
import { isNpy, readNpy } from './npy.js';

export interface Table {
  source: string;
  names: string[];
  rows: number;
  /** rows x names.length, row-major; NaN where a CSV cell is not a number. */
  data: Float64Array;
  /** Per column, the first cell that is not a number (CSV only), or null. */
  firstText: ({ line: number; text: string } | null)[];
}

export async function readTable(path: string): Promise<Table> {
  try {
    return parseTable(path, await readFile(path));
  } catch (err) {
    // The NPY and CSV readers say what is wrong, not in which file (a command may read two).
    if (err instanceof FileFormatError) throw new CliError(`${path}: ${err.message}`);
    throw err;
  }
}

function parseTable(path: string, bytes: Buffer): Table {
  if (isNpy(bytes)) {
    const npy = readNpy(bytes);
    if (npy.shape.length < 1 || npy.shape.length > 2) {
      throw new CliError(`${path}: expected a 1-D or 2-D array (rows x columns) but it has shape (${npy.shape.join(', ')})`);
    }
    const rows = npy.shape[0];
    const cols = npy.shape.length === 2 ? npy.shape[1] : 1;
    if (rows === 0 || cols === 0) throw new CliError(`${path}: the array is empty (shape (${npy.shape.join(', ')}))`);
    const data = npy.data instanceof BigInt64Array ? Float64Array.from(npy.data, (v) => Number(v)) : Float64Array.from(npy.data);
    return { source: path, names: Array.from({ length: cols }, (_, i) => String(i)), rows, data, firstText: Array(cols).fill(null) };
  }
  if (extname(path).toLowerCase() === '.npy') throw new CliError(`${path}: not a .npy file (it does not start with \\x93NUMPY)`);
  const table = parseCsv(bytes.toString('utf8'));
  return { source: path, ...table };
}

function describeColumns(table: Table): string {
  const shown = table.names.slice(0, 12).map((n, i) => (n === String(i) ? n : `${i}:${n}`));
  return shown.join(', ') + (table.names.length > 12 ? `, ... (${table.names.length} in all)` : '');
}

/** Column indices from a comma-separated list of names, indices and ranges (`2-5`). */
export function resolveColumns(table: Table, list: string, option: string): number[] {
  const out: number[] = [];
  for (const raw of list.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const named = table.names.indexOf(item);
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
    for (let c = first; c <= last; c++) out.push(c);
  }
  if (out.length === 0) throw usageError(`${option}: no columns given`);
  const dup = out.find((c, i) => out.indexOf(c) !== i);
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
      throw new CliError(`${what}: column '${table.names[c]}' of ${table.source} holds '${text.text}' on line ${text.line}, not a number`);
    }
  }
  for (let r = 0; r < table.rows; r++) {
    for (let j = 0; j < columns.length; j++) {
      const v = table.data[r * width + columns[j]];
      if (!Number.isFinite(v)) {
        throw new CliError(`${what}: column '${table.names[columns[j]]}' of ${table.source} holds ${v} in row ${r + 1}; ` +
          'every value must be a finite number');
      }
      out[r * columns.length + j] = v;
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
  if (list !== undefined) columns = resolveColumns(table, list, option);
  else if (trainedOn && trainedOn.length === width && trainedOn.every((n) => table.names.includes(n))) {
    columns = trainedOn.map((n) => table.names.indexOf(n));
  } else {
    columns = numericColumns(table);
    if (columns.length !== width) {
      throw new CliError(`${table.source} has ${columns.length} numeric columns but the model takes ${width} inputs`, 1,
        `choose them with ${option}` + (trainedOn ? ` (the model was trained on ${trainedOn.join(', ')})` : ''));
    }
  }
  if (columns.length !== width) {
    throw new CliError(`${option}: ${columns.length} columns chosen but the model takes ${width} inputs`);
  }
  return columns;
}

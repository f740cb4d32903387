// CSV tables of numbers: a header row of column names, then one row per sample. Fields may be
// quoted ("a, b" and "" escapes, as spreadsheets write them); lines end in \n or \r\n. A column
// may hold text (an id, a date): it is kept as NaN and only an error if a command selects it,
// with the row and the value that is not a number.

import { FileFormatError } from '../errors.js';

export interface CsvTable {
  names: string[];
  rows: number;
  /** rows x names.length, row-major; NaN where a cell is not a number. */
  data: Float64Array;
  /** Per column, the first cell that is not a number (1-based line of the file), or null. */
  firstText: ({ line: number; text: string } | null)[];
}

/** Splits one line into fields, honouring double quotes. */
function splitLine(line: string, lineNo: number): string[] {
  if (!line.includes('"')) return line.split(',');
  const fields: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  while (i < line.length) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      fields.push(field);
      field = '';
    } else field += c;
    i++;
  }
  if (quoted) throw new FileFormatError(`csv: line ${lineNo} has an unclosed quote`);
  fields.push(field);
  return fields;
}

export function parseCsv(text: string): CsvTable {
  const lines = text.split(/\r?\n/);
  let first = 0;
  while (first < lines.length && lines[first].trim() === '') first++;
  if (first === lines.length) throw new FileFormatError('csv: the file is empty (expected a header row of column names)');
  const names = splitLine(lines[first].replace(/^\uFEFF/, ''), first + 1).map((s) => s.trim());
  const width = names.length;
  names.forEach((n, i) => {
    if (n !== '' && Number.isFinite(Number(n)) && width > 1) {
      // A numeric "header" is almost always a file without one: the first sample would vanish.
      throw new FileFormatError(`csv: the first row holds numbers ('${n}' in column ${i + 1}); ` +
        'mlpkit expects a header row of column names first');
    }
  });
  const values: number[] = [];
  const firstText: CsvTable['firstText'] = names.map(() => null);
  let rows = 0;
  for (let l = first + 1; l < lines.length; l++) {
    const line = lines[l];
    if (line.trim() === '') continue;
    const fields = splitLine(line, l + 1);
    if (fields.length !== width) {
      throw new FileFormatError(`csv: line ${l + 1} has ${fields.length} fields but the header has ${width} columns`);
    }
    for (let c = 0; c < width; c++) {
      const s = fields[c].trim();
      const v = s === '' ? NaN : Number(s);
      if (Number.isNaN(v) && firstText[c] === null) firstText[c] = { line: l + 1, text: s };
      values.push(v);
    }
    rows++;
  }
  if (rows === 0) throw new FileFormatError('csv: the file has a header but no rows of data');
  return { names, rows, data: Float64Array.from(values), firstText };
}

/**
 * The shortest decimal that reads back as the same float32: CSV files stay readable (0.1, not
 * 0.10000000149011612) and lose nothing.
 */
export function formatFloat32(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  for (let digits = 1; digits < 9; digits++) {
    const s = v.toPrecision(digits);
    if (Math.fround(Number(s)) === v) return String(Number(s));
  }
  return String(Number(v.toPrecision(9)));
}

function quote(name: string): string {
  return /[",\r\n]/.test(name) ? `"${name.replace(/"/g, '""')}"` : name;
}

/** A CSV text: the header, then `rows` rows of cell(row, column) (numbers as formatFloat32 writes them). */
export function formatCsv(names: string[], rows: number, cell: (row: number, column: number) => number): string {
  const out: string[] = [names.map(quote).join(',')];
  const fields: string[] = new Array(names.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < names.length; c++) fields[c] = formatFloat32(cell(r, c));
    out.push(fields.join(','));
  }
  return out.join('\n') + '\n';
}

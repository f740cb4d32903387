// CSV tables of numbers: a header row of column names (or none, when the caller says so), then
// one row per sample. Fields may be quoted ("a, b", "" escapes and line breaks inside quotes, as
// spreadsheets write them); records end in \n, \r\n or a lone \r. A column may hold text (an id,
// a date): it is kept as NaN and only an error if a command selects it, with the line and the
// value that is not a number.

import { FileFormatError } from '../errors.js';

/** 'auto': the first row is the header, unless a cell of it is a number (then ask the user). */
export type CsvHeader = 'auto' | 'yes' | 'no';

export interface CsvTable {
  names: string[];
  /** false when the file had no header and the columns are named by their 0-based index. */
  named: boolean;
  rows: number;
  /** rows x names.length, row-major; NaN where a cell is not a number. */
  data: Float64Array;
  /** The 1-based line of the file each row starts on (messages point at lines, not row counts). */
  lines: Int32Array;
  /** Per column, the first cell that is not a number (1-based line of the file), or null. */
  firstText: ({ line: number; text: string } | null)[];
}

interface CsvRecord {
  fields: string[];
  line: number;
  /** Read with quotes: "" is an empty cell, not a blank line. */
  quoted: boolean;
}

const LINE_END = /\r\n|\r|\n/g;

/**
 * The records of a CSV text, one at a time. A record without quotes is one line split at commas
 * (the fast path for files of numbers); one with quotes is read character by character, since a
 * quoted field may hold commas and line breaks.
 */
function* csvRecords(text: string): Generator<CsvRecord> {
  let pos = 0;
  let line = 1;
  while (pos < text.length) {
    LINE_END.lastIndex = pos;
    const m = LINE_END.exec(text);
    const end = m ? m.index : text.length;
    const raw = text.slice(pos, end);
    if (!raw.includes('"')) {
      yield { fields: raw.split(','), line, quoted: false };
      pos = m ? end + m[0].length : text.length;
      line++;
      continue;
    }
    const first = line;
    const fields: string[] = [];
    let field = '';
    let quoted = false;
    // A quote opens a quoted field only as its first character (RFC 4180): inside a field, as in
    // 5" tall, it is text. Opening one there swallowed the lines up to the next quote.
    let fieldStart = true;
    let i = pos;
    for (; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i++;
          } else quoted = false;
        } else {
          if (c === '\n' || (c === '\r' && text[i + 1] !== '\n')) line++;
          field += c;
        }
      } else if (c === '"' && fieldStart) {
        quoted = true;
        fieldStart = false;
      } else if (c === ',') {
        fields.push(field);
        field = '';
        fieldStart = true;
      } else if (c === '\n' || c === '\r') break;
      else {
        field += c;
        fieldStart = false;
      }
    }
    if (quoted) throw new FileFormatError(`csv: the quote opened on line ${first} is never closed`);
    fields.push(field);
    if (i < text.length) i += text[i] === '\r' && text[i + 1] === '\n' ? 2 : 1;
    pos = i;
    line++;
    yield { fields, line: first, quoted: true };
  }
}

const isBlank = (r: CsvRecord) => !r.quoted && r.fields.length === 1 && r.fields[0].trim() === '';

/**
 * A cell as a number, NaN when it is not one. Number() also reads 0x1f, 0b101 and 0o17, which in
 * a CSV are ids or codes, not quantities: those stay text.
 */
function cellValue(s: string): number {
  if (s === '') return NaN;
  if (s.length > 2 && s[0] === '0' && 'xXbBoO'.includes(s[1])) return NaN;
  return Number(s);
}
const isNumber = (s: string) => Number.isFinite(cellValue(s));

function headerNames(header: CsvRecord, mode: CsvHeader): string[] {
  const names = header.fields.map((s, i) => (i === 0 ? s.replace(/^\uFEFF/, '') : s).trim());
  if (names.length === 1 && /[\t;]/.test(names[0])) {
    const sep = names[0].includes('\t') ? 'tabs' : 'semicolons';
    throw new FileFormatError(`csv: the header row has no commas but holds ${sep}; mlpkit reads comma-separated files ` +
      `(convert it, e.g. pandas: pd.read_csv(f, sep=${sep === 'tabs' ? "'\\t'" : "';'"}).to_csv(out, index=False))`);
  }
  if (mode === 'auto') {
    // A numeric "header" is usually a file without one, whose first sample would vanish; but
    // year columns and pandas' 0,1,2 are real names, so the user says which.
    const n = names.findIndex(isNumber);
    if (n >= 0) {
      throw new FileFormatError(`csv: the first row holds a number ('${names[n]}' in column ${n + 1}) where a header of ` +
        'column names is expected; pass --no-header if the file has no header row, or --header if those are the names');
    }
  }
  return names;
}

function checkUniqueNames(names: string[]): void {
  const seen = new Map<string, number>();
  names.forEach((name, i) => {
    const before = seen.get(name);
    if (before === undefined) return void seen.set(name, i);
    throw new FileFormatError(name === ''
      ? `csv: columns ${before + 1} and ${i + 1} have no name in the header; name them (a column is chosen by its name)`
      : `csv: the header names column '${name}' twice (columns ${before + 1} and ${i + 1}); rename one`);
  });
}

export function parseCsv(text: string, header: CsvHeader = 'auto'): CsvTable {
  const records = csvRecords(text);
  let next = records.next();
  while (!next.done && isBlank(next.value)) next = records.next();
  if (next.done) throw new FileFormatError('csv: the file is empty (expected a header row of column names)');
  const top = next.value;
  const named = header !== 'no';
  let names = named ? headerNames(top, header) : top.fields.map((_, i) => String(i));
  let width = names.length;
  const values: number[] = [];
  const lines: number[] = [];
  const firstText: CsvTable['firstText'] = names.map(() => null);
  let lastFilled = false; // whether any row has a value in the last column (see trailing commas below)
  const take = (record: CsvRecord) => {
    if (isBlank(record)) return;
    const fields = record.fields;
    if (fields.length !== width) {
      throw new FileFormatError(`csv: line ${record.line} has ${fields.length} fields but the ${named ? 'header has' : 'first row has'} ${width} columns`);
    }
    for (let c = 0; c < width; c++) {
      const s = fields[c].trim();
      const v = cellValue(s);
      if (Number.isNaN(v) && firstText[c] === null) firstText[c] = { line: record.line, text: s };
      values.push(v);
    }
    if (fields[width - 1].trim() !== '') lastFilled = true;
    lines.push(record.line);
  };
  if (!named) take(top);
  for (let r = records.next(); !r.done; r = records.next()) take(r.value);
  const rows = lines.length;
  if (rows === 0) throw new FileFormatError('csv: the file has a header but no rows of data');

  // Commas at the end of every line (a common export) make a last column with no name and no
  // values: drop it rather than make it the default target.
  let data = Float64Array.from(values);
  if (named && width > 1 && names[width - 1] === '' && !lastFilled) {
    const kept = width - 1;
    const trimmed = new Float64Array(rows * kept);
    for (let r = 0; r < rows; r++) trimmed.set(data.subarray(r * width, r * width + kept), r * kept);
    data = trimmed;
    names = names.slice(0, kept);
    firstText.pop();
    width = kept;
  }
  if (named) checkUniqueNames(names);
  return { names, named, rows, data, lines: Int32Array.from(lines), firstText };
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

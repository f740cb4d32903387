// Command-line parsing on node:util parseArgs, with the CLI's error style: what was wrong, and
// which --help to read. Values arrive as strings and are checked here, once, with messages that
// name the option and what it received.

import { parseArgs } from 'node:util';
import { usageError } from './errors.js';

export interface Io {
  stdout: { write(chunk: string | Uint8Array): unknown; isTTY?: boolean };
  stderr: { write(chunk: string | Uint8Array): unknown; isTTY?: boolean };
}

export interface Command {
  name: string;
  /** One line for `mlpkit --help`. */
  summary: string;
  usage: string;
  run(argv: string[], io: Io): Promise<number | void>;
}

type OptionSpec = { type: 'string' | 'boolean'; short?: string; multiple?: boolean };

export interface Parsed {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

/** parseArgs with strict options; `--help` is added to every command. */
export function parseCommand(
  command: string,
  argv: string[],
  options: Record<string, OptionSpec>,
  positionals: { min: number; max: number; names: string },
): Parsed & { help: boolean } {
  let parsed: Parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: true }) as Parsed;
  } catch (err) {
    // parseArgs' messages say what was wrong; drop its advice to pass '--' (rarely what is meant).
    const message = (err as Error).message.replace(/\. To specify a positional argument.*$/s, '').replace(/\.$/, '');
    throw usageError(`mlpkit ${command}: ${message}`, `see mlpkit ${command} --help`);
  }
  const help = parsed.values.help === true;
  if (!help && parsed.positionals.length < positionals.min) {
    throw usageError(`mlpkit ${command}: expected ${positionals.names}`, `see mlpkit ${command} --help`);
  }
  if (!help && parsed.positionals.length > positionals.max) {
    const extra = parsed.positionals.slice(positionals.max).join(' ');
    throw usageError(`mlpkit ${command}: unexpected argument '${extra}' (expected ${positionals.names})`, `see mlpkit ${command} --help`);
  }
  return { ...parsed, help };
}

export function stringOption(values: Parsed['values'], name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function flag(values: Parsed['values'], name: string): boolean {
  return values[name] === true;
}

function parseNumber(option: string, text: string, { integer, min, max }: { integer: boolean; min: number; max: number }): number {
  // Number() also reads 0x10 and 0b10: an option value is written in decimal.
  const v = text.trim() === '' || /^\s*[+-]?0[xXbBoO]/.test(text) ? NaN : Number(text);
  const kind = integer ? 'an integer' : 'a number';
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    // min = Number.MIN_VALUE means "positive": say > 0, not >= 5e-324.
    const low = min === Number.MIN_VALUE ? '> 0' : `>= ${min}`;
    const between = min === Number.MIN_VALUE ? `between 0 (exclusive) and ${max}` : `between ${min} and ${max}`;
    const range = max >= Number.MAX_SAFE_INTEGER ? low : between;
    throw usageError(`--${option}: expected ${kind} ${range} but received '${text}'`);
  }
  return v;
}

export function intOption(values: Parsed['values'], option: string, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const text = stringOption(values, option);
  return text === undefined ? fallback : parseNumber(option, text, { integer: true, min, max });
}

export function numberOption(values: Parsed['values'], option: string, fallback: number, min = 0, max = Infinity): number {
  const text = stringOption(values, option);
  return text === undefined ? fallback : parseNumber(option, text, { integer: false, min, max });
}

/** A comma-separated list of integers, e.g. --layers 64,64. */
export function intListOption(values: Parsed['values'], option: string, fallback: number[], min = 1, max = Number.MAX_SAFE_INTEGER): number[] {
  const text = stringOption(values, option);
  if (text === undefined) return fallback;
  const items = text.split(',').map((s) => s.trim());
  // '64,,64' is a typo, not a list of two.
  if (items.some((s) => s === '')) throw usageError(`--${option}: expected a comma-separated list of integers but received '${text}'`, 'for example 64,64');
  return items.map((s) => parseNumber(option, s, { integer: true, min, max }));
}

/** The options of a command that reads CSV files: whether the first row is a header. */
export const HEADER_OPTIONS: Record<string, OptionSpec> = { header: { type: 'boolean' }, 'no-header': { type: 'boolean' } };

export const HEADER_USAGE = `  --header / --no-header
                       the CSV's first row is / is not a row of column names (default: it is,
                       unless it holds a number; without a header, columns are named 0, 1, ...)`;

export function headerOption(values: Parsed['values']): 'auto' | 'yes' | 'no' {
  const yes = values.header === true;
  const no = values['no-header'] === true;
  if (yes && no) throw usageError('--header and --no-header contradict each other; give one');
  return yes ? 'yes' : no ? 'no' : 'auto';
}

export function choiceOption<T extends string>(values: Parsed['values'], option: string, allowed: readonly T[], fallback: T): T {
  const text = stringOption(values, option);
  if (text === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(text)) {
    throw usageError(`--${option}: expected one of ${allowed.join(', ')} but received '${text}'`);
  }
  return text as T;
}

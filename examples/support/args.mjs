// Command-line flags of examples/neural-field.mjs, parsed with node:util parseArgs.

import { parseArgs } from 'node:util';

export const USAGE = `Usage: node examples/neural-field.mjs [options]
  --size N      image side in pixels (default 128)
  --seconds S   training time budget in seconds (default 60); epochs are chosen to fit it
  --epochs N    train exactly N epochs instead (still stopped after --seconds, if given)
  --out DIR     output directory (default out/neural-field)
  --help        show this help`;

function positive(name, text, { integer }) {
  const v = Number(text);
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new RangeError(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got '${text}'`);
  }
  return v;
}

/** Returns { size, seconds, secondsGiven, epochs (or undefined), out, help }. */
export function parseDemoArgs(argv = process.argv.slice(2)) {
  const { values } = parseArgs({
    args: argv,
    options: {
      size: { type: 'string' },
      seconds: { type: 'string' },
      epochs: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  const size = values.size === undefined ? 128 : positive('size', values.size, { integer: true });
  if (size < 8 || size > 1024) throw new RangeError(`--size must be between 8 and 1024, got ${size}`);
  return {
    size,
    seconds: values.seconds === undefined ? 60 : positive('seconds', values.seconds, { integer: false }),
    secondsGiven: values.seconds !== undefined,
    epochs: values.epochs === undefined ? undefined : positive('epochs', values.epochs, { integer: true }),
    out: values.out ?? 'out/neural-field',
    help: Boolean(values.help),
  };
}

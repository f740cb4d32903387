// Command lines of the bench scripts: --help prints the usage; a mistake (an unknown option, a
// bad value) prints one line and the usage and exits 2, as the mlpkit CLI does, not a stack.

import { parseArgs } from 'node:util';

let usageText = '';

/** parseArgs(config) with --help/-h added; exits 0 after printing `usage` when asked. */
export function benchArgs(usage, config) {
  usageText = usage;
  let parsed;
  try {
    parsed = parseArgs({ ...config, options: { ...config.options, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    usageError(err.message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  if (parsed.values.help) {
    console.log(usage);
    process.exit(0);
  }
  return parsed;
}

/** A command-line value the script cannot use: say which, show the usage, exit 2. */
export function usageError(message) {
  process.stderr.write(`${message}\n\n${usageText}\n`);
  process.exit(2);
}

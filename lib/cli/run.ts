// The CLI's dispatcher: `mlpkit <command> [args]`. Errors a user can fix print one message (and
// a hint) with exit code 1 (or 2 for a command line that cannot be parsed); anything else is a
// bug and prints its stack.

import { VERSION } from '../version.js';
import type { Command, Io } from './args.js';
import { benchCommand } from './commands/bench.js';
import { infoCommand } from './commands/info.js';
import { predictCommand } from './commands/predict.js';
import { quantizeCommand } from './commands/quantize.js';
import { serveCommand } from './commands/serve.js';
import { sparsifyCommand } from './commands/sparsify.js';
import { trainCommand } from './commands/train.js';
import { CliError, isUserError } from './errors.js';
import { fileErrorReason } from './file-errors.js';

export const COMMANDS: Command[] = [infoCommand, trainCommand, predictCommand, quantizeCommand, sparsifyCommand, benchCommand, serveCommand];

function topUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `Usage: mlpkit <command> [options]      (mlpkit ${VERSION})`,
    '',
    'Commands',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'mlpkit <command> --help    options and examples of one command',
    'mlpkit --version',
  ].join('\n');
}

function fileErrorMessage(err: NodeJS.ErrnoException): string {
  return `cannot open '${err.path}': ${fileErrorReason(err)}`;
}

function report(command: string, err: unknown, io: Io): number {
  if (isUserError(err)) {
    const e = err as NodeJS.ErrnoException;
    const message = e.path && e.syscall ? fileErrorMessage(e) : err.message.replace(/^mlpkit( \w+)?: /, '');
    io.stderr.write(`mlpkit ${command}: ${message}\n`);
    if (err instanceof CliError && err.hint) io.stderr.write(`  ${err.hint}\n`);
    if (e.code === 'ERR_MLPKIT_CUDA_UNAVAILABLE') io.stderr.write('  use --backend native, or unset MLPKIT_BACKEND\n');
    if (err instanceof CliError) return err.exitCode;
    return err.code?.startsWith('ERR_PARSE_ARGS_') ? 2 : 1;
  }
  io.stderr.write(`mlpkit ${command}: internal error, please report it with the command that caused it:\n${(err as Error)?.stack ?? String(err)}\n`);
  return 1;
}

export async function runCli(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(`${topUsage()}\n`);
    return 2;
  }
  if (name === '--help' || name === '-h') {
    io.stdout.write(`${topUsage()}\n`);
    return 0;
  }
  if (name === '--version' || name === '-v') {
    io.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const wanted = name === 'help' ? rest[0] : name;
  const command = COMMANDS.find((c) => c.name === wanted);
  if (name === 'help' && (wanted === undefined || command)) {
    io.stdout.write(`${command ? command.usage : topUsage()}\n`);
    return 0;
  }
  if (!command) {
    io.stderr.write(`mlpkit: unknown command '${wanted}'\n  commands: ${COMMANDS.map((c) => c.name).join(', ')}; see mlpkit --help\n`);
    return 2;
  }
  try {
    return (await command.run(rest, io)) ?? 0;
  } catch (err) {
    return report(command.name, err, io);
  }
}

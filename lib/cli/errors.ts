// Errors the CLI reports as one message (and a hint), never a stack trace: the user can fix them.
// Exit code 2 for a command line that cannot be understood, 1 for everything that went wrong
// after that (a missing file, data that does not fit the model).

import { isFileSystemError } from './file-errors.js';

export class CliError extends Error {
  constructor(message: string, readonly exitCode: 1 | 2 = 1, readonly hint?: string) {
    super(message);
    this.name = 'CliError';
  }
}

/** A command line that cannot be run as written (exit code 2). */
export function usageError(message: string, hint?: string): CliError {
  return new CliError(message, 2, hint);
}

// Errors mlpkit itself throws on bad input, and the file-system errors a path typo causes: their
// messages already say what is wrong, so the CLI prints them as they are.
const USER_ERROR_CODES = new Set([
  'ERR_INVALID_ARG_TYPE', 'ERR_OUT_OF_RANGE', 'ERR_MLPKIT_INVALID_FILE', 'ERR_MLPKIT_DISPOSED',
  'ERR_MLPKIT_NATIVE_UNAVAILABLE', 'ERR_MLPKIT_CUDA_UNAVAILABLE', 'ERR_FS_FILE_TOO_LARGE', 'ENOENT', 'EACCES', 'EISDIR', 'ENOTDIR', 'EEXIST', 'EADDRINUSE', 'EADDRNOTAVAIL', 'EPERM',
]);

export function isUserError(err: unknown): err is Error & { code?: string } {
  if (err instanceof CliError || isFileSystemError(err)) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && typeof code === 'string' && (USER_ERROR_CODES.has(code) || code.startsWith('ERR_PARSE_ARGS_'));
}

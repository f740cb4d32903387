// The CLI's output files: checked before the work that fills them (a typo in --out should not
// cost a training run), and a failed write said as a write, not as a missing input.

import { stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CliError } from './errors.js';
import { fileErrorReason } from './file-errors.js';

export async function checkOutputPath(option: string, file: string): Promise<void> {
  const dir = dirname(file);
  if (!(await stat(dir).then((st) => st.isDirectory(), () => false))) {
    throw new CliError(`${option}: the directory '${dir}' of ${file} does not exist`);
  }
  if (await stat(file).then((st) => st.isDirectory(), () => false)) {
    throw new CliError(`${option}: '${file}' is a directory`, 1, 'give the name of the file to write');
  }
}

export async function writeOutput(file: string, bytes: string | Uint8Array): Promise<void> {
  try {
    await writeFile(file, bytes);
  } catch (err) {
    const reason = fileErrorReason(err);
    if (reason === null) throw err;
    throw new CliError(`cannot write '${file}': ${reason}`);
  }
}

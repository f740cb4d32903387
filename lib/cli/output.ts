// The CLI's output files: checked before the work that fills them (a typo in --out should not
// cost a training run, an --out that names an input must not destroy it), written whole or not
// at all (a full disk must not leave half a model where the old one was), and a failed write
// said as a write, not as a missing input.

import { randomBytes } from 'node:crypto';
import { rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { CliError } from './errors.js';
import { fileErrorReason } from './file-errors.js';

export async function checkOutputPath(option: string, file: string): Promise<void> {
  const dir = dirname(file);
  if (!(await stat(dir).then((st) => st.isDirectory(), () => false))) {
    throw new CliError(`${option}: the directory '${dir}' of ${file} does not exist`);
  }
  const existing = await stat(file).catch(() => null);
  if (existing?.isDirectory()) {
    throw new CliError(`${option}: '${file}' is a directory`, 1, 'give the name of the file to write');
  }
  // writeOutput creates a temporary file beside the target: try that now, not after the work.
  // (Not for what is not a regular file, /dev/stdout say: that is written as is.)
  if (existing === null || existing.isFile()) {
    const probe = tempBeside(file);
    try {
      await writeFile(probe, '', { flag: 'wx' });
    } catch (err) {
      const reason = fileErrorReason(err);
      if (reason === null) throw err;
      throw new CliError(`${option}: cannot write '${file}': ${reason}`, 1, 'choose a directory you can write to');
    } finally {
      await rm(probe, { force: true }).catch(() => {});
    }
  }
}

function tempBeside(file: string): string {
  return join(dirname(file), `.${basename(file)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
}

/** The same file by name, or (both existing) by identity: a symbolic or hard link counts. */
async function sameFile(a: string, b: string): Promise<boolean> {
  if (resolve(a) === resolve(b)) return true;
  const [sa, sb] = await Promise.all([stat(a).catch(() => null), stat(b).catch(() => null)]);
  return sa !== null && sb !== null && sa.dev === sb.dev && sa.ino === sb.ino;
}

/** Refuses an output that names one of the command's inputs, or another of its outputs. */
export async function checkOutputsDistinct(outputs: { option: string; file: string }[], inputs: { what: string; file: string | undefined }[]): Promise<void> {
  for (let i = 0; i < outputs.length; i++) {
    const { option, file } = outputs[i];
    for (const input of inputs) {
      if (input.file !== undefined && (await sameFile(file, input.file))) {
        throw new CliError(`${option} ${file} is ${input.what}: writing it would destroy it`, 1, `give ${option} another file name`);
      }
    }
    for (let j = 0; j < i; j++) {
      if (await sameFile(file, outputs[j].file)) {
        throw new CliError(`${outputs[j].option} and ${option} both name ${file}`, 1, 'give each its own file name');
      }
    }
  }
}

export async function writeOutput(file: string, bytes: string | Uint8Array): Promise<void> {
  // A temporary file beside the target, renamed over it once complete: the old file stays whole
  // until the new one is. Not for what is not a regular file (/dev/stdout, a FIFO): written as is.
  const existing = await stat(file).catch(() => null);
  const temp = existing === null || existing.isFile() ? tempBeside(file) : null;
  try {
    if (temp === null) await writeFile(file, bytes);
    else {
      await writeFile(temp, bytes, { flag: 'wx', mode: existing ? existing.mode & 0o777 : 0o666 });
      await rename(temp, file);
    }
  } catch (err) {
    if (temp !== null) await rm(temp, { force: true }).catch(() => {});
    const reason = fileErrorReason(err);
    if (reason === null) throw err;
    throw new CliError(`cannot write '${file}': ${reason}`);
  }
}

// What a failed file-system call means to the person at the terminal. Every errno error (it has
// a syscall) is about their files or their machine, never a bug of mlpkit, so none prints a stack.

const REASONS: Record<string, string> = {
  ENOENT: 'no such file or directory', EACCES: 'permission denied', EPERM: 'permission denied',
  EISDIR: 'is a directory, not a file', ENOTDIR: 'a part of the path is not a directory',
  ENOSPC: 'no space left on the device', EDQUOT: 'disk quota exceeded', EROFS: 'read-only file system',
  ENAMETOOLONG: 'the name is too long', ELOOP: 'too many levels of symbolic links (a link loop?)',
  EIO: 'input/output error', EMFILE: 'too many open files', ENFILE: 'too many open files',
  EFBIG: 'the file is too large', ENXIO: 'no such device', EBUSY: 'the file is busy',
};

export function isFileSystemError(err: unknown): err is NodeJS.ErrnoException {
  const e = err as NodeJS.ErrnoException | null;
  return err instanceof Error && typeof e?.syscall === 'string' && typeof e.code === 'string';
}

/** The reason in words for an errno error, or null when err is not one. */
export function fileErrorReason(err: unknown): string | null {
  if (!isFileSystemError(err)) return null;
  return REASONS[err.code!] ?? err.message;
}

/**
 * `promise`, with `path` put on an errno error that lacks one (reading a directory fails in
 * read(2), whose error names no file), so the message can say which file.
 */
export async function naming<T>(path: string, promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (err) {
    if (isFileSystemError(err) && err.path === undefined) err.path = path;
    throw err;
  }
}

/** What a file's first bytes say it is, for a message when it was given in the wrong place. */
export function sniffContent(bytes: Uint8Array): string | null {
  const head = bytes.subarray(0, 512);
  if (head.length >= 6 && head[0] === 0x93 && String.fromCharCode(...head.subarray(1, 6)) === 'NUMPY') return 'an NPY array';
  // safetensors: an 8-byte little-endian header length, then the JSON header.
  if (head.length >= 10 && head[8] === 0x7b && head[9] === 0x22) return 'a safetensors model';
  if (head.length > 0 && head.every((b) => b === 9 || b === 10 || b === 13 || (b >= 32 && b < 127) || b >= 128)) return 'a text (CSV) file';
  return null;
}

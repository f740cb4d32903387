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

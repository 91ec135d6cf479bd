/**
 * An error caused by the user's input (a missing file, a malformed line, a bad flag).
 * The CLI prints its message on one line and exits non-zero, without a stack trace.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

/** Short description of any thrown value, for messages that wrap it. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

const SYSTEM_ERRORS: Record<string, string> = {
  ENOENT: 'no such file or folder',
  EISDIR: 'is a folder, a file was expected',
  ENOTDIR: 'a part of the path is not a folder',
  EEXIST: 'already exists',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on the device',
  EROFS: 'read-only file system',
  EMFILE: 'too many open files',
  ENAMETOOLONG: 'the name is too long',
};

/**
 * A file system error that escaped the checks (a path that changed under us, a full disk) as one
 * line naming the path and what went wrong, or null for anything that is not such an error.
 */
export function describeSystemError(err: unknown): string | null {
  const e = err as NodeJS.ErrnoException;
  if (!(err instanceof Error) || typeof e.code !== 'string' || typeof e.syscall !== 'string') return null;
  const what = SYSTEM_ERRORS[e.code];
  if (what === undefined) return null;
  return `${e.path ?? 'a file'}: ${what} (${e.code} during ${e.syscall})`;
}

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

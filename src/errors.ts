/**
 * An error the user can cause and fix. The CLI prints `message` and `hint`
 * without a stack trace; anything that is not a UserError is a bug.
 */
export class UserError extends Error {
  override readonly name = 'UserError';
  constructor(
    message: string,
    /** The command or setting that fixes it. */
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** One paragraph: what went wrong, then how to fix it. */
  format(): string {
    return this.hint ? `${this.message}\n  fix: ${this.hint}` : this.message;
  }
}

export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError;
}

/** True for the error an aborted AbortSignal raises (ours or Node's). */
export function isAbortError(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || (err as { code?: string }).code === 'ABORT_ERR');
}

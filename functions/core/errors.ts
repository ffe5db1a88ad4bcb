/**
 * Everything rekey throws. `expose` errors may be shown to a webhook caller, a chat channel or a
 * ticket; the others are summarised as their code. Messages are built from identifiers only; a
 * driver's error is kept as a redacted `cause` (see redact.ts), never pasted into the message.
 */
export class RekeyError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly expose: boolean;

  constructor(
    code: string,
    message: string,
    options: { retryable?: boolean; expose?: boolean; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.expose = options.expose ?? true;
  }

  toJSON(): { code: string; message: string; retryable: boolean } {
    return { code: this.code, message: this.message, retryable: this.retryable };
  }
}

export class ConfigError extends RekeyError {
  constructor(message: string) {
    super('CONFIG_INVALID', message);
  }
}

export class ValidationError extends RekeyError {
  constructor(message: string, code = 'INVALID_INPUT') {
    super(code, message);
  }
}

export class NotFoundError extends RekeyError {
  constructor(message: string, code = 'NOT_FOUND') {
    super(code, message);
  }
}

export class ConflictError extends RekeyError {
  constructor(message: string, code = 'CONFLICT') {
    super(code, message);
  }
}

/** Another rotation of the same secret holds the lock or owns AWSPENDING. */
export class RotationInProgressError extends RekeyError {
  constructor(secretId: string, detail: string) {
    super('ROTATION_IN_PROGRESS', `rotation of ${secretId} is already in progress: ${detail}`, { retryable: true });
  }
}

/** The store's bytes cannot be trusted: wrong key, truncated or edited file. Nothing is written. */
export class StoreIntegrityError extends RekeyError {
  constructor(message: string, cause?: unknown) {
    super('STORE_INTEGRITY', message, { cause });
  }
}

/** A database or provider refused or failed. `cause` is already redacted. */
export class TargetError extends RekeyError {
  constructor(code: string, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(code, message, { retryable: options.retryable ?? false, cause: options.cause });
  }
}

/**
 * Whether a credential still logs in: `verify` passing means yes, a `LOGIN_FAILED` refusal means
 * no, and any other failure (the server is down, a timeout) is rethrown — "cannot tell" must never
 * read as "revoked".
 */
export async function logsIn(verify: () => Promise<unknown>): Promise<boolean> {
  try {
    await verify();
    return true;
  } catch (error) {
    if (error instanceof TargetError && error.code === 'LOGIN_FAILED') return false;
    throw error;
  }
}

/** A scanner payload that cannot be parsed into leak reports. */
export class PayloadError extends RekeyError {
  constructor(message: string) {
    super('PAYLOAD_INVALID', message);
  }
}

export const isRekeyError = (error: unknown): error is RekeyError => error instanceof RekeyError;

/** A summary safe for any output: exposed errors keep their message, others only their code. */
export function publicError(error: unknown): { code: string; message: string } {
  if (isRekeyError(error)) {
    return { code: error.code, message: error.expose ? error.message : `internal error (${error.code})` };
  }
  return { code: 'INTERNAL', message: 'internal error' };
}

/** A webhook whose signature, token or timestamp does not check out. */
export class AuthError extends RekeyError {
  constructor(message: string) {
    super('UNAUTHORIZED', message);
  }
}

import { Sealed } from './sealed.ts';

const MIN_SECRET_LENGTH = 4; // shorter strings would scrub ordinary words; rekey never generates them

/** Replace every occurrence of each known secret in `text` (also URL-encoded forms). */
export function scrub(text: string, secrets: Iterable<string | Sealed<string> | undefined>): string {
  let out = text;
  for (const item of secrets) {
    const value = item instanceof Sealed ? item.reveal() : item;
    if (!value || value.length < MIN_SECRET_LENGTH) continue;
    for (const form of new Set([value, encodeURIComponent(value), JSON.stringify(value).slice(1, -1)])) {
      out = out.split(form).join('[redacted]');
    }
  }
  return out;
}

/**
 * A driver error reduced to what is safe to keep as a `cause`: its code and a scrubbed message.
 * Drivers attach the SQL text (mysql2's `sql`), parameters and server detail; none of it survives.
 */
export interface RedactedCause {
  name: string;
  code?: string;
  message: string;
}

export function redactCause(error: unknown, secrets: Iterable<string | Sealed<string> | undefined>): RedactedCause {
  const list = [...secrets];
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return {
      name: error.name,
      ...(typeof code === 'string' || typeof code === 'number' ? { code: String(code) } : {}),
      message: scrub(error.message, list),
    };
  }
  return { name: 'Error', message: scrub(String(error), list) };
}

import { expect } from 'vitest';
import { Sealed } from '#core/sealed.ts';

/**
 * Records every secret value a test generates or reads, and every piece of output the code under
 * test produced (log lines, events, CLI output, error text), then fails if any value appears in any
 * output. Also checks URL-encoded and JSON-escaped forms.
 */
export class LeakGuard {
  readonly #values = new Set<string>();
  readonly #outputs: { where: string; text: string }[] = [];

  secret(value: string | Sealed<string>): void {
    const text = value instanceof Sealed ? value.reveal() : value;
    if (text.length >= 4) this.#values.add(text);
  }

  /** Adds the secret fields of a stored JSON value: a password, an IAM secret access key, an API key, a token. */
  secretJson(json: string | Sealed<string>): void {
    const text = json instanceof Sealed ? json.reveal() : json;
    const parsed = JSON.parse(text) as Record<string, unknown>;
    for (const field of ['password', 'secretAccessKey', 'key', 'token']) {
      const value = parsed[field];
      if (typeof value === 'string' && value) this.secret(value);
    }
  }

  output(where: string, value: unknown): void {
    this.#outputs.push({ where, text: typeof value === 'string' ? value : describe(value) });
  }

  error(where: string, error: unknown): void {
    this.output(where, describe(error));
  }

  get valueCount(): number {
    return this.#values.size;
  }

  assertClean(): void {
    for (const { where, text } of this.#outputs) {
      for (const value of this.#values) {
        for (const form of [value, encodeURIComponent(value), JSON.stringify(value).slice(1, -1)]) {
          expect(text.includes(form), `a secret value appeared in ${where}`).toBe(false);
        }
      }
    }
  }
}

/** Everything an error carries: message, stack, code, cause chain, own enumerable fields. */
function describe(value: unknown, depth = 0): string {
  if (depth > 4) return '';
  if (value instanceof Error) {
    const own = Object.fromEntries(Object.entries(value));
    return [value.name, value.message, value.stack ?? '', safeJson(own), describe((value as { cause?: unknown }).cause, depth + 1)].join('\n');
  }
  if (typeof value === 'object' && value !== null) return safeJson(value);
  return String(value);
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_key, v) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    return String(value);
  }
}

import type { Sealed } from '../sealed.ts';

/**
 * A place that holds a copy of a credential and must receive each new value: a CI system's
 * secret, a service that re-reads the secret when asked. Consumers are listed in the secret's
 * value, `"consumers": [ {"type": …, …}, … ]` (see README "Consumers"), so the list is versioned and
 * encrypted with the credential it serves and validated by `rekey put` with it.
 *
 * Contract (test/unit/consumers-*.test.ts):
 * - `validate` throws ValidationError naming what is wrong, never echoing a value;
 * - `push` is idempotent (pushing the same version twice leaves the same state) and resolves only
 *   once the consumer has accepted the value; otherwise it throws a RekeyError whose `retryable`
 *   says whether trying again may help;
 * - a value never appears in a URL, a log line, an event, an error or a request log: what leaves
 *   rekey is either encrypted for the consumer (GitHub's sealed box) or no value at all (an event
 *   asking the consumer to re-read the secret).
 */
export interface ConsumerSpec {
  type: string;
  [field: string]: unknown;
}

export interface ConsumerPush {
  secretId: string;
  versionId: string;
  /** The new value (the stored JSON), AWSCURRENT by the time it is pushed. */
  value: Sealed<string>;
  /** The value's sensitive texts (the kind's `sensitiveForms`): an adapter scrubs them from anything it reports. */
  secrets: Sealed<string>[];
  consumer: ConsumerSpec;
}

export interface ConsumerPushOutcome {
  /** Identifies the consumer in results and events: `github-actions owner/repo`, `event orders-api`. */
  consumer: string;
  /** What was updated, by name only (`AWS_ACCESS_KEY_ID`, `request sent`). */
  updated: string[];
}

export interface ConsumerAdapter {
  readonly type: string;
  /** Check a spec when the secret is stored (`rekey put`), before any rotation depends on it. */
  validate(spec: ConsumerSpec, where: string): void;
  /** A one-line, non-secret name for the consumer. */
  describe(spec: ConsumerSpec): string;
  push(request: ConsumerPush): Promise<ConsumerPushOutcome>;
}

/** The adapters by consumer type (`github-actions`, `event`). */
export interface ConsumerRegistry {
  readonly types: readonly string[];
  /** ValidationError naming the known types when `type` is not one. */
  forType(type: string): ConsumerAdapter;
}

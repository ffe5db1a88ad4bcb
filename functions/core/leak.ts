import type { Sealed } from './sealed.ts';

export type LeakSource = 'github' | 'gitguardian' | 'trufflehog' | 'gitleaks';

/** Where a scanner found the value. Every field is optional: scanners report what they know. */
export interface LeakLocation {
  repository?: string;
  file?: string;
  line?: number;
  commit?: string;
  url?: string;
}

/**
 * One leaked value, normalised from any scanner (DESIGN.md §5). The value travels sealed; GitHub's
 * webhook omits it, so `fetch` says where to read it (the alert REST endpoint).
 */
export interface LeakReport {
  source: LeakSource;
  /** The scanner's own id: alert number, incident id, finding fingerprint. */
  sourceId: string;
  /** The scanner's name for the kind of secret (e.g. "postgres_uri", "PostgreSQL Credentials"). */
  secretType: string;
  value?: Sealed<string>;
  /**
   * GitGuardian sends no value, only its HasMySecretLeaked hash (`incident.hmsl_hash`): matched
   * against the index's `hmsl` forms. Lower-case hex; never queued as is (only its HMAC).
   */
  hmslHash?: string;
  /** GitHub: the value is read from `GET /repos/{owner}/{repo}/secret-scanning/alerts/{number}`. */
  fetch?: { kind: 'github-alert'; owner: string; repo: string; alertNumber: number };
  locations: LeakLocation[];
  /** Public repository or package: anyone may have it. Undefined when the scanner does not say. */
  public?: boolean;
  /** The scanner's own verdict on whether the value still works. */
  validity?: 'active' | 'inactive' | 'unknown';
  /** When the value was exposed (first commit or detection), as the scanner says. */
  exposedAt?: Date;
  /** How many places it was found in. */
  occurrences: number;
}

/** A scanner delivery after verification: the reports in it, and an id for de-duplication. */
export interface ParsedDelivery {
  deliveryId: string;
  reports: LeakReport[];
  /** Deliveries that are valid but carry nothing to act on (e.g. an alert being resolved). */
  ignored?: string;
}

/** Largest webhook body rekey reads (413 beyond). */
export const MAX_BODY_BYTES = 1024 * 1024;

import type { LeakSource, ParsedDelivery } from '../leak.ts';

export interface ScannerRequest {
  /** The raw body bytes, exactly as received: signatures are computed over these. */
  body: Buffer;
  /** Header names in lower case. */
  headers: Record<string, string | undefined>;
  now: Date;
}

/**
 * One scanner's webhook: authenticate the raw bytes (constant time, before parsing), then parse
 * them into leak reports. Contract (test/contracts/scanner.contract.ts):
 * - `verify` throws AuthError (401) for a missing or bad signature or token, or a stale timestamp;
 * - `parse` returns reports or throws PayloadError (400) — never anything else, for any input;
 * - neither ever puts the body, a header value or a leaked value in an error message.
 */
export interface Scanner {
  readonly source: LeakSource;
  verify(request: ScannerRequest): void;
  parse(request: ScannerRequest): ParsedDelivery;
}

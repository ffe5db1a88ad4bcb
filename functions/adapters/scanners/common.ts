import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { AuthError, PayloadError } from '#core/errors.ts';
import type { LeakLocation } from '#core/leak.ts';
import type { ScannerRequest } from '#core/ports/scanner.ts';

/**
 * Helpers shared by the scanner adapters. Everything here treats the body and the headers as
 * hostile: errors name fields and positions, never a value read from the request.
 */

import { MAX_BODY_BYTES } from '#core/leak.ts';
export { MAX_BODY_BYTES };
export const MAX_FINDINGS = 1000;
/** Longest string kept in a location (paths, repository names, URLs). */
export const MAX_LOCATION_CHARS = 512;
/** Longest scanner name for a secret type. */
export const MAX_TYPE_CHARS = 128;
/** Longest leaked value accepted: beyond this it is not a credential rekey manages. */
export const MAX_VALUE_CHARS = 16 * 1024;

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/**
 * Constant-time string equality. Both sides are hashed first so timingSafeEqual always sees two
 * 32-byte buffers: neither the content nor the length of the expected value leaks through timing.
 */
export function constantTimeEqual(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

export function hmacSha256Hex(key: string, body: Buffer): string {
  return createHmac('sha256', Buffer.from(key, 'utf8')).update(body).digest('hex');
}

/**
 * `sha256=<lower-case hex>` exactly as GitHub and GitGuardian send it; the comparison covers the
 * whole header, so no prefix, suffix or other spelling is accepted.
 */
export function checkSha256Signature(header: string | undefined, headerName: string, expectedHex: string): void {
  if (header === undefined || header === '') throw new AuthError(`missing ${headerName}`);
  if (!constantTimeEqual(header, `sha256=${expectedHex}`)) throw new AuthError('signature does not match');
}

/** `Authorization: Bearer <token>` for the CI-posted reports (TruffleHog, Gitleaks). */
export function checkBearer(header: string | undefined, token: string): void {
  if (header === undefined || header === '') throw new AuthError('missing Authorization bearer token');
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  // Compare even when the scheme is wrong, so a malformed header costs the same as a wrong token.
  const ok = constantTimeEqual(match?.[1] ?? '', token);
  if (!match || !ok) throw new AuthError('bearer token does not match');
}

// An id CI may choose (run id, attempt); anything else is refused so it is safe to echo.
const CI_DELIVERY_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The reports CI posts (TruffleHog, Gitleaks): authenticated by `Authorization: Bearer
 * <REKEY_INGEST_TOKEN>`; the delivery id is CI's `X-Rekey-Delivery`, else the body's SHA-256, so
 * the same report posted twice is one delivery.
 */
export abstract class CiReportScanner {
  readonly #token: string;

  constructor(options: { ingestToken: string }) {
    this.#token = requireSecret(options.ingestToken, 'ingestToken');
  }

  verify(request: ScannerRequest): void {
    checkBearer(request.headers['authorization'], this.#token);
  }

  protected deliveryIdOf(request: ScannerRequest): string {
    const header = request.headers['x-rekey-delivery'];
    if (header === undefined || header === '') return sha256Hex(request.body);
    if (!CI_DELIVERY_ID.test(header)) throw new PayloadError('X-Rekey-Delivery is not a delivery id');
    return header;
  }
}

export function requireSecret(value: string, name: string): string {
  // A scanner built with an empty secret would accept anything signed with the empty key.
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(`${name} must be a non-empty string`);
  return value;
}

export function checkSize(body: Buffer): void {
  if (body.length > MAX_BODY_BYTES) throw new PayloadError('body larger than 1 MiB');
}

/** UTF-8 text of the body; invalid UTF-8 is refused rather than silently replaced. */
export function bodyText(body: Buffer): string {
  checkSize(body);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    throw new PayloadError('body is not UTF-8');
  }
}

export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new PayloadError(`${what} is not JSON`);
  }
}

export type Json = Record<string, unknown>;

export const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/** An own property only: never `constructor`, `toString` or anything reached through a prototype. */
export function field(value: unknown, key: string): unknown {
  return isObject(value) && Object.hasOwn(value, key) ? value[key] : undefined;
}

export function path(value: unknown, ...keys: string[]): unknown {
  let current = value;
  for (const key of keys) current = field(current, key);
  return current;
}

/** A non-empty string, trimmed of control characters and cut to `max`; otherwise undefined. */
export function text(value: unknown, max = MAX_LOCATION_CHARS): string | undefined {
  if (typeof value !== 'string') return undefined;
  // eslint-disable-next-line no-control-regex
  const clean = value.replace(/[\u0000-\u001f\u007f]/g, '').trim();
  if (!clean) return undefined;
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

export function positiveInt(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/** A date a scanner wrote (ISO 8601, or git's `2022-06-16 10:17:40 -0700`); undefined if unreadable. */
export function date(value: unknown): Date | undefined {
  if (typeof value !== 'string' || value.length > 64) return undefined;
  const parsed = new Date(value);
  return Number.isNaN(parsed.getTime()) ? undefined : parsed;
}

/** Only the fields that carry something, so reports compare and serialise cleanly. */
export function location(parts: LeakLocation): LeakLocation | undefined {
  const out: LeakLocation = {};
  if (parts.repository) out.repository = parts.repository;
  if (parts.file) out.file = parts.file;
  if (parts.line !== undefined) out.line = parts.line;
  if (parts.commit) out.commit = parts.commit;
  if (parts.url) out.url = parts.url;
  return Object.keys(out).length ? out : undefined;
}

/** A name taken from a payload or header that may appear in a reply: identifiers only. */
export function identifier(value: unknown, max = 64): string | undefined {
  return typeof value === 'string' && value.length <= max && /^[A-Za-z0-9][A-Za-z0-9._:-]*$/.test(value) ? value : undefined;
}

export function checkCount(count: number): void {
  if (count > MAX_FINDINGS) throw new PayloadError(`more than ${MAX_FINDINGS} findings in one delivery`);
}

export const sha256Hex = (body: Buffer): string => createHash('sha256').update(body).digest('hex');

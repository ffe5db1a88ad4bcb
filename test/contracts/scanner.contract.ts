import { describe, expect, it } from 'vitest';
import { inspect } from 'node:util';
import { AuthError, PayloadError } from '#core/errors.ts';
import type { Scanner, ScannerRequest } from '#core/ports/scanner.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';

export type Headers = Record<string, string>;

export interface ScannerContractOptions {
  /** A scanner configured with `secret` (webhook secret or ingest token). */
  make: (secret: string) => Scanner;
  /** The headers a genuine sender would attach to `body` at `now`, authenticated with `secret`. */
  sign: (body: Buffer, now: Date, secret: string) => Headers;
  /** A realistic delivery that yields `expectedReports` reports. */
  validBody: Buffer;
  expectedReports: number;
  secret: string;
  /** `hmac`: the signature covers the body bytes. `bearer`: a static token that does not. */
  auth: 'hmac' | 'bearer';
  /** The headers that carry the proof (signature, timestamp, token). */
  authHeaders: string[];
  /** Plaintext credentials inside `validBody` (none for scanners that omit them). */
  leakedValues: string[];
}

const NOW = new Date('2024-05-14T09:13:06Z');

/**
 * The Scanner port's contract (functions/core/ports/scanner.ts), run against every adapter:
 * verify refuses anything not authenticated with the configured secret, over the raw bytes;
 * parse returns reports or throws PayloadError; no error ever carries a body, header or value.
 */
export function scannerContract(name: string, options: ScannerContractOptions): void {
  const { make, sign, validBody, secret } = options;
  const request = (body: Buffer, headers: Headers, now = NOW): ScannerRequest => ({ body, headers, now });
  const signed = (body: Buffer, key = secret): ScannerRequest => request(body, sign(body, NOW, key));

  describe(`${name} scanner (contract)`, () => {
    describe('verify', () => {
      it('accepts a delivery authenticated with the configured secret', () => {
        expect(() => make(secret).verify(signed(validBody))).not.toThrow();
      });

      it('refuses a delivery authenticated with another secret', () => {
        expect(() => make(secret).verify(signed(validBody, `${secret}-other`))).toThrow(AuthError);
      });

      it('refuses a delivery whose proof header is missing or empty', () => {
        for (const header of options.authHeaders) {
          const headers = sign(validBody, NOW, secret);
          const without = Object.fromEntries(Object.entries(headers).filter(([key]) => key !== header));
          expect(() => make(secret).verify(request(validBody, without)), `without ${header}`).toThrow(AuthError);
          expect(() => make(secret).verify(request(validBody, { ...headers, [header]: '' })), `empty ${header}`).toThrow(AuthError);
        }
      });

      it('refuses a proof that is a prefix or an extension of the right one', () => {
        const headers = sign(validBody, NOW, secret);
        const proof = options.authHeaders.find((h) => h !== 'timestamp')!;
        for (const forged of [headers[proof]!.slice(0, -1), `${headers[proof]!}0`, headers[proof]!.toUpperCase().replace('BEARER', 'Bearer')]) {
          if (forged === headers[proof]) continue;
          expect(() => make(secret).verify(request(validBody, { ...headers, [proof]: forged }))).toThrow(AuthError);
        }
      });

      if (options.auth === 'hmac') {
        it('refuses a body changed by one byte after signing', () => {
          const headers = sign(validBody, NOW, secret);
          for (const at of [0, Math.floor(validBody.length / 2), validBody.length - 1]) {
            const tampered = Buffer.from(validBody);
            tampered[at] = tampered[at]! ^ 0x01;
            expect(() => make(secret).verify(request(tampered, headers)), `byte ${at}`).toThrow(AuthError);
          }
        });

        it('verifies the raw bytes as sent, not a re-serialisation of the JSON', () => {
          // Spaced-out JSON signed as sent verifies; the same document re-serialised compactly does not.
          const pretty = Buffer.from(`${JSON.stringify(JSON.parse(validBody.toString('utf8')), null, 3)}\n`);
          expect(pretty.equals(validBody)).toBe(false);
          const headers = sign(pretty, NOW, secret);
          expect(() => make(secret).verify(request(pretty, headers))).not.toThrow();
          expect(make(secret).parse(request(pretty, headers)).reports).toHaveLength(options.expectedReports);
          const compact = Buffer.from(JSON.stringify(JSON.parse(pretty.toString('utf8'))));
          expect(() => make(secret).verify(request(compact, headers))).toThrow(AuthError);
        });
      } else {
        it('accepts any body under the right token, since a bearer token does not cover the bytes', () => {
          // Documents the limit of CI bearer auth: integrity of the body rests on TLS.
          const other = Buffer.concat([validBody, Buffer.from('\n')]);
          expect(() => make(secret).verify(request(other, sign(validBody, NOW, secret)))).not.toThrow();
        });
      }
    });

    describe('parse', () => {
      it('turns the valid delivery into reports with a delivery id', () => {
        const parsed = make(secret).parse(signed(validBody));
        expect(parsed.deliveryId).toMatch(/^\S{1,200}$/);
        expect(parsed.reports).toHaveLength(options.expectedReports);
        for (const report of parsed.reports) {
          expect(report.source).toBe(make(secret).source);
          expect(report.sourceId).not.toBe('');
          expect(report.secretType).not.toBe('');
          expect(report.occurrences).toBeGreaterThanOrEqual(1);
        }
      });

      it('keeps every leaked value sealed in JSON and inspect output', () => {
        const parsed = make(secret).parse(signed(validBody));
        const printed = `${JSON.stringify(parsed)}\n${inspect(parsed, { depth: 10 })}`;
        for (const value of options.leakedValues) expect(printed).not.toContain(value);
        const revealed = parsed.reports.map((r) => r.value?.reveal()).filter(Boolean);
        for (const value of revealed) expect(options.leakedValues.some((leaked) => value!.includes(leaked) || leaked.includes(value!))).toBe(true);
      });

      it('throws only PayloadError for every truncation of the valid body', () => {
        const step = Math.max(1, Math.floor(validBody.length / 97));
        for (let end = 0; end < validBody.length; end += step) {
          try {
            make(secret).parse(signed(validBody.subarray(0, end)));
          } catch (error) {
            expect(error, `cut at ${end}`).toBeInstanceOf(PayloadError);
          }
        }
      });
    });

    describe('errors', () => {
      it('never carry the body, a header value, the secret or a leaked value', () => {
        const guard = new LeakGuard();
        guard.secret(secret);
        guard.secret(validBody.toString('utf8'));
        for (const value of options.leakedValues) guard.secret(value);
        const headers = sign(validBody, NOW, secret);
        for (const header of options.authHeaders) if (header !== 'timestamp') guard.secret(headers[header]!);
        guard.secret(sign(validBody, NOW, `${secret}-other`)[options.authHeaders.find((h) => h !== 'timestamp')!]!);

        const attempts: (() => unknown)[] = [
          () => make(secret).verify(signed(validBody, `${secret}-other`)),
          () => make(secret).verify(request(validBody, {})),
          () => make(secret).verify(request(Buffer.concat([validBody, Buffer.from(' ')]), headers)),
          () => make(secret).verify(request(validBody, headers, new Date(NOW.getTime() + 86_400_000))),
          () => make(secret).parse(signed(Buffer.from(validBody.toString('utf8').replaceAll('"', "'")))),
          () => make(secret).parse(signed(validBody.subarray(0, Math.floor(validBody.length * 0.7)))),
          () => make(secret).parse(signed(Buffer.from(`${validBody.toString('utf8')}\n{"Raw": ${JSON.stringify(options.leakedValues[0] ?? secret)}`))),
        ];
        let failures = 0;
        for (const attempt of attempts) {
          try {
            attempt();
          } catch (error) {
            failures++;
            expect(error instanceof AuthError || error instanceof PayloadError).toBe(true);
            guard.error(name, error);
          }
        }
        expect(failures).toBeGreaterThanOrEqual(4);
        guard.assertClean();
      });
    });
  });
}

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AuthError, PayloadError } from '#core/errors.ts';
import type { ParsedDelivery } from '#core/leak.ts';
import type { Scanner, ScannerRequest } from '#core/ports/scanner.ts';
import { GitHubScanner } from '#adapters/scanners/github.ts';
import { GitGuardianScanner } from '#adapters/scanners/gitguardian.ts';
import { TruffleHogScanner } from '#adapters/scanners/trufflehog.ts';
import { GitleaksScanner } from '#adapters/scanners/gitleaks.ts';
import { isKnownScanner, scannerRegistry } from '#adapters/scanners/registry.ts';

const NOW = new Date('2024-05-14T09:13:06Z');
const LEAKED_URI = 'postgres://app:Fake-Leaked-Pass-123@db.internal:5432/app';
const fixtureText = (path: string): string => readFileSync(new URL(`../../events/${path}`, import.meta.url), 'utf8');

const GITHUB_HEADERS = { 'x-github-event': 'secret_scanning_alert', 'x-github-delivery': '72d3162e-cc78-11e3-81ab-4c9367dc0958' };

interface Subject {
  name: string;
  scanner: Scanner;
  headers: Record<string, string>;
  /** The fixture as a JS value, for structure-aware mutation. */
  valid: unknown;
  /** Serialise a document the way this scanner's sender would. */
  encode: (doc: unknown) => string;
}

const jsonl = (doc: unknown): string => (Array.isArray(doc) ? doc.map((line) => JSON.stringify(line)).join('\n') : JSON.stringify(doc));

const SUBJECTS: Subject[] = [
  {
    name: 'github',
    scanner: new GitHubScanner({ webhookSecret: 's' }),
    headers: GITHUB_HEADERS,
    valid: JSON.parse(fixtureText('github/secret-scanning-alert-created.json')),
    encode: (doc) => JSON.stringify(doc),
  },
  {
    name: 'gitguardian',
    scanner: new GitGuardianScanner({ webhookSecret: 's' }),
    headers: { timestamp: String(NOW.getTime() / 1000) },
    valid: JSON.parse(fixtureText('gitguardian/new-occurrence.json')),
    encode: (doc) => JSON.stringify(doc),
  },
  {
    name: 'trufflehog',
    scanner: new TruffleHogScanner({ ingestToken: 't' }),
    headers: {},
    valid: fixtureText('trufflehog/findings.jsonl').trim().split('\n').map((line) => JSON.parse(line) as unknown),
    encode: jsonl,
  },
  {
    name: 'gitleaks',
    scanner: new GitleaksScanner({ ingestToken: 't' }),
    headers: {},
    valid: JSON.parse(fixtureText('gitleaks/report.json')),
    encode: (doc) => JSON.stringify(doc),
  },
];

const req = (body: Buffer | string, headers: Record<string, string | undefined> = {}, now = NOW): ScannerRequest => ({
  body: typeof body === 'string' ? Buffer.from(body, 'utf8') : body,
  headers,
  now,
});

/** Every string (values and keys) longer than 8 characters anywhere in a document. */
function longStrings(value: unknown, out = new Set<string>(), depth = 0): Set<string> {
  if (depth > 200) return out;
  if (typeof value === 'string') {
    if (value.length > 8) out.add(value);
  } else if (Array.isArray(value)) {
    for (const item of value) longStrings(item, out, depth + 1);
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      if (key.length > 8) out.add(key);
      longStrings(item, out, depth + 1);
    }
  }
  return out;
}

/**
 * The property every parser owes the intake: a ParsedDelivery, or a PayloadError whose message
 * holds none of the input's own strings (so never the leaked value, a path or a token).
 */
function parsesOrRefusesCleanly(subject: Subject, body: Buffer, inputStrings: Iterable<string>): void {
  let parsed: ParsedDelivery;
  try {
    parsed = subject.scanner.parse(req(body, subject.headers));
  } catch (error) {
    if (!(error instanceof PayloadError)) throw new Error(`${subject.name} threw ${(error as Error)?.constructor?.name ?? typeof error}`);
    // Field names are identifiers the message may legitimately name; payload values never.
    for (const text of inputStrings) if (!FIELD_NAMES.has(text)) expect(error.message.includes(text), 'input echoed in error').toBe(false);
    expect(error.message.length).toBeLessThan(200);
    return;
  }
  expect(typeof parsed.deliveryId).toBe('string');
  expect(parsed.deliveryId.length).toBeGreaterThan(0);
  expect(Array.isArray(parsed.reports)).toBe(true);
  for (const report of parsed.reports) {
    expect(typeof report.sourceId).toBe('string');
    expect(typeof report.secretType).toBe('string');
    expect(report.secretType.length).toBeLessThanOrEqual(128);
    for (const where of report.locations) for (const text of Object.values(where)) if (typeof text === 'string') expect(text.length).toBeLessThanOrEqual(512);
    expect(JSON.stringify(report)).not.toContain('Fake-Leaked-Pass-123');
  }
}

const FIELD_NAMES = new Set(['secret_type', 'DetectorName', 'display_name', 'occurrences', 'repository', 'timestamp']);

/** All paths (keys and indices) into a document, for structure-aware mutation. */
function pathsOf(value: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(prefix);
  if (Array.isArray(value)) value.forEach((item, i) => pathsOf(item, [...prefix, i], out));
  else if (typeof value === 'object' && value !== null) for (const [key, item] of Object.entries(value)) pathsOf(item, [...prefix, key], out);
  return out;
}

function setAt(doc: unknown, path: (string | number)[], replacement: unknown): unknown {
  if (path.length === 0) return replacement;
  const copy = structuredClone(doc) as Record<string | number, unknown>;
  let node = copy;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  node[path.at(-1)!] = replacement;
  return copy;
}

/** Hostile values: anything JSON can hold, prototype-pollution keys, huge and odd strings. */
const hostile = fc.oneof(
  fc.anything({ maxDepth: 3 }),
  fc.json({ depthSize: 'small' }).map((text) => JSON.parse(text) as unknown),
  fc.constantFrom<unknown>('__proto__', 'constructor', { __proto__: { polluted: true } }, { constructor: { prototype: { polluted: true } } }),
  fc.constantFrom<unknown>(-1, 0, 1.5, 2 ** 53, Number.MAX_VALUE, '', ' ', '\u0000', '\ud800', 'x'.repeat(600_000), '9'.repeat(400), null, true, [], {}),
  fc.string({ maxLength: 40 }),
);

describe('scanner parsers', () => {
  for (const subject of SUBJECTS) {
    describe(subject.name, () => {
      describe('parse', () => {
        it('returns a delivery or throws PayloadError for arbitrary bytes', () => {
          fc.assert(
            fc.property(fc.uint8Array({ maxLength: 4096 }), (bytes) => {
              const body = Buffer.from(bytes);
              const tokens = body.toString('latin1').split(/[^\w.-]+/).filter((t) => t.length > 8);
              parsesOrRefusesCleanly(subject, body, tokens);
            }),
            { numRuns: 300 },
          );
        });

        it('returns a delivery or throws PayloadError for arbitrary JSON', () => {
          fc.assert(
            fc.property(fc.oneof(fc.json(), fc.anything().map((v) => JSON.stringify(v) ?? 'null')), (text) => {
              parsesOrRefusesCleanly(subject, Buffer.from(text), longStrings(JSON.parse(text)));
            }),
            { numRuns: 300 },
          );
        });

        it('returns a delivery or throws PayloadError when any part of a valid payload is replaced', () => {
          const paths = pathsOf(subject.valid);
          fc.assert(
            fc.property(fc.nat(paths.length - 1), hostile, (index, replacement) => {
              const doc = setAt(subject.valid, paths[index]!, replacement);
              // Replacing the root with `undefined` serialises to nothing: send an empty body then.
              const text = subject.encode(doc) ?? '';
              // Every string of the mutated document counts, so a message quoting an untouched
              // field (the leaked value beside a broken one) fails too.
              parsesOrRefusesCleanly(subject, Buffer.from(text), longStrings(doc));
            }),
            { numRuns: 400 },
          );
        });

        it('returns a delivery or throws PayloadError for every truncation of a valid payload', () => {
          const body = Buffer.from(subject.encode(subject.valid));
          fc.assert(
            fc.property(fc.nat(body.length), (end) => {
              parsesOrRefusesCleanly(subject, body.subarray(0, end), [LEAKED_URI, 'Fake-Leaked-Pass-123']);
            }),
            { numRuns: 200 },
          );
        });

        it('never lets a __proto__ key reach Object.prototype', () => {
          const text = subject.encode(subject.valid).replace('{', '{"__proto__":{"polluted":"yes","secret_type":"x"},"constructor":{"prototype":{"polluted":"yes"}},');
          parsesOrRefusesCleanly(subject, Buffer.from(text), []);
          expect(({} as Record<string, unknown>).polluted).toBeUndefined();
        });

        it('refuses deeply nested documents without a stack overflow', () => {
          for (const depth of [1_000, 100_000]) {
            parsesOrRefusesCleanly(subject, Buffer.from(`${'['.repeat(depth)}${']'.repeat(depth)}`), []);
            parsesOrRefusesCleanly(subject, Buffer.from(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`), []);
          }
        });

        it('refuses a body over 1 MiB', () => {
          const big = Buffer.from(subject.encode(setAt(subject.valid, [], { padding: 'x'.repeat(1024 * 1024) })));
          expect(() => subject.scanner.parse(req(big, subject.headers))).toThrow(PayloadError);
        });

        it('refuses invalid UTF-8 as a PayloadError', () => {
          expect(() => subject.scanner.parse(req(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), subject.headers))).toThrow(/not UTF-8/);
        });
      });
    });
  }
});

describe('GitHubScanner', () => {
  const scanner = new GitHubScanner({ webhookSecret: 'gh-secret' });
  const created = fixtureText('github/secret-scanning-alert-created.json');
  const leaked = fixtureText('github/secret-scanning-alert-publicly-leaked.json');

  describe('verify', () => {
    it('accepts the sha256 HMAC of the raw body under the webhook secret', () => {
      const signature = `sha256=${createHmac('sha256', 'gh-secret').update(created).digest('hex')}`;
      expect(() => scanner.verify(req(created, { 'x-hub-signature-256': signature }))).not.toThrow();
    });

    it('refuses the legacy sha1 header alone', () => {
      const signature = `sha1=${createHmac('sha1', 'gh-secret').update(created).digest('hex')}`;
      expect(() => scanner.verify(req(created, { 'x-hub-signature': signature }))).toThrow('missing X-Hub-Signature-256');
    });
  });

  describe('parse', () => {
    it('reports a created alert with a fetch path and no value', () => {
      const { deliveryId, reports } = scanner.parse(req(created, GITHUB_HEADERS));
      expect(deliveryId).toBe(GITHUB_HEADERS['x-github-delivery']);
      expect(reports).toEqual([
        {
          source: 'github',
          sourceId: 'example-org/billing-api#42',
          secretType: 'postgres_connection_string',
          fetch: { kind: 'github-alert', owner: 'example-org', repo: 'billing-api', alertNumber: 42 },
          locations: [{ repository: 'example-org/billing-api', url: 'https://github.com/example-org/billing-api/security/secret-scanning/42' }],
          public: false,
          validity: 'unknown',
          exposedAt: new Date('2024-05-14T09:13:02Z'),
          occurrences: 1,
        },
      ]);
    });

    it('marks a publicly leaked alert public and active', () => {
      const [report] = scanner.parse(req(leaked, GITHUB_HEADERS)).reports;
      expect(report).toMatchObject({ sourceId: 'example-org/billing-api#43', public: true, validity: 'active' });
    });

    it('reports reopened and validated alerts', () => {
      for (const action of ['reopened', 'validated']) {
        const body = JSON.stringify({ ...JSON.parse(created), action });
        expect(scanner.parse(req(body, GITHUB_HEADERS)).reports, action).toHaveLength(1);
      }
    });

    it('ignores a validation that finds the value inactive (GitHub confirming a revocation)', () => {
      const doc = JSON.parse(created) as { alert: Record<string, unknown> };
      const inactive = JSON.stringify({ ...doc, action: 'validated', alert: { ...doc.alert, validity: 'inactive' } });
      expect(scanner.parse(req(inactive, GITHUB_HEADERS))).toMatchObject({ reports: [], ignored: 'alert validated inactive' });
      const active = JSON.stringify({ ...doc, action: 'validated', alert: { ...doc.alert, validity: 'active' } });
      expect(scanner.parse(req(active, GITHUB_HEADERS)).reports[0]).toMatchObject({ validity: 'active' });
    });

    it('ignores resolved alerts and other events', () => {
      const resolved = JSON.stringify({ ...JSON.parse(created), action: 'resolved' });
      expect(scanner.parse(req(resolved, GITHUB_HEADERS))).toEqual({ deliveryId: GITHUB_HEADERS['x-github-delivery'], reports: [], ignored: 'alert action resolved' });
      const ping = scanner.parse(req('{"zen":"Keep it logically awesome.","hook_id":1}', { ...GITHUB_HEADERS, 'x-github-event': 'ping' }));
      expect(ping.reports).toEqual([]);
      expect(ping.ignored).toMatch(/ping/);
    });

    it('refuses a delivery without X-GitHub-Delivery, or with one that is not an id', () => {
      expect(() => scanner.parse(req(created, { 'x-github-event': 'secret_scanning_alert' }))).toThrow('missing X-GitHub-Delivery');
      expect(() => scanner.parse(req(created, { ...GITHUB_HEADERS, 'x-github-delivery': '<script>' }))).toThrow('X-GitHub-Delivery is not a delivery id');
    });

    it('refuses an owner or repository name that could escape the REST path', () => {
      const doc = JSON.parse(created) as { repository: { name: string; owner: { login: string } } };
      doc.repository.name = '../../orgs/x';
      expect(() => scanner.parse(req(JSON.stringify(doc), GITHUB_HEADERS))).toThrow(PayloadError);
    });
  });
});

describe('GitGuardianScanner', () => {
  const token = 'gg-token';
  const scanner = new GitGuardianScanner({ webhookSecret: token });
  const triggered = fixtureText('gitguardian/incident-triggered.json');
  const occurrence = fixtureText('gitguardian/new-occurrence.json');
  const signAt = (body: string, seconds: number | string): Record<string, string> => {
    const timestamp = String(seconds);
    return { timestamp, 'gitguardian-signature': `sha256=${createHmac('sha256', timestamp + token).update(body).digest('hex')}` };
  };
  const nowSeconds = NOW.getTime() / 1000;

  describe('verify', () => {
    it('accepts a signature whose key is the timestamp followed by the token', () => {
      expect(() => scanner.verify(req(triggered, signAt(triggered, nowSeconds)))).not.toThrow();
      // Fractional seconds, as some senders write time.time().
      expect(() => scanner.verify(req(triggered, signAt(triggered, nowSeconds + 0.25)))).not.toThrow();
    });

    it('refuses a signature keyed with the token alone (the timestamp is bound into the key)', () => {
      const headers = { timestamp: String(nowSeconds), 'gitguardian-signature': `sha256=${createHmac('sha256', token).update(triggered).digest('hex')}` };
      expect(() => scanner.verify(req(triggered, headers))).toThrow('signature does not match');
    });

    it('refuses a stale timestamp even with a valid signature', () => {
      expect(() => scanner.verify(req(triggered, signAt(triggered, nowSeconds - 301)))).toThrow('timestamp outside the 300 s tolerance');
    });

    it('refuses a timestamp from beyond the tolerance in the future', () => {
      expect(() => scanner.verify(req(triggered, signAt(triggered, nowSeconds + 301)))).toThrow(AuthError);
    });

    it('accepts exactly the tolerance window on both sides, for any offset', () => {
      fc.assert(
        fc.property(fc.integer({ min: -3600, max: 3600 }), (offset) => {
          const attempt = () => scanner.verify(req(triggered, signAt(triggered, nowSeconds + offset)));
          if (Math.abs(offset) <= 300) expect(attempt).not.toThrow();
          else expect(attempt).toThrow(AuthError);
        }),
      );
    });

    it('honours a configured tolerance', () => {
      const strict = new GitGuardianScanner({ webhookSecret: token, toleranceSeconds: 5 });
      expect(() => strict.verify(req(triggered, signAt(triggered, nowSeconds - 6)))).toThrow('timestamp outside the 5 s tolerance');
    });

    it('refuses a timestamp that is not a Unix time', () => {
      for (const bad of ['yesterday', '1e9', '-1', '0x10', ' 1715677986', '2024-05-14T09:13:06Z']) {
        expect(() => scanner.verify(req(triggered, signAt(triggered, bad))), bad).toThrow(AuthError);
      }
    });
  });

  describe('parse', () => {
    it('reports a triggered incident without a value, with the HMSL hash it is matched by', () => {
      const { deliveryId, reports } = scanner.parse(req(triggered));
      expect(deliveryId).toBe('gitguardian-8124507-incident_triggered-2024-05-14T09:13:05.412Z');
      expect(reports).toEqual([
        {
          source: 'gitguardian',
          sourceId: '8124507',
          secretType: 'PostgreSQL Credentials',
          hmslHash: '0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d1c',
          locations: [{ url: 'https://dashboard.gitguardian.com/workspace/204511/incidents/8124507' }],
          validity: 'active',
          exposedAt: new Date('2024-05-14T09:12:58Z'),
          occurrences: 1,
        },
      ]);
      expect(reports[0]!.value).toBeUndefined();
      expect(reports[0]!.fetch).toBeUndefined();
    });

    it('keeps only an HMSL hash that is 64 hex digits, in lower case', () => {
      const withHash = (hash: unknown) => {
        const doc = JSON.parse(triggered) as { incident: Record<string, unknown> };
        doc.incident.hmsl_hash = hash;
        return scanner.parse(req(JSON.stringify(doc))).reports[0]!.hmslHash;
      };
      expect(withHash('AB'.repeat(32))).toBe('ab'.repeat(32));
      for (const bad of ['ab'.repeat(31), `${'ab'.repeat(32)}00`, 'zz'.repeat(32), 42, null, ['ab'.repeat(32)]]) expect(withHash(bad)).toBeUndefined();
    });

    it('reports a new occurrence with its repository, file and commit', () => {
      const { deliveryId, reports } = scanner.parse(req(occurrence));
      expect(deliveryId).toBe('gitguardian-8124507-new_occurrence-30157733-2024-05-16T11:02:44.190Z');
      expect(reports[0]).toMatchObject({
        public: false,
        occurrences: 2,
        locations: [
          {
            repository: 'example-org/billing-api',
            file: 'deploy/docker-compose.yml',
            commit: '9f2c4e1b7a3d5c8e0f6a2b4d1c3e5f7a9b0c2d4e',
            url: 'https://github.com/example-org/billing-api/commit/9f2c4e1b7a3d5c8e0f6a2b4d1c3e5f7a9b0c2d4e#diff-4a7c',
          },
          { url: 'https://dashboard.gitguardian.com/workspace/204511/incidents/8124507' },
        ],
      });
    });

    it('ignores bookkeeping events such as resolved or assigned', () => {
      for (const action of ['incident_resolved', 'incident_assigned', 'incident_shared_publicly']) {
        const parsed = scanner.parse(req(JSON.stringify({ ...JSON.parse(triggered), action })));
        expect(parsed.reports, action).toEqual([]);
        expect(parsed.ignored).toBe(`incident action ${action}`);
      }
    });

    it('refuses more than 1000 occurrences', () => {
      const doc = { ...JSON.parse(triggered), occurrences: Array.from({ length: 1001 }, (_, i) => ({ id: i + 1, filepath: 'a' })) };
      expect(() => scanner.parse(req(JSON.stringify(doc)))).toThrow('more than 1000 findings in one delivery');
    });
  });
});

describe('TruffleHogScanner', () => {
  const scanner = new TruffleHogScanner({ ingestToken: 'ci-token-123456' });
  const findings = fixtureText('trufflehog/findings.jsonl');

  describe('verify', () => {
    it('accepts the bearer token case-insensitively in the scheme only', () => {
      expect(() => scanner.verify(req(findings, { authorization: 'Bearer ci-token-123456' }))).not.toThrow();
      expect(() => scanner.verify(req(findings, { authorization: 'bearer ci-token-123456' }))).not.toThrow();
      expect(() => scanner.verify(req(findings, { authorization: 'Bearer CI-TOKEN-123456' }))).toThrow(AuthError);
      expect(() => scanner.verify(req(findings, { authorization: 'Basic ci-token-123456' }))).toThrow(AuthError);
      expect(() => scanner.verify(req(findings, { authorization: 'ci-token-123456' }))).toThrow(AuthError);
    });
  });

  describe('parse', () => {
    it('reports one sealed value per line, preferring RawV2, active when verified', () => {
      const { reports } = scanner.parse(req(findings));
      expect(reports).toHaveLength(2);
      expect(reports[0]!.value!.reveal()).toBe('postgresql://app:Fake-Leaked-Pass-123@db.internal:5432');
      expect(reports[0]).toMatchObject({
        source: 'trufflehog',
        secretType: 'Postgres',
        validity: 'active',
        exposedAt: new Date('2024-05-14T09:12:44Z'),
        locations: [{ repository: 'https://github.com/example-org/billing-api.git', file: 'config/database.env', line: 3, commit: '3b1d7c9e2f4a6b8d0c1e3f5a7b9d2c4e6f8a0b1c' }],
      });
      expect(reports[0]!.sourceId).not.toBe(reports[1]!.sourceId);
    });

    it('reads GitHub visibility as TruffleHog writes it: 1 private, 0 or absent (omitempty) public, others unknown', () => {
      const line = JSON.parse(findings.split('\n')[0]!) as Record<string, any>;
      const withVisibility = (visibility?: unknown) => {
        const meta = { ...line.SourceMetadata.Data.Git, link: 'https://github.com/example-org/billing-api/blob/x/config/database.env#L3' };
        delete meta.visibility;
        if (visibility !== undefined) meta.visibility = visibility;
        const doc = { ...line, SourceMetadata: { Data: { Github: meta } } };
        return scanner.parse(req(JSON.stringify(doc))).reports[0]!.public;
      };
      expect(withVisibility(1)).toBe(false);
      expect(withVisibility(0)).toBe(true);
      expect(withVisibility()).toBe(true);
      expect(withVisibility(3)).toBeUndefined();
      expect(scanner.parse(req(findings)).reports[0]!.public).toBeUndefined(); // a plain git source says nothing
    });

    it('falls back to Raw and to unknown validity', () => {
      const line = JSON.stringify({ DetectorName: 'URI', Verified: false, Raw: 'https://u:Other-Pass-99@h.example', SourceMetadata: { Data: { Filesystem: { file: '/src/.env', line: 2 } } } });
      const [report] = scanner.parse(req(line)).reports;
      expect(report!.value!.reveal()).toBe('https://u:Other-Pass-99@h.example');
      expect(report).toMatchObject({ validity: 'unknown', locations: [{ file: '/src/.env', line: 2 }] });
    });

    it('ignores blank lines, including CRLF ones', () => {
      const body = `\r\n${findings.split('\n').join('\r\n\r\n')}\n\n`;
      expect(scanner.parse(req(body)).reports).toHaveLength(2);
    });

    it('uses X-Rekey-Delivery when given, else the SHA-256 of the body', () => {
      expect(scanner.parse(req(findings, { 'x-rekey-delivery': 'ci-run-991.1' })).deliveryId).toBe('ci-run-991.1');
      expect(scanner.parse(req(findings)).deliveryId).toBe(createHash('sha256').update(findings).digest('hex'));
      expect(() => scanner.parse(req(findings, { 'x-rekey-delivery': 'a b' }))).toThrow('X-Rekey-Delivery is not a delivery id');
    });

    it('names the line that is not JSON, never its content', () => {
      const body = `${findings.trim()}\n{"Raw": "${LEAKED_URI}"`;
      expect(() => scanner.parse(req(body))).toThrow(/^line 3 is not JSON$/);
    });

    it('names the line without a value', () => {
      expect(() => scanner.parse(req('{"DetectorName":"Postgres"}'))).toThrow('line 1 has no Raw');
    });

    it('refuses more than 1000 findings', () => {
      const line = findings.split('\n')[0]!;
      expect(() => scanner.parse(req(Array.from({ length: 1001 }, () => line).join('\n')))).toThrow('more than 1000 findings in one delivery');
    });
  });
});

describe('GitleaksScanner', () => {
  const scanner = new GitleaksScanner({ ingestToken: 'ci-token-123456' });
  const report = fixtureText('gitleaks/report.json');

  describe('parse', () => {
    it('reports each finding with its Secret sealed and its Fingerprint as id', () => {
      const { reports } = scanner.parse(req(report));
      expect(reports).toHaveLength(1);
      expect(reports[0]!.value!.reveal()).toBe(LEAKED_URI);
      expect(reports[0]).toMatchObject({
        source: 'gitleaks',
        sourceId: '3b1d7c9e2f4a6b8d0c1e3f5a7b9d2c4e6f8a0b1c:config/database.env:postgres-connection-string:3',
        secretType: 'postgres-connection-string',
        validity: 'unknown',
        exposedAt: new Date('2024-05-14T09:12:44Z'),
        locations: [{ repository: 'example-org/billing-api', file: 'config/database.env', line: 3, commit: '3b1d7c9e2f4a6b8d0c1e3f5a7b9d2c4e6f8a0b1c' }],
      });
    });

    it('accepts a clean scan as nothing to do', () => {
      expect(scanner.parse(req('[]')).ignored).toBe('no findings');
    });

    it('names the finding without a Secret, never its content', () => {
      const doc = JSON.parse(report) as Record<string, unknown>[];
      const second = { ...doc[0], Secret: undefined, Match: LEAKED_URI };
      expect(() => scanner.parse(req(JSON.stringify([doc[0], second])))).toThrow(/^finding 2 has no Secret$/);
    });

    it('refuses a body that is not an array', () => {
      expect(() => scanner.parse(req('{"Secret":"x"}'))).toThrow('body is not a JSON array of findings');
    });

    it('refuses more than 1000 findings', () => {
      const doc = JSON.parse(report) as unknown[];
      expect(() => scanner.parse(req(JSON.stringify(Array.from({ length: 1001 }, () => doc[0]))))).toThrow('more than 1000 findings in one delivery');
    });
  });
});

describe('scannerRegistry', () => {
  describe('scannerRegistry', () => {
    it('holds only the scanners whose secret is configured', () => {
      expect([...scannerRegistry({}).keys()]).toEqual([]);
      expect([...scannerRegistry({ githubWebhookSecret: 'a' }).keys()]).toEqual(['github']);
      expect([...scannerRegistry({ gitguardianWebhookSecret: 'b', ingestToken: 'c' }).keys()].sort()).toEqual(['gitguardian', 'gitleaks', 'trufflehog']);
      expect([...scannerRegistry({ githubWebhookSecret: '' }).keys()]).toEqual([]);
    });
  });

  describe('isKnownScanner', () => {
    it('knows the four sources and nothing else', () => {
      for (const name of ['github', 'gitguardian', 'trufflehog', 'gitleaks']) expect(isKnownScanner(name)).toBe(true);
      for (const name of ['GitHub', 'toString', '__proto__', '']) expect(isKnownScanner(name)).toBe(false);
    });
  });

  describe('constructors', () => {
    it('refuse an empty secret, which would accept anything signed with the empty key', () => {
      expect(() => new GitHubScanner({ webhookSecret: '' })).toThrow(TypeError);
      expect(() => new GitGuardianScanner({ webhookSecret: '' })).toThrow(TypeError);
      expect(() => new TruffleHogScanner({ ingestToken: '' })).toThrow(TypeError);
      expect(() => new GitleaksScanner({ ingestToken: '' })).toThrow(TypeError);
    });
  });
});

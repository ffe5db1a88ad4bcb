import { describe, expect, it } from 'vitest';
import { inspect } from 'node:util';
import { Sealed } from '#core/sealed.ts';
import { generatePassword, passwordPolicyFromTags, DEFAULT_PASSWORD_POLICY } from '#core/password.ts';
import { redactCause, scrub } from '#core/redact.ts';
import { parseDuration } from '#core/duration.ts';
import { alternateUsername, baseUsername, graceOf, parseDatabaseSecret, serializeDatabaseSecret, strategyOf, DEFAULT_GRACE_MS } from '#core/secret.ts';
import { RekeyError, logsIn, publicError, TargetError } from '#core/errors.ts';
import { parseConfig } from '#runtime/config.ts';

describe('Sealed', () => {
  describe('printing', () => {
    it('prints [sealed] in every string, JSON and inspect form', () => {
      const value = new Sealed('hunter2-very-secret');
      expect(String(value)).toBe('[sealed]');
      expect(`${value}`).toBe('[sealed]');
      expect(JSON.stringify({ value })).toBe('{"value":"[sealed]"}');
      expect(inspect({ value })).not.toContain('hunter2');
      expect(value.reveal()).toBe('hunter2-very-secret');
    });
  });
});

describe('generatePassword', () => {
  describe('default policy', () => {
    it('has 32 characters with every class and none of the excluded characters', () => {
      for (let i = 0; i < 200; i++) {
        const password = generatePassword().reveal();
        expect(password).toHaveLength(32);
        expect(password).toMatch(/[A-Z]/);
        expect(password).toMatch(/[a-z]/);
        expect(password).toMatch(/[0-9]/);
        expect(password).toMatch(/[^A-Za-z0-9]/);
        for (const c of DEFAULT_PASSWORD_POLICY.exclude) expect(password).not.toContain(c);
      }
    });

    it('does not repeat itself', () => {
      const seen = new Set(Array.from({ length: 1000 }, () => generatePassword().reveal()));
      expect(seen.size).toBe(1000);
    });
  });

  describe('per-secret overrides', () => {
    it('honours rekey:password-length and rekey:password-exclude', () => {
      const policy = passwordPolicyFromTags({ 'rekey:password-length': '20', 'rekey:password-exclude': '!#$%&()*+,-.;<=>?[]^_{|}~:/@"\'\\` ' });
      const password = generatePassword(policy).reveal();
      expect(password).toHaveLength(20);
      expect(password).toMatch(/^[A-Za-z0-9]+$/);
    });

    it('refuses a length too short to hold every class', () => {
      expect(() => generatePassword({ ...DEFAULT_PASSWORD_POLICY, length: 3 })).toThrow(/password length/);
      expect(() => passwordPolicyFromTags({ 'rekey:password-length': 'long' })).toThrow(/rekey:password-length/);
    });
  });
});

describe('redact', () => {
  describe('scrub', () => {
    it('removes raw, URL-encoded and JSON-escaped forms of each secret', () => {
      const secret = 'p@ss"w/rd\\x';
      const text = `ALTER USER x IDENTIFIED BY '${secret}' ${encodeURIComponent(secret)} ${JSON.stringify(secret)}`;
      const out = scrub(text, [secret]);
      expect(out).not.toContain(secret);
      expect(out).not.toContain(encodeURIComponent(secret));
      expect(out).not.toContain(JSON.stringify(secret).slice(1, -1));
    });
  });

  describe('redactCause', () => {
    it('keeps the code and drops driver fields such as the SQL text', () => {
      const error = Object.assign(new Error("near 'Secret-123': syntax"), { code: 'ER_PARSE', sql: "ALTER USER 'a' IDENTIFIED BY 'Secret-123'" });
      const cause = redactCause(error, [new Sealed('Secret-123')]);
      expect(cause).toEqual({ name: 'Error', code: 'ER_PARSE', message: "near '[redacted]': syntax" });
    });
  });
});

describe('parseDuration', () => {
  describe('units', () => {
    it('reads ms, s, m, h, d, w and 0', () => {
      expect(parseDuration('0')).toBe(0);
      expect(parseDuration('90m')).toBe(5_400_000);
      expect(parseDuration('30d')).toBe(2_592_000_000);
      expect(parseDuration('1.5h')).toBe(5_400_000);
      expect(() => parseDuration('soon', 'tag rekey:grace')).toThrow(/tag rekey:grace must look like/);
    });
  });
});

describe('secret value', () => {
  const json = (value: object) => new Sealed(JSON.stringify(value));

  describe('parseDatabaseSecret', () => {
    it('accepts AWS template spellings, default ports and unknown fields', () => {
      const parsed = parseDatabaseSecret(json({ engine: 'aurora-postgresql', host: 'db', username: 'app', password: 'Pw-123456', custom: 1 }), 's');
      expect(parsed).toMatchObject({ engine: 'postgres', port: 5432, username: 'app', extra: { custom: 1 } });
      expect(JSON.parse(serializeDatabaseSecret(parsed, 'aurora-postgresql').reveal())).toMatchObject({ engine: 'aurora-postgresql', custom: 1, password: 'Pw-123456' });
    });

    it('names missing fields without echoing the value', () => {
      const error = (() => {
        try {
          parseDatabaseSecret(json({ engine: 'postgres', host: 'db', password: 'Leaky-Value-9' }), 'app/db');
        } catch (e) {
          return e as Error;
        }
      })();
      expect(error?.message).toMatch(/secret app\/db has invalid or missing fields: username/);
      expect(error?.message).not.toContain('Leaky-Value-9');
    });

    it('refuses invalid JSON and unknown engines with the secret id only', () => {
      expect(() => parseDatabaseSecret(new Sealed('{"password":"Leaky-9'), 'x')).toThrow(/secret x is not valid JSON/);
      expect(() => parseDatabaseSecret(json({ engine: 'oracle', host: 'h', username: 'u', password: 'p' }), 'x')).toThrow(/unsupported engine "oracle"/);
    });
  });

  describe('strategy and names', () => {
    it('defaults to alternating with masterarn, single without, and honours the tag', () => {
      const base = parseDatabaseSecret(json({ engine: 'mysql', host: 'h', username: 'u', password: 'p1234' }), 's');
      expect(strategyOf(base, {})).toBe('single');
      expect(strategyOf({ ...base, masterarn: 'admin' }, {})).toBe('alternating');
      expect(strategyOf({ ...base, masterarn: 'admin' }, { 'rekey:strategy': 'single' })).toBe('single');
      expect(() => strategyOf(base, { 'rekey:strategy': 'both' })).toThrow(/single or alternating/);
    });

    it('names the clone as AWS does and finds the original from either', () => {
      expect(alternateUsername('app')).toBe('app_clone');
      expect(alternateUsername('app_clone')).toBe('app');
      expect(baseUsername('app_clone')).toBe('app');
      expect(baseUsername('app')).toBe('app');
    });

    it('reads the grace tag, with a default of one hour', () => {
      expect(graceOf({})).toBe(DEFAULT_GRACE_MS);
      expect(graceOf({ 'rekey:grace': '0' })).toBe(0);
      expect(graceOf({ 'rekey:grace': '15m' })).toBe(900_000);
    });
  });
});

describe('errors', () => {
  describe('publicError', () => {
    it('shows exposed messages and hides the rest behind their code', () => {
      expect(publicError(new TargetError('LOGIN_FAILED', 'login as app refused'))).toEqual({ code: 'LOGIN_FAILED', message: 'login as app refused' });
      expect(publicError(new RekeyError('X', 'internal detail', { expose: false }))).toEqual({ code: 'X', message: 'internal error (X)' });
      expect(publicError(new Error('driver said password=abc'))).toEqual({ code: 'INTERNAL', message: 'internal error' });
    });
  });

  describe('logsIn', () => {
    it('is true when verify passes, false on a refused login, and rethrows anything else', async () => {
      expect(await logsIn(async () => {})).toBe(true);
      expect(await logsIn(async () => { throw new TargetError('LOGIN_FAILED', 'refused'); })).toBe(false);
      // A server that is down cannot tell us the credential is dead.
      await expect(logsIn(async () => { throw new TargetError('UNREACHABLE', 'connection refused'); })).rejects.toMatchObject({ code: 'UNREACHABLE' });
      await expect(logsIn(async () => { throw new Error('socket hang up'); })).rejects.toThrow('socket hang up');
    });
  });
});

describe('parseConfig', () => {
  describe('validation', () => {
    it('applies defaults', () => {
      expect(parseConfig({})).toMatchObject({ REKEY_STORE: 'local', REKEY_STORE_DIR: './.rekey', REKEY_VERIFY_ATTEMPTS: 3 });
    });

    it('names the bad variable without its value', () => {
      expect(() => parseConfig({ REKEY_STORE: 'vault-SECRET-VALUE' })).toThrow(/REKEY_STORE must be local or aws/);
      try {
        parseConfig({ REKEY_STORE: 'vault-SECRET-VALUE' });
      } catch (error) {
        expect(String(error)).not.toContain('SECRET-VALUE');
      }
    });
  });
});

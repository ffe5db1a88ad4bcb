import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { HttpApiKeyKind, MAX_RESPONSE_BYTES } from '#adapters/targets/http-api-key.ts';
import { NotFoundError, TargetError, ValidationError } from '#core/errors.ts';
import type { KindContext } from '#core/ports/credential-kind.ts';
import { Sealed } from '#core/sealed.ts';
import { FakeProvider } from '#test/helpers/http-provider.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';

const ADMIN = 'providers/acme/admin';

describe('HttpApiKeyKind', () => {
  let provider: FakeProvider;
  let kind: HttpApiKeyKind;
  let guard: LeakGuard;
  let logs: string[];

  beforeAll(async () => {
    provider = await FakeProvider.start();
  });
  afterAll(async () => {
    await provider.close();
  });
  beforeEach(() => {
    kind = new HttpApiKeyKind({ retryBaseDelayMs: 1 });
    guard = new LeakGuard();
    guard.secret(provider.adminToken);
    logs = [];
    provider.requests.length = 0;
  });
  afterEach(() => {
    guard.output('logs', logs.join('\n'));
    // The request log: no key and no admin token ever travels in a URL.
    guard.output('request URLs', provider.requests.map((r) => r.url).join('\n'));
    guard.assertClean();
  });

  const ctx = (current: Sealed<string>, extra: Partial<KindContext> = {}): KindContext => {
    const log = (level: string) => (msg: string, fields: Record<string, unknown> = {}) => void logs.push(JSON.stringify({ level, msg, ...fields }));
    return {
      secretId: 'api/acme/billing',
      versionId: randomUUID(),
      tags: {},
      current,
      readSecret: async (id) => {
        if (id !== ADMIN) throw new NotFoundError(`secret ${id} not found`);
        return provider.adminValue();
      },
      now: () => new Date(),
      logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
      ...extra,
    };
  };
  const fresh = (options: { timeoutMs?: number; retries?: number } = {}) => {
    const key = provider.addKey();
    guard.secret(key.secret);
    return { key, value: provider.value(key, { adminSecretId: ADMIN, ...options }) };
  };
  const track = (value: Sealed<string>) => {
    const v = JSON.parse(value.reveal()) as { keyId: string; key: string };
    guard.secret(v.key);
    return v;
  };
  const caught = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => e);
  const expectCode = async (promise: Promise<unknown>, code: string, retryable?: boolean) => {
    const error = await caught(promise);
    expect(error).toBeInstanceOf(TargetError);
    expect((error as TargetError).code).toBe(code);
    if (retryable !== undefined) expect((error as TargetError).retryable).toBe(retryable);
    guard.error(code, error);
    return error as TargetError;
  };

  describe('next (the create endpoint)', () => {
    it('creates a key with the admin credential in a header and the version id as idempotency key', async () => {
      const { value } = fresh();
      const c = ctx(value);
      const next = track(await kind.next(c));
      expect(provider.keys.get(next.keyId)?.secret).toBe(next.key);
      const [call] = provider.callsTo('create');
      expect(call!.headers.authorization).toBe(`Bearer ${provider.adminToken}`);
      expect(call!.headers['idempotency-key']).toBe(c.versionId);
      expect(JSON.parse(call!.body)).toEqual({ name: 'rekey api/acme/billing' });
    });

    it('returns the same key when a crashed rotation replays its create with the same version id', async () => {
      const { value } = fresh();
      const c = ctx(value);
      const first = track(await kind.next(c));
      const again = track(await kind.next(c));
      expect(again.keyId).toBe(first.keyId);
    });

    it('retries a 5xx and succeeds (both calls are in the log)', async () => {
      const { value } = fresh();
      provider.inject('create', { status: 503, times: 2 });
      track(await kind.next(ctx(value)));
      expect(provider.callsTo('create')).toHaveLength(3);
    });

    it('gives up after its retries with PROVIDER_ERROR, retryable, never echoing the reply', async () => {
      const { value } = fresh({ retries: 1 });
      provider.inject('create', { status: 500, times: 2, body: JSON.stringify({ error: `admin ${provider.adminToken} is rate limited` }) });
      const error = await expectCode(kind.next(ctx(value)), 'PROVIDER_ERROR', true);
      expect(error.message).toContain('500');
      expect(provider.callsTo('create')).toHaveLength(2);
    });

    it('does not retry a refusal: 401 is PROVIDER_REFUSED naming the admin secret', async () => {
      const { value } = fresh();
      provider.inject('create', { status: 401, body: '{"error":"bad token"}' });
      const error = await expectCode(kind.next(ctx(value)), 'PROVIDER_REFUSED', false);
      expect(error.message).toContain(ADMIN);
      expect(provider.callsTo('create')).toHaveLength(1);
    });

    it('times out a provider that never answers: TARGET_UNREACHABLE after its retries', async () => {
      const { value } = fresh({ timeoutMs: 150, retries: 1 });
      provider.inject('create', { hang: true, times: 2 });
      const error = await expectCode(kind.next(ctx(value)), 'TARGET_UNREACHABLE', true);
      expect(error.message).toContain('150 ms');
      expect(provider.callsTo('create')).toHaveLength(2);
    });

    it('times out a reply whose body stalls after its headers', async () => {
      const { value } = fresh({ timeoutMs: 150, retries: 0 });
      provider.inject('create', { status: 201, stallBody: true });
      await expectCode(kind.next(ctx(value)), 'TARGET_UNREACHABLE', true);
    });

    it('never follows a redirect (it would carry the admin credential elsewhere)', async () => {
      const { value } = fresh();
      provider.inject('create', { status: 307, headers: { location: `${provider.url}/steal` }, body: '' });
      await expectCode(kind.next(ctx(value)), 'PROVIDER_ERROR', false);
      expect(provider.requests.some((r) => r.url.startsWith('/steal'))).toBe(false);
    });

    describe('refuses a hostile reply with PROVIDER_RESPONSE_INVALID and keeps none of it', () => {
      const hostile: [string, () => string | Buffer, Record<string, string>?][] = [
        ['not JSON', () => '<html>gateway</html>'],
        ['no key at the path', () => JSON.stringify({ data: { id: 'key_x', attributes: {} } })],
        ['a key that is an object', () => JSON.stringify({ data: { id: 'key_x', attributes: { secret: { nested: 'sk_live_123456789' } } } })],
        ['a key with a line break (header injection)', () => JSON.stringify({ data: { id: 'key_x', attributes: { secret: 'sk_live_1234\r\nX-Evil: 1' } } })],
        ['a key id that is the key', () => JSON.stringify({ data: { id: 'sk_live_same_as_key_0001', attributes: { secret: 'sk_live_same_as_key_0001' } } })],
        ['a key id that is too long', () => JSON.stringify({ data: { id: 'i'.repeat(300), attributes: { secret: 'sk_live_123456789' } } })],
        ['the key only on the prototype chain', () => '{"data":{"id":"key_x","attributes":{"__proto__":{"secret":"sk_live_proto_0001"}}}}'],
        ['a body over the cap (declared)', () => Buffer.alloc(MAX_RESPONSE_BYTES + 1, 'a')],
        ['a body over the cap (chunked, undeclared)', () => Buffer.alloc(MAX_RESPONSE_BYTES * 2, 'a'), { 'transfer-encoding': 'chunked' }],
      ];
      it.each(hostile)('%s', async (_label, body, headers) => {
        const { value } = fresh({ retries: 0 });
        provider.inject('create', { status: 201, body: body(), ...(headers ? { headers } : {}) });
        await expectCode(kind.next(ctx(value)), 'PROVIDER_RESPONSE_INVALID', false);
      });

      it('the current key handed back again as if new', async () => {
        const { key, value } = fresh({ retries: 0 });
        provider.inject('create', { status: 201, body: JSON.stringify({ data: { id: key.id, attributes: { secret: key.secret } } }) });
        await expectCode(kind.next(ctx(value)), 'PROVIDER_RESPONSE_INVALID');
      });
    });
  });

  describe('verify and canLogIn (the verify endpoint)', () => {
    it('send the key in a header only, and read 401 as refused', async () => {
      const { key, value } = fresh();
      expect(await kind.canLogIn(value, ctx(value))).toBe(true);
      expect(provider.callsTo('verify')[0]!.headers.authorization).toBe(`Bearer ${key.secret}`);
      provider.keys.get(key.id)!.active = false;
      await expectCode(kind.verify(value, ctx(value)), 'LOGIN_FAILED', false);
    });

    it('retry a 502 and then answer', async () => {
      const { value } = fresh();
      provider.inject('verify', { status: 502 });
      expect(await kind.canLogIn(value, ctx(value))).toBe(true);
      expect(provider.callsTo('verify')).toHaveLength(2);
    });

    it('treat an unexpected 4xx as PROVIDER_ERROR, not as a refused key', async () => {
      const { value } = fresh();
      provider.inject('verify', { status: 404 });
      await expectCode(kind.canLogIn(value, ctx(value)), 'PROVIDER_ERROR', false);
    });

    it('throw TARGET_UNREACHABLE when the verify endpoint times out', async () => {
      const { value } = fresh({ timeoutMs: 100, retries: 0 });
      provider.inject('verify', { hang: true });
      await expectCode(kind.canLogIn(value, ctx(value)), 'TARGET_UNREACHABLE', true);
    });
  });

  describe('revoke (the revoke endpoint)', () => {
    it('revokes the old key by id in the URL, with the admin credential in a header; the key stops working', async () => {
      const old = fresh();
      const c = ctx(old.value);
      const next = await kind.next(c);
      track(next);
      const outcome = await kind.revoke(old.value, ctx(next), { mode: 'leak' });
      expect(outcome).toEqual({ method: 'revoke-endpoint', principal: 'acme', keyId: old.key.id });
      expect(provider.callsTo('revoke')[0]!.url).toBe(`/v1/keys/${old.key.id}`);
      expect(await kind.canLogIn(old.value, ctx(next))).toBe(false);
      expect(await kind.canLogIn(next, ctx(next))).toBe(true);
    });

    it('reads 404 as already revoked, retries a 500, and reports a 403 as PROVIDER_REFUSED', async () => {
      const old = fresh();
      const current = fresh();
      provider.inject('revoke', { status: 500 });
      expect((await kind.revoke(old.value, ctx(current.value), { mode: 'grace' })).method).toBe('revoke-endpoint');
      expect((await kind.revoke(old.value, ctx(current.value), { mode: 'grace' })).method).toBe('already-revoked');
      const other = fresh();
      provider.inject('revoke', { status: 403 });
      await expectCode(kind.revoke(other.value, ctx(current.value), { mode: 'grace' }), 'PROVIDER_REFUSED', false);
      expect(provider.keys.get(other.key.id)?.active).toBe(true);
    });

    it('times out a revoke that never answers, leaving the key for a retry', async () => {
      const old = fresh({ timeoutMs: 100, retries: 0 });
      const current = fresh();
      provider.inject('revoke', { hang: true });
      await expectCode(kind.revoke(old.value, ctx(current.value), { mode: 'leak' }), 'TARGET_UNREACHABLE', true);
      expect((await kind.revoke(old.value, ctx(current.value), { mode: 'leak' })).method).toBe('revoke-endpoint');
    });
  });

  describe('validate', () => {
    const variants: [string, (v: Record<string, any>) => void][] = [
      ['the key in a URL', (v) => (v.endpoints.verify.url += '?key={{key}}')],
      ['the admin credential in a URL', (v) => (v.endpoints.revoke.url += '?token={{admin.token}}')],
      ['plain http to a non-loopback host', (v) => (v.endpoints.create.url = 'http://api.acme.example/v1/keys')],
      ['a user and password in a URL', (v) => (v.endpoints.create.url = 'https://u:p@api.acme.example/v1/keys')],
      ['an unknown template variable', (v) => (v.endpoints.create.headers.Authorization = 'Bearer {{password}}')],
      ['a bad JSON path', (v) => (v.endpoints.create.keyPath = '$..secret')],
      ['a missing endpoint', (v) => delete v.endpoints.revoke],
      ['an unknown method', (v) => (v.endpoints.verify.method = 'TRACE')],
      ['a header name that is not a token', (v) => (v.endpoints.verify.headers['X Bad'] = 'x')],
    ];
    it.each(variants)('refuses %s, naming the place and never the value', (_label, edit) => {
      const { key } = fresh();
      const json = provider.valueJson(key, { adminSecretId: ADMIN });
      edit(json);
      let error: unknown;
      try {
        kind.validate(new Sealed(JSON.stringify(json)), 'api/acme/billing');
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as Error).message).toContain('api/acme/billing');
      guard.error('validate', error);
    });

    it('refuses at call time a URL that holds a credential literally', async () => {
      const { key } = fresh();
      const json = provider.valueJson(key, { adminSecretId: ADMIN });
      (json.endpoints as any).create.url = `${provider.url}/v1/keys?token=${provider.adminToken}`;
      const value = new Sealed(JSON.stringify(json));
      const error = await caught(kind.next(ctx(value)));
      expect(error).toBeInstanceOf(ValidationError);
      guard.error('next', error);
      expect(provider.callsTo('create')).toHaveLength(0);
      provider.requests.length = 0; // nothing was sent; keep the afterEach URL check about what was
    });

    it('describes a key by provider, key id and host, with the admin secret named', () => {
      const { key, value } = fresh();
      expect(kind.describe(value, 's')).toEqual({ engine: 'http-api-key', principal: 'acme', keyId: key.id, host: new URL(provider.url).host, strategy: 'new-key', adminSecretId: ADMIN });
    });
  });
});

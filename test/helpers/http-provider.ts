import { text } from 'node:stream/consumers';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { Sealed } from '#core/sealed.ts';

/**
 * A third-party API-key provider on 127.0.0.1, as the `http-api-key` engine talks to it:
 *   POST   /v1/keys          (Authorization: Bearer <admin token>) → 201 {"data": {"id", "attributes": {"secret"}}}
 *   GET    /v1/me            (Authorization: Bearer <key>)         → 200 | 401
 *   DELETE /v1/keys/{id}     (Authorization: Bearer <admin token>) → 200 | 404
 * Keys live in memory. Every request is recorded raw (method, URL, headers, body): the "request
 * log" a test checks for leaked values. `inject` makes the next calls of an endpoint fail, stall
 * or answer a hostile body.
 */
export interface ProviderRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export type ProviderEndpoint = 'create' | 'verify' | 'revoke';

export interface Injection {
  status?: number;
  /** Raw reply body (hostile replies). */
  body?: string | Buffer;
  headers?: Record<string, string>;
  /** Never answer (until the server closes). */
  hang?: boolean;
  /** Send the status and headers, then stall the body. */
  stallBody?: boolean;
  /** Still perform the real operation before answering (a create that happened but replied 500). */
  perform?: boolean;
  times?: number;
}

interface Key {
  id: string;
  secret: string;
  active: boolean;
}

export class FakeProvider {
  readonly requests: ProviderRequest[] = [];
  readonly keys = new Map<string, Key>();
  readonly adminToken = `adm_${randomBytes(18).toString('base64url')}`;
  /** Idempotency-Key → key id: a replayed create returns the same key, as Stripe does. */
  readonly #idempotent = new Map<string, string>();
  readonly #injections = new Map<ProviderEndpoint, Injection[]>();
  readonly #server: Server;
  #seq = 0;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<FakeProvider> {
    let provider: FakeProvider | undefined;
    const server = createServer((req, res) => void provider!.#handle(req, res));
    provider = new FakeProvider(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return provider;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** A key that exists and works. */
  addKey(): Key {
    const key = { id: `key_${++this.#seq}_${randomBytes(3).toString('hex')}`, secret: `sk_test_${randomBytes(24).toString('base64url')}`, active: true };
    this.keys.set(key.id, key);
    return key;
  }

  inject(endpoint: ProviderEndpoint, injection: Injection): void {
    const list = this.#injections.get(endpoint) ?? [];
    list.push({ times: 1, ...injection });
    this.#injections.set(endpoint, list);
  }

  callsTo(endpoint: ProviderEndpoint): ProviderRequest[] {
    return this.requests.filter((r) => endpointOf(r.method, r.url) === endpoint);
  }

  /** The admin secret's value: `{"token": …}`. */
  adminValue(): Sealed<string> {
    return new Sealed(JSON.stringify({ token: this.adminToken }));
  }

  /** The stored JSON of an http-api-key secret for `key`, with this provider's endpoints. */
  value(key: Pick<Key, 'id' | 'secret'>, options: { adminSecretId?: string; timeoutMs?: number; retries?: number; extra?: Record<string, unknown> } = {}): Sealed<string> {
    return new Sealed(JSON.stringify(this.valueJson(key, options)));
  }

  valueJson(key: Pick<Key, 'id' | 'secret'>, options: { adminSecretId?: string; timeoutMs?: number; retries?: number; extra?: Record<string, unknown> } = {}): Record<string, unknown> {
    return {
      engine: 'http-api-key',
      provider: 'acme',
      masterarn: options.adminSecretId ?? 'providers/acme/admin',
      keyId: key.id,
      key: key.secret,
      endpoints: {
        create: {
          method: 'POST',
          url: `${this.url}/v1/keys`,
          headers: { Authorization: 'Bearer {{admin.token}}', 'Idempotency-Key': '{{versionId}}' },
          body: { name: 'rekey {{secretId}}' },
          keyPath: '$.data.attributes.secret',
          idPath: '$.data.id',
        },
        verify: { method: 'GET', url: `${this.url}/v1/me`, headers: { Authorization: 'Bearer {{key}}' } },
        revoke: { method: 'DELETE', url: `${this.url}/v1/keys/{{keyId}}`, headers: { Authorization: 'Bearer {{admin.token}}' } },
      },
      timeoutMs: options.timeoutMs ?? 2_000,
      retries: options.retries ?? 2,
      ...options.extra,
    };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await text(req);
    const method = (req.method ?? 'GET').toUpperCase();
    const url = req.url ?? '/';
    this.requests.push({ method, url, headers: { ...req.headers }, body });
    const endpoint = endpointOf(method, url);
    const injection = endpoint ? this.#take(endpoint) : undefined;
    if (injection?.hang) return; // the socket stays open until close()
    if (injection && !injection.perform) return this.#reply(res, injection);
    const reply = this.#route(method, url, req, body);
    if (injection) return this.#reply(res, injection);
    res.writeHead(reply.status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(reply.body));
  }

  #reply(res: ServerResponse, injection: Injection): void {
    res.writeHead(injection.status ?? 500, { 'content-type': 'application/json', ...injection.headers });
    if (injection.stallBody) {
      res.write('{"data":');
      return; // never finished
    }
    res.end(injection.body ?? JSON.stringify({ error: { message: 'internal error' } }));
  }

  #take(endpoint: ProviderEndpoint): Injection | undefined {
    const list = this.#injections.get(endpoint);
    const next = list?.[0];
    if (!next) return undefined;
    next.times = (next.times ?? 1) - 1;
    if (next.times <= 0) list!.shift();
    return next;
  }

  #route(method: string, url: string, req: IncomingMessage, body: string): { status: number; body: unknown } {
    const bearer = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1];
    const isAdmin = bearer === this.adminToken;
    if (method === 'POST' && url === '/v1/keys') {
      if (!isAdmin) return { status: 401, body: { error: { message: 'invalid admin token' } } };
      try {
        if (body) JSON.parse(body);
      } catch {
        return { status: 400, body: { error: { message: 'bad JSON' } } };
      }
      const idempotency = req.headers['idempotency-key'];
      const replayed = typeof idempotency === 'string' && idempotency ? this.#idempotent.get(idempotency) : undefined;
      const key = replayed ? this.keys.get(replayed)! : this.addKey();
      if (typeof idempotency === 'string' && idempotency) this.#idempotent.set(idempotency, key.id);
      return { status: 201, body: { data: { id: key.id, type: 'api_key', attributes: { secret: key.secret, created: Date.now() } } } };
    }
    if (method === 'GET' && url === '/v1/me') {
      const key = [...this.keys.values()].find((k) => k.secret === bearer);
      if (!key?.active) return { status: 401, body: { error: { message: 'invalid api key' } } };
      return { status: 200, body: { id: key.id, account: 'acct_1' } };
    }
    const revoke = /^\/v1\/keys\/([^/?]+)$/.exec(url);
    if (method === 'DELETE' && revoke) {
      if (!isAdmin) return { status: 401, body: { error: { message: 'invalid admin token' } } };
      const key = this.keys.get(decodeURIComponent(revoke[1]!));
      if (!key?.active) return { status: 404, body: { error: { message: 'no such key' } } };
      key.active = false;
      return { status: 200, body: { id: key.id, deleted: true } };
    }
    return { status: 404, body: { error: { message: 'not found' } } };
  }
}

function endpointOf(method: string, url: string): ProviderEndpoint | undefined {
  if (method === 'POST' && url === '/v1/keys') return 'create';
  if (method === 'GET' && url === '/v1/me') return 'verify';
  if (method === 'DELETE' && /^\/v1\/keys\/[^/?]+$/.test(url)) return 'revoke';
  return undefined;
}

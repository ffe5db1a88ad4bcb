import { text } from 'node:stream/consumers';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Octokit } from '@octokit/rest';
import sodium from 'libsodium-wrappers';

/**
 * GitHub's Actions secrets REST API at the HTTP level (node:http on 127.0.0.1), for the
 * `github-actions` consumer driven through a real Octokit:
 *   GET /repos/{o}/{r}/actions/secrets/public-key                       → {key_id, key}
 *   PUT /repos/{o}/{r}/actions/secrets/{name}                           {encrypted_value, key_id} → 201 | 204
 *   GET /repos/{o}/{r}/environments/{env}/secrets/public-key            → {key_id, key}
 *   PUT /repos/{o}/{r}/environments/{env}/secrets/{name}                → 201 | 204
 * Each repository and environment has its own X25519 key pair; the private half stays here so a
 * test can open what was sent (`decrypt`). Every request is logged raw — URL, headers and body — as
 * the "request log" the leak guard reads. A PUT whose key_id is not the current one gets 422.
 */
export interface RawRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  status: number;
}

interface Scope {
  keyId: string;
  publicKey: Uint8Array;
  privateKey: Uint8Array;
  secrets: Map<string, { encryptedValue: string; keyId: string; updatedAt: string }>;
}

export class GitHubActionsDouble {
  readonly requests: RawRequest[] = [];
  readonly #server: Server;
  readonly #token: string;
  readonly #scopes = new Map<string, Scope>();
  /** Repositories (`owner/repo`) that exist; others get 404. Environments must be added too. */
  readonly #repos = new Set<string>();
  readonly #failures: { method: string; path: RegExp; status: number; times: number }[] = [];
  #keySeq = 0;

  private constructor(server: Server, token: string) {
    this.#server = server;
    this.#token = token;
  }

  static async start(options: { token?: string } = {}): Promise<GitHubActionsDouble> {
    await sodium.ready;
    let double: GitHubActionsDouble | undefined;
    const server = createServer((req, res) => void double!.#handle(req, res));
    double = new GitHubActionsDouble(server, options.token ?? 'test-token');
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return double;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  octokit(token = this.#token): Octokit {
    return new Octokit({ auth: token, baseUrl: this.url, log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} } });
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  addRepository(fullName: string, environments: string[] = []): void {
    this.#repos.add(fullName.toLowerCase());
    this.#scope(fullName);
    for (const env of environments) this.#scope(fullName, env);
  }

  /** GitHub rotates a repository's key pair: a PUT sealed for the old key then gets 422. */
  rotateKey(fullName: string, environment?: string): void {
    const scope = this.#scope(fullName, environment);
    const pair = sodium.crypto_box_keypair();
    scope.keyId = String(++this.#keySeq * 1111);
    scope.publicKey = pair.publicKey;
    scope.privateKey = pair.privateKey;
  }

  fail(method: string, path: RegExp, status: number, times = 1): void {
    this.#failures.push({ method: method.toUpperCase(), path, status, times });
  }

  /** The key id GitHub currently hands out for the repository (or environment). */
  keyId(fullName: string, environment?: string): string | undefined {
    return this.#scopes.get(scopeKey(fullName, environment))?.keyId;
  }

  secretNames(fullName: string, environment?: string): string[] {
    return [...(this.#scopes.get(scopeKey(fullName, environment))?.secrets.keys() ?? [])];
  }

  /** Opens a stored secret with the scope's private key, as GitHub's runner does. */
  decrypt(fullName: string, name: string, environment?: string): string | undefined {
    const scope = this.#scopes.get(scopeKey(fullName, environment));
    const stored = scope?.secrets.get(name);
    if (!scope || !stored) return undefined;
    const sealed = sodium.from_base64(stored.encryptedValue, sodium.base64_variants.ORIGINAL);
    return sodium.to_string(sodium.crypto_box_seal_open(sealed, scope.publicKey, scope.privateKey));
  }

  /** Everything any request carried, as one text: what a proxy or GitHub's own log would hold. */
  requestLog(): string {
    return this.requests.map((r) => `${r.method} ${r.url}\n${JSON.stringify(r.headers)}\n${r.body}`).join('\n\n');
  }

  #scope(fullName: string, environment?: string): Scope {
    const key = scopeKey(fullName, environment);
    let scope = this.#scopes.get(key);
    if (!scope) {
      const pair = sodium.crypto_box_keypair();
      scope = { keyId: String(++this.#keySeq * 1111), publicKey: pair.publicKey, privateKey: pair.privateKey, secrets: new Map() };
      this.#scopes.set(key, scope);
    }
    return scope;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await text(req);
    const method = (req.method ?? 'GET').toUpperCase();
    const url = req.url ?? '/';
    const reply = this.#authorized(req) ? this.#route(method, new URL(url, this.url).pathname, body) : { status: 401, body: { message: 'Bad credentials' } };
    this.requests.push({ method, url, headers: { ...req.headers }, body, status: reply.status });
    res.writeHead(reply.status, { 'content-type': 'application/json; charset=utf-8' });
    res.end(reply.body === undefined ? '' : JSON.stringify(reply.body));
  }

  #authorized(req: IncomingMessage): boolean {
    return /^(token|bearer) (.+)$/i.exec(req.headers.authorization ?? '')?.[2] === this.#token;
  }

  #route(method: string, path: string, text: string): { status: number; body?: unknown } {
    const failure = this.#failures.find((f) => f.method === method && f.path.test(path));
    if (failure) {
      failure.times -= 1;
      if (failure.times <= 0) this.#failures.splice(this.#failures.indexOf(failure), 1);
      return { status: failure.status, body: { message: 'Failure injected by the test', documentation_url: 'https://docs.github.com/rest' } };
    }
    const m =
      /^\/repos\/([^/]+)\/([^/]+)\/actions\/secrets\/([^/]+)$/.exec(path) ??
      /^\/repos\/([^/]+)\/([^/]+)\/environments\/([^/]+)\/secrets\/([^/]+)$/.exec(path);
    if (!m) return notFound();
    const fullName = `${decodeURIComponent(m[1]!)}/${decodeURIComponent(m[2]!)}`;
    if (!this.#repos.has(fullName.toLowerCase())) return notFound();
    const environment = m.length === 5 ? decodeURIComponent(m[3]!) : undefined;
    const name = decodeURIComponent(m[m.length - 1]!);
    const key = scopeKey(fullName, environment);
    if (environment !== undefined && !this.#scopes.has(key)) return notFound();
    const scope = this.#scope(fullName, environment);
    if (name === 'public-key' && method === 'GET') {
      return { status: 200, body: { key_id: scope.keyId, key: sodium.to_base64(scope.publicKey, sodium.base64_variants.ORIGINAL) } };
    }
    if (method !== 'PUT') return notFound();
    let input: { encrypted_value?: unknown; key_id?: unknown };
    try {
      input = JSON.parse(text) as typeof input;
    } catch {
      return { status: 400, body: { message: 'Problems parsing JSON' } };
    }
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || /^GITHUB_/i.test(name)) return invalid('name');
    if (typeof input.encrypted_value !== 'string' || typeof input.key_id !== 'string') return invalid('encrypted_value');
    if (input.key_id !== scope.keyId) return invalid('key_id');
    try {
      sodium.crypto_box_seal_open(sodium.from_base64(input.encrypted_value, sodium.base64_variants.ORIGINAL), scope.publicKey, scope.privateKey);
    } catch {
      return invalid('encrypted_value');
    }
    const existed = scope.secrets.has(name);
    scope.secrets.set(name, { encryptedValue: input.encrypted_value, keyId: input.key_id, updatedAt: new Date().toISOString() });
    return { status: existed ? 204 : 201, body: existed ? undefined : {} };
  }
}

const scopeKey = (fullName: string, environment?: string) => `${fullName.toLowerCase()}${environment === undefined ? '' : `#${environment}`}`;
const notFound = () => ({ status: 404, body: { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' } });
const invalid = (field: string) => ({ status: 422, body: { message: 'Validation Failed', errors: [{ resource: 'Secret', field, code: 'invalid' }] } });

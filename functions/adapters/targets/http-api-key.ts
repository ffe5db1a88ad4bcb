import * as z from 'zod/mini';
import { ConflictError, RekeyError, TargetError, ValidationError, logsIn } from '#core/errors.ts';
import { parseJsonPath, readJsonPath } from '#core/json-path.ts';
import type { ApplyOptions, CredentialKind, CredentialSummary, KindContext, RevokeMode, RevokeOutcome, SensitiveForm } from '#core/ports/credential-kind.ts';
import { redactCause } from '#core/redact.ts';
import { Sealed } from '#core/sealed.ts';
import { parseSecretJson } from '#core/secret.ts';

export const HTTP_API_KEY_ENGINE = 'http-api-key';

/** Replies larger than this are refused unread: a key and its id fit in far less. */
export const MAX_RESPONSE_BYTES = 64 * 1024;
const MAX_KEY_CHARS = 4096;
const MAX_ID_CHARS = 256;
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_RETRIES = 2;

type EndpointName = 'create' | 'verify' | 'revoke';
/** Variables a URL may hold: identifiers only. The key and the admin credential go in headers or the body. */
const URL_VARIABLES = new Set(['keyId', 'versionId', 'secretId']);
const TEMPLATE = /\{\{\s*([^{}]*?)\s*\}\}/g;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
/** Printable ASCII without spaces: what an API key is, and what can go in a header without injection. */
const KEY_CHARS = /^[\x21-\x7e]+$/;
const ID_CHARS = /^[\x21-\x7e]+$/;

const headerSchema = z.record(z.string().check(z.regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/)), z.string().check(z.maxLength(8192)));
/** Each endpoint's fields; every endpoint object is strict (an unknown field is a typo). */
const endpointShape = {
  method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']),
  url: z.string().check(z.minLength(1), z.maxLength(2048)),
  headers: z.optional(headerSchema),
  body: z.optional(z.unknown()),
};
const integer = (min: number, max: number) => z.number().check(z.int(), z.minimum(min), z.maximum(max));
const clientErrors = () => z.array(integer(400, 499));

const valueSchema = z.looseObject({
  engine: z.literal(HTTP_API_KEY_ENGINE),
  /** A name for messages and events (`stripe`, `sendgrid`, `billing-api`). */
  provider: z.string().check(z.regex(/^[\w.-]{1,64}$/)),
  /** The secret holding the provider admin credential (any JSON object), read at AWSCURRENT. */
  masterarn: z.string().check(z.minLength(1), z.maxLength(2048)),
  keyId: z.string().check(z.minLength(1), z.maxLength(MAX_ID_CHARS)),
  key: z.string().check(z.minLength(8), z.maxLength(MAX_KEY_CHARS)),
  endpoints: z.strictObject({
    create: z.strictObject({ ...endpointShape, keyPath: z.string(), idPath: z.string() }),
    verify: z.strictObject({ ...endpointShape, refusedStatus: z.optional(clientErrors().check(z.minLength(1))) }),
    revoke: z.strictObject({ ...endpointShape, goneStatus: z.optional(clientErrors()) }),
  }),
  timeoutMs: z.optional(integer(50, 120_000)),
  retries: z.optional(integer(0, 5)),
});

type Endpoints = z.infer<typeof valueSchema>['endpoints'];
type Endpoint = Endpoints[EndpointName];

export interface HttpApiKey {
  provider: string;
  masterarn: string;
  keyId: string;
  key: Sealed<string>;
  endpoints: Endpoints;
  timeoutMs: number;
  retries: number;
}

export interface HttpApiKeyKindOptions {
  /** Backoff before retry n: base × 2^(n-1) ms (default 250). */
  retryBaseDelayMs?: number;
  /** For tests only: the fetch to use (default the global one). */
  fetch?: typeof fetch;
}

interface Vars {
  key?: Sealed<string>;
  keyId?: string;
  versionId?: string;
  secretId?: string;
  admin?: Sealed<unknown>;
}

interface Reply {
  status: number;
  json: () => unknown;
}

/**
 * A provider without a built-in target, described by its HTTP endpoints in the secret itself:
 * `create` (with the admin credential; the reply holds the new key and its id at JSON paths),
 * `verify` (with the key; 2xx works, 401/403 refused) and `revoke` (with the admin credential;
 * 2xx or 404/410 done). This is how a Stripe-, SendGrid- or in-house-style key is rotated without
 * code (README "HTTP API keys").
 *
 * Safety: URLs hold identifiers only — a template putting `{{key}}` or `{{admin.…}}` in a URL is
 * refused, and so is a URL that contains a secret literally; https only (plain http only to
 * loopback); redirects are never followed (they would carry the credential elsewhere); replies are
 * capped at 64 KiB and read through JSON paths that see own properties only; every call has a
 * timeout; 5xx, 429 and network failures are retried with backoff; no reply body ever reaches an
 * error or a log.
 */
export class HttpApiKeyKind implements CredentialKind {
  readonly engines = [HTTP_API_KEY_ENGINE] as const;
  readonly #retryBaseDelayMs: number;
  readonly #fetch: typeof fetch;

  constructor(options: HttpApiKeyKindOptions = {}) {
    this.#retryBaseDelayMs = Math.max(0, options.retryBaseDelayMs ?? 250);
    this.#fetch = options.fetch ?? ((...args) => fetch(...args));
  }

  parse(value: Sealed<string>, secretId: string): HttpApiKey {
    const d = parseSecretJson(value, secretId, valueSchema);
    if (!KEY_CHARS.test(d.key)) throw new ValidationError(`secret ${secretId} has invalid or missing fields: key (printable ASCII without spaces)`, 'SECRET_INVALID');
    for (const name of ['create', 'verify', 'revoke'] as const) checkEndpoint(d.endpoints[name], `secret ${secretId}: endpoints.${name}`);
    parseJsonPath(d.endpoints.create.keyPath, `secret ${secretId}: endpoints.create.keyPath`);
    parseJsonPath(d.endpoints.create.idPath, `secret ${secretId}: endpoints.create.idPath`);
    return {
      provider: d.provider,
      masterarn: d.masterarn,
      keyId: d.keyId,
      key: new Sealed(d.key),
      endpoints: d.endpoints,
      timeoutMs: d.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      retries: d.retries ?? DEFAULT_RETRIES,
    };
  }

  validate(value: Sealed<string>, secretId: string): void {
    this.parse(value, secretId);
  }

  describe(value: Sealed<string>, secretId: string): CredentialSummary {
    const v = this.parse(value, secretId);
    let host: string | undefined;
    try {
      host = new URL(v.endpoints.create.url.replace(TEMPLATE, 'x')).host;
    } catch {
      host = undefined;
    }
    return { engine: HTTP_API_KEY_ENGINE, principal: v.provider, keyId: v.keyId, ...(host ? { host } : {}), strategy: 'new-key', adminSecretId: v.masterarn };
  }

  async next(ctx: KindContext): Promise<Sealed<string>> {
    const current = this.parse(ctx.current, ctx.secretId);
    const admin = await this.#admin(current, ctx);
    const vars: Vars = { admin, keyId: current.keyId, secretId: ctx.secretId, versionId: ctx.versionId ?? '' };
    const create = current.endpoints.create;
    const reply = await this.#call(current, 'create', create, vars, ctx);
    if (reply.status < 200 || reply.status > 299) throw this.#refused(current, 'create', reply.status);
    const body = reply.json();
    const key = readJsonPath(body, create.keyPath);
    const idRaw = readJsonPath(body, create.idPath);
    const id = typeof idRaw === 'number' && Number.isSafeInteger(idRaw) ? String(idRaw) : idRaw;
    const invalid = (what: string) => new TargetError('PROVIDER_RESPONSE_INVALID', `${current.provider}: the create endpoint's reply has ${what}`);
    if (typeof key !== 'string' || key.length < 8 || key.length > MAX_KEY_CHARS || !KEY_CHARS.test(key)) {
      throw invalid(`no usable key at ${create.keyPath} (a string of 8 to ${MAX_KEY_CHARS} printable characters)`);
    }
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_CHARS || !ID_CHARS.test(id)) {
      throw invalid(`no usable key id at ${create.idPath} (a string or integer of at most ${MAX_ID_CHARS} characters)`);
    }
    // The id is shown in logs and events: a reply that puts the key (or part of it) there is refused.
    if (id.includes(key) || (key.length >= 8 && key.includes(id) && id.length >= 8)) throw invalid('a key id that contains the key');
    if (id === current.keyId || key === current.key.reveal()) throw invalid('the current key again, not a new one');
    ctx.logger.info('created a provider key', { secretId: ctx.secretId, provider: current.provider, keyId: id });
    return ctx.current.map((json) => JSON.stringify({ ...(JSON.parse(json) as object), keyId: id, key }));
  }

  async apply(pending: Sealed<string>, ctx: KindContext, options: ApplyOptions = {}): Promise<void> {
    // A provider's key works once created: nothing to set.
    this.parse(pending, ctx.secretId);
    // A new key leaves the old one working: nothing to undo if the caller's confirmation fails.
    await options.confirm?.();
  }

  async verify(value: Sealed<string>, ctx: KindContext): Promise<void> {
    const v = this.parse(value, ctx.secretId);
    const verify = v.endpoints.verify;
    const reply = await this.#call(v, 'verify', verify, { key: v.key, keyId: v.keyId, secretId: ctx.secretId }, ctx);
    if (reply.status >= 200 && reply.status <= 299) return;
    if ((verify.refusedStatus ?? [401, 403]).includes(reply.status)) {
      throw new TargetError('LOGIN_FAILED', `${v.provider} refused key ${v.keyId} (status ${reply.status})`);
    }
    throw new TargetError('PROVIDER_ERROR', `${v.provider}: the verify endpoint answered ${reply.status} for key ${v.keyId}`);
  }

  canLogIn(value: Sealed<string>, ctx: KindContext): Promise<boolean> {
    return logsIn(() => this.verify(value, ctx));
  }

  async revoke(old: Sealed<string>, ctx: KindContext, _options: { mode: RevokeMode }): Promise<RevokeOutcome> {
    const v = this.parse(old, ctx.secretId);
    let current: HttpApiKey | undefined;
    try {
      current = this.parse(ctx.current, ctx.secretId);
    } catch {
      current = undefined;
    }
    if (current && (current.keyId === v.keyId || current.key.reveal() === v.key.reveal())) {
      throw new ConflictError(`key ${v.keyId} is AWSCURRENT of ${ctx.secretId}: rekey never revokes it`, 'REVOKE_CURRENT');
    }
    // The admin of the value being revoked: a provider moved to another admin secret still revokes its old keys.
    const admin = await this.#admin(v, ctx);
    const revoke = v.endpoints.revoke;
    const reply = await this.#call(v, 'revoke', revoke, { admin, keyId: v.keyId, secretId: ctx.secretId }, ctx);
    const base = { principal: v.provider, keyId: v.keyId };
    if (reply.status >= 200 && reply.status <= 299) return { ...base, method: 'revoke-endpoint' };
    if ((revoke.goneStatus ?? [404, 410]).includes(reply.status)) return { ...base, method: 'already-revoked' };
    throw this.#refused(v, 'revoke', reply.status);
  }

  sensitiveForms(value: Sealed<string>): SensitiveForm[] {
    try {
      const v = this.parse(value, 'value');
      return [{ form: 'key', text: v.key.reveal(), hmsl: true }];
    } catch {
      return [];
    }
  }

  async close(): Promise<void> {}

  async #admin(v: HttpApiKey, ctx: KindContext): Promise<Sealed<unknown>> {
    const raw = await ctx.readSecret(v.masterarn);
    let admin: unknown;
    try {
      admin = JSON.parse(raw.reveal());
    } catch {
      throw new ValidationError(`admin secret ${v.masterarn} of ${ctx.secretId} is not valid JSON`, 'SECRET_INVALID');
    }
    if (admin === null || typeof admin !== 'object' || Array.isArray(admin)) {
      throw new ValidationError(`admin secret ${v.masterarn} of ${ctx.secretId} must be a JSON object`, 'SECRET_INVALID');
    }
    return new Sealed(admin);
  }

  #refused(v: HttpApiKey, endpoint: EndpointName, status: number): TargetError {
    if (status === 401 || status === 403) {
      return new TargetError('PROVIDER_REFUSED', `${v.provider} refused the ${endpoint} call (status ${status}): check the admin credential in ${v.masterarn}`);
    }
    if (status >= 300 && status <= 399) {
      return new TargetError('PROVIDER_ERROR', `${v.provider}: the ${endpoint} endpoint answered a redirect (${status}), which rekey never follows`);
    }
    return new TargetError('PROVIDER_REFUSED', `${v.provider} refused the ${endpoint} call (status ${status})`, { retryable: status === 409 });
  }

  /** One endpoint call with timeout and retries (5xx, 429, network); the reply read within the cap. */
  async #call(v: HttpApiKey, name: EndpointName, endpoint: Endpoint, vars: Vars, ctx: KindContext): Promise<Reply> {
    const secrets = secretTexts(vars);
    const request = buildRequest(endpoint, vars, `${v.provider} ${name} endpoint`);
    for (const secret of secrets) {
      if (secret.length >= 4 && request.url.includes(secret)) {
        throw new ValidationError(`${v.provider}: the ${name} endpoint URL contains a credential; send it in a header`, 'SECRET_INVALID');
      }
    }
    const where = describeUrl(request.url);
    const attempts = 1 + v.retries;
    let last: TargetError | undefined;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await sleep(this.#retryBaseDelayMs * 2 ** (attempt - 2));
      let response: Response;
      try {
        response = await this.#fetch(request.url, {
          method: endpoint.method,
          headers: request.headers,
          ...(request.body !== undefined ? { body: request.body } : {}),
          redirect: 'manual',
          signal: AbortSignal.timeout(v.timeoutMs),
        });
      } catch (error) {
        const timedOut = isTimeout(error);
        last = new TargetError(
          'TARGET_UNREACHABLE',
          timedOut ? `${v.provider}: the ${name} endpoint did not answer within ${v.timeoutMs} ms` : `cannot reach ${v.provider} (${name} endpoint, ${where})`,
          { retryable: true, cause: redactCause(error, secrets) },
        );
        ctx.logger.debug('provider call failed', { provider: v.provider, endpoint: name, url: where, attempt, error: timedOut ? 'timeout' : 'network' });
        continue;
      }
      let text: string;
      try {
        text = await readCapped(response, MAX_RESPONSE_BYTES);
      } catch (error) {
        if (error instanceof RekeyError) throw new TargetError('PROVIDER_RESPONSE_INVALID', `${v.provider}: the ${name} endpoint's reply is larger than ${MAX_RESPONSE_BYTES} bytes`);
        last = new TargetError('TARGET_UNREACHABLE', `${v.provider}: the ${name} endpoint's reply was cut off or too slow`, { retryable: true, cause: redactCause(error, secrets) });
        continue;
      }
      ctx.logger.debug('provider call', { provider: v.provider, endpoint: name, method: endpoint.method, url: where, status: response.status, attempt });
      if (response.status >= 500 || response.status === 429) {
        last = new TargetError('PROVIDER_ERROR', `${v.provider}: the ${name} endpoint answered ${response.status}`, { retryable: true });
        continue;
      }
      return {
        status: response.status,
        json: () => {
          try {
            return JSON.parse(text) as unknown;
          } catch {
            throw new TargetError('PROVIDER_RESPONSE_INVALID', `${v.provider}: the ${name} endpoint's reply is not JSON`);
          }
        },
      };
    }
    throw last ?? new TargetError('PROVIDER_ERROR', `${v.provider}: the ${name} endpoint failed`);
  }
}

/** Template rules, checked when the value is stored: URLs hold identifiers only, https or loopback. */
function checkEndpoint(endpoint: Endpoint, what: string): void {
  for (const variable of variablesOf(endpoint.url)) {
    if (!URL_VARIABLES.has(variable)) {
      throw new ValidationError(`${what}.url may use only {{keyId}}, {{versionId}} and {{secretId}}: the key and the admin credential go in a header or the body`, 'SECRET_INVALID');
    }
  }
  const templated = [...Object.values(endpoint.headers ?? {}), ...stringsOf(endpoint.body)];
  for (const text of templated) for (const variable of variablesOf(text)) checkVariable(variable, what);
  let url: URL;
  try {
    url = new URL(endpoint.url.replace(TEMPLATE, 'x'));
  } catch {
    throw new ValidationError(`${what}.url is not a URL`, 'SECRET_INVALID');
  }
  if (url.username || url.password) throw new ValidationError(`${what}.url must not carry a user or password`, 'SECRET_INVALID');
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK.has(url.hostname))) {
    throw new ValidationError(`${what}.url must use https (plain http only to a loopback address)`, 'SECRET_INVALID');
  }
}

function checkVariable(variable: string, what: string): void {
  if (variable === 'key' || URL_VARIABLES.has(variable)) return;
  if (variable.startsWith('admin.')) {
    parseJsonPath(variable.slice('admin.'.length), `${what}: {{${variable}}}`);
    return;
  }
  throw new ValidationError(`${what} uses an unknown variable; use {{key}}, {{keyId}}, {{versionId}}, {{secretId}} or {{admin.<path>}}`, 'SECRET_INVALID');
}

function variablesOf(text: string): string[] {
  return [...text.matchAll(TEMPLATE)].map((m) => m[1]!);
}

function stringsOf(node: unknown, depth = 0): string[] {
  if (depth > 16) return [];
  if (typeof node === 'string') return [node];
  if (Array.isArray(node)) return node.flatMap((n) => stringsOf(n, depth + 1));
  if (node && typeof node === 'object') return Object.entries(node).flatMap(([k, n]) => [k, ...stringsOf(n, depth + 1)]);
  return [];
}

function substitute(text: string, vars: Vars, inUrl: boolean, what: string): string {
  return text.replace(TEMPLATE, (_all, name: string) => {
    let value: string;
    if (name === 'key') value = vars.key?.reveal() ?? missing(name, what);
    else if (name === 'keyId' || name === 'versionId' || name === 'secretId') value = vars[name] ?? missing(name, what);
    else if (name.startsWith('admin.')) {
      const found = vars.admin ? readJsonPath(vars.admin.reveal(), name.slice('admin.'.length)) : undefined;
      if (typeof found !== 'string' && typeof found !== 'number') missing(name, what);
      value = String(found);
    } else value = missing(name, what);
    return inUrl ? encodeURIComponent(value) : value;
  });
}

function missing(name: string, what: string): never {
  throw new ValidationError(`${what}: {{${name}}} has no value here (the admin secret lacks that field, or the endpoint cannot use it)`, 'SECRET_INVALID');
}

function buildRequest(endpoint: Endpoint, vars: Vars, what: string): { url: string; headers: Record<string, string>; body?: string } {
  const url = substitute(endpoint.url, vars, true, what);
  const headers: Record<string, string> = { accept: 'application/json' };
  for (const [name, value] of Object.entries(endpoint.headers ?? {})) {
    const text = substitute(value, vars, false, what);
    if (/[\r\n\0]/.test(text)) throw new ValidationError(`${what}: header ${name} would hold a line break`, 'SECRET_INVALID');
    headers[name.toLowerCase()] = text;
  }
  if (endpoint.body === undefined) return { url, headers };
  const body = JSON.stringify(templateJson(endpoint.body, vars, what));
  return { url, headers: { 'content-type': 'application/json', ...headers }, body };
}

function templateJson(node: unknown, vars: Vars, what: string, depth = 0): unknown {
  if (depth > 16) throw new ValidationError(`${what}: the body template is nested too deeply`, 'SECRET_INVALID');
  if (typeof node === 'string') return substitute(node, vars, false, what);
  if (Array.isArray(node)) return node.map((n) => templateJson(n, vars, what, depth + 1));
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, n] of Object.entries(node)) out[k] = templateJson(n, vars, what, depth + 1);
    return out;
  }
  return node;
}

/** Every secret text a request may carry: the key and each string of the admin credential. */
function secretTexts(vars: Vars): string[] {
  const out: string[] = [];
  if (vars.key) out.push(vars.key.reveal());
  if (vars.admin) out.push(...stringsOf(vars.admin.reveal()).filter((s) => s.length >= 4));
  return out;
}

/** Origin and path for logs and errors: never the query string. */
function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

async function readCapped(response: Response, max: number): Promise<string> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > max) {
    await response.body?.cancel().catch(() => {});
    throw new RekeyError('TOO_LARGE', 'reply too large');
  }
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      throw new RekeyError('TOO_LARGE', 'reply too large');
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function isTimeout(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === 'TimeoutError' || name === 'AbortError';
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

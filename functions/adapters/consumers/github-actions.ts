import type { Octokit } from '@octokit/rest';
import { ConfigError, RekeyError, ValidationError } from '#core/errors.ts';
import { parseJsonPath, readJsonPath } from '#core/json-path.ts';
import type { ConsumerAdapter, ConsumerPush, ConsumerPushOutcome, ConsumerSpec } from '#core/ports/consumer.ts';
import { redactCause } from '#core/redact.ts';
import type { Sealed } from '#core/sealed.ts';

export const GITHUB_ACTIONS_CONSUMER = 'github-actions';

/** A GitHub client, or what gives one when a push needs it (undefined: no token configured). */
export type GitHubClientSource = Octokit | (() => Promise<Octokit | undefined>);

const REPOSITORY = /^([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))\/([A-Za-z0-9._-]{1,100})$/;
/** GitHub's rules: letters, digits and `_`; not starting with a digit; no `GITHUB_` prefix. */
const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,199}$/;
const MAX_ENVIRONMENT = 255;
/** GitHub refuses secrets over 48 KB. */
const MAX_SECRET_BYTES = 48 * 1024;

/**
 * `{"type": "github-actions", "repository": "owner/repo", "environment": "production",
 *   "secrets": {"AWS_ACCESS_KEY_ID": "accessKeyId", "AWS_SECRET_ACCESS_KEY": "secretAccessKey"}}`
 * `secrets` maps each GitHub secret name to a JSON path into the value (`$` = the whole JSON).
 * Without `environment` the secrets are repository secrets.
 */
interface GitHubActionsSpec {
  owner: string;
  repo: string;
  environment?: string;
  secrets: [string, string][];
}

/**
 * GitHub Actions repository or environment secrets, written through the REST API: the value is
 * encrypted on this side with the repository's (or environment's) public key as a libsodium
 * sealed box (`crypto_box_seal`), as GitHub requires, so only GitHub can open it. The plaintext
 * goes nowhere else: not in a URL, a log line or an error.
 */
export class GitHubActionsConsumer implements ConsumerAdapter {
  readonly type = GITHUB_ACTIONS_CONSUMER;
  readonly #octokit: GitHubClientSource | undefined;
  readonly #tokenSetting: string;

  /**
   * Without an Octokit (no token) specs still validate; a push fails with CONFIG_INVALID naming
   * `tokenSetting` (default GITHUB_TOKEN). A function is called on each push, and only then (on
   * AWS it reads the token's secret): a value without a GitHub consumer costs no read.
   */
  constructor(options: { octokit?: GitHubClientSource; tokenSetting?: string }) {
    this.#octokit = options.octokit;
    this.#tokenSetting = options.tokenSetting ?? 'GITHUB_TOKEN';
  }

  validate(spec: ConsumerSpec, where: string): void {
    this.#parse(spec, where);
  }

  describe(spec: ConsumerSpec): string {
    const repository = typeof spec.repository === 'string' ? spec.repository : '?';
    const environment = typeof spec.environment === 'string' ? ` (environment ${spec.environment})` : '';
    return `${GITHUB_ACTIONS_CONSUMER} ${repository}${environment}`;
  }

  async push(request: ConsumerPush): Promise<ConsumerPushOutcome> {
    const spec = this.#parse(request.consumer, `a consumer of ${request.secretId}`);
    const name = this.describe(request.consumer);
    // A failed token read throws its own error (LEAK_CREDENTIALS_UNREADABLE…), which names no value.
    const octokit = typeof this.#octokit === 'function' ? await this.#octokit() : this.#octokit;
    if (!octokit) throw new ConfigError(`no GitHub token to push ${request.secretId} to ${name}: set ${this.#tokenSetting}`);
    let value: unknown;
    try {
      value = JSON.parse(request.value.reveal());
    } catch {
      throw new ValidationError(`secret ${request.secretId} is not valid JSON`, 'SECRET_INVALID');
    }
    // Every field is resolved before anything is written: a wrong path must not leave half the secrets new.
    const texts = spec.secrets.map(([secretName, path]) => {
      const found = path === '$' ? request.value.reveal() : readJsonPath(value, path);
      if (typeof found !== 'string' && typeof found !== 'number') {
        throw new ValidationError(`${name}: ${secretName} points at ${path}, which is not a string in the value of ${request.secretId}`, 'CONSUMER_INVALID');
      }
      const text = String(found);
      if (Buffer.byteLength(text) > MAX_SECRET_BYTES) throw new ValidationError(`${name}: ${secretName} would exceed GitHub's 48 KB limit`, 'CONSUMER_INVALID');
      return [secretName, text] as const;
    });
    const secrets = [...request.secrets, ...texts.map(([, t]) => t)];
    const { owner, repo, environment } = spec;
    const publicKey = await this.#github(name, 'read the public key', secrets, async () =>
      environment
        ? (await octokit.rest.actions.getEnvironmentPublicKey({ owner, repo, environment_name: environment })).data
        : (await octokit.rest.actions.getRepoPublicKey({ owner, repo })).data,
    );
    // Loaded on first use: libsodium's WebAssembly costs cold-start time no other path needs.
    const sodium = (await import('libsodium-wrappers')).default;
    await sodium.ready;
    let key: Uint8Array;
    try {
      key = sodium.from_base64(publicKey.key, sodium.base64_variants.ORIGINAL);
    } catch {
      throw new RekeyError('CONSUMER_PUSH_FAILED', `${name}: GitHub's public key is not base64`, { retryable: false });
    }
    if (key.length !== sodium.crypto_box_PUBLICKEYBYTES) throw new RekeyError('CONSUMER_PUSH_FAILED', `${name}: GitHub's public key has the wrong length`);
    for (const [secretName, text] of texts) {
      const encrypted = sodium.to_base64(sodium.crypto_box_seal(sodium.from_string(text), key), sodium.base64_variants.ORIGINAL);
      await this.#github(name, `write ${secretName}`, secrets, () =>
        environment
          ? octokit.rest.actions.createOrUpdateEnvironmentSecret({ owner, repo, environment_name: environment, secret_name: secretName, encrypted_value: encrypted, key_id: publicKey.key_id })
          : octokit.rest.actions.createOrUpdateRepoSecret({ owner, repo, secret_name: secretName, encrypted_value: encrypted, key_id: publicKey.key_id }),
      );
    }
    return { consumer: name, updated: texts.map(([secretName]) => secretName) };
  }

  #parse(spec: ConsumerSpec, where: string): GitHubActionsSpec {
    const fail = (what: string): never => {
      throw new ValidationError(`${where}: ${GITHUB_ACTIONS_CONSUMER} consumer ${what}`, 'CONSUMER_INVALID');
    };
    const allowed = new Set(['type', 'repository', 'environment', 'secrets']);
    for (const field of Object.keys(spec)) if (!allowed.has(field)) fail(`has an unknown field "${field.slice(0, 40)}"`);
    const match = typeof spec.repository === 'string' ? REPOSITORY.exec(spec.repository) : null;
    if (!match) fail('needs "repository": "owner/name"');
    let environment: string | undefined;
    if (spec.environment !== undefined) {
      if (typeof spec.environment !== 'string' || spec.environment.length === 0 || spec.environment.length > MAX_ENVIRONMENT || /[\0-\x1f]/.test(spec.environment)) {
        fail(`needs "environment" to be a name of 1 to ${MAX_ENVIRONMENT} characters`);
      }
      environment = spec.environment as string;
    }
    const raw = spec.secrets;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw) || Object.keys(raw).length === 0) fail('needs "secrets": {"NAME": "<JSON path in the value>"}');
    const secrets = Object.entries(raw as Record<string, unknown>).map(([name, path]) => {
      if (!SECRET_NAME.test(name) || /^GITHUB_/i.test(name)) fail(`secret name ${name.slice(0, 60)} is not allowed by GitHub (letters, digits, _; no GITHUB_ prefix)`);
      if (typeof path !== 'string') fail(`secret ${name} needs a JSON path such as "password" or "$.key"`);
      if (path !== '$') parseJsonPath(path as string, `${where}: secret ${name}`);
      return [name, path as string] as [string, string];
    });
    return { owner: match![1]!, repo: match![2]!, ...(environment ? { environment } : {}), secrets };
  }

  async #github<T>(name: string, action: string, secrets: (string | Sealed<string>)[], fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      const status = (error as { status?: unknown }).status;
      const code = typeof status === 'number' ? status : undefined;
      const retryable = code === undefined || code >= 500 || code === 429;
      const hint = code === 404 ? ' (no such repository or environment, or the token cannot see it)' : code === 403 || code === 401 ? " (the token may not write this repository's secrets)" : '';
      throw new RekeyError('CONSUMER_PUSH_FAILED', `${name}: could not ${action}${code ? `: GitHub answered ${code}` : ''}${hint}`, {
        retryable,
        cause: redactCause(error, secrets),
      });
    }
  }
}

/**
 * A fake AWS Secrets Manager at the HTTP level: a node:http server on 127.0.0.1 speaking the
 * service's JSON 1.1 protocol (`POST /`, `X-Amz-Target: secretsmanager.<Operation>`,
 * `Content-Type: application/x-amz-json-1.1`; errors are status 400 — 500 for server faults — with
 * `{"__type": "<ExceptionName>", "message": "..."}`). State lives in memory. Production adapters
 * talk to it through an unmodified SecretsManagerClient, so what is tested is what AWS would get.
 * (No emulator exists on npm or in Debian — DESIGN.md §10 — hence this file.)
 *
 * Usage:
 *
 *   const sm = await startFakeSecretsManager();        // { now?, pageSize?, region?, accountId? }
 *   const client = sm.client();                         // or set AWS_ENDPOINT_URL_SECRETS_MANAGER=sm.url
 *   ...
 *   sm.requests                  every request, in order: { operation, body, raw, status, response }
 *   sm.requestsFor('PutSecretValue')
 *   sm.setRotationEnabled(id, true)      as deploying a RotationSchedule would (RotateSecret needs it)
 *   sm.rotations                 RotateSecret calls: { secretId, versionId, rotateImmediately }
 *                                        (secretId is the ARN, as AWS sends it to the rotation Lambda)
 *   sm.onRotate(async (call) => …)       runs after RotateSecret has answered, like AWS invoking the
 *                                        rotation Lambda; `await sm.settled()` waits for it (its
 *                                        error, if any, is rethrown there)
 *   sm.fail('GetSecretValue', 'ThrottlingException', { times: 2 })   inject errors (status 500 for
 *                                        InternalServiceError, else 400); use client({ maxAttempts: 1 })
 *                                        to see the first one instead of the SDK's retries
 *   sm.now = () => new Date(...)         the clock for CreatedDate / LastRotatedDate (ages, "stuck")
 *   sm.inspect(id)               the stored secret (values included: for assertions only)
 *   await sm.close()
 *
 * Operations, with AWS's semantics: CreateSecret, DescribeSecret, GetSecretValue, PutSecretValue,
 * UpdateSecretVersionStage, ListSecretVersionIds, ListSecrets, TagResource, UntagResource,
 * RotateSecret, CancelRotateSecret. Anything else answers UnknownOperationException.
 *
 * - A staging label sits on at most one version; moving AWSCURRENT (PutSecretValue or
 *   UpdateSecretVersionStage) moves AWSPREVIOUS to the version that had it.
 * - PutSecretValue is idempotent by ClientRequestToken: same value → ignored (stages unchanged),
 *   different value → ResourceExistsException; a value may be put into the value-less AWSPENDING
 *   version RotateSecret created. The first version of a secret always gets AWSCURRENT.
 * - UpdateSecretVersionStage: when the label is on another version, RemoveFromVersionId must name
 *   it (InvalidParameterException otherwise); AWSCURRENT can only be moved, never just removed;
 *   moving AWSCURRENT sets LastRotatedDate (what a rotation's finishSecret step does).
 * - GetSecretValue with VersionId and VersionStage that do not match → InvalidRequestException; a
 *   version without a value → ResourceNotFoundException (AWS's rotation templates rely on it).
 * - ClientRequestToken / VersionId must be 32–64 characters (ValidationException), as on AWS.
 * - ListSecrets: filters `name`, `tag-key`, `tag-value`, `description` are prefix matches (case-
 *   sensitive except description), values within a filter are OR'd, filters AND'd, a leading `!`
 *   negates; tag-key and tag-value match independently (any tag), exactly as AWS does. Paginated by
 *   MaxResults (≤ 100) and an opaque NextToken; `pageSize` caps pages further to exercise paging.
 * - RotateSecret: refused with "A previous rotation isn't complete…" while AWSPENDING sits on a
 *   version other than AWSCURRENT, and when no rotation is configured; otherwise it creates an
 *   AWSPENDING version without a value, returns its VersionId and sets RotationEnabled.
 * - DescribeSecret's LastRotatedDate is omitted while rotation is disabled (AWS returns null then).
 */
import { text } from 'node:stream/consumers';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SecretsManagerClient, type SecretsManagerClientConfig } from '@aws-sdk/client-secrets-manager';
import { vi } from 'vitest';

export interface RecordedRequest {
  operation: string;
  /** The parsed JSON body (values included: search it to prove where a value did or did not go). */
  body: Record<string, unknown>;
  raw: string;
  status: number;
  response: unknown;
}

export interface RotationCall {
  secretId: string;
  versionId: string;
  rotateImmediately: boolean;
}

export interface StoredVersion {
  versionId: string;
  stages: string[];
  createdAt: Date;
  /** Undefined for the version RotateSecret creates before the rotation function stores a value. */
  value?: string;
}

export interface StoredSecret {
  name: string;
  arn: string;
  description?: string;
  tags: { Key: string; Value: string }[];
  rotationEnabled: boolean;
  rotationLambdaArn?: string;
  createdAt: Date;
  lastChangedAt: Date;
  lastRotatedAt?: Date;
  /** In creation order. */
  versions: StoredVersion[];
}

export interface FakeSecretsManagerOptions {
  region?: string;
  accountId?: string;
  /** Largest page ListSecrets / ListSecretVersionIds return, whatever MaxResults asks (default 100). */
  pageSize?: number;
  now?: () => Date;
}

const CURRENT = 'AWSCURRENT';
const PREVIOUS = 'AWSPREVIOUS';
const PENDING = 'AWSPENDING';
const MAX_TAGS = 50;
const NAME_PATTERN = /^[a-zA-Z0-9/_+=.@-]{1,512}$/;
const FILTER_VALUE_PATTERN = /^!?[a-zA-Z0-9 :_@/+=.\-!]*$/;
const FILTER_KEYS = new Set(['description', 'name', 'tag-key', 'tag-value', 'primary-region', 'owning-service', 'all']);

/** An AWS error reply: thrown inside an operation, turned into a JSON 1.1 error body. */
class AwsFault extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

const notFound = () => new AwsFault('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
const invalidParameter = (message: string) => new AwsFault('InvalidParameterException', message);
const validation = (message: string) => new AwsFault('ValidationException', message);

interface Failure {
  operation: string;
  type: string;
  status: number;
  message: string;
  times: number;
}

type Input = Record<string, unknown>;

export class FakeSecretsManager {
  readonly requests: RecordedRequest[] = [];
  readonly rotations: RotationCall[] = [];
  now: () => Date;
  readonly #server: Server;
  readonly #region: string;
  readonly #accountId: string;
  readonly #pageSize: number;
  readonly #secrets: StoredSecret[] = [];
  readonly #failures: Failure[] = [];
  readonly #clients: SecretsManagerClient[] = [];
  #rotateHook: ((call: RotationCall) => Promise<void> | void) | undefined;
  #running: Promise<unknown>[] = [];

  private constructor(server: Server, options: FakeSecretsManagerOptions) {
    this.#server = server;
    this.#region = options.region ?? 'us-east-1';
    this.#accountId = options.accountId ?? '123456789012';
    this.#pageSize = Math.min(100, Math.max(1, options.pageSize ?? 100));
    this.now = options.now ?? (() => new Date());
  }

  static async start(options: FakeSecretsManagerOptions = {}): Promise<FakeSecretsManager> {
    let fake: FakeSecretsManager | undefined;
    const server = createServer((req, res) => void fake!.#handle(req, res));
    fake = new FakeSecretsManager(server, options);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get url(): string {
    const { port } = this.#server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  /** A real client pointed at the fake (destroyed by `close`). */
  client(config: Partial<SecretsManagerClientConfig> = {}): SecretsManagerClient {
    const client = new SecretsManagerClient({
      endpoint: this.url,
      region: this.#region,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      ...config,
    });
    this.#clients.push(client);
    return client;
  }

  requestsFor(operation: string): RecordedRequest[] {
    return this.requests.filter((r) => r.operation === operation);
  }

  /** As deploying (true) or cancelling (false) a rotation schedule would; RotateSecret needs it. */
  setRotationEnabled(secretId: string, enabled: boolean): void {
    const secret = this.#find(secretId);
    if (!secret) throw new Error(`fake Secrets Manager: no secret ${secretId}`);
    secret.rotationEnabled = enabled;
    if (enabled) secret.rotationLambdaArn ??= `arn:aws:lambda:${this.#region}:${this.#accountId}:function:rekey-rotate-secret`;
  }

  /** Runs after each RotateSecret has answered, as AWS invokes the rotation Lambda. */
  onRotate(hook: ((call: RotationCall) => Promise<void> | void) | undefined): void {
    this.#rotateHook = hook;
  }

  /** Waits for every onRotate hook started so far; rethrows the first failure. */
  async settled(): Promise<void> {
    const running = this.#running;
    this.#running = [];
    await Promise.all(running);
  }

  /** The next `times` (default 1) calls of `operation` answer with this error instead. */
  fail(operation: string, type: string, options: { status?: number; message?: string; times?: number } = {}): void {
    const serverFault = /InternalServiceError|InternalFailure|ServiceUnavailable/.test(type);
    this.#failures.push({
      operation,
      type,
      status: options.status ?? (serverFault ? 500 : 400),
      message: options.message ?? (type === 'ThrottlingException' ? 'Rate exceeded' : `injected ${type}`),
      times: options.times ?? 1,
    });
  }

  /** A copy of the stored secret, values included (assertions only), or undefined. */
  inspect(secretId: string): StoredSecret | undefined {
    const secret = this.#find(secretId);
    return secret ? structuredClone(secret) : undefined;
  }

  async close(): Promise<void> {
    for (const client of this.#clients) client.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ---- protocol ----

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await text(req);
    const target = String(req.headers['x-amz-target'] ?? '');
    const operation = target.startsWith('secretsmanager.') ? target.slice('secretsmanager.'.length) : target;
    let body: Input = {};
    let status = 200;
    let response: unknown;
    try {
      if (req.method !== 'POST' || !target.startsWith('secretsmanager.')) throw new AwsFault('UnknownOperationException', 'not a Secrets Manager request');
      if (!String(req.headers['content-type'] ?? '').startsWith('application/x-amz-json-1.1')) {
        throw new AwsFault('SerializationException', 'Content-Type must be application/x-amz-json-1.1');
      }
      if (!String(req.headers.authorization ?? '').startsWith('AWS4-HMAC-SHA256 ')) {
        throw new AwsFault('MissingAuthenticationTokenException', 'Missing Authentication Token');
      }
      try {
        body = raw ? (JSON.parse(raw) as Input) : {};
      } catch {
        throw new AwsFault('SerializationException', 'could not parse the request body');
      }
      const failure = this.#failures.find((f) => f.operation === operation);
      if (failure) {
        if (--failure.times <= 0) this.#failures.splice(this.#failures.indexOf(failure), 1);
        throw new AwsFault(failure.type, failure.message, failure.status);
      }
      response = this.#operate(operation, body);
    } catch (error) {
      const fault = error instanceof AwsFault ? error : new AwsFault('InternalServiceError', 'fake Secrets Manager failed', 500);
      status = fault.status;
      response = { __type: fault.type, message: fault.message };
      if (!(error instanceof AwsFault)) console.error('fake Secrets Manager:', error);
    }
    this.requests.push({ operation, body, raw, status, response });
    const headers: Record<string, string> = { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() };
    if (status !== 200) headers['x-amzn-errortype'] = (response as { __type: string }).__type;
    res.writeHead(status, headers);
    res.end(JSON.stringify(response));
    // AWS answers RotateSecret first and invokes the rotation function afterwards.
    if (operation === 'RotateSecret' && status === 200) this.#afterRotate();
  }

  #operate(operation: string, input: Input): unknown {
    switch (operation) {
      case 'CreateSecret':
        return this.#createSecret(input);
      case 'DescribeSecret':
        return this.#describeSecret(input);
      case 'GetSecretValue':
        return this.#getSecretValue(input);
      case 'PutSecretValue':
        return this.#putSecretValue(input);
      case 'UpdateSecretVersionStage':
        return this.#updateSecretVersionStage(input);
      case 'ListSecretVersionIds':
        return this.#listSecretVersionIds(input);
      case 'ListSecrets':
        return this.#listSecrets(input);
      case 'TagResource':
        return this.#tagResource(input);
      case 'UntagResource':
        return this.#untagResource(input);
      case 'RotateSecret':
        return this.#rotateSecret(input);
      case 'CancelRotateSecret':
        return this.#cancelRotateSecret(input);
      default:
        throw new AwsFault('UnknownOperationException', `the fake does not implement ${operation}`);
    }
  }

  // ---- operations ----

  #createSecret(input: Input): unknown {
    const name = requiredString(input, 'Name');
    if (!NAME_PATTERN.test(name)) throw validation("Value at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9/_+=.@-]+$");
    const token = optionalToken(input) ?? randomUUID();
    const value = optionalString(input, 'SecretString');
    const existing = this.#find(name);
    if (existing) {
      // Idempotent retry: same token, same value.
      const same = existing.versions.find((v) => v.versionId === token);
      if (same && same.value === value) return { ARN: existing.arn, Name: existing.name, VersionId: token };
      throw new AwsFault('ResourceExistsException', `The operation failed because the secret ${name} already exists.`);
    }
    const tags = parseTags(input.Tags);
    const at = this.now();
    const secret: StoredSecret = {
      name,
      arn: `arn:aws:secretsmanager:${this.#region}:${this.#accountId}:secret:${name}-${randomSuffix()}`,
      ...(typeof input.Description === 'string' ? { description: input.Description } : {}),
      tags,
      rotationEnabled: false,
      createdAt: at,
      lastChangedAt: at,
      versions: value === undefined ? [] : [{ versionId: token, stages: [CURRENT], createdAt: at, value }],
    };
    this.#secrets.push(secret);
    return { ARN: secret.arn, Name: secret.name, ...(value === undefined ? {} : { VersionId: token }) };
  }

  #describeSecret(input: Input): unknown {
    const secret = this.#secret(input);
    return {
      ...this.#summary(secret),
      VersionIdsToStages: stagesMap(secret),
    };
  }

  #getSecretValue(input: Input): unknown {
    const secret = this.#secret(input);
    const versionId = optionalVersionId(input, 'VersionId');
    const stage = optionalString(input, 'VersionStage');
    let version: StoredVersion | undefined;
    if (versionId !== undefined) {
      version = secret.versions.find((v) => v.versionId === versionId);
      if (!version) throw new AwsFault('ResourceNotFoundException', `Secrets Manager can't find the specified secret value for VersionId: ${versionId}`);
      if (stage !== undefined && !version.stages.includes(stage)) {
        throw new AwsFault('InvalidRequestException', 'You provided a VersionStage that is not associated to the provided VersionId.');
      }
    } else {
      const label = stage ?? CURRENT;
      version = holderOf(secret, label);
      if (!version) throw new AwsFault('ResourceNotFoundException', `Secrets Manager can't find the specified secret value for staging label: ${label}`);
    }
    if (version.value === undefined) {
      const what = versionId !== undefined ? `VersionId: ${version.versionId}` : `staging label: ${stage ?? CURRENT}`;
      throw new AwsFault('ResourceNotFoundException', `Secrets Manager can't find the specified secret value for ${what}`);
    }
    return {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: version.versionId,
      SecretString: version.value,
      VersionStages: [...version.stages],
      CreatedDate: epochSeconds(version.createdAt),
    };
  }

  #putSecretValue(input: Input): unknown {
    const secret = this.#secret(input);
    const value = optionalString(input, 'SecretString');
    if (value === undefined) throw invalidParameter('You must provide either SecretString or SecretBinary.');
    const token = optionalToken(input) ?? randomUUID();
    let stages = [CURRENT];
    if (input.VersionStages !== undefined) {
      if (!Array.isArray(input.VersionStages) || input.VersionStages.length < 1 || input.VersionStages.length > 20 || !input.VersionStages.every(isStage)) {
        throw validation("Value at 'versionStages' failed to satisfy constraint: Member must have length between 1 and 20");
      }
      stages = input.VersionStages as string[];
    }
    let version = secret.versions.find((v) => v.versionId === token);
    if (version?.value !== undefined) {
      if (version.value !== value) {
        throw new AwsFault('ResourceExistsException', `You can't use ClientRequestToken ${token} because that value is already in use for a version of secret ${secret.arn}.`);
      }
      // The same request again: AWS ignores it, labels included.
      return { ARN: secret.arn, Name: secret.name, VersionId: token, VersionStages: [...version.stages] };
    }
    if (secret.versions.length === 0 && !stages.includes(CURRENT)) stages = [...stages, CURRENT];
    if (!version) {
      version = { versionId: token, stages: [], createdAt: this.now() };
      secret.versions.push(version);
    }
    version.value = value;
    for (const stage of stages) this.#attach(secret, version, stage, false);
    secret.lastChangedAt = this.now();
    return { ARN: secret.arn, Name: secret.name, VersionId: token, VersionStages: [...version.stages] };
  }

  #updateSecretVersionStage(input: Input): unknown {
    const secret = this.#secret(input);
    const stage = requiredString(input, 'VersionStage');
    if (!isStage(stage)) throw validation("Value at 'versionStage' failed to satisfy constraint: Member must have length between 1 and 256");
    const removeFrom = optionalVersionId(input, 'RemoveFromVersionId');
    const moveTo = optionalVersionId(input, 'MoveToVersionId');
    if (removeFrom === undefined && moveTo === undefined) throw invalidParameter('You must specify MoveToVersionId, RemoveFromVersionId or both.');
    const versionOf = (id: string) => {
      const version = secret.versions.find((v) => v.versionId === id);
      if (!version) throw invalidParameter(`Not a valid version: ${id}`);
      return version;
    };
    const target = moveTo === undefined ? undefined : versionOf(moveTo);
    const source = removeFrom === undefined ? undefined : versionOf(removeFrom);
    const holder = holderOf(secret, stage);
    if (source && !source.stages.includes(stage)) {
      throw invalidParameter(`The staging label ${stage} is not attached to version ${source.versionId}, so you can't remove it from that version.`);
    }
    if (target) {
      if (holder && holder !== target && holder !== source) {
        throw invalidParameter(
          `The parameter RemoveFromVersionId can't be empty. Staging label ${stage} is currently attached to version ${holder.versionId}, so you must explicitly reference that version in RemoveFromVersionId.`,
        );
      }
      this.#attach(secret, target, stage, true);
    } else if (source) {
      if (stage === CURRENT) throw invalidParameter(`You can't remove the staging label ${CURRENT} from a version without moving it to another version.`);
      source.stages = source.stages.filter((s) => s !== stage);
    }
    secret.lastChangedAt = this.now();
    return { ARN: secret.arn, Name: secret.name };
  }

  #listSecretVersionIds(input: Input): unknown {
    const secret = this.#secret(input);
    const includeDeprecated = input.IncludeDeprecated === true;
    const versions = secret.versions.filter((v) => includeDeprecated || v.stages.length > 0);
    const { page, nextToken } = this.#page(versions, input);
    return {
      ARN: secret.arn,
      Name: secret.name,
      Versions: page.map((v) => ({ VersionId: v.versionId, VersionStages: [...v.stages], CreatedDate: epochSeconds(v.createdAt) })),
      ...(nextToken ? { NextToken: nextToken } : {}),
    };
  }

  #listSecrets(input: Input): unknown {
    const filters = parseFilters(input.Filters);
    const sorted = [...this.#secrets].sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
    if (input.SortOrder === 'desc') sorted.reverse();
    const matching = sorted.filter((secret) => filters.every((filter) => matchesFilter(secret, filter)));
    const { page, nextToken } = this.#page(matching, input);
    return {
      SecretList: page.map((secret) => ({ ...this.#summary(secret), SecretVersionsToStages: stagesMap(secret) })),
      ...(nextToken ? { NextToken: nextToken } : {}),
    };
  }

  #tagResource(input: Input): unknown {
    const secret = this.#secret(input);
    const merged = new Map(secret.tags.map((t) => [t.Key, t.Value]));
    for (const tag of parseTags(input.Tags)) merged.set(tag.Key, tag.Value);
    if (merged.size > MAX_TAGS) throw validation(`A secret can have at most ${MAX_TAGS} tags.`);
    secret.tags = [...merged].map(([Key, Value]) => ({ Key, Value }));
    return {};
  }

  #untagResource(input: Input): unknown {
    const secret = this.#secret(input);
    if (!Array.isArray(input.TagKeys) || !input.TagKeys.every((k) => typeof k === 'string')) throw validation("Value at 'tagKeys' must be a list of strings");
    const keys = new Set(input.TagKeys as string[]);
    secret.tags = secret.tags.filter((t) => !keys.has(t.Key));
    return {};
  }

  #rotateSecret(input: Input): unknown {
    const secret = this.#secret(input);
    const pending = holderOf(secret, PENDING);
    if (pending && !pending.stages.includes(CURRENT)) {
      throw new AwsFault('InvalidRequestException', "A previous rotation isn't complete. That rotation will be reattempted.");
    }
    if (typeof input.RotationLambdaARN === 'string') secret.rotationLambdaArn = input.RotationLambdaARN;
    if (!secret.rotationLambdaArn) {
      throw new AwsFault(
        'InvalidRequestException',
        "You tried to enable rotation on a secret that doesn't already have a Lambda function ARN configured and you didn't include such an ARN as a parameter in this call.",
      );
    }
    if (!holderOf(secret, CURRENT)) throw new AwsFault('InvalidRequestException', 'The secret has no AWSCURRENT version to rotate.');
    const token = optionalToken(input) ?? randomUUID();
    let version = secret.versions.find((v) => v.versionId === token);
    if (version && !version.stages.includes(PENDING)) {
      throw new AwsFault('ResourceExistsException', `You can't use ClientRequestToken ${token} because that value is already in use for a version of secret ${secret.arn}.`);
    }
    if (!version) {
      version = { versionId: token, stages: [], createdAt: this.now() };
      secret.versions.push(version);
      this.#attach(secret, version, PENDING, false);
    }
    secret.rotationEnabled = true;
    this.rotations.push({ secretId: secret.arn, versionId: token, rotateImmediately: input.RotateImmediately !== false });
    return { ARN: secret.arn, Name: secret.name, VersionId: token };
  }

  #cancelRotateSecret(input: Input): unknown {
    const secret = this.#secret(input);
    secret.rotationEnabled = false;
    // AWS leaves the labels of a cancelled rotation as they are (AWSPENDING included).
    return { ARN: secret.arn, Name: secret.name };
  }

  #afterRotate(): void {
    const call = this.rotations.at(-1);
    const hook = this.#rotateHook;
    if (!call || !hook) return;
    const run = Promise.resolve().then(() => hook({ ...call }));
    run.catch(() => {}); // reported by settled(), not as an unhandled rejection
    this.#running.push(run);
  }

  // ---- state ----

  /**
   * Puts `stage` on `version`, taking it from whichever version had it. Moving AWSCURRENT moves
   * AWSPREVIOUS to the version it left; `rotation` marks the finishSecret-style move.
   */
  #attach(secret: StoredSecret, version: StoredVersion, stage: string, rotation: boolean): void {
    const holder = holderOf(secret, stage);
    if (holder === version) return;
    if (holder) holder.stages = holder.stages.filter((s) => s !== stage);
    version.stages.push(stage);
    if (stage === CURRENT && holder) {
      for (const v of secret.versions) v.stages = v.stages.filter((s) => s !== PREVIOUS);
      holder.stages.push(PREVIOUS);
      if (rotation) secret.lastRotatedAt = this.now();
    }
  }

  #find(secretId: string): StoredSecret | undefined {
    return this.#secrets.find(
      (s) => s.name === secretId || s.arn === secretId || (secretId.startsWith('arn:') && s.arn.slice(0, -7) === secretId),
    );
  }

  #secret(input: Input): StoredSecret {
    const secret = this.#find(requiredString(input, 'SecretId'));
    if (!secret) throw notFound();
    return secret;
  }

  #summary(secret: StoredSecret): Record<string, unknown> {
    return {
      ARN: secret.arn,
      Name: secret.name,
      ...(secret.description !== undefined ? { Description: secret.description } : {}),
      RotationEnabled: secret.rotationEnabled,
      ...(secret.rotationLambdaArn ? { RotationLambdaARN: secret.rotationLambdaArn } : {}),
      ...(secret.rotationEnabled && secret.lastRotatedAt ? { LastRotatedDate: epochSeconds(secret.lastRotatedAt) } : {}),
      LastChangedDate: epochSeconds(secret.lastChangedAt),
      CreatedDate: epochSeconds(secret.createdAt),
      ...(secret.tags.length ? { Tags: secret.tags.map((t) => ({ ...t })) } : {}),
    };
  }

  #page<T>(items: T[], input: Input): { page: T[]; nextToken?: string } {
    const max = input.MaxResults;
    if (max !== undefined && (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > 100)) {
      throw validation("Value at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 100");
    }
    let start = 0;
    if (input.NextToken !== undefined) {
      const decoded = typeof input.NextToken === 'string' ? /^offset:(\d+)$/.exec(Buffer.from(input.NextToken, 'base64').toString('utf8')) : null;
      if (!decoded) throw new AwsFault('InvalidNextTokenException', 'The NextToken value is invalid.');
      start = Number(decoded[1]);
    }
    const size = Math.min(typeof max === 'number' ? max : 100, this.#pageSize);
    const end = start + size;
    return { page: items.slice(start, end), ...(end < items.length ? { nextToken: Buffer.from(`offset:${end}`).toString('base64') } : {}) };
  }
}

export const startFakeSecretsManager = (options?: FakeSecretsManagerOptions): Promise<FakeSecretsManager> => FakeSecretsManager.start(options);

// ---- input parsing and matching ----

function requiredString(input: Input, member: string): string {
  const value = input[member];
  if (typeof value !== 'string' || value === '') throw validation(`Value at '${lowerFirst(member)}' failed to satisfy constraint: Member must not be null`);
  return value;
}

function optionalString(input: Input, member: string): string | undefined {
  const value = input[member];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new AwsFault('SerializationException', `${member} must be a string`);
  return value;
}

/** ClientRequestToken and VersionId are 32–64 characters on AWS. */
function optionalVersionId(input: Input, member: string): string | undefined {
  const value = optionalString(input, member);
  if (value !== undefined && (value.length < 32 || value.length > 64)) {
    throw validation(`Value at '${lowerFirst(member)}' failed to satisfy constraint: Member must have length between 32 and 64`);
  }
  return value;
}

const optionalToken = (input: Input) => optionalVersionId(input, 'ClientRequestToken');

function isStage(value: unknown): value is string {
  return typeof value === 'string' && value.length >= 1 && value.length <= 256;
}

function parseTags(value: unknown): { Key: string; Value: string }[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw validation("Value at 'tags' must be a list");
  const tags = new Map<string, string>();
  for (const tag of value as { Key?: unknown; Value?: unknown }[]) {
    if (typeof tag?.Key !== 'string' || tag.Key.length < 1 || tag.Key.length > 128) throw validation('Tag keys must be 1 to 128 characters');
    if (tag.Key.startsWith('aws:')) throw invalidParameter('Tag keys starting with aws: are reserved.');
    const tagValue = tag.Value ?? '';
    if (typeof tagValue !== 'string' || tagValue.length > 256) throw validation('Tag values must be at most 256 characters');
    tags.set(tag.Key, tagValue);
  }
  if (tags.size > MAX_TAGS) throw validation(`A secret can have at most ${MAX_TAGS} tags.`);
  return [...tags].map(([Key, Value]) => ({ Key, Value }));
}

interface ParsedFilter {
  key: string;
  values: string[];
}

function parseFilters(value: unknown): ParsedFilter[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > 10) throw validation("Value at 'filters' must be a list of at most 10 filters");
  return (value as { Key?: unknown; Values?: unknown }[]).map((filter) => {
    if (typeof filter?.Key !== 'string' || !FILTER_KEYS.has(filter.Key)) {
      throw validation(`Value at 'filters.key' failed to satisfy constraint: Member must satisfy enum value set: [${[...FILTER_KEYS].join(', ')}]`);
    }
    const values = filter.Values;
    if (!Array.isArray(values) || values.length < 1 || values.length > 10) throw validation("Value at 'filters.values' must have 1 to 10 members");
    for (const v of values) {
      if (typeof v !== 'string' || v.length > 512 || !FILTER_VALUE_PATTERN.test(v)) {
        throw validation("Value at 'filters.values' failed to satisfy constraint: Member must satisfy regular expression pattern: ^\\!?[a-zA-Z0-9 :_@\\/\\+\\=\\.\\-\\!]*$");
      }
    }
    return { key: filter.Key, values: values as string[] };
  });
}

/** Values within a filter are OR'd; a `!value` must not match; each is a prefix match. */
function matchesFilter(secret: StoredSecret, filter: ParsedFilter): boolean {
  const candidates = (): string[] => {
    switch (filter.key) {
      case 'name':
        return [secret.name];
      case 'description':
        return [(secret.description ?? '').toLowerCase()];
      case 'tag-key':
        return secret.tags.map((t) => t.Key);
      case 'tag-value':
        return secret.tags.map((t) => t.Value);
      case 'all':
        return [secret.name, secret.description ?? '', ...secret.tags.flatMap((t) => [t.Key, t.Value])].map((s) => s.toLowerCase());
      default:
        return []; // primary-region, owning-service: nothing here is replicated or service-owned
    }
  };
  const fold = (v: string) => (filter.key === 'description' || filter.key === 'all' ? v.toLowerCase() : v);
  const positive = filter.values.filter((v) => !v.startsWith('!')).map(fold);
  const negative = filter.values.filter((v) => v.startsWith('!')).map((v) => fold(v.slice(1)));
  const seen = candidates();
  const has = (prefix: string) => seen.some((c) => (filter.key === 'all' ? c.includes(prefix) : c.startsWith(prefix)));
  return (positive.length === 0 || positive.some(has)) && !negative.some(has);
}

function holderOf(secret: StoredSecret, stage: string): StoredVersion | undefined {
  return secret.versions.find((v) => v.stages.includes(stage));
}

/** Labelled versions only: a version without labels is "deprecated" and AWS stops listing it. */
function stagesMap(secret: StoredSecret): Record<string, string[]> {
  return Object.fromEntries(secret.versions.filter((v) => v.stages.length > 0).map((v) => [v.versionId, [...v.stages]]));
}

const epochSeconds = (date: Date) => date.getTime() / 1000;
const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);

function randomSuffix(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  return Array.from({ length: 6 }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join('');
}

/**
 * What a Lambda's environment provides, pointed at the fake: the SDK finds it like any AWS
 * endpoint (AWS_ENDPOINT_URL_SECRETS_MANAGER), with static credentials and one attempt per call, so
 * a failure injected once (`fail`) reaches the code under test rather than the SDK's retry loop.
 * Undone by `vi.unstubAllEnvs()`.
 */
export function stubLambdaEnvFor(sm: { url: string }): void {
  vi.stubEnv('AWS_ENDPOINT_URL_SECRETS_MANAGER', sm.url);
  vi.stubEnv('AWS_ACCESS_KEY_ID', 'test');
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'test');
  vi.stubEnv('AWS_SESSION_TOKEN', undefined);
  vi.stubEnv('AWS_PROFILE', undefined);
  vi.stubEnv('AWS_MAX_ATTEMPTS', '1');
}

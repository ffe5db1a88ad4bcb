import { randomUUID } from 'node:crypto';
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretVersionIdsCommand,
  ListSecretsCommand,
  PutSecretValueCommand,
  TagResourceCommand,
  UpdateSecretVersionStageCommand,
  type Filter,
  type SecretsManagerClient,
  type Tag,
} from '@aws-sdk/client-secrets-manager';
import { mapLimit } from '#core/concurrency.ts';
import { ConflictError, NotFoundError, RekeyError, ValidationError } from '#core/errors.ts';
import { redactCause } from '#core/redact.ts';
import { Sealed } from '#core/sealed.ts';
import { STAGE, type SecretDescription, type SecretStore, type SecretVersion, type SecretVersionInfo } from '#core/ports/secret-store.ts';

/** ClientRequestToken and VersionId are 32–64 characters in Secrets Manager (a UUID is 36). */
const VERSION_ID = /^.{32,64}$/s;
/** What a ListSecrets filter value may contain; other tags are matched after listing. */
const FILTER_VALUE = /^[a-zA-Z0-9 :_@/+=.-]{1,512}$/;
/** Labels sort newest-first ties this way (versions made within one clock tick). */
const STAGE_ORDER = [STAGE.pending, STAGE.current, STAGE.previous];
const LIST_PAGE = 100;

/** Names a service error as retryable: throttling, server faults, and the network in between. */
const RETRYABLE_NAMES = new Set([
  'ThrottlingException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'InternalServiceError',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
]);
const RETRYABLE_NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOTFOUND']);

type Operation =
  | 'CreateSecret'
  | 'DescribeSecret'
  | 'GetSecretValue'
  | 'PutSecretValue'
  | 'UpdateSecretVersionStage'
  | 'ListSecretVersionIds'
  | 'ListSecrets'
  | 'TagResource';

interface CallContext {
  operation: Operation;
  secretId: string;
  /** Which part of the secret the call is about, for messages: "version …", "stage …". */
  subject?: string;
  /** Values this call sent: scrubbed from the kept cause. */
  values?: Sealed<string>[];
  /** Exceptions that mean a conflict for this operation (a label held elsewhere, a token reused). */
  conflictNames?: string[];
  /** Exceptions that mean "not there" for this operation, besides ResourceNotFoundException. */
  notFoundNames?: string[];
}

/**
 * The SecretStore port on AWS Secrets Manager, through an injected SecretsManagerClient (built once
 * per Lambda container in runtime/services.ts). Versions are keyed by the ClientRequestToken, so
 * every write is idempotent the way AWS's rotation protocol expects. Errors are rebuilt from
 * identifiers: the SDK's own message (which may quote request data) is kept only as a redacted
 * cause. Rotation itself is started elsewhere (adapters/triggers/secrets-manager.ts), and there is
 * no `setRotationEnabled`: on AWS, RotationEnabled follows the rotation schedule the stack deploys.
 */
export class AwsSecretsManagerStore implements SecretStore {
  readonly kind = 'aws';
  readonly #client: SecretsManagerClient;
  readonly #listConcurrency: number;

  constructor(options: { client: SecretsManagerClient; listConcurrency?: number }) {
    this.#client = options.client;
    // ListSecrets has no per-version dates: one ListSecretVersionIds per secret, a few at a time.
    this.#listConcurrency = options.listConcurrency ?? 4;
  }

  async createSecret(
    secretId: string,
    value: Sealed<string>,
    options: { versionId?: string; tags?: Record<string, string>; description?: string } = {},
  ): Promise<{ versionId: string }> {
    const versionId = options.versionId ?? randomUUID();
    requireWritableVersionId(secretId, versionId);
    const out = await this.#call({ operation: 'CreateSecret', secretId, values: [value] }, () =>
      this.#client.send(
        new CreateSecretCommand({
          Name: secretId,
          ClientRequestToken: versionId,
          SecretString: value.reveal(),
          ...(options.description ? { Description: options.description } : {}),
          ...(options.tags && Object.keys(options.tags).length ? { Tags: toTags(options.tags) } : {}),
        }),
      ),
    );
    return { versionId: out.VersionId ?? versionId };
  }

  async putSecretValue(secretId: string, versionId: string, value: Sealed<string>, stages: string[]): Promise<void> {
    requireWritableVersionId(secretId, versionId);
    // Without VersionStages AWS would move AWSCURRENT: the caller always says where the value goes.
    if (stages.length === 0) throw new ValidationError(`putSecretValue for ${secretId} needs at least one staging label`);
    // A replay (same id, same value) changes nothing, labels included, as AWS does: a late replay
    // must not put AWSPENDING back on a version that has been promoted since.
    await this.#call(
      { operation: 'PutSecretValue', secretId, subject: `version ${versionId}`, values: [value], conflictNames: ['ResourceExistsException', 'InvalidRequestException'] },
      () => this.#client.send(new PutSecretValueCommand({ SecretId: secretId, ClientRequestToken: versionId, SecretString: value.reveal(), VersionStages: stages })),
    );
  }

  async getSecretValue(secretId: string, selector: { versionId?: string; stage?: string } = {}): Promise<SecretVersion> {
    const { versionId, stage } = selector;
    const subject = describeSelector(selector);
    // An id Secrets Manager could never have issued is simply not there (AWS would say ValidationException).
    if (versionId !== undefined && !VERSION_ID.test(versionId)) throw new NotFoundError(`secret ${secretId} has no ${subject}`);
    const out = await this.#call(
      {
        operation: 'GetSecretValue',
        secretId,
        subject,
        // With both selectors AWS answers a mismatch with InvalidRequestException: for the port, not found.
        ...(versionId !== undefined && stage !== undefined ? { notFoundNames: ['InvalidRequestException'] } : {}),
      },
      () =>
        this.#client.send(
          new GetSecretValueCommand({
            SecretId: secretId,
            ...(versionId !== undefined ? { VersionId: versionId } : {}),
            ...(stage !== undefined || versionId === undefined ? { VersionStage: stage ?? STAGE.current } : {}),
          }),
        ),
    );
    const stages = out.VersionStages ?? [];
    if (!out.VersionId || (stage !== undefined && !stages.includes(stage))) throw new NotFoundError(`secret ${secretId} has no ${subject}`);
    if (out.SecretString === undefined) {
      throw new RekeyError('SECRET_NOT_STRING', `${subject} of secret ${secretId} holds binary data; rekey stores JSON strings`);
    }
    return { versionId: out.VersionId, stages, createdAt: out.CreatedDate ?? new Date(0), value: new Sealed(out.SecretString) };
  }

  async updateVersionStage(secretId: string, stage: string, move: { moveToVersionId?: string; removeFromVersionId?: string }): Promise<void> {
    const { moveToVersionId, removeFromVersionId } = move;
    if (moveToVersionId === undefined && removeFromVersionId === undefined) {
      throw new ValidationError(`updateVersionStage of ${stage} on ${secretId} needs moveToVersionId or removeFromVersionId`);
    }
    for (const id of [moveToVersionId, removeFromVersionId]) {
      if (id !== undefined && !VERSION_ID.test(id)) throw new NotFoundError(`secret ${secretId} has no version ${id}`);
    }
    const subject = `stage ${stage}`;
    try {
      await this.#call(
        { operation: 'UpdateSecretVersionStage', secretId, subject, conflictNames: ['InvalidParameterException', 'InvalidRequestException'] },
        () =>
          this.#client.send(
            new UpdateSecretVersionStageCommand({
              SecretId: secretId,
              VersionStage: stage,
              ...(moveToVersionId !== undefined ? { MoveToVersionId: moveToVersionId } : {}),
              ...(removeFromVersionId !== undefined ? { RemoveFromVersionId: removeFromVersionId } : {}),
            }),
          ),
      );
    } catch (error) {
      // AWS refuses an unknown version and a label held elsewhere with the same exception: tell them apart.
      if (error instanceof ConflictError) {
        const known = new Set((await this.#versionDates(secretId)).keys());
        const unknown = [moveToVersionId, removeFromVersionId].find((id) => id !== undefined && !known.has(id));
        if (unknown) throw new NotFoundError(`secret ${secretId} has no version ${unknown}`);
      }
      throw error;
    }
  }

  async describeSecret(secretId: string): Promise<SecretDescription> {
    const out = await this.#call({ operation: 'DescribeSecret', secretId }, () => this.#client.send(new DescribeSecretCommand({ SecretId: secretId })));
    // Listed after DescribeSecret, deprecated versions included, so every labelled version has a date.
    const dates = await this.#versionDates(out.ARN ?? secretId, secretId);
    return toDescription(secretId, out, out.VersionIdsToStages ?? {}, dates);
  }

  async listSecrets(filter: { tags?: Record<string, string> } = {}): Promise<SecretDescription[]> {
    const wanted = Object.entries(filter.tags ?? {});
    const entries = [];
    let nextToken: string | undefined;
    do {
      const page = await this.#call({ operation: 'ListSecrets', secretId: '(list)' }, () =>
        this.#client.send(new ListSecretsCommand({ Filters: serverFilters(wanted), MaxResults: LIST_PAGE, ...(nextToken ? { NextToken: nextToken } : {}) })),
      );
      entries.push(...(page.SecretList ?? []));
      nextToken = page.NextToken;
    } while (nextToken);
    // tag-key and tag-value filters are prefix matches on any tag, independently: match exactly here.
    const matching = entries.filter((entry) => {
      const tags = fromTags(entry.Tags);
      return entry.Name !== undefined && wanted.every(([key, value]) => tags[key] === value);
    });
    const described = await mapLimit(matching, this.#listConcurrency, async (entry) => {
      const name = entry.Name!;
      const stages = entry.SecretVersionsToStages ?? {};
      const dates = Object.keys(stages).length ? await this.#versionDates(entry.ARN ?? name, name) : new Map<string, Date>();
      return toDescription(name, entry, stages, dates);
    });
    return described.sort((a, b) => (a.secretId < b.secretId ? -1 : a.secretId > b.secretId ? 1 : 0));
  }

  async tagSecret(secretId: string, tags: Record<string, string>): Promise<void> {
    if (Object.keys(tags).length === 0) return;
    await this.#call({ operation: 'TagResource', secretId }, () => this.#client.send(new TagResourceCommand({ SecretId: secretId, Tags: toTags(tags) })));
  }

  /** Creation date of every version, unlabelled ones included (ListSecretVersionIds, paginated). */
  async #versionDates(secretId: string, displayId = secretId): Promise<Map<string, Date>> {
    const dates = new Map<string, Date>();
    let nextToken: string | undefined;
    do {
      const page = await this.#call({ operation: 'ListSecretVersionIds', secretId: displayId }, () =>
        this.#client.send(
          new ListSecretVersionIdsCommand({ SecretId: secretId, IncludeDeprecated: true, MaxResults: LIST_PAGE, ...(nextToken ? { NextToken: nextToken } : {}) }),
        ),
      );
      for (const version of page.Versions ?? []) {
        if (version.VersionId && version.CreatedDate) dates.set(version.VersionId, version.CreatedDate);
      }
      nextToken = page.NextToken;
    } while (nextToken);
    return dates;
  }

  /** One SDK call, its failure rebuilt as a RekeyError from identifiers only. */
  async #call<T>(context: CallContext, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (error) {
      throw translateError(error, context);
    }
  }
}

function translateError(error: unknown, context: CallContext): RekeyError {
  if (error instanceof RekeyError) return error;
  const { operation, secretId, subject } = context;
  const name = errorName(error);
  const cause = redactCause(error, (context.values ?? []).flatMap(sensitiveStrings));
  const about = subject ? `${subject} of secret ${secretId}` : `secret ${secretId}`;
  if (name === 'ResourceNotFoundException' || context.notFoundNames?.includes(name)) {
    return new NotFoundError(subject ? `secret ${secretId} has no ${subject} (${operation})` : `secret ${secretId} not found (${operation})`);
  }
  if (name === 'ResourceExistsException' && operation === 'CreateSecret') {
    return withCause(new ConflictError(`secret ${secretId} already exists`), cause);
  }
  if ((context.conflictNames ?? ['ResourceExistsException']).includes(name)) {
    const why =
      operation === 'PutSecretValue'
        ? `${subject} of secret ${secretId} already holds a different value`
        : operation === 'UpdateSecretVersionStage'
          ? `Secrets Manager refused to move ${about}: the label is held by another version than the one named`
          : `Secrets Manager refused ${operation} on ${about}`;
    return withCause(new ConflictError(why), cause);
  }
  if (isRetryable(error, name)) {
    return new RekeyError('SECRETS_MANAGER_UNAVAILABLE', `Secrets Manager ${operation} on ${about} failed (${name}); try again`, { retryable: true, cause });
  }
  return new RekeyError('SECRETS_MANAGER_FAILED', `Secrets Manager ${operation} on ${about} failed (${name})`, { cause });
}

/** A value and, when it is JSON, each string in it: a service message could quote a field alone. */
function sensitiveStrings(value: Sealed<string>): string[] {
  const text = value.reveal();
  const strings = [text];
  try {
    const walk = (node: unknown): void => {
      if (typeof node === 'string') strings.push(node);
      else if (node && typeof node === 'object') Object.values(node).forEach(walk);
    };
    walk(JSON.parse(text));
  } catch {
    // not JSON: the whole value is all there is to scrub
  }
  return strings;
}

function withCause<E extends RekeyError>(error: E, cause: unknown): E {
  Object.defineProperty(error, 'cause', { value: cause, enumerable: false, writable: true, configurable: true });
  return error;
}

function errorName(error: unknown): string {
  const name = (error as { name?: unknown })?.name;
  return typeof name === 'string' && /^[A-Za-z][\w.]{0,80}$/.test(name) ? name : 'Error';
}

function isRetryable(error: unknown, name: string): boolean {
  const e = error as { $fault?: unknown; $retryable?: unknown; $metadata?: { httpStatusCode?: number }; code?: unknown };
  if (RETRYABLE_NAMES.has(name) || e.$retryable) return true;
  if (e.$fault === 'server' || (e.$metadata?.httpStatusCode ?? 0) >= 500) return true;
  return typeof e.code === 'string' && RETRYABLE_NETWORK_CODES.has(e.code);
}

function requireWritableVersionId(secretId: string, versionId: string): void {
  if (!VERSION_ID.test(versionId)) {
    throw new ValidationError(`version id for ${secretId} must be 32 to 64 characters (Secrets Manager's ClientRequestToken)`);
  }
}

function describeSelector(selector: { versionId?: string; stage?: string }): string {
  if (selector.versionId !== undefined && selector.stage !== undefined) return `version ${selector.versionId} labelled ${selector.stage}`;
  if (selector.versionId !== undefined) return `version ${selector.versionId}`;
  return `version labelled ${selector.stage ?? STAGE.current}`;
}

/** Narrow the listing server-side by one tag that fits a filter; the rest is matched exactly. */
function serverFilters(wanted: [string, string][]): Filter[] | undefined {
  const usable = wanted.find(([key, value]) => FILTER_VALUE.test(key) && FILTER_VALUE.test(value));
  if (!usable) return undefined;
  return [
    { Key: 'tag-key', Values: [usable[0]] },
    { Key: 'tag-value', Values: [usable[1]] },
  ];
}

const toTags = (tags: Record<string, string>): Tag[] => Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));

function fromTags(tags: Tag[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const tag of tags ?? []) if (tag.Key !== undefined) out[tag.Key] = tag.Value ?? '';
  return out;
}

function toDescription(
  secretId: string,
  meta: { Tags?: Tag[]; RotationEnabled?: boolean; LastRotatedDate?: Date; CreatedDate?: Date },
  stagesByVersion: Record<string, string[]>,
  dates: Map<string, Date>,
): SecretDescription {
  const createdAt = meta.CreatedDate ?? new Date(0);
  const versions: SecretVersionInfo[] = Object.entries(stagesByVersion)
    .filter(([, stages]) => stages.length > 0)
    // The listing ran after DescribeSecret and includes deprecated versions, so every labelled
    // version is in it; should one still be missing, the secret's creation date stands in.
    .map(([versionId, stages]) => ({ versionId, stages: [...stages], createdAt: dates.get(versionId) ?? createdAt }));
  versions.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || stageRank(a.stages) - stageRank(b.stages));
  return {
    secretId,
    createdAt,
    tags: fromTags(meta.Tags),
    rotationEnabled: meta.RotationEnabled ?? false,
    ...(meta.LastRotatedDate ? { lastRotatedAt: meta.LastRotatedDate } : {}),
    versions,
  };
}

function stageRank(stages: string[]): number {
  const ranks = stages.map((s) => STAGE_ORDER.indexOf(s as (typeof STAGE_ORDER)[number])).filter((r) => r >= 0);
  return ranks.length ? Math.min(...ranks) : STAGE_ORDER.length;
}

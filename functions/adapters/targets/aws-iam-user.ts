import {
  CreateAccessKeyCommand,
  DeleteAccessKeyCommand,
  GetAccessKeyLastUsedCommand,
  ListAccessKeysCommand,
  UpdateAccessKeyCommand,
  type AccessKeyMetadata,
  type IAMClient,
} from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import * as z from 'zod/mini';
import { ConflictError, NotFoundError, RekeyError, TargetError, ValidationError, logsIn } from '#core/errors.ts';
import type { ApplyOptions, CredentialKind, CredentialSummary, KindContext, RevokeMode, RevokeOutcome, SensitiveForm } from '#core/ports/credential-kind.ts';
import { redactCause } from '#core/redact.ts';
import { Sealed } from '#core/sealed.ts';
import { parseSecretJson } from '#core/secret.ts';
import { awsAccessKeyIdsIn } from './leak-identifiers.ts';

export const AWS_IAM_USER_ENGINE = 'aws-iam-user';

/** IAM's own limits: user names `[\w+=,.@-]{1,64}`, access key ids 16–128 upper-case alphanumerics. */
const USER_NAME = /^[\w+=,.@-]{1,64}$/;
const ACCESS_KEY_ID = /^[A-Z0-9]{16,128}$/;

const valueSchema = z.looseObject({
  engine: z.literal(AWS_IAM_USER_ENGINE),
  userName: z.string().check(z.regex(USER_NAME)),
  accessKeyId: z.string().check(z.regex(ACCESS_KEY_ID)),
  secretAccessKey: z.string().check(z.minLength(16), z.maxLength(256)),
});

/** An IAM user's access key as stored (`{engine, userName, accessKeyId, secretAccessKey, …}`). */
export interface IamUserKey {
  userName: string;
  accessKeyId: string;
  secretAccessKey: Sealed<string>;
}

/** STS refusing the signature or the key: the credential does not work (or not yet: IAM converges). */
const REFUSED = new Set(['InvalidClientTokenId', 'SignatureDoesNotMatch', 'UnrecognizedClientException', 'ExpiredToken', 'AuthFailure', 'InvalidAccessKeyId']);
/** Worth another try: throttling, AWS-side faults and the network. */
const TRANSIENT_NAMES = new Set(['Throttling', 'ThrottlingException', 'TooManyRequestsException', 'RequestLimitExceeded', 'ServiceUnavailable', 'ServiceUnavailableException', 'InternalFailure', 'InternalError', 'ServiceFailure', 'ServiceFailureException', 'TimeoutError', 'RequestTimeout', 'RequestTimeoutException']);
const TRANSIENT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);

export interface AwsIamUserKindOptions {
  /** rekey's own IAM client (its role's credentials): lists, creates, deactivates and deletes keys. */
  iam: IAMClient;
  /** Region for STS GetCallerIdentity (default us-east-1; the regional endpoint answers the same). */
  region?: string;
  /** Builds the STS client that signs with the key being checked (tests: the same class, mocked). */
  stsFor?: (credentials: { accessKeyId: string; secretAccessKey: string }) => STSClient;
}

/**
 * AWS IAM user access keys, in IAM's two-key model. A user holds at most two keys, so a rotation:
 *
 *   next    if the user already has two keys, deletes the one that is not AWSCURRENT's (an inactive
 *           one first, else the older) — this is also how an orphan left by a crash between
 *           CreateAccessKey and storing it is cleared — then CreateAccessKey; the engine stores the
 *           new pair as AWSPENDING before anything else happens.
 *   apply   nothing: a new key is active at once.
 *   verify  STS GetCallerIdentity signed with the key, and the caller must be this very user.
 *           IAM is eventually consistent: a new key may be refused for a few seconds, so the
 *           engine retries LOGIN_FAILED with backoff.
 *   revoke  deactivate (a leak: at once; a rotation: after its grace); `purge` deletes the key
 *           after a second grace, so a false alarm can be undone by re-activating it.
 *
 * AWSCURRENT's key is never deleted or deactivated by any of these.
 */
export class AwsIamUserKind implements CredentialKind {
  readonly engines = [AWS_IAM_USER_ENGINE] as const;
  readonly #iam: IAMClient;
  readonly #stsFor: (credentials: { accessKeyId: string; secretAccessKey: string }) => STSClient;

  constructor(options: AwsIamUserKindOptions) {
    this.#iam = options.iam;
    const region = options.region ?? 'us-east-1';
    this.#stsFor =
      options.stsFor ??
      ((credentials) =>
        new STSClient({
          region,
          credentials,
          maxAttempts: 2,
          requestHandler: { connectionTimeout: 3_000, requestTimeout: 5_000 },
        }));
  }

  parse(value: Sealed<string>, secretId: string): IamUserKey {
    const data = parseSecretJson(value, secretId, valueSchema);
    return { userName: data.userName, accessKeyId: data.accessKeyId, secretAccessKey: new Sealed(data.secretAccessKey) };
  }

  validate(value: Sealed<string>, secretId: string): void {
    this.parse(value, secretId);
  }

  describe(value: Sealed<string>, secretId: string): CredentialSummary {
    const key = this.parse(value, secretId);
    return { engine: AWS_IAM_USER_ENGINE, principal: key.userName, keyId: key.accessKeyId, host: 'iam', strategy: 'two-key' };
  }

  async next(ctx: KindContext): Promise<Sealed<string>> {
    const current = this.parse(ctx.current, ctx.secretId);
    const keys = await this.#listKeys(current.userName);
    if (keys.length >= 2) {
      // Never AWSCURRENT's key; an inactive one first (already revoked, or disabled by a human),
      // else the older: the previous rotation's key, or an orphan a crash left unstored.
      const removable = keys
        .filter((k) => k.AccessKeyId !== current.accessKeyId)
        .sort((a, b) => statusRank(a) - statusRank(b) || time(a) - time(b));
      const victim = removable[0];
      if (!victim?.AccessKeyId) {
        throw new TargetError('KEY_LIMIT', `IAM user ${current.userName} has no access key rekey may remove to make room`);
      }
      await this.#call(`delete access key ${victim.AccessKeyId} of ${current.userName}`, () =>
        this.#iam.send(new DeleteAccessKeyCommand({ UserName: current.userName, AccessKeyId: victim.AccessKeyId })),
      );
      ctx.logger.info('deleted an access key to make room for the new one', {
        secretId: ctx.secretId,
        userName: current.userName,
        accessKeyId: victim.AccessKeyId,
        status: victim.Status,
      });
    }
    const created = await this.#call(`create an access key for ${current.userName}`, () => this.#iam.send(new CreateAccessKeyCommand({ UserName: current.userName })));
    const id = created.AccessKey?.AccessKeyId;
    const secret = created.AccessKey?.SecretAccessKey;
    if (!id || !secret) throw new TargetError('PROVIDER_RESPONSE_INVALID', `IAM returned no access key for ${current.userName}`);
    ctx.logger.info('created an access key', { secretId: ctx.secretId, userName: current.userName, accessKeyId: id });
    // Edit the stored JSON itself, so fields rekey does not know (consumers, notes) survive.
    return ctx.current.map((json) => JSON.stringify({ ...(JSON.parse(json) as object), accessKeyId: id, secretAccessKey: secret }));
  }

  async apply(pending: Sealed<string>, ctx: KindContext, options: ApplyOptions = {}): Promise<void> {
    // A new IAM key is active from the start; nothing to do but check the value is one.
    this.parse(pending, ctx.secretId);
    // A new key leaves the old one working: nothing to undo if the caller's confirmation fails.
    await options.confirm?.();
  }

  async verify(value: Sealed<string>, ctx: KindContext): Promise<void> {
    const key = this.parse(value, ctx.secretId);
    const secrets = [key.secretAccessKey];
    const sts = this.#stsFor({ accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey.reveal() });
    let arn: string | undefined;
    try {
      arn = (await sts.send(new GetCallerIdentityCommand({}))).Arn;
    } catch (error) {
      if (REFUSED.has(nameOf(error)) || statusOf(error) === 403) {
        throw new TargetError('LOGIN_FAILED', `AWS refused access key ${key.accessKeyId} of IAM user ${key.userName}`, { cause: redactCause(error, secrets) });
      }
      if (isTransient(error)) {
        throw new TargetError('TARGET_UNREACHABLE', `cannot reach AWS STS to check access key ${key.accessKeyId}`, { retryable: true, cause: redactCause(error, secrets) });
      }
      throw new TargetError('PROVIDER_ERROR', `AWS STS failed to check access key ${key.accessKeyId} (${nameOf(error) || 'error'})`, { cause: redactCause(error, secrets) });
    } finally {
      sts.destroy();
    }
    // The key works; it must also be this user's (a pair copied from another user is a misconfiguration).
    if (!arn || !isUserArn(arn, key.userName)) {
      throw new TargetError('KEY_USER_MISMATCH', `access key ${key.accessKeyId} does not sign as IAM user ${key.userName}`);
    }
  }

  canLogIn(value: Sealed<string>, ctx: KindContext): Promise<boolean> {
    return logsIn(() => this.verify(value, ctx));
  }

  async revoke(old: Sealed<string>, ctx: KindContext, _options: { mode: RevokeMode }): Promise<RevokeOutcome> {
    // Both modes deactivate: a leak at once (the engine skips the grace), a rotation after it.
    // Deactivation is reversible, so a false alarm costs nothing; `purge` deletes later.
    const key = this.parse(old, ctx.secretId);
    this.#refuseCurrent(key, ctx, 'revoke');
    const found = await this.#find(key.userName, key.accessKeyId);
    const base = { principal: key.userName, keyId: key.accessKeyId };
    if (!found) return { ...base, method: 'already-deleted' };
    if (found.Status === 'Inactive') return { ...base, method: 'already-inactive', purgeLater: true };
    await this.#deactivate(key.userName, key.accessKeyId);
    ctx.logger.info('deactivated an access key', { secretId: ctx.secretId, userName: key.userName, accessKeyId: key.accessKeyId });
    return { ...base, method: 'deactivated', purgeLater: true };
  }

  async purge(old: Sealed<string>, ctx: KindContext): Promise<void> {
    const key = this.parse(old, ctx.secretId);
    this.#refuseCurrent(key, ctx, 'delete');
    const found = await this.#find(key.userName, key.accessKeyId);
    if (!found) return;
    if (found.Status === 'Active') {
      // Someone re-activated it after rekey's revoke (a false alarm undone): theirs to decide.
      throw new ConflictError(`access key ${key.accessKeyId} of ${key.userName} is active again: rekey deletes only keys it deactivated`, 'PURGE_ACTIVE_KEY');
    }
    await this.#call(`delete access key ${key.accessKeyId} of ${key.userName}`, () =>
      this.#iam.send(new DeleteAccessKeyCommand({ UserName: key.userName, AccessKeyId: key.accessKeyId })),
    );
    ctx.logger.info('deleted a revoked access key', { secretId: ctx.secretId, userName: key.userName, accessKeyId: key.accessKeyId });
  }

  sensitiveForms(value: Sealed<string>): SensitiveForm[] {
    let key: IamUserKey;
    try {
      key = this.parse(value, 'value');
    } catch {
      return [];
    }
    const secret = key.secretAccessKey.reveal();
    return [
      { form: 'secret-access-key', text: secret, hmsl: true },
      { form: 'access-key-id', text: key.accessKeyId },
      // TruffleHog's AWS detector reports the id and the secret run together (RawV2).
      { form: 'key-pair', text: key.accessKeyId + secret },
    ];
  }

  identifiersOfLeak(text: string): string[] {
    // One definition, shared with the webhook Lambda, which must not load this kind.
    return awsAccessKeyIdsIn(text);
  }

  async ownerOf(identifier: string): Promise<string | undefined> {
    if (!ACCESS_KEY_ID.test(identifier)) return undefined;
    try {
      const out = await this.#iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: identifier }));
      return out.UserName && USER_NAME.test(out.UserName) ? out.UserName : undefined;
    } catch (error) {
      // Not this account's key (AccessDenied), or no such key: not ours to act on.
      if (['AccessDenied', 'AccessDeniedException', 'NoSuchEntity', 'NoSuchEntityException'].includes(nameOf(error))) return undefined;
      throw this.#error(error, `find the owner of access key ${identifier}`);
    }
  }

  async revokeStray(identifier: string, ctx: KindContext): Promise<RevokeOutcome> {
    const managed = this.parse(ctx.current, ctx.secretId);
    if (identifier === managed.accessKeyId) {
      throw new ConflictError(`access key ${identifier} is AWSCURRENT of ${ctx.secretId}: rotate the secret instead`, 'REVOKE_CURRENT');
    }
    const found = await this.#find(managed.userName, identifier);
    if (!found) throw new NotFoundError(`access key ${identifier} is not a key of IAM user ${managed.userName}`);
    const base = { principal: managed.userName, keyId: identifier };
    if (found.Status === 'Inactive') return { ...base, method: 'already-inactive' };
    await this.#deactivate(managed.userName, identifier);
    // The proof for a key rekey never held the secret of: IAM now lists it inactive.
    const after = await this.#find(managed.userName, identifier);
    if (after?.Status === 'Active') throw new TargetError('REVOKE_NOT_PROVEN', `access key ${identifier} of ${managed.userName} is still active after deactivation`);
    ctx.logger.info('deactivated a leaked access key rekey did not create', { secretId: ctx.secretId, userName: managed.userName, accessKeyId: identifier });
    return { ...base, method: 'deactivated' };
  }

  async close(): Promise<void> {
    // The IAM client belongs to whoever built it (services.ts); STS clients are closed after each use.
  }

  #refuseCurrent(key: IamUserKey, ctx: KindContext, action: string): void {
    let current: IamUserKey | undefined;
    try {
      current = this.parse(ctx.current, ctx.secretId);
    } catch {
      current = undefined;
    }
    if (current && current.accessKeyId === key.accessKeyId) {
      throw new ConflictError(`access key ${key.accessKeyId} is AWSCURRENT of ${ctx.secretId}: rekey never ${action}s it`, 'REVOKE_CURRENT');
    }
  }

  async #listKeys(userName: string): Promise<AccessKeyMetadata[]> {
    const keys: AccessKeyMetadata[] = [];
    let marker: string | undefined;
    for (let page = 0; page < 20; page++) {
      const out = await this.#call(`list the access keys of ${userName}`, () =>
        this.#iam.send(new ListAccessKeysCommand({ UserName: userName, ...(marker ? { Marker: marker } : {}) })),
      );
      keys.push(...(out.AccessKeyMetadata ?? []));
      if (!out.IsTruncated || !out.Marker) break;
      marker = out.Marker;
    }
    return keys;
  }

  async #find(userName: string, accessKeyId: string): Promise<AccessKeyMetadata | undefined> {
    try {
      return (await this.#listKeys(userName)).find((k) => k.AccessKeyId === accessKeyId);
    } catch (error) {
      // The user itself is gone: so are its keys.
      if (error instanceof TargetError && error.code === 'PRINCIPAL_NOT_FOUND') return undefined;
      throw error;
    }
  }

  async #deactivate(userName: string, accessKeyId: string): Promise<void> {
    await this.#call(`deactivate access key ${accessKeyId} of ${userName}`, () =>
      this.#iam.send(new UpdateAccessKeyCommand({ UserName: userName, AccessKeyId: accessKeyId, Status: 'Inactive' })),
    );
  }

  async #call<T>(action: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.#error(error, action);
    }
  }

  #error(error: unknown, action: string): RekeyError {
    if (error instanceof RekeyError) return error;
    const name = nameOf(error);
    const cause = redactCause(error, []);
    if (name === 'NoSuchEntity' || name === 'NoSuchEntityException') return new TargetError('PRINCIPAL_NOT_FOUND', `cannot ${action}: no such IAM user or key`, { cause });
    if (name === 'LimitExceeded' || name === 'LimitExceededException') return new TargetError('KEY_LIMIT', `cannot ${action}: the user already has the most access keys IAM allows`, { cause });
    if (name === 'AccessDenied' || name === 'AccessDeniedException' || statusOf(error) === 403) {
      return new TargetError('ACCESS_DENIED', `cannot ${action}: rekey's IAM role is not allowed to (see README, IAM permissions)`, { cause });
    }
    if (isTransient(error)) return new TargetError('TARGET_UNREACHABLE', `cannot ${action}: AWS IAM is unreachable or throttling`, { retryable: true, cause });
    return new TargetError('PROVIDER_ERROR', `cannot ${action} (${name || 'error'})`, { cause });
  }
}

const statusRank = (k: AccessKeyMetadata): number => (k.Status === 'Inactive' ? 0 : 1);
const time = (k: AccessKeyMetadata): number => k.CreateDate?.getTime() ?? 0;

function nameOf(error: unknown): string {
  const e = error as { name?: unknown; Code?: unknown; code?: unknown } | null;
  for (const v of [e?.name, e?.Code, e?.code]) if (typeof v === 'string' && v !== 'Error') return v;
  return '';
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

function isTransient(error: unknown): boolean {
  const name = nameOf(error);
  const code = (error as { code?: unknown } | null)?.code;
  const status = statusOf(error);
  const fault = (error as { $fault?: unknown } | null)?.$fault;
  return fault === 'server' || TRANSIENT_NAMES.has(name) || (typeof code === 'string' && TRANSIENT_CODES.has(code)) || TRANSIENT_CODES.has(name) || (status !== undefined && status >= 500) || status === 429;
}

/** `arn:aws:iam::123456789012:user/some/path/name` (any partition) names IAM user `name`. */
function isUserArn(arn: string, userName: string): boolean {
  const match = /^arn:aws[\w-]*:iam::\d{12}:user\/(?:.*\/)?([^/]+)$/.exec(arn);
  return match?.[1] === userName;
}

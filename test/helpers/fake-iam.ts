import { randomBytes, randomInt } from 'node:crypto';
import { mockClient, type AwsStub } from 'aws-sdk-client-mock';
import {
  CreateAccessKeyCommand,
  DeleteAccessKeyCommand,
  GetAccessKeyLastUsedCommand,
  IAMClient,
  LimitExceededException,
  ListAccessKeysCommand,
  NoSuchEntityException,
  UpdateAccessKeyCommand,
} from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { Sealed } from '#core/sealed.ts';

export interface FakeKey {
  id: string;
  secret: string;
  status: 'Active' | 'Inactive';
  created: Date;
  /** STS refuses this (new) key this many more times: IAM's eventual consistency. */
  refusalsLeft: number;
  /** STS still accepts this (deactivated) key this many more times. */
  lagLeft: number;
}

export interface FakeIamOptions {
  /** How many times STS refuses a key just created before it accepts it (default 0). */
  newKeyRefusals?: number;
  /** How many times STS still accepts a key after it was deactivated (default 0). */
  deactivationLag?: number;
  /** ListAccessKeys page size, to make the adapter follow Marker (default all at once). */
  pageSize?: number;
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
export const ACCOUNT = '123456789012';

/** A well-formed access key id, as IAM makes them (AKIA + 16 base32 characters). */
export function accessKeyId(): string {
  return 'AKIA' + Array.from({ length: 16 }, () => BASE32[randomInt(BASE32.length)]).join('');
}

const awsError = (name: string, message: string, status: number, fault: 'client' | 'server' = 'client') =>
  Object.assign(new Error(message), { name, $fault: fault, $metadata: { httpStatusCode: status } });

/**
 * IAM and STS as aws-sdk-client-mock stubs over one in-memory account: users, their access keys
 * (at most two, as IAM enforces), statuses and creation times. STS GetCallerIdentity answers for
 * the credentials the calling client was built with, so the production adapter's real clients are
 * what is tested. Eventual consistency is a count, not a clock: a new key is refused
 * `newKeyRefusals` times, a deactivated key still works `deactivationLag` times.
 */
export class FakeIam {
  readonly iamStub: AwsStub<any, any, any>;
  readonly stsStub: AwsStub<any, any, any>;
  readonly users = new Map<string, FakeKey[]>();
  /** Every IAM/STS command name, in order (no values). */
  readonly calls: string[] = [];
  newKeyRefusals: number;
  deactivationLag: number;
  readonly #pageSize: number | undefined;
  readonly #failures: { command: string; error: Error; times: number }[] = [];
  #clock = Date.parse('2026-01-01T00:00:00Z');

  constructor(options: FakeIamOptions = {}) {
    this.newKeyRefusals = options.newKeyRefusals ?? 0;
    this.deactivationLag = options.deactivationLag ?? 0;
    this.#pageSize = options.pageSize;
    this.iamStub = mockClient(IAMClient);
    this.stsStub = mockClient(STSClient);
    this.#install();
  }

  restore(): void {
    this.iamStub.restore();
    this.stsStub.restore();
  }

  addUser(userName: string): void {
    if (!this.users.has(userName)) this.users.set(userName, []);
  }

  /** A key that already works (STS accepts it at once). */
  addKey(userName: string, options: { status?: 'Active' | 'Inactive' } = {}): FakeKey {
    this.addUser(userName);
    const key = this.#newKey(options.status ?? 'Active', 0);
    this.users.get(userName)!.push(key);
    return key;
  }

  keys(userName: string): FakeKey[] {
    return this.users.get(userName) ?? [];
  }

  key(id: string): FakeKey | undefined {
    for (const keys of this.users.values()) {
      const found = keys.find((k) => k.id === id);
      if (found) return found;
    }
    return undefined;
  }

  /** The next `times` calls of `command` (e.g. 'CreateAccessKey') throw `error`. */
  failNext(command: string, error: Error, times = 1): void {
    this.#failures.push({ command, error, times });
  }

  static accessDenied(): Error {
    return awsError('AccessDenied', 'User: arn:aws:sts::123456789012:assumed-role/rekey is not authorized to perform this action', 403);
  }

  static throttled(): Error {
    return awsError('Throttling', 'Rate exceeded', 400);
  }

  static serviceFailure(): Error {
    return awsError('ServiceFailureException', 'internal failure', 500, 'server');
  }

  /** The stored JSON of a key (value of an aws-iam-user secret). */
  value(userName: string, key: Pick<FakeKey, 'id' | 'secret'>, extra: Record<string, unknown> = {}): Sealed<string> {
    return new Sealed(JSON.stringify({ engine: 'aws-iam-user', userName, accessKeyId: key.id, secretAccessKey: key.secret, ...extra }));
  }

  #newKey(status: 'Active' | 'Inactive', refusals: number): FakeKey {
    this.#clock += 60_000;
    return { id: accessKeyId(), secret: randomBytes(30).toString('base64'), status, created: new Date(this.#clock), refusalsLeft: refusals, lagLeft: 0 };
  }

  #failure(command: string): void {
    const failure = this.#failures.find((f) => f.command === command);
    if (!failure) return;
    failure.times -= 1;
    if (failure.times <= 0) this.#failures.splice(this.#failures.indexOf(failure), 1);
    throw failure.error;
  }

  #user(userName: unknown): FakeKey[] {
    const keys = typeof userName === 'string' ? this.users.get(userName) : undefined;
    if (!keys) throw new NoSuchEntityException({ message: `The user with name ${String(userName)} cannot be found.`, $metadata: { httpStatusCode: 404 } });
    return keys;
  }

  #install(): void {
    this.iamStub.on(ListAccessKeysCommand).callsFake((input: { UserName?: string; Marker?: string }) => {
      this.calls.push('ListAccessKeys');
      this.#failure('ListAccessKeys');
      const keys = this.#user(input.UserName);
      const start = input.Marker ? Number(input.Marker) : 0;
      const end = this.#pageSize ? start + this.#pageSize : keys.length;
      const page = keys.slice(start, end);
      return {
        AccessKeyMetadata: page.map((k) => ({ UserName: input.UserName, AccessKeyId: k.id, Status: k.status, CreateDate: k.created })),
        IsTruncated: end < keys.length,
        ...(end < keys.length ? { Marker: String(end) } : {}),
      };
    });
    this.iamStub.on(CreateAccessKeyCommand).callsFake((input: { UserName?: string }) => {
      this.calls.push('CreateAccessKey');
      this.#failure('CreateAccessKey');
      const keys = this.#user(input.UserName);
      if (keys.length >= 2) {
        throw new LimitExceededException({ message: 'Cannot exceed quota for AccessKeysPerUser: 2', $metadata: { httpStatusCode: 409 } });
      }
      const key = this.#newKey('Active', this.newKeyRefusals);
      keys.push(key);
      return { AccessKey: { UserName: input.UserName, AccessKeyId: key.id, Status: 'Active', SecretAccessKey: key.secret, CreateDate: key.created } };
    });
    this.iamStub.on(UpdateAccessKeyCommand).callsFake((input: { UserName?: string; AccessKeyId?: string; Status?: 'Active' | 'Inactive' }) => {
      this.calls.push('UpdateAccessKey');
      this.#failure('UpdateAccessKey');
      const key = this.#user(input.UserName).find((k) => k.id === input.AccessKeyId);
      if (!key) throw new NoSuchEntityException({ message: `The Access Key with id ${input.AccessKeyId} cannot be found`, $metadata: { httpStatusCode: 404 } });
      if (input.Status === 'Inactive' && key.status === 'Active') key.lagLeft = this.deactivationLag;
      key.status = input.Status ?? key.status;
      return {};
    });
    this.iamStub.on(DeleteAccessKeyCommand).callsFake((input: { UserName?: string; AccessKeyId?: string }) => {
      this.calls.push('DeleteAccessKey');
      this.#failure('DeleteAccessKey');
      const keys = this.#user(input.UserName);
      const at = keys.findIndex((k) => k.id === input.AccessKeyId);
      if (at < 0) throw new NoSuchEntityException({ message: `The Access Key with id ${input.AccessKeyId} cannot be found`, $metadata: { httpStatusCode: 404 } });
      keys.splice(at, 1);
      return {};
    });
    this.iamStub.on(GetAccessKeyLastUsedCommand).callsFake((input: { AccessKeyId?: string }) => {
      this.calls.push('GetAccessKeyLastUsed');
      this.#failure('GetAccessKeyLastUsed');
      for (const [userName, keys] of this.users) {
        if (keys.some((k) => k.id === input.AccessKeyId)) return { UserName: userName, AccessKeyLastUsed: { ServiceName: 'N/A', Region: 'N/A' } };
      }
      // A key of another account, or none at all: IAM does not say which.
      throw awsError('AccessDenied', 'not authorized to perform iam:GetAccessKeyLastUsed on this resource', 403);
    });
    this.stsStub.on(GetCallerIdentityCommand).callsFake(async (_input: unknown, getClient: () => STSClient) => {
      this.calls.push('GetCallerIdentity');
      this.#failure('GetCallerIdentity');
      const provider = getClient().config.credentials as unknown;
      const credentials = (typeof provider === 'function' ? await (provider as () => Promise<unknown>)() : provider) as { accessKeyId: string; secretAccessKey: string };
      for (const [userName, keys] of this.users) {
        const key = keys.find((k) => k.id === credentials.accessKeyId);
        if (!key) continue;
        if (key.secret !== credentials.secretAccessKey) {
          throw awsError('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.', 403);
        }
        const works = key.status === 'Active' ? key.refusalsLeft === 0 : key.lagLeft > 0;
        if (key.status === 'Active' && key.refusalsLeft > 0) key.refusalsLeft -= 1;
        if (key.status === 'Inactive' && key.lagLeft > 0) key.lagLeft -= 1;
        if (!works) break;
        return { UserId: `AIDA${key.id.slice(4)}`, Account: ACCOUNT, Arn: `arn:aws:iam::${ACCOUNT}:user/${userName}` };
      }
      throw awsError('InvalidClientTokenId', 'The security token included in the request is invalid.', 403);
    });
  }
}

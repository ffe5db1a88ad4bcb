import {
  DescribeSecretCommand,
  ListSecretsCommand,
  TagResourceCommand,
  UntagResourceCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { FingerprintHit, FingerprintIndex } from '#core/ports/fingerprint-index.ts';
import { FORM_NAME, type FingerprintForm } from '#core/fingerprint.ts';
import { RekeyError } from '#core/errors.ts';
import { redactCause } from '#core/redact.ts';

const PREFIX = 'rekey:fp:';

/**
 * The AWS index lives in the secrets' own tags — `rekey:fp:<versionId>:<form>` = HMAC — and a
 * lookup is one ListSecrets call filtered by tag value. Why tags: no table to deploy or keep in
 * step, IAM already scopes who may read them, and an HMAC without the index key (itself a secret)
 * tells a reader nothing. Per version: a database 3 tags (password, URI, HMSL hash of the
 * password), an IAM access key 5 (secret, key id, the two together, HMSL, principal), an API key 2;
 * five versions: at most 25 of the 50 tags a secret may carry.
 */
export class SecretTagsFingerprintIndex implements FingerprintIndex {
  constructor(private readonly client: SecretsManagerClient) {}

  async record(secretId: string, versionId: string, fingerprints: { form: FingerprintForm; value: string }[], options: { keepVersionIds?: string[] } = {}): Promise<void> {
    if (fingerprints.length > 0) {
      await this.call(secretId, () =>
        this.client.send(new TagResourceCommand({ SecretId: secretId, Tags: fingerprints.map((f) => ({ Key: `${PREFIX}${versionId}:${f.form}`, Value: f.value })) })),
      );
    }
    if (options.keepVersionIds) await this.forget(secretId, options.keepVersionIds);
  }

  async forget(secretId: string, keepVersionIds: string[]): Promise<void> {
    const described = await this.call(secretId, () => this.client.send(new DescribeSecretCommand({ SecretId: secretId })));
    const stale = (described.Tags ?? [])
      .map((t) => t.Key ?? '')
      .filter((key) => key.startsWith(PREFIX) && !keepVersionIds.includes(parseKey(key)?.versionId ?? ''));
    if (stale.length) await this.call(secretId, () => this.client.send(new UntagResourceCommand({ SecretId: secretId, TagKeys: stale })));
  }

  async lookup(fingerprint: string): Promise<FingerprintHit[]> {
    if (!/^[0-9a-f]{64}$/.test(fingerprint)) return [];
    const hits: FingerprintHit[] = [];
    let NextToken: string | undefined;
    do {
      const page = await this.call('(lookup)', () =>
        this.client.send(new ListSecretsCommand({ Filters: [{ Key: 'tag-value', Values: [fingerprint] }], MaxResults: 100, ...(NextToken ? { NextToken } : {}) })),
      );
      for (const secret of page.SecretList ?? []) {
        for (const tag of secret.Tags ?? []) {
          const parsed = tag.Value === fingerprint && tag.Key ? parseKey(tag.Key) : undefined;
          // The name, as the store, the sweep and the CLI call the secret (not its ARN).
          if (parsed && secret.Name) hits.push({ secretId: secret.Name, ...parsed });
        }
      }
      NextToken = page.NextToken;
    } while (NextToken);
    return hits;
  }

  private async call<T>(secretId: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      const name = (error as { name?: string }).name ?? 'Error';
      throw new RekeyError('INDEX_FAILED', `fingerprint index call failed for ${secretId} (${name})`, {
        retryable: name === 'ThrottlingException' || name === 'InternalServiceError',
        cause: redactCause(error, []),
      });
    }
  }
}

function parseKey(key: string): { versionId: string; form: FingerprintForm } | undefined {
  const rest = key.slice(PREFIX.length);
  const at = rest.lastIndexOf(':');
  if (at <= 0) return undefined;
  const form = rest.slice(at + 1);
  if (!FORM_NAME.test(form)) return undefined;
  return { versionId: rest.slice(0, at), form: form as FingerprintForm };
}

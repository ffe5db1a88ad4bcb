import type { Sealed } from '#core/sealed.ts';
import type { SecretStore } from '#core/ports/secret-store.ts';
import type { FingerprintIndex } from '#core/ports/fingerprint-index.ts';
import type { CredentialKindRegistry } from '#core/ports/credential-kind.ts';
import { fingerprintsOfValue } from '#core/fingerprint.ts';

/** How many versions of a secret stay matchable: enough to tell "old, dead" from "unknown". */
const KEEP_VERSIONS = 5;

/**
 * Any SecretStore, with every stored value's fingerprints kept in a FingerprintIndex, so a leak is
 * matched by lookup. Wrapping the store (rather than asking each caller) means no write path —
 * `rekey put`, rotation, AWS's own createSecret step — can forget to index.
 */
export class FingerprintingStore implements SecretStore {
  readonly kind: string;
  /** The inner store's atomic batch of label moves and tags, when it has one (values are not touched: nothing to index). */
  readonly updateVersionStages?: SecretStore['updateVersionStages'];

  constructor(
    private readonly inner: SecretStore,
    private readonly index: FingerprintIndex,
    private readonly indexKey: Buffer,
    /** Which texts of a value are sensitive is its kind's to say. */
    private readonly kinds: Pick<CredentialKindRegistry, 'forEngine'>,
  ) {
    this.kind = inner.kind;
    if (inner.updateVersionStages) this.updateVersionStages = inner.updateVersionStages.bind(inner);
  }

  async createSecret(secretId: string, value: Sealed<string>, options?: Parameters<SecretStore['createSecret']>[2]) {
    // The HMSL forms cost scrypt (libuv's pool): computed while the store writes, not after.
    const fingerprints = fingerprintsOfValue(this.indexKey, value, this.kinds);
    fingerprints.catch(() => {}); // awaited below; a store failure must not leave it unhandled
    const created = await this.inner.createSecret(secretId, value, options);
    await this.index.record(secretId, created.versionId, await fingerprints);
    return created;
  }

  async putSecretValue(secretId: string, versionId: string, value: Sealed<string>, stages: string[]) {
    const fingerprints = fingerprintsOfValue(this.indexKey, value, this.kinds);
    fingerprints.catch(() => {});
    await this.inner.putSecretValue(secretId, versionId, value, stages);
    // Recorded, and the versions beyond the newest few forgotten, in one pass of the index.
    const [found, { versions }] = await Promise.all([fingerprints, this.inner.describeSecret(secretId)]);
    await this.index.record(secretId, versionId, found, { keepVersionIds: versions.slice(0, KEEP_VERSIONS).map((v) => v.versionId) });
  }

  getSecretValue(...args: Parameters<SecretStore['getSecretValue']>) {
    return this.inner.getSecretValue(...args);
  }

  updateVersionStage(...args: Parameters<SecretStore['updateVersionStage']>) {
    return this.inner.updateVersionStage(...args);
  }

  describeSecret(secretId: string) {
    return this.inner.describeSecret(secretId);
  }

  listSecrets(...args: Parameters<SecretStore['listSecrets']>) {
    return this.inner.listSecrets(...args);
  }

  tagSecret(secretId: string, tags: Record<string, string>) {
    return this.inner.tagSecret(secretId, tags);
  }

  async setRotationEnabled(secretId: string, enabled: boolean) {
    await this.inner.setRotationEnabled?.(secretId, enabled);
  }
}

import type { FingerprintForm } from '../fingerprint.ts';

export interface FingerprintHit {
  secretId: string;
  versionId: string;
  form: FingerprintForm;
}

/**
 * fingerprint → (secret, version). Locally a file of HMACs beside the store; on AWS the secrets'
 * own tags (`rekey:fp:<versionId>:<n>`), found with ListSecrets' tag-value filter — no extra
 * infrastructure, and nothing in it is useful without the index key.
 * Contract: `record` replaces what a version had (and, given `keepVersionIds`, then forgets the
 * secret's other versions as `forget` does — one pass where the adapter can); `forget` drops a
 * secret's versions not listed; `lookup` returns every hit for one fingerprint.
 */
export interface FingerprintIndex {
  record(secretId: string, versionId: string, fingerprints: { form: FingerprintForm; value: string }[], options?: { keepVersionIds?: string[] }): Promise<void>;
  forget(secretId: string, keepVersionIds: string[]): Promise<void>;
  lookup(fingerprint: string): Promise<FingerprintHit[]>;
}

import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { CredentialKinds } from '#adapters/targets/kinds.ts';
import { fingerprint, fingerprintsOfValue, hmslFingerprint, hmslHash, principalFingerprint } from '#core/fingerprint.ts';
import { identifiersOf, leakTask } from '#core/remediation.ts';
import { Sealed } from '#core/sealed.ts';

const key = randomBytes(32);
const kinds = new CredentialKinds();
const json = (value: Record<string, unknown>) => new Sealed(JSON.stringify(value));

describe('fingerprints of provider credentials', () => {
  describe('fingerprintsOfValue', () => {
    it("indexes an IAM key's secret, id, the two together, the secret's HMSL hash and the user as principal", async () => {
      const secret = randomBytes(30).toString('base64');
      const fps = await fingerprintsOfValue(key, json({ engine: 'aws-iam-user', userName: 'ci', accessKeyId: 'AKIAABCDEFGHIJKLMNOP', secretAccessKey: secret }), kinds);
      expect(fps).toEqual([
        { form: 'secret-access-key', value: fingerprint(key, secret) },
        { form: 'access-key-id', value: fingerprint(key, 'AKIAABCDEFGHIJKLMNOP') },
        { form: 'key-pair', value: fingerprint(key, `AKIAABCDEFGHIJKLMNOP${secret}`) },
        { form: 'hmsl', value: hmslFingerprint(key, await hmslHash(secret)) },
        { form: 'principal', value: principalFingerprint(key, 'aws-iam-user', 'ci') },
      ]);
    });

    it('indexes a value no kind handles (a provider admin secret, an unknown engine) by its credential-looking fields only', async () => {
      const fps = await fingerprintsOfValue(key, json({ token: 'adm_live_0123456789', region: 'eu', note: 'not a secret at all' }), kinds);
      expect(fps).toEqual([
        { form: 'password', value: fingerprint(key, 'adm_live_0123456789') },
        { form: 'hmsl', value: hmslFingerprint(key, await hmslHash('adm_live_0123456789')) },
      ]);
      // An engine rekey does not rotate is still a credential whose leak must match.
      expect((await fingerprintsOfValue(key, json({ engine: 'oracle', password: 'x'.repeat(20) }), kinds)).map((f) => f.form)).toEqual(['password', 'hmsl']);
      expect(await fingerprintsOfValue(key, json({ engine: 'aws-iam-user', userName: 'ci' }), kinds)).toEqual([]);
    });
  });

  describe('identifiersOf and leakTask', () => {
    it('queues the AWS key ids found in a leaked value, never the value', () => {
      const id = 'AKIA' + 'QRSTUVWXYZ234567';
      const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
      expect(identifiersOf(kinds, `${id}${secret}`)).toEqual([id]);
      const task = leakTask(key, 'd1', { source: 'trufflehog', sourceId: 's', secretType: 'AWS', value: new Sealed(`${id}${secret}`), locations: [], occurrences: 1 }, new Date(), (text) => identifiersOf(kinds, text));
      expect(task.identifiers).toEqual([id]);
      expect(JSON.stringify(task)).not.toContain(secret);
    });
  });
});

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { CredentialKinds } from '#adapters/targets/kinds.ts';
import { awsAccessKeyIdsIn, identifyLeak } from '#adapters/targets/leak-identifiers.ts';
import { identifiersOf } from '#core/remediation.ts';

/**
 * What the leak-webhook Lambda queues with a task as the identifiers of a leaked value
 * (functions/adapters/targets/leak-identifiers.ts): the kinds' own rules, without the kinds — so
 * AWS access key ids are traced from the webhook as they are by `rekey serve`, and the webhook's
 * bundle still holds no IAM client.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const keyId = fc.array(fc.constantFrom(...BASE32), { minLength: 16, maxLength: 16 }).map((chars) => `AKIA${chars.join('')}`);
/** Texts a scanner reports: noise, key ids in all kinds of surroundings (config lines, URLs, run-together pairs). */
const leakedText = fc
  .array(
    fc.oneof(
      fc.string({ maxLength: 30 }),
      keyId,
      keyId.map((id) => `aws_access_key_id = ${id}\n`),
      keyId.map((id) => `${id}wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`),
      keyId.map((id) => `X${id}`),
      fc.constantFrom('AKIA', 'AKIA0123456789ABCDEF', 'ASIAQRSTUVWXYZ234567', 'akiaqrstuvwxyz234567'),
    ),
    { maxLength: 15 },
  )
  .map((parts) => parts.join(''));

describe('leak identifiers', () => {
  const kinds = new CredentialKinds();

  describe('identifyLeak', () => {
    it('finds exactly what the kinds find, in the same order, at most 10 (generated texts)', () => {
      fc.assert(
        fc.property(leakedText, (text) => {
          expect(identifyLeak(text)).toEqual(identifiersOf(kinds, text));
        }),
        { numRuns: 500 },
      );
    });

    it('agrees with the aws-iam-user kind on each text', () => {
      const iam = kinds.forEngine('aws-iam-user');
      fc.assert(
        fc.property(leakedText, (text) => {
          expect(awsAccessKeyIdsIn(text)).toEqual(iam.identifiersOfLeak!(text));
        }),
        { numRuns: 300 },
      );
    });

    it('picks long-term access key ids out of a leaked text, and nothing out of other credentials', () => {
      const id = 'AKIAQRSTUVWXYZ234567';
      expect(identifyLeak(`[default]\naws_access_key_id = ${id}\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG`)).toEqual([id]);
      expect(identifyLeak(`${id}wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`)).toEqual([id]);
      expect(identifyLeak('postgres://app:s3cret@db.internal:5432/app')).toEqual([]);
      // Temporary credentials (ASIA) belong to no IAM user key rekey could deactivate.
      expect(identifyLeak('ASIAQRSTUVWXYZ234567')).toEqual([]);
    });
  });

  describe('the leak-webhook bundle', () => {
    it('holds the identify rules but none of the IAM or STS client (nor the credential kinds)', async () => {
      const result = await build({
        absWorkingDir: ROOT,
        entryPoints: [join(ROOT, 'functions/leak-webhook.ts')],
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node22',
        mainFields: ['module', 'main'],
        write: false,
        metafile: true,
        outfile: join(ROOT, '.serverless/leak-webhook-metafile-probe.mjs'),
        logLevel: 'silent',
      });
      const inputs = Object.keys(result.metafile.inputs);
      expect(inputs).toContain('functions/adapters/targets/leak-identifiers.ts');
      expect(inputs.filter((file) => /@aws-sdk\/client-(iam|sts)\//.test(file))).toEqual([]);
      expect(inputs.filter((file) => /functions\/adapters\/targets\/(?!leak-identifiers)/.test(file))).toEqual([]);
    });
  });
});

import { IAMClient } from '@aws-sdk/client-iam';
import { randomBytes } from 'node:crypto';
import { AwsIamUserKind } from '#adapters/targets/aws-iam-user.ts';
import { Sealed } from '#core/sealed.ts';
import { FakeIam } from '#test/helpers/fake-iam.ts';
import { credentialKindContract } from './credential-kind.contract.ts';

// IAM and STS mocked at the SDK client boundary over one in-memory account, with eventual
// consistency switched on: a new key is refused twice before it works, a deactivated key keeps
// working once more. The contract's proofs read the account's state, not the adapter.
credentialKindContract('aws-iam-user', () => {
  const fake = new FakeIam({ newKeyRefusals: 2, deactivationLag: 1, pageSize: 1 });
  const parse = (value: Sealed<string>) => JSON.parse(value.reveal()) as { userName: string; accessKeyId: string; secretAccessKey: string };
  return {
    kind: () => new AwsIamUserKind({ iam: new IAMClient({ region: 'us-east-1' }) }),
    async fresh(extra) {
      const userName = `ci-${randomBytes(4).toString('hex')}`;
      const key = fake.addKey(userName);
      return { secretId: `iam/${userName}`, value: fake.value(userName, key, extra), tags: {}, secrets: new Map() };
    },
    async works(value) {
      const v = parse(value);
      const key = fake.keys(v.userName).find((k) => k.id === v.accessKeyId);
      return key?.status === 'Active' && key.secret === v.secretAccessKey;
    },
    wrongSecret: (value) => value.map((json) => JSON.stringify({ ...JSON.parse(json), secretAccessKey: randomBytes(30).toString('base64') })),
    unreachable(fixture) {
      fake.failNext('GetCallerIdentity', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:443'), { code: 'ECONNREFUSED' }));
      return { value: fixture.value };
    },
    secretsOf: (value) => [parse(value).secretAccessKey],
    invalid: (value) => [
      value.map((json) => JSON.stringify({ ...JSON.parse(json), secretAccessKey: undefined })),
      value.map((json) => JSON.stringify({ ...JSON.parse(json), userName: 'bad name/with slash' })),
      value.map((json) => JSON.stringify({ ...JSON.parse(json), accessKeyId: 'lowercase-not-a-key' })),
    ],
    oldSurvivesApply: true,
  };
});

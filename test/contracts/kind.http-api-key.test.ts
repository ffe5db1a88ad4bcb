import { afterAll } from 'vitest';
import { HttpApiKeyKind } from '#adapters/targets/http-api-key.ts';
import { Sealed } from '#core/sealed.ts';
import { FakeProvider } from '#test/helpers/http-provider.ts';
import { credentialKindContract } from './credential-kind.contract.ts';

// A provider on 127.0.0.1 speaking HTTP, reached by the adapter's real fetch.
let provider: FakeProvider | undefined;
afterAll(async () => {
  await provider?.close();
});

credentialKindContract('http-api-key', async () => {
  provider = await FakeProvider.start();
  const p = provider;
  const parse = (value: Sealed<string>) => JSON.parse(value.reveal()) as { keyId: string; key: string };
  const adminSecretId = 'providers/acme/admin';
  return {
    kind: () => new HttpApiKeyKind({ retryBaseDelayMs: 5 }),
    async fresh(extra) {
      const key = p.addKey();
      return { secretId: `api/acme/${key.id}`, value: p.value(key, { adminSecretId, extra }), tags: {}, secrets: new Map([[adminSecretId, p.adminValue()]]) };
    },
    async works(value) {
      const v = parse(value);
      const key = p.keys.get(v.keyId);
      return key?.active === true && key.secret === v.key;
    },
    wrongSecret: (value) => value.map((json) => JSON.stringify({ ...JSON.parse(json), key: `sk_test_wrong_${Date.now()}` })),
    unreachable(fixture) {
      const json = JSON.parse(fixture.value.reveal()) as { endpoints: { verify: { url: string } } };
      json.endpoints.verify.url = 'http://127.0.0.1:1/v1/me';
      return { value: new Sealed(JSON.stringify({ ...json, retries: 0 })) };
    },
    secretsOf: (value) => [parse(value).key],
    invalid: (value) => [
      value.map((json) => JSON.stringify({ ...JSON.parse(json), key: undefined })),
      value.map((json) => JSON.stringify({ ...JSON.parse(json), endpoints: undefined })),
      value.map((json) => {
        const v = JSON.parse(json);
        v.endpoints.verify.url = `${p.url}/v1/me?api_key={{key}}`;
        return JSON.stringify(v);
      }),
    ],
    oldSurvivesApply: true,
  };
});

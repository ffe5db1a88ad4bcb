import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { parseConfig } from '#runtime/config.ts';
import { buildServices } from '#runtime/services.ts';
import { silentLogger } from '#core/ports/logger.ts';
import { STAGE } from '#core/ports/secret-store.ts';
import { assertCanLogIn, assertCannotLogIn, uniqueName, type TestEngine } from './databases.ts';
import { dropUser } from './users.ts';
import { LeakGuard } from './leak-guard.ts';
import { managedUser } from './rekey.ts';
import { startFakeSecretsManager } from './fake-secrets-manager.ts';
import { AwsSecretsManagerStore } from '#adapters/stores/aws-secrets-manager.ts';
import type { CoreDeps } from '#core/deps.ts';
import type { SecretStore } from '#core/ports/secret-store.ts';

const ROOT = resolve(import.meta.dirname, '../..');

/**
 * Rotates a real database user through the packaged `ops` bundle (.serverless/ops.zip, run by
 * `scripts/invoke.ts --bundle` in its own process): proves what Lambda would run — the minified ESM
 * bundle, whose drivers are files of their own loaded on first use (functions/runtime/bundle/) — reaches
 * PostgreSQL or MariaDB and changes a password, without printing a value. `aws`: the bundle's own
 * SDK client talks to the fake Secrets Manager (REKEY_STORE=aws, as deployed; the event bus is
 * unreachable, which rekey logs and survives); `local`: the encrypted store in a temp dir.
 */
export async function expectBundleRotates(engine: TestEngine, storeKind: 'aws' | 'local'): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'rekey-bundle-'));
  const sm = storeKind === 'aws' ? await startFakeSecretsManager() : undefined;
  const env: Record<string, string> = sm
    ? {
        REKEY_STORE: 'aws',
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        AWS_MAX_ATTEMPTS: '1',
        AWS_ENDPOINT_URL_SECRETS_MANAGER: sm.url,
        AWS_ENDPOINT_URL_EVENTBRIDGE: 'http://127.0.0.1:9',
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        REKEY_EVENT_BUS_NAME: 'rekey-test',
        REKEY_INDEX_KEY: randomBytes(32).toString('base64'),
        REKEY_LOG_LEVEL: 'info',
      }
    : { REKEY_STORE_DIR: dir, REKEY_MASTER_KEY: randomBytes(32).toString('base64'), REKEY_LOG_LEVEL: 'info' };
  const guard = new LeakGuard();
  const username = uniqueName('bnd');
  const open = async (): Promise<{ store: SecretStore; close: () => Promise<void> }> => {
    if (sm) return { store: new AwsSecretsManagerStore({ client: sm.client() }), close: async () => {} };
    const services = await buildServices(parseConfig(env), { logger: silentLogger });
    return { store: services.deps.store, close: () => services.close() };
  };
  try {
    const before = await open();
    const app = await managedUser({ deps: { store: before.store } as CoreDeps, guard }, engine, { username, strategy: 'single', withAdmin: true });
    await before.close();

    const run = await new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', join(ROOT, 'scripts/invoke.ts'), 'ops', '--bundle', '--data', JSON.stringify({ action: 'rotate', secretId: app.secretId, reason: 'bundle smoke test' })],
        { cwd: ROOT, env: { PATH: process.env.PATH!, ...env }, timeout: 60_000 },
        (error, stdout, stderr) => done({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    guard.output('bundle stdout', run.stdout);
    guard.output('bundle stderr', run.stderr);
    expect(run.code, run.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: true, action: 'rotate', result: { outcome: 'succeeded', strategy: 'single', username } });

    const after = await open();
    try {
      const current = JSON.parse((await after.store.getSecretValue(app.secretId, { stage: STAGE.current })).value.reveal()) as { password: string };
      guard.secret(current.password);
      await assertCanLogIn(engine, username, current.password);
      await assertCannotLogIn(engine, username, app.password);
    } finally {
      await after.close();
    }
    guard.assertClean();
  } finally {
    await dropUser(engine, username).catch(() => {});
    await sm?.close();
    await rm(dir, { recursive: true, force: true });
  }
}

import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REVOKED_LABEL, STAGE, type SecretDescription } from '#core/ports/secret-store.ts';
import { LocalEncryptedStore } from '#adapters/stores/local-encrypted.ts';
import { FingerprintingStore } from '#adapters/stores/fingerprinting.ts';
import { assertCanLogIn, assertCannotLogIn, uniqueName } from '#test/helpers/databases.ts';
import { dropUser } from '#test/helpers/users.ts';
import { managedUser, storedLogin, testRekey, type TestRekey } from '#test/helpers/rekey.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { DatabaseTargets } from '#adapters/targets/registry.ts';
import type { Target, TargetRegistry } from '#core/ports/target.ts';
import { DETAIL_TYPE } from '#core/events.ts';
import { parseConfig } from '#runtime/config.ts';
import { buildLeakServices } from '#runtime/leak-services.ts';
import { startLocalServer } from '#runtime/local-server.ts';

/**
 * `rekey serve`'s schedule sweep (`--sweep-every`), as an operator runs it: the real binary in a
 * child process, no request sent. A managed secret past its `rekey:max-age` is rotated by the
 * timer alone, and with `rekey:grace=0` its previous credential is revoked by the next tick.
 */

const DAY = 86_400_000;
const BIN = join(import.meta.dirname, '../../scripts/rekey-bin.mjs');

const created: { engine: 'postgres' | 'mysql'; username: string }[] = [];
afterAll(async () => {
  for (const { engine, username } of created) {
    await dropUser(engine, username).catch(() => {});
    await dropUser(engine, `${username}_clone`).catch(() => {});
  }
});

describe('rekey serve --sweep-every (child process)', () => {
  let rekey: TestRekey;
  let child: ChildProcessByStdio<null, Readable, Readable> | undefined;
  let stdout = '';
  let stderr = '';

  beforeEach(async () => {
    rekey = await testRekey();
    stdout = '';
    stderr = '';
  });
  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((resolve) => child!.once('exit', resolve));
    }
    child = undefined;
    // (dispose() adds every value the store holds — the sweep generated some in the other process.)
    rekey.guard.output('rekey serve stdout', stdout);
    rekey.guard.output('rekey serve stderr', stderr);
    rekey.guard.output('audit trail', await readFile(join(rekey.dir, 'audit.jsonl'), 'utf8').catch(() => ''));
    await rekey.dispose();
    rekey.guard.assertClean();
  });

  it('rotates a secret past its max age and revokes its previous credential on its own, with no request', { timeout: 60_000 }, async () => {
    const dueName = uniqueName('swp');
    const freshName = uniqueName('swp');
    created.push({ engine: 'postgres', username: dueName }, { engine: 'mysql', username: freshName });
    // The secrets are written through a store whose clock is two days behind (it stamps versions
    // with it); `rekey serve` runs on the real clock, so a one-day max-age is due at its first tick,
    // and the version it creates is not due again during the test.
    const key = await LocalEncryptedStore.loadOrCreateKey({ dir: rekey.dir, masterKeyBase64: rekey.env.REKEY_MASTER_KEY! });
    const pastStore = new FingerprintingStore(new LocalEncryptedStore({ dir: rekey.dir, key, now: () => new Date(Date.now() - 2 * DAY) }), rekey.index, rekey.indexKey, rekey.deps.kinds);
    const past = { deps: { ...rekey.deps, store: pastStore }, guard: rekey.guard };
    // Alternating: the old password belongs to the other user, so only the revoke can kill it.
    const due = await managedUser(past, 'postgres', { username: dueName, strategy: 'alternating', tags: { 'rekey:max-age': '1d', 'rekey:grace': '0' } });
    const fresh = await managedUser(past, 'mysql', { username: freshName, strategy: 'single', withAdmin: true, tags: { 'rekey:max-age': '30d', 'rekey:grace': '0' } });
    const before = (await rekey.deps.store.describeSecret(due.secretId)).versions.find((v) => v.stages.includes(STAGE.current))!.versionId;
    const freshBefore = await rekey.deps.store.describeSecret(fresh.secretId);

    child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--sweep-every', '200ms'], {
      env: { PATH: process.env.PATH, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...rekey.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const proc = child;
    proc.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));

    // Nothing is posted: the store is watched until the timer has rotated and then revoked.
    const deadline = Date.now() + 30_000;
    let description: SecretDescription;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`rekey serve exited (${proc.exitCode}): ${stderr.slice(0, 500)}`);
      description = await rekey.deps.store.describeSecret(due.secretId);
      const current = description.versions.find((v) => v.stages.includes(STAGE.current))!;
      const previous = description.versions.find((v) => v.stages.includes(STAGE.previous));
      if (current.versionId !== before && previous?.versionId === before && previous.stages.includes(REVOKED_LABEL)) break;
      if (Date.now() > deadline) throw new Error(`the sweep did not rotate and revoke ${due.secretId} within 30 s; rekey serve said: ${stderr.slice(-500)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(stdout).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+\/webhooks\/\{no scanner configured\}; sweep every 200ms/);

    proc.kill('SIGTERM');
    expect(await exited).toBe(0);

    // The new AWSCURRENT logs in to the real database; the password it replaced is refused.
    const current = await storedLogin(rekey, due.secretId, { stage: STAGE.current });
    expect(current.versionId).not.toBe(before);
    expect(current.username).toBe(`${dueName}_clone`);
    await assertCanLogIn('postgres', current.username, current.password);
    await assertCannotLogIn('postgres', due.username, due.password);

    // A secret within its max age is left alone.
    const freshAfter = await rekey.deps.store.describeSecret(fresh.secretId);
    expect(freshAfter.versions.map((v) => [v.versionId, v.stages])).toEqual(freshBefore.versions.map((v) => [v.versionId, v.stages]));
    await assertCanLogIn('mysql', fresh.username, fresh.password);

    // The schedule did it: the audit trail written by `rekey serve` names the sweep as the actor.
    const records = (await readFile(join(rekey.dir, 'audit.jsonl'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { actor: string; action: string; secretId: string; outcome?: string });
    const mine = records.filter((r) => r.secretId === due.secretId);
    expect(mine.map((r) => r.action)).toEqual(expect.arrayContaining(['Rotation Succeeded', 'Credential Revoked']));
    expect(new Set(mine.map((r) => r.actor))).toEqual(new Set(['schedule']));
    expect(records.some((r) => r.secretId === fresh.secretId)).toBe(false);
  });
});

describe('rekey serve stopping during a sweep (in process)', () => {
  it("waits for the sweep's rotation to finish before it closes, leaving no pending version", { timeout: 60_000 }, async () => {
    // setPassword takes a while, so the stop lands in the middle of the rotation.
    const slow: TargetRegistry = {
      forEngine(engine) {
        const target = new DatabaseTargets().forEngine(engine);
        return new Proxy(target, {
          get(obj, prop, receiver) {
            const value = Reflect.get(obj, prop, receiver) as unknown;
            if (prop === 'setPassword') return async (...args: Parameters<Target['setPassword']>) => (await sleep(400), obj.setPassword(...args));
            return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(obj) : value;
          },
        });
      },
      close: async () => {},
    };
    const rekey = await testRekey({ targets: slow });
    try {
      const username = uniqueName('swp');
      created.push({ engine: 'postgres', username });
      const key = await LocalEncryptedStore.loadOrCreateKey({ dir: rekey.dir, masterKeyBase64: rekey.env.REKEY_MASTER_KEY! });
      const pastStore = new FingerprintingStore(new LocalEncryptedStore({ dir: rekey.dir, key, now: () => new Date(Date.now() - 2 * DAY) }), rekey.index, rekey.indexKey, rekey.deps.kinds);
      const due = await managedUser({ deps: { ...rekey.deps, store: pastStore }, guard: rekey.guard }, 'postgres', { username, strategy: 'single', tags: { 'rekey:max-age': '1d' } });
      const config = parseConfig(rekey.env);
      const server = await startLocalServer(rekey, buildLeakServices(rekey, config), config, { port: 0, sweepEveryMs: 50 });
      const started = () => rekey.events.some((e) => e.detailType === DETAIL_TYPE.rotationStarted && e.detail.secretId === due.secretId);
      for (const until = Date.now() + 20_000; !started(); ) {
        if (Date.now() > until) throw new Error('the sweep did not start a rotation');
        await sleep(10);
      }
      await server.close();
      expect(rekey.events.filter((e) => e.detail.secretId === due.secretId).map((e) => e.detailType)).toContain(DETAIL_TYPE.rotationSucceeded);
      const stages = (await rekey.deps.store.describeSecret(due.secretId)).versions.flatMap((v) => v.stages);
      expect(stages).not.toContain(STAGE.pending);
      const current = await storedLogin(rekey, due.secretId, { stage: STAGE.current });
      await assertCanLogIn('postgres', current.username, current.password);
    } finally {
      await rekey.dispose();
      rekey.guard.assertClean();
    }
  });
});

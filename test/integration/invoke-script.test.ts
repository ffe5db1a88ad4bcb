import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig } from '#runtime/config.ts';
import { buildServices } from '#runtime/services.ts';
import { silentLogger } from '#core/ports/logger.ts';
import { Sealed } from '#core/sealed.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';

/**
 * scripts/invoke.ts (`npm run -s invoke -- <function> --path <fixture>`): a handler invoked locally
 * with a fixture, in its own process, configured from the environment as on Lambda.
 */

const ROOT = resolve(import.meta.dirname, '../..');

function invoke(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'scripts/invoke.ts'), ...args],
      { cwd: ROOT, env: { PATH: process.env.PATH!, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => done({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('scripts/invoke.ts', () => {
  let dir: string;
  let env: Record<string, string>;
  let guard: LeakGuard;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rekey-invoke-'));
    env = { REKEY_STORE_DIR: dir, REKEY_MASTER_KEY: randomBytes(32).toString('base64'), REKEY_LOG_LEVEL: 'info' };
    guard = new LeakGuard();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
    guard.assertClean();
  });

  describe('ops', () => {
    it('invokes the handler with the event given, prints its answer, and never a value', async () => {
      const password = `pw-${randomBytes(12).toString('base64url')}`;
      guard.secret(password);
      const services = await buildServices(parseConfig(env), { logger: silentLogger });
      await services.deps.store.createSecret('prod/app/db', new Sealed(JSON.stringify({ engine: 'postgres', host: 'db.internal', username: 'app', password })), {
        tags: { 'rekey:managed': 'true' },
      });
      await services.close();

      const run = await invoke(['ops', '--path', 'events/ops/inspect.json'], env);
      guard.output('stdout', run.stdout);
      guard.output('stderr', run.stderr);
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout)).toMatchObject({ ok: true, action: 'inspect', result: { secretId: 'prod/app/db', engine: 'postgres', username: 'app' } });
      // Logs are JSON lines on stderr, and name the function.
      expect(run.stderr).toContain('"function":"ops"');
    });

    it('exits 1 when the answer is { ok: false }, and 2 on a bad command line', async () => {
      const missing = await invoke(['ops', '--data', '{"action":"inspect","secretId":"nowhere"}'], env);
      expect(missing.code).toBe(1);
      expect(JSON.parse(missing.stdout)).toEqual({ ok: false, error: { code: 'NOT_FOUND', message: 'secret nowhere not found' } });
      const unknown = await invoke(['nope'], env);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain('unknown function "nope"');
    });
  });

  describe('rotate-secret', () => {
    it('prints only "CODE: message" of a thrown failure, with exit status 1', async () => {
      const run = await invoke(['rotate-secret', '--path', 'events/secrets-manager/create-secret.json'], env);
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toContain('RekeyError: NOT_FOUND: secret prod/app/db not found');
    });
  });
});

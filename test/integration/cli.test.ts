import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { run, type CliIo } from '../../scripts/rekey.ts';
import { STAGE } from '#core/ports/secret-store.ts';
import { adminSecret, assertCanLogIn, assertCannotLogIn, servers, uniqueName } from '#test/helpers/databases.ts';
import { createUser, dropUser } from '#test/helpers/users.ts';
import { storedLogin, testRekey, type TestRekey } from '#test/helpers/rekey.ts';

const execFileAsync = promisify(execFile);
const bin = join(import.meta.dirname, '../../scripts/rekey-bin.mjs');
const users: string[] = [];

afterAll(async () => {
  for (const username of users) {
    await dropUser('postgres', username).catch(() => {});
    await dropUser('postgres', `${username}_clone`).catch(() => {});
  }
});

describe('rekey CLI', () => {
  let rekey: TestRekey;
  let out: string[];
  let err: string[];
  let stdin: string;

  const cli = async (...argv: string[]) => {
    out = [];
    err = [];
    const io: CliIo = {
      stdout: (t) => out.push(t),
      stderr: (t) => err.push(t),
      readStdin: async () => stdin,
      env: rekey.env,
      overrides: rekey.overrides,
    };
    const code = await run(argv, io);
    // Everything the CLI printed is checked for values, except what `get --reveal` printed on purpose.
    if (!argv.includes('--reveal')) rekey.guard.output(`rekey ${argv[0]} stdout`, out.join(''));
    rekey.guard.output(`rekey ${argv[0]} stderr`, err.join(''));
    return code;
  };

  const appUser = async (tags: string[] = []) => {
    const username = uniqueName('cli');
    users.push(username);
    const password = `Cli-${randomBytes(12).toString('base64url')}`;
    rekey.guard.secret(password);
    await createUser('postgres', username, password);
    const admin = adminSecret('postgres');
    rekey.guard.secret(admin.password);
    stdin = JSON.stringify({ engine: 'postgres', host: admin.host, port: admin.port, username: admin.username, password: admin.password.reveal(), dbname: admin.dbname });
    expect(await cli('put', 'pg-admin', '--tag', 'rekey:managed=false')).toBe(0);
    const file = join(rekey.dir, 'value.json');
    const s = servers().postgres;
    await writeFile(file, JSON.stringify({ engine: 'postgres', host: s.host, port: s.port, username, password, dbname: s.database, masterarn: 'pg-admin' }));
    expect(await cli('put', 'app-db', '--value-file', file, ...tags)).toBe(0);
    return { username, password };
  };

  beforeEach(async () => {
    rekey = await testRekey();
    stdin = '';
  });
  afterEach(async () => {
    await rekey.dispose();
    rekey.guard.assertClean();
  });

  describe('put', () => {
    it('creates a secret from a file, then adds a new AWSCURRENT version from stdin', async () => {
      await appUser();
      expect(out.join('')).toMatch(/^created app-db: version [0-9a-f-]{36} is AWSCURRENT\n$/);
      const first = await storedLogin(rekey, 'app-db', { stage: STAGE.current });
      stdin = JSON.stringify({ ...JSON.parse((await rekey.deps.store.getSecretValue('app-db')).value.reveal()), password: 'Changed-By-Hand-1' });
      rekey.guard.secret('Changed-By-Hand-1');
      expect(await cli('put', 'app-db', '--json')).toBe(0);
      const result = JSON.parse(out.join('')) as { versionId: string; created: boolean };
      expect(result.created).toBe(false);
      expect((await storedLogin(rekey, 'app-db', { stage: STAGE.current })).versionId).toBe(result.versionId);
      expect((await storedLogin(rekey, 'app-db', { stage: STAGE.previous })).versionId).toBe(first.versionId);
    });

    it('marks the admin secret a stored value names (masterarn) privileged, so its leak scores as one before any rotation', async () => {
      await appUser();
      expect((await rekey.deps.store.describeSecret('pg-admin')).tags).toMatchObject({ 'rekey:managed': 'false', 'rekey:privileged': 'true' });
      expect((await rekey.deps.store.describeSecret('app-db')).tags['rekey:privileged']).toBeUndefined();
    });

    it('refuses a value that is not a database secret, naming the field and not the value', async () => {
      stdin = JSON.stringify({ engine: 'postgres', host: 'h', password: 'Not-Shown-1234' });
      rekey.guard.secret('Not-Shown-1234');
      expect(await cli('put', 'bad')).toBe(1);
      expect(err.join('')).toBe('rekey: secret bad has invalid or missing fields: username\n');
    });
  });

  describe('get', () => {
    it('refuses without --reveal and prints the value with it', async () => {
      const { password } = await appUser();
      expect(await cli('get', 'app-db')).toBe(1);
      expect(err.join('')).toBe('rekey: get prints a secret value: add --reveal if you mean it\n');
      expect(out.join('')).toBe('');
      expect(await cli('get', 'app-db', '--reveal')).toBe(0);
      expect(JSON.parse(out.join('')).password).toBe(password);
    });
  });

  describe('rotate and revoke', () => {
    it('rotates a real PostgreSQL password with a one-line result, then revokes the previous one', async () => {
      const { username, password } = await appUser();
      expect(await cli('rotate', 'app-db', '--reason', 'quarterly')).toBe(0);
      expect(out.join('')).toMatch(/^rotated app-db: version [0-9a-f-]{36} is AWSCURRENT \(alternating, user .*_clone, .*\); previous credential stays valid for 1\.0h/);
      expect(out.join('').trim().split('\n')).toHaveLength(1);
      const current = await storedLogin(rekey, 'app-db', { stage: STAGE.current });
      await assertCanLogIn('postgres', current.username, current.password);
      await assertCanLogIn('postgres', username, password); // grace: the previous still works

      expect(await cli('revoke', 'app-db', '--json')).toBe(0);
      const revoked = JSON.parse(out.join('')) as { proven: boolean; username: string };
      expect(revoked).toMatchObject({ proven: true, username });
      await assertCannotLogIn('postgres', username, password);
    });

    it('revokes at once when rekey:grace is 0', async () => {
      const { username, password } = await appUser(['--tag', 'rekey:grace=0']);
      expect(await cli('rotate', 'app-db', '--json')).toBe(0);
      expect(JSON.parse(out.join(''))).toMatchObject({ outcome: 'succeeded', graceMs: 0, revoked: { proven: true } });
      await assertCannotLogIn('postgres', username, password);
    });

    it('fails with one clear line and exit 1 for an unknown secret', async () => {
      expect(await cli('rotate', 'nope')).toBe(1);
      expect(err.join('')).toMatch(/^rekey: .*nope.*\n$/);
    });
  });

  describe('status', () => {
    it('shows versions, stages and last outcome, never a value', async () => {
      await appUser();
      await cli('rotate', 'app-db');
      expect(await cli('status', 'app-db', '--json')).toBe(0);
      const status = JSON.parse(out.join('')) as { lastOutcome: string; previousLive: boolean; strategy: string; versions: { stages: string[] }[] };
      expect(status).toMatchObject({ lastOutcome: 'succeeded', previousLive: true, strategy: 'alternating' });
      expect(status.versions.map((v) => v.stages.join(','))).toEqual(['AWSCURRENT', 'AWSPREVIOUS']);
      expect(await cli('status')).toBe(0);
      expect(out.join('')).toContain('app-db');
      expect(out.join('')).toContain('pg-admin');
    });
  });

  describe('the rekey command', () => {
    it('runs as a process: exit 0 with output, non-zero with one line on stderr', async () => {
      const env = { ...process.env, ...rekey.env, REKEY_STORE_DIR: join(rekey.dir, 'bin-store') };
      const ok = await execFileAsync(process.execPath, [bin, 'status'], { env });
      expect(ok.stdout).toContain('no secrets');
      const failed = await execFileAsync(process.execPath, [bin, 'get', 'missing'], { env }).then(
        () => undefined,
        (e: { code: number; stderr: string }) => e,
      );
      expect(failed?.code).toBe(1);
      expect(failed?.stderr).toBe('rekey: get prints a secret value: add --reveal if you mean it\n');
    });
  });
});

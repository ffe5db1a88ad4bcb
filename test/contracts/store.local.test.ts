import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, ConflictError, NotFoundError, StoreIntegrityError, ValidationError } from '#core/errors.ts';
import { STAGE } from '#core/ports/secret-store.ts';
import { Sealed } from '#core/sealed.ts';
import { KEEP_UNLABELLED_VERSIONS, LocalEncryptedStore, READ_CACHE_FILES, clearReadCache } from '#adapters/stores/local-encrypted.ts';
import { FileSecretLock } from '#adapters/locks/file-lock.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';
import { secretStoreContract } from './secret-store.contract.ts';

const dirs: string[] = [];
const tempDir = async (prefix = 'rekey-local-store-') => {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
};
afterAll(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

secretStoreContract('local-encrypted', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rekey-store-contract-'));
  return { store: new LocalEncryptedStore({ dir, key: randomBytes(32) }), dispose: () => rm(dir, { recursive: true, force: true }) };
});

const root = join(import.meta.dirname, '../..');

/** Runs test/helpers/store-writer.ts to completion in a second process (it waits for `go`). */
function runWriter(args: string[], env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'test/helpers/store-writer.ts'), ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) child.stdin.write('go\n');
    });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`store-writer exited ${code}: ${stderr}`))));
  });
}

/** Every file under `dir`, recursively, with its bytes. */
async function filesUnder(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) {
      const path = join(entry.parentPath, entry.name);
      files.set(path, await readFile(path));
    }
  }
  return files;
}

/** The layout: `<dir>/secrets/<sha256(secretId)>.json.enc`. */
const fileOf = (dir: string, secretId: string) => join(dir, 'secrets', `${createHash('sha256').update(secretId).digest('hex')}.json.enc`);

/** The file a secret lives in (the only secret file in a fresh store). */
async function onlySecretFile(dir: string): Promise<string> {
  const names = (await readdir(join(dir, 'secrets'))).filter((n) => n.endsWith('.json.enc'));
  expect(names).toHaveLength(1);
  return join(dir, 'secrets', names[0]!);
}

describe('LocalEncryptedStore', () => {
  let dir: string;
  let key: Buffer;
  let store: LocalEncryptedStore;
  let guard: LeakGuard;

  const value = (label = 'pw'): Sealed<string> => {
    const password = `${label}-${randomBytes(12).toString('base64url')}`;
    guard.secret(password);
    return new Sealed(JSON.stringify({ engine: 'postgres', host: 'db.internal', username: 'app', password }));
  };
  const rejection = async (promise: Promise<unknown>, where: string): Promise<unknown> => {
    const error = await promise.then(
      () => {
        throw new Error(`${where}: expected a rejection`);
      },
      (e: unknown) => e,
    );
    guard.error(where, error);
    return error;
  };

  beforeEach(async () => {
    dir = await tempDir();
    key = randomBytes(32);
    store = new LocalEncryptedStore({ dir, key });
    guard = new LeakGuard();
  });

  afterEach(() => {
    guard.assertClean();
  });

  describe('createSecret', () => {
    it('enables rotation on a new secret, and setRotationEnabled toggles it', async () => {
      await store.createSecret('app/db', value());
      expect((await store.describeSecret('app/db')).rotationEnabled).toBe(true);
      await store.setRotationEnabled('app/db', false);
      expect((await store.describeSecret('app/db')).rotationEnabled).toBe(false);
      await store.setRotationEnabled('app/db', true);
      expect((await store.describeSecret('app/db')).rotationEnabled).toBe(true);
    });

    it('keeps secrets whose ids differ only in case or punctuation apart', async () => {
      const ids = ['app/db', 'App/db', 'app-db', 'app/db ', 'arn:aws:secretsmanager:eu-west-1:123:secret:app/db'];
      const values = ids.map(() => value());
      for (const [i, id] of ids.entries()) await store.createSecret(id, values[i]!);
      for (const [i, id] of ids.entries()) expect((await store.getSecretValue(id)).value.reveal()).toBe(values[i]!.reveal());
      expect((await store.listSecrets()).map((d) => d.secretId).sort()).toEqual([...ids].sort());
    });
  });

  describe('updateVersionStage', () => {
    it('sets lastRotatedAt when AWSCURRENT moves, and not for other labels', async () => {
      let now = new Date('2026-01-01T00:00:00Z');
      store = new LocalEncryptedStore({ dir, key, now: () => now });
      const first = (await store.createSecret('app/db', value())).versionId;
      expect((await store.describeSecret('app/db')).lastRotatedAt).toBeUndefined();
      const second = randomUUID();
      now = new Date('2026-01-02T00:00:00Z');
      await store.putSecretValue('app/db', second, value(), [STAGE.pending]);
      await store.updateVersionStage('app/db', 'CUSTOM', { moveToVersionId: second });
      expect((await store.describeSecret('app/db')).lastRotatedAt).toBeUndefined();
      now = new Date('2026-01-03T00:00:00Z');
      await store.updateVersionStage('app/db', STAGE.current, { moveToVersionId: second, removeFromVersionId: first });
      expect((await store.describeSecret('app/db')).lastRotatedAt).toEqual(new Date('2026-01-03T00:00:00Z'));
    });

    it('does nothing when the stage is already on the version it is moved to', async () => {
      const first = (await store.createSecret('app/db', value())).versionId;
      const file = await onlySecretFile(dir);
      const before = await readFile(file);
      await store.updateVersionStage('app/db', STAGE.current, { moveToVersionId: first, removeFromVersionId: first });
      await store.updateVersionStage('app/db', STAGE.current, { moveToVersionId: first });
      expect((await readFile(file)).equals(before)).toBe(true);
      expect((await store.describeSecret('app/db')).lastRotatedAt).toBeUndefined();
    });

    it('refuses to remove AWSCURRENT without moving it, or a label from a version that does not hold it', async () => {
      const first = (await store.createSecret('app/db', value())).versionId;
      const second = randomUUID();
      await store.putSecretValue('app/db', second, value(), [STAGE.pending]);
      expect(await rejection(store.updateVersionStage('app/db', STAGE.current, { removeFromVersionId: first }), 'remove AWSCURRENT')).toBeInstanceOf(ValidationError);
      expect(await rejection(store.updateVersionStage('app/db', STAGE.pending, { removeFromVersionId: first }), 'remove from a non-holder')).toBeInstanceOf(ConflictError);
      expect(await rejection(store.updateVersionStage('app/db', STAGE.pending, {}), 'neither')).toBeInstanceOf(ValidationError);
      expect((await store.getSecretValue('app/db', { stage: STAGE.pending })).versionId).toBe(second);
    });
  });

  describe('updateVersionStages', () => {
    it('promotes, clears AWSPENDING and merges tags in one write of the file', async () => {
      let now = new Date('2026-01-01T00:00:00Z');
      store = new LocalEncryptedStore({ dir, key, now: () => now });
      const first = (await store.createSecret('app/db', value(), { tags: { team: 'a' } })).versionId;
      const second = randomUUID();
      await store.putSecretValue('app/db', second, value(), [STAGE.pending]);
      const file = await onlySecretFile(dir);
      const inodeBefore = (await stat(file)).ino;
      now = new Date('2026-01-02T00:00:00Z');
      await store.updateVersionStages(
        'app/db',
        [
          { stage: STAGE.current, moveToVersionId: second, removeFromVersionId: first },
          { stage: STAGE.pending, removeFromVersionId: second },
        ],
        { tags: { 'rekey:last-outcome': 'succeeded' } },
      );
      const described = await store.describeSecret('app/db');
      expect(described.versions.map((v) => [v.versionId, v.stages])).toEqual([
        [second, [STAGE.current]],
        [first, [STAGE.previous]],
      ]);
      expect(described.tags).toEqual({ team: 'a', 'rekey:last-outcome': 'succeeded' });
      expect(described.lastRotatedAt).toEqual(new Date('2026-01-02T00:00:00Z'));
      // One atomic replacement: the file is a new inode, and no temp file is left beside it.
      expect((await stat(file)).ino).not.toBe(inodeBefore);
      expect((await readdir(join(dir, 'secrets'))).filter((n) => n.includes('.tmp'))).toEqual([]);
    });

    it('changes nothing, not one byte, when any move of the batch is refused', async () => {
      const first = (await store.createSecret('app/db', value())).versionId;
      const second = randomUUID();
      await store.putSecretValue('app/db', second, value(), [STAGE.pending]);
      const file = await onlySecretFile(dir);
      const before = await readFile(file);
      const refused = await rejection(
        store.updateVersionStages(
          'app/db',
          [
            { stage: STAGE.current, moveToVersionId: second, removeFromVersionId: first },
            { stage: STAGE.pending, removeFromVersionId: first }, // AWSPENDING is on `second`
          ],
          { tags: { 'rekey:last-outcome': 'succeeded' } },
        ),
        'batch with a refused move',
      );
      expect(refused).toBeInstanceOf(ConflictError);
      expect((await readFile(file)).equals(before)).toBe(true);
      expect((await store.getSecretValue('app/db')).versionId).toBe(first);
      expect((await store.describeSecret('app/db')).tags).toEqual({});
    });

    it('writes nothing when every move is already done and the tags already hold', async () => {
      const first = (await store.createSecret('app/db', value(), { tags: { team: 'a' } })).versionId;
      const file = await onlySecretFile(dir);
      const before = await readFile(file);
      await store.updateVersionStages('app/db', [{ stage: STAGE.current, moveToVersionId: first, removeFromVersionId: first }], { tags: { team: 'a' } });
      expect((await readFile(file)).equals(before)).toBe(true);
    });
  });

  describe('read cache', () => {
    it('serves what another process wrote since this one last read the file', async () => {
      await store.createSecret('app/shared', new Sealed('{"password":"initial-value"}'), { tags: { team: 'a' } });
      expect((await store.describeSecret('app/shared')).tags).toEqual({ team: 'a' }); // cached now
      await runWriter(['writes', dir, 'app/shared', 'B', '2'], { REKEY_TEST_KEY: key.toString('base64') });
      const described = await store.describeSecret('app/shared');
      expect(described.tags).toEqual({ team: 'a', 'B-0': '0', 'B-1': '1' });
      expect((await store.getSecretValue('app/shared', { stage: 'B-1' })).value.reveal()).toBe('B-value-1');
      // and a write from here starts from the other process's state, losing none of it
      await store.tagSecret('app/shared', { team: 'b' });
      expect((await store.describeSecret('app/shared')).tags).toEqual({ team: 'b', 'B-0': '0', 'B-1': '1' });
    }, 60_000);

    it('notices a file rewritten in place with other bytes of the same length', async () => {
      await store.createSecret('app/db', value(), { tags: { n: '1' } });
      const file = await onlySecretFile(dir);
      const older = await readFile(file);
      await store.tagSecret('app/db', { n: '2' });
      expect((await store.describeSecret('app/db')).tags).toEqual({ n: '2' }); // cached
      expect((await readFile(file)).length).toBe(older.length);
      await writeFile(file, older); // same inode, same size, other content
      expect((await store.describeSecret('app/db')).tags).toEqual({ n: '1' });
    });

    it('fails a store under another key even for a file this process has cached', async () => {
      await store.createSecret('app/db', value());
      await store.describeSecret('app/db');
      const wrong = new LocalEncryptedStore({ dir, key: randomBytes(32) });
      expect(await rejection(wrong.describeSecret('app/db'), 'wrong key, cached file')).toBeInstanceOf(StoreIntegrityError);
      expect(await rejection(wrong.getSecretValue('app/db'), 'wrong key, cached file')).toBeInstanceOf(StoreIntegrityError);
    });

    it('lands every one of many concurrent writes to different secrets (sharing directory syncs)', async () => {
      const ids = Array.from({ length: 24 }, (_, i) => `app/concurrent-${i}`);
      for (const id of ids) await store.createSecret(id, value());
      const next = ids.map(() => ({ versionId: randomUUID(), value: value() }));
      await Promise.all(ids.map((id, i) => store.putSecretValue(id, next[i]!.versionId, next[i]!.value, [STAGE.pending])));
      clearReadCache();
      for (const [i, id] of ids.entries()) {
        const pending = await store.getSecretValue(id, { stage: STAGE.pending });
        expect(pending.versionId).toBe(next[i]!.versionId);
        expect(pending.value.reveal()).toBe(next[i]!.value.reveal());
      }
    });

    it('holds at most READ_CACHE_FILES descriptors however many secrets are read', async () => {
      clearReadCache();
      const open = async () => (await readdir('/proc/self/fd')).length;
      const before = await open();
      for (let i = 0; i < READ_CACHE_FILES + 20; i++) await store.createSecret(`app/many-${i}`, value());
      for (let i = 0; i < READ_CACHE_FILES + 20; i++) await store.getSecretValue(`app/many-${i}`);
      expect(await open()).toBeLessThanOrEqual(before + READ_CACHE_FILES + 4);
      clearReadCache();
    });
  });

  describe('putSecretValue', () => {
    it(`keeps the ${KEEP_UNLABELLED_VERSIONS} newest unlabelled versions readable by id and forgets older ones`, async () => {
      const ids = [(await store.createSecret('app/db', value())).versionId];
      for (let i = 0; i < KEEP_UNLABELLED_VERSIONS + 4; i++) {
        const versionId = randomUUID();
        await store.putSecretValue('app/db', versionId, value(), [STAGE.current]);
        ids.push(versionId);
      }
      // newest is AWSCURRENT, the one before AWSPREVIOUS, then unlabelled ones, newest kept
      const unlabelled = ids.slice(0, -2);
      const kept = unlabelled.slice(-KEEP_UNLABELLED_VERSIONS);
      const forgotten = unlabelled.slice(0, -KEEP_UNLABELLED_VERSIONS);
      expect(forgotten).toHaveLength(3);
      for (const versionId of kept) expect((await store.getSecretValue('app/db', { versionId })).stages).toEqual([]);
      for (const versionId of forgotten) {
        expect(await rejection(store.getSecretValue('app/db', { versionId }), 'forgotten version')).toBeInstanceOf(NotFoundError);
      }
      expect((await store.describeSecret('app/db')).versions.map((v) => v.versionId)).toEqual(ids.slice(-2).reverse());
    });

    it('loses no write when store instances in one process write the same secret at once', async () => {
      await store.createSecret('app/db', value());
      const other = new LocalEncryptedStore({ dir, key });
      await Promise.all(
        Array.from({ length: 40 }, (_, i) => {
          const target = i % 2 === 0 ? store : other;
          return i % 4 < 2 ? target.tagSecret('app/db', { [`t${i}`]: String(i) }) : target.putSecretValue('app/db', randomUUID(), value(), [`L${i}`]);
        }),
      );
      const description = await store.describeSecret('app/db');
      for (let i = 0; i < 40; i++) {
        if (i % 4 < 2) expect(description.tags[`t${i}`]).toBe(String(i));
        else expect(description.versions.some((v) => v.stages.includes(`L${i}`))).toBe(true);
      }
    });
  });

  describe('at rest', () => {
    it('never writes a value, its password or the secret id in plaintext', async () => {
      const secretId = `app/${randomBytes(6).toString('hex')}`;
      const values = [value(), value(), value()];
      await store.createSecret(secretId, values[0]!);
      await store.putSecretValue(secretId, randomUUID(), values[1]!, [STAGE.pending]);
      await store.putSecretValue(secretId, randomUUID(), values[2]!, [STAGE.current]);
      const files = await filesUnder(dir);
      expect(files.size).toBeGreaterThan(0);
      for (const [path, bytes] of files) {
        for (const v of values) {
          const text = v.reveal();
          const password = (JSON.parse(text) as { password: string }).password;
          for (const needle of [text, password, Buffer.from(password).toString('base64'), Buffer.from(password).toString('hex')]) {
            expect(bytes.includes(Buffer.from(needle)), `a value appeared in ${path}`).toBe(false);
          }
        }
        expect(bytes.includes(Buffer.from(secretId)), `the secret id appeared in ${path}`).toBe(false);
      }
    });

    it('writes files 0600 in 0700 directories, under a fresh nonce on every write', async () => {
      await store.createSecret('app/db', value());
      const file = await onlySecretFile(dir);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, 'secrets'))).mode & 0o777).toBe(0o700);
      const first = await readFile(file);
      await store.tagSecret('app/db', { a: '1' });
      const second = await readFile(file);
      expect(second.subarray(12, 24).equals(first.subarray(12, 24))).toBe(false); // the nonce
    });

    it('lists secrets among the other files that live in the store directory', async () => {
      await store.createSecret('app/db', value(), { tags: { 'rekey:managed': 'true' } });
      await mkdir(join(dir, 'fingerprints', 'ab'), { recursive: true });
      await writeFile(join(dir, 'fingerprints', 'ab', 'x.json'), '{}');
      await writeFile(join(dir, 'tickets.json'), '{}');
      await mkdir(join(dir, 'deliveries'), { recursive: true });
      await writeFile(join(dir, 'secrets', `${'f'.repeat(64)}.json.enc.123456`), 'a temp file left by a crash');
      await mkdir(join(dir, 'secrets', `${'e'.repeat(64)}.json.enc.lock`));
      await writeFile(join(dir, 'secrets', 'README'), 'hello');
      expect((await store.listSecrets({ tags: { 'rekey:managed': 'true' } })).map((d) => d.secretId)).toEqual(['app/db']);
    });
  });

  describe('loadOrCreateKey', () => {
    it('creates <dir>/master.key with mode 0600 in a 0700 directory and reuses it', async () => {
      const home = join(await tempDir(), 'store');
      const key = await LocalEncryptedStore.loadOrCreateKey({ dir: home });
      expect(key).toHaveLength(32);
      expect((await stat(join(home, 'master.key'))).mode & 0o777).toBe(0o600);
      expect((await stat(home)).mode & 0o777).toBe(0o700);
      expect((await LocalEncryptedStore.loadOrCreateKey({ dir: home })).equals(key)).toBe(true);
      // a store written under it is read back by a later process with the reloaded key
      await new LocalEncryptedStore({ dir: home, key }).createSecret('app/db', value());
      const reloaded = await LocalEncryptedStore.loadOrCreateKey({ dir: home });
      expect((await new LocalEncryptedStore({ dir: home, key: reloaded }).describeSecret('app/db')).secretId).toBe('app/db');
    });

    it('makes one key when several callers race to create it', async () => {
      const home = join(await tempDir(), 'store');
      const keys = await Promise.all(Array.from({ length: 8 }, () => LocalEncryptedStore.loadOrCreateKey({ dir: home })));
      for (const k of keys) expect(k.equals(keys[0]!)).toBe(true);
      expect((await readdir(home)).filter((n) => n.startsWith('master.key'))).toEqual(['master.key']);
    });

    it('uses REKEY_MASTER_KEY when given, without creating a key file', async () => {
      const home = await tempDir();
      const given = randomBytes(32);
      expect((await LocalEncryptedStore.loadOrCreateKey({ dir: home, masterKeyBase64: given.toString('base64') })).equals(given)).toBe(true);
      expect(await readdir(home)).toEqual([]);
    });

    it('refuses a REKEY_MASTER_KEY that is not base64 of 32 bytes with a ConfigError naming the variable, not the value', async () => {
      const home = await tempDir();
      const wrong = [randomBytes(16).toString('base64'), randomBytes(33).toString('base64'), `${randomBytes(32).toString('base64').slice(0, -2)}!!`, 'not a key at all, clearly'];
      for (const candidate of wrong) {
        guard.secret(candidate);
        const error = await rejection(LocalEncryptedStore.loadOrCreateKey({ dir: home, masterKeyBase64: candidate }), 'a bad REKEY_MASTER_KEY');
        expect(error).toBeInstanceOf(ConfigError);
        expect((error as Error).message).toContain('REKEY_MASTER_KEY');
      }
    });

    it('refuses a damaged key file, and one other users can read', async () => {
      const home = await tempDir();
      const keyFile = join(home, 'master.key');
      await writeFile(keyFile, 'c2hvcnQ=\n', { mode: 0o600 });
      const damaged = await rejection(LocalEncryptedStore.loadOrCreateKey({ dir: home }), 'a damaged key file');
      expect(damaged).toBeInstanceOf(ConfigError);
      expect((damaged as Error).message).toContain(keyFile);
      await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`);
      await chmod(keyFile, 0o644);
      const open = await rejection(LocalEncryptedStore.loadOrCreateKey({ dir: home }), 'a readable key file');
      expect(open).toBeInstanceOf(ConfigError);
      expect((open as Error).message).toContain('chmod 600');
    });

    it('refuses a key other than the one the store was created with', async () => {
      await store.createSecret('app/db', value());
      const error = await rejection(LocalEncryptedStore.loadOrCreateKey({ dir, masterKeyBase64: randomBytes(32).toString('base64') }), 'start-up with another key');
      expect(error).toBeInstanceOf(StoreIntegrityError);
      expect((error as Error).message).toContain('another master key');
      expect((await LocalEncryptedStore.loadOrCreateKey({ dir, masterKeyBase64: key.toString('base64') })).equals(key)).toBe(true);
    });
  });

  describe('integrity', () => {
    it('fails with StoreIntegrityError under a wrong key and changes no byte, even when asked to write', async () => {
      const first = (await store.createSecret('app/db', value(), { tags: { team: 'a' } })).versionId;
      const before = await filesUnder(dir);
      const wrong = new LocalEncryptedStore({ dir, key: randomBytes(32) });
      // Thunks, started one at a time: a rejection nobody awaits yet would be reported as unhandled.
      const attempts: [string, () => Promise<unknown>][] = [
        ['get', () => wrong.getSecretValue('app/db')],
        ['describe', () => wrong.describeSecret('app/db')],
        ['list', () => wrong.listSecrets()],
        ['put', () => wrong.putSecretValue('app/db', randomUUID(), value(), [STAGE.current])],
        ['tag', () => wrong.tagSecret('app/db', { team: 'b' })],
        ['stage', () => wrong.updateVersionStage('app/db', 'CUSTOM', { moveToVersionId: first })],
        ['rotation', () => wrong.setRotationEnabled('app/db', false)],
        ['create', () => wrong.createSecret('app/other', value())],
      ];
      for (const [what, attempt] of attempts) {
        const error = await rejection(attempt(), `wrong key: ${what}`);
        expect(error, what).toBeInstanceOf(StoreIntegrityError);
        expect((error as Error).message, what).toMatch(/another master key/);
      }
      expect(await filesUnder(dir)).toEqual(before);
      expect((await store.describeSecret('app/db')).tags).toEqual({ team: 'a' });
    });

    it('detects a truncated file, names it, leaves it as it was and still serves the other secrets', async () => {
      const otherValue = value();
      await store.createSecret('app/other', otherValue);
      const victimFile = fileOf(dir, 'app/db');
      await store.createSecret('app/db', value());
      const whole = await readFile(victimFile);
      await writeFile(victimFile, whole.subarray(0, whole.length - 20));
      const truncated = await readFile(victimFile);
      for (const [what, attempt] of [
        ['get', () => store.getSecretValue('app/db')],
        ['put', () => store.putSecretValue('app/db', randomUUID(), value(), [STAGE.current])],
        ['tag', () => store.tagSecret('app/db', { a: 'b' })],
        ['create', () => store.createSecret('app/db', value())],
      ] as const) {
        const error = await rejection(attempt(), `truncated: ${what}`);
        expect(error, what).toBeInstanceOf(StoreIntegrityError);
        expect((error as Error).message).toContain('app/db');
        expect((error as Error).message).toContain(victimFile);
        expect((error as Error).message).toMatch(/restore/i);
      }
      expect((await readFile(victimFile)).equals(truncated)).toBe(true);
      expect((await store.getSecretValue('app/other')).value.reveal()).toBe(otherValue.reveal());
      // listing names the damaged file rather than silently dropping a secret
      const listed = await rejection(store.listSecrets(), 'truncated: list');
      expect(listed).toBeInstanceOf(StoreIntegrityError);
      expect((listed as Error).message).toContain(victimFile);
    });

    it('detects a file cut to its header, and one byte changed anywhere in the ciphertext', async () => {
      await store.createSecret('app/db', value());
      const file = await onlySecretFile(dir);
      const whole = await readFile(file);
      for (const damaged of [whole.subarray(0, 10), Buffer.alloc(0), flip(whole, 30), flip(whole, whole.length - 1), flip(whole, 2)]) {
        await writeFile(file, damaged);
        expect(await rejection(store.getSecretValue('app/db'), 'edited file')).toBeInstanceOf(StoreIntegrityError);
        expect((await readFile(file)).equals(damaged)).toBe(true);
      }
    });

    it('detects two secrets whose files were swapped', async () => {
      await store.createSecret('app/a', value());
      await store.createSecret('app/b', value());
      const fileA = fileOf(dir, 'app/a');
      const fileB = fileOf(dir, 'app/b');
      await rename(fileA, `${fileA}.swap`);
      await rename(fileB, fileA);
      await rename(`${fileA}.swap`, fileB);
      for (const id of ['app/a', 'app/b']) {
        const error = await rejection(store.getSecretValue(id), `swapped: ${id}`);
        expect(error).toBeInstanceOf(StoreIntegrityError);
        expect((error as Error).message).toMatch(/copied from another secret/);
      }
      expect(await rejection(store.tagSecret('app/a', { x: 'y' }), 'swapped: write')).toBeInstanceOf(StoreIntegrityError);
    });
  });
});

describe('FileSecretLock', () => {
  let dir: string;
  let lock: FileSecretLock;
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  beforeEach(async () => {
    dir = await tempDir('rekey-lock-');
    lock = new FileSecretLock({ dir });
  });

  describe('tryWithLock', () => {
    it('runs fn holding the lock and returns its value', async () => {
      expect(await lock.tryWithLock('app/db', async () => 42)).toEqual({ acquired: true, value: 42 });
      expect((await readdir(join(dir, 'locks'))).filter((n) => n.endsWith('.lock'))).toEqual([]);
    });

    it('refuses a second holder at once while the first holds it, from this or another instance', async () => {
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      const first = lock.tryWithLock('app/db', () => held);
      await sleep(50);
      expect((await readdir(join(dir, 'locks'))).filter((n) => n.endsWith('.lock'))).toHaveLength(1);
      const started = Date.now();
      let ran = false;
      expect(
        await lock.tryWithLock('app/db', async () => {
          ran = true;
        }),
      ).toEqual({ acquired: false });
      expect(await new FileSecretLock({ dir }).tryWithLock('app/db', async () => 1)).toEqual({ acquired: false });
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(ran).toBe(false);
      // another secret is not blocked
      expect(await lock.tryWithLock('app/other', async () => 'ok')).toEqual({ acquired: true, value: 'ok' });
      release();
      expect(await first).toEqual({ acquired: true, value: undefined });
      expect(await lock.tryWithLock('app/db', async () => 'again')).toEqual({ acquired: true, value: 'again' });
    });

    it('releases the lock when fn throws, and rethrows', async () => {
      const failure = new Error('rotation failed');
      await expect(lock.tryWithLock('app/db', async () => Promise.reject(failure))).rejects.toBe(failure);
      expect(await lock.tryWithLock('app/db', async () => 'next')).toEqual({ acquired: true, value: 'next' });
    });
  });
});

function flip(bytes: Buffer, index: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[index] = copy[index]! ^ 0x01;
  return copy;
}

import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Sealed } from '#core/sealed.ts';
import { LocalEncryptedStore } from '#adapters/stores/local-encrypted.ts';
import { FileSecretLock } from '#adapters/locks/file-lock.ts';

const root = join(import.meta.dirname, '../..');
const writer = join(root, 'test/helpers/store-writer.ts');
const dirs: string[] = [];
const children: ChildProcessWithoutNullStreams[] = [];

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
afterAll(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

const tempDir = async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rekey-processes-'));
  dirs.push(dir);
  return dir;
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A store-writer child process; `next()` resolves with its next stdout line. */
interface Child {
  process: ChildProcessWithoutNullStreams;
  next(): Promise<string>;
  go(): void;
  exited: Promise<{ code: number | null; stderr: string }>;
}

function child(args: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', writer, ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(proc);
  proc.stdin.on('error', () => {}); // a child that died early closes its stdin: its exit code tells the story
  let stderr = '';
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => proc.on('exit', (code) => resolve({ code, stderr })));
  const queued: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  createInterface({ input: proc.stdout }).on('line', (line) => {
    const waiter = waiting.shift();
    if (waiter) waiter(line);
    else queued.push(line);
  });
  return {
    process: proc,
    next: () =>
      queued.length > 0
        ? Promise.resolve(queued.shift()!)
        : Promise.race([
            new Promise<string>((resolve) => waiting.push(resolve)),
            exited.then(({ code, stderr: err }) => {
              throw new Error(`store-writer ${args[0]} exited (${code}) before printing: ${err}`);
            }),
          ]),
    go: () => proc.stdin.write('go\n'),
    exited,
  };
}

describe('LocalEncryptedStore across processes', () => {
  it('loses no put and no tag when two processes each write the same secret 50 times at once', async () => {
    const dir = await tempDir();
    const key = randomBytes(32);
    const store = new LocalEncryptedStore({ dir, key });
    await store.createSecret('app/shared', new Sealed('{"password":"initial-value"}'), { tags: { team: 'a' } });
    const env = { REKEY_TEST_KEY: key.toString('base64') };
    const writers = [child(['writes', dir, 'app/shared', 'A', '50'], env), child(['writes', dir, 'app/shared', 'B', '50'], env)];
    for (const w of writers) expect(await w.next()).toBe('ready');
    for (const w of writers) w.go();
    for (const w of writers) expect(JSON.parse(await w.next())).toEqual({ done: 50 });
    for (const w of writers) expect((await w.exited).code).toBe(0);

    const description = await store.describeSecret('app/shared');
    expect(Object.keys(description.tags)).toHaveLength(101);
    expect(description.tags.team).toBe('a');
    for (const label of ['A', 'B']) {
      for (let i = 0; i < 50; i++) {
        expect(description.tags[`${label}-${i}`]).toBe(String(i));
        const version = await store.getSecretValue('app/shared', { stage: `${label}-${i}` });
        expect(version.value.reveal()).toBe(`${label}-value-${i}`);
      }
    }
    expect(description.versions).toHaveLength(101);
    expect((await store.getSecretValue('app/shared')).value.reveal()).toBe('{"password":"initial-value"}');
  }, 120_000);

  it('creates one master key when two processes start on an empty directory at once', async () => {
    const dir = join(await tempDir(), 'store');
    const racers = [child(['key', dir]), child(['key', dir])];
    for (const r of racers) expect(await r.next()).toBe('ready');
    for (const r of racers) r.go();
    const hashes = await Promise.all(racers.map(async (r) => (JSON.parse(await r.next()) as { keyHash: string }).keyHash));
    expect(hashes[0]).toBe(hashes[1]);
    const key = await LocalEncryptedStore.loadOrCreateKey({ dir });
    expect(hashes[0]).toBe(createHash('sha256').update(key).digest('hex'));
    expect((await readdir(dir)).filter((n) => n.startsWith('master.key'))).toEqual(['master.key']);
  }, 60_000);
});

describe('FileSecretLock across processes', () => {
  it('takes over a lock left by a killed process once it is stale, and not before', async () => {
    const dir = await tempDir();
    const staleMs = 2_000; // proper-lockfile's minimum, to keep the test short
    const holder = child(['hold-lock', dir, 'app/db', String(staleMs)]);
    expect(await holder.next()).toBe('locked');
    const lock = new FileSecretLock({ dir, staleMs });
    expect(await lock.tryWithLock('app/db', async () => 'stolen')).toEqual({ acquired: false });
    holder.process.kill('SIGKILL'); // no exit handler runs: the lock directory stays behind
    await holder.exited;
    expect((await readdir(join(dir, 'locks'))).filter((n) => n.endsWith('.lock'))).toHaveLength(1);
    const killedAt = Date.now();
    expect(await lock.tryWithLock('app/db', async () => 'too early')).toEqual({ acquired: false });
    // Stale once its mtime is staleMs old; proper-lockfile's first mtime may sit up to 1 s ahead.
    let outcome: Awaited<ReturnType<typeof lock.tryWithLock<string>>> = { acquired: false };
    while (!outcome.acquired && Date.now() - killedAt < staleMs + 3_000) {
      await sleep(200);
      outcome = await lock.tryWithLock('app/db', async () => 'recovered');
    }
    expect(outcome).toEqual({ acquired: true, value: 'recovered' });
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(staleMs - 1_000);
  }, 60_000);

  it('lets only one of two processes that try at the same moment hold the lock', async () => {
    const dir = await tempDir();
    const contenders = [child(['try-lock', dir, 'app/db', '1500']), child(['try-lock', dir, 'app/db', '1500'])];
    for (const c of contenders) expect(await c.next()).toBe('ready');
    for (const c of contenders) c.go();
    const outcomes = await Promise.all(contenders.map(async (c) => (JSON.parse(await c.next()) as { acquired: boolean }).acquired));
    expect(outcomes.filter(Boolean)).toHaveLength(1);
    // and the winner released it on the way out
    expect(await new FileSecretLock({ dir }).tryWithLock('app/db', async () => 'free')).toEqual({ acquired: true, value: 'free' });
  }, 60_000);
});

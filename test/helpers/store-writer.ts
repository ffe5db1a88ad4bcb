/**
 * A second process for test/integration/local-store-processes.test.ts, run with
 * `node --import tsx test/helpers/store-writer.ts <mode> <dir> …`. It prints `ready`, waits for a
 * `go` line on stdin (so two children start their work together), then works and prints one JSON
 * line. The store key comes from REKEY_TEST_KEY (base64), never from argv.
 *
 *   writes <dir> <secretId> <label> <count>   count × (put a version labelled <label>-i, tag <label>-i)
 *   key <dir>                                 loadOrCreateKey; prints the key's sha256, not the key
 *   hold-lock <dir> <secretId> <staleMs>      takes the FileSecretLock and never lets go (to be killed)
 *   try-lock <dir> <secretId> <holdMs>        tryWithLock holding it for holdMs; prints { acquired }
 */
import { createHash, randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { LocalEncryptedStore } from '#adapters/stores/local-encrypted.ts';
import { FileSecretLock } from '#adapters/locks/file-lock.ts';
import { Sealed } from '#core/sealed.ts';

const [mode, dir, ...rest] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin });
const go = new Promise<void>((resolve) => {
  lines.on('line', (line) => {
    if (line.trim() === 'go') resolve();
  });
});
const say = (value: unknown) => process.stdout.write(`${typeof value === 'string' ? value : JSON.stringify(value)}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  if (!dir) throw new Error('usage: store-writer <mode> <dir> …');
  if (mode === 'writes') {
    const [secretId, label, count] = rest;
    const store = new LocalEncryptedStore({ dir, key: Buffer.from(process.env.REKEY_TEST_KEY ?? '', 'base64') });
    say('ready');
    await go;
    for (let i = 0; i < Number(count); i++) {
      await store.putSecretValue(secretId!, randomUUID(), new Sealed(`${label}-value-${i}`), [`${label}-${i}`]);
      await store.tagSecret(secretId!, { [`${label}-${i}`]: String(i) });
    }
    say({ done: Number(count) });
  } else if (mode === 'key') {
    say('ready');
    await go;
    const key = await LocalEncryptedStore.loadOrCreateKey({ dir });
    say({ keyHash: createHash('sha256').update(key).digest('hex') });
  } else if (mode === 'hold-lock') {
    const [secretId, staleMs] = rest;
    const lock = new FileSecretLock({ dir, staleMs: Number(staleMs) });
    const outcome = await lock.tryWithLock(secretId!, async () => {
      say('locked');
      await new Promise(() => setInterval(() => {}, 60_000)); // held until this process is killed
    });
    if (!outcome.acquired) say('refused');
  } else if (mode === 'try-lock') {
    const [secretId, holdMs] = rest;
    const lock = new FileSecretLock({ dir });
    say('ready');
    await go;
    const outcome = await lock.tryWithLock(secretId!, () => sleep(Number(holdMs)));
    say({ acquired: outcome.acquired });
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    // Codes and messages only: they are built from identifiers.
    process.stderr.write(`${(error as { code?: string }).code ?? ''} ${(error as Error).message}\n`);
    process.exit(1);
  },
);

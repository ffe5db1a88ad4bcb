import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { servers } from '#test/helpers/databases.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';

/**
 * `npm run bench` still runs and prints what the README documents, with the smallest settings it
 * takes, on the test run's own private servers (REKEY_TEST_DB_ENV; the bench starts none). Figures
 * are never asserted — only that every line is JSON with the documented keys and types.
 */

const ROOT = join(import.meta.dirname, '../..');

let dir: string;
let envFile: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rekey-bench-smoke-'));
  envFile = join(dir, 'env');
  const { postgres, mysql } = servers();
  const lines = [
    ...Object.entries({ HOST: postgres.host, PORT: postgres.port, USER: postgres.user, PASSWORD: postgres.password, DATABASE: postgres.database }).map(([k, v]) => `REKEY_TEST_PG_${k}=${v}`),
    ...Object.entries({ HOST: mysql.host, PORT: mysql.port, USER: mysql.user, PASSWORD: mysql.password, DATABASE: mysql.database }).map(([k, v]) => `REKEY_TEST_MYSQL_${k}=${v}`),
  ];
  await writeFile(envFile, `${lines.join('\n')}\n`, { mode: 0o600 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** `npm run -s bench -- <args>`: exit status and every stdout line parsed as JSON; nothing secret printed. */
async function bench(...args: string[]): Promise<Record<string, unknown>[]> {
  const child = spawn('npm', ['run', '-s', 'bench', '--', ...args], {
    cwd: ROOT,
    env: { ...process.env, REKEY_TEST_DB_ENV: envFile, REKEY_BENCH_DUMP: '', REKEY_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (status) => resolve(status));
  });
  const guard = new LeakGuard();
  guard.secret(servers().postgres.password);
  guard.secret(servers().mysql.password);
  guard.output(`bench ${args.join(' ')} stdout`, stdout);
  guard.output(`bench ${args.join(' ')} stderr`, stderr);
  guard.assertClean();
  expect(code, stderr.slice(-2000)).toBe(0);
  const lines = stdout.split('\n').filter((line) => line.trim() !== '');
  return lines.map((line) => {
    expect(() => JSON.parse(line), `not a JSON line: ${line}`).not.toThrow();
    return JSON.parse(line) as Record<string, unknown>;
  });
}

const isNumber = (value: unknown) => typeof value === 'number' && Number.isFinite(value);

describe.concurrent('npm run bench (smoke, smallest settings)', () => {
  it('rotation --json prints one line per engine with the documented keys', { timeout: 90_000 }, async () => {
    const lines = await bench('rotation', '--json', '--n', '4', '--concurrency', '2', '--rounds', '1');
    expect(lines.map((l) => l.engine)).toEqual(['postgres', 'mysql']);
    for (const line of lines) {
      expect(line).toMatchObject({ bench: 'rotation', n: 4, concurrency: 2 });
      for (const key of ['perSecond', 'limitPerSecond', 'ratio', 'p50Ms', 'p99Ms']) expect(isNumber(line[key]), `${String(line.engine)} ${key} = ${JSON.stringify(line[key])}`).toBe(true);
      expect(line.p50Ms as number).toBeLessThanOrEqual(line.p99Ms as number);
      for (const key of ['targetPerSecond', 'targetRatio', 'hmslMs']) expect(isNumber(line[key]), `${String(line.engine)} ${key}`).toBe(true);
      // Linux: the whole machine's CPU per rotation on each side (the database servers included), and the bound it gives.
      if (process.platform === 'linux') {
        const machine = line.machineCpuMsPerRotation as Record<string, unknown>;
        for (const side of ['rekey', 'target', 'limit']) expect(isNumber(machine[side]), `${String(line.engine)} machine ${side}`).toBe(true);
        expect(isNumber(line.ratioBound)).toBe(true);
      }
    }
  });

  it('leak --json prints one line per strategy with the documented keys', { timeout: 90_000 }, async () => {
    const lines = await bench('leak', '--json', '--n', '2');
    expect(lines.map((l) => l.strategy)).toEqual(['single', 'alternating']);
    for (const line of lines) {
      // --n 2: two timed leaks (one per engine) after the two untimed warm-up leaks.
      expect(line).toMatchObject({ bench: 'leak', n: 2 });
      for (const key of ['p50Ms', 'p99Ms']) expect(isNumber(line[key]), `${String(line.strategy)} ${key} = ${JSON.stringify(line[key])}`).toBe(true);
      expect(line.p50Ms as number).toBeLessThanOrEqual(line.p99Ms as number);
    }
  });
});

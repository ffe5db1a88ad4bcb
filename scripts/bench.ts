/**
 * npm run bench -- rotation [--json] [--n 200] [--concurrency 8] [--rounds 3]
 * npm run bench -- coldstart [--json]
 * npm run bench -- leak [--json] [--n 40] [--strategy single|alternating]   (default: both, one line each)
 *
 * Rotation throughput against private PostgreSQL and MariaDB servers (started here, torn down at
 * the end): N throwaway users per engine rotated by rekey at a given concurrency, compared in the
 * same run with the database's own limit — ALTER the password plus one fresh login per user, with
 * no rekey code — and with rekey's own database work alone (its target's password change and
 * verifying login, without store, index, audit or lock: the ceiling of its ratio). After an untimed
 * warm-up of every side (pools opened, code run once), each round times all three, rotating which
 * goes first; medians of the rounds' rates are reported, with this process's CPU per rotation on
 * each side, the CPU of one HMSL hash, and the machine's load average (figures on a shared machine
 * move with it).
 *
 * Cold start: each function's zip from `npm run package` (reused when newer than every source),
 * its size, and the time to import its bundle in a fresh Node process (median of 11 processes:
 * a shared machine is noisy; the load average is printed with the human-readable figures).
 * Targets: <= 1 MB zipped, <= 150 ms import.
 *
 * Leak: `rekey serve` in a child process (the real binary) with private PostgreSQL and MariaDB
 * servers and the GitHub API double; N managed users (half per engine). For each, a signed GitHub
 * secret_scanning_alert delivery of its password (as a connection URI) is POSTed, and the clock
 * runs until a real login with the leaked password is refused (probes 5 ms apart; the clock stops
 * when the refused login returns, so it includes that login's cost). One leak at a time: the
 * next is sent once the previous one's alert is resolved and its issue opened. p50/p99 after two
 * warm-up leaks. Targets: p50 <= 100 ms, p99 <= 250 ms.
 *
 * REKEY_TEST_DB_ENV=<dir>/env reuses servers started with `scripts/test-databases.sh start <dir>`;
 * REKEY_BENCH_DUMP=1 REKEY_LOG_LEVEL=info prints `rekey serve`'s log (per-step timings).
 */
// Quiet the AWS SDK's Node 20 deprecation notice in the figures' output (see scripts/rekey-bin.mjs).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { parseConfig } from '#runtime/config.ts';
import { buildServices } from '#runtime/services.ts';
import { Sealed } from '#core/sealed.ts';
import { silentLogger } from '#core/ports/logger.ts';
import { hmslHash } from '#core/fingerprint.ts';
import { DatabaseTargets } from '#adapters/targets/registry.ts';
import type { DatabaseSecret } from '#core/secret.ts';
import { parseEnvFile, type ServerLogin } from '../test/helpers/databases-env.ts';
import { extractZip, functionZips, packageIsFresh, runPackage } from '../test/packaging/run-package.ts';

type Engine = 'postgres' | 'mysql';

interface Args {
  json: boolean;
  n: number;
  concurrency: number;
  rounds: number;
  strategy?: 'single' | 'alternating';
  nGiven: boolean;
}

function parseArgs(argv: string[]): { suite: string; args: Args } {
  const [suite = 'rotation', ...rest] = argv;
  const args: Args = { json: false, n: 200, concurrency: 8, rounds: 3, nGiven: false };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    if (flag === '--json') args.json = true;
    else if (flag === '--n') (args.n = Number(rest[++i])), (args.nGiven = true);
    else if (flag === '--strategy') {
      const strategy = rest[++i];
      if (strategy !== 'single' && strategy !== 'alternating') throw new Error('--strategy must be single or alternating');
      args.strategy = strategy;
    }
    else if (flag === '--concurrency') args.concurrency = Number(rest[++i]);
    else if (flag === '--rounds') args.rounds = Number(rest[++i]);
    else throw new Error(`unknown option ${flag}`);
  }
  return { suite, args };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

/**
 * The whole machine's busy CPU time so far, in ms (Linux: /proc/stat's user, nice, system, irq and
 * softirq of all cores; steal is the hypervisor's, not ours), so a side's cost counts the database
 * server's processes too. Undefined where there is no /proc/stat.
 */
function machineBusyMs(): number | undefined {
  let line: string | undefined;
  try {
    line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
  } catch {
    return undefined;
  }
  const [label, user, nice, system, , , irq, softirq] = (line ?? '').trim().split(/\s+/);
  if (label !== 'cpu') return undefined;
  const ticks = [user, nice, system, irq, softirq].reduce((sum, t) => sum + Number(t ?? 0), 0);
  return (ticks * 1000) / CLOCK_TICKS;
}
// USER_HZ, the unit of /proc/stat: 100 on every Linux architecture Node runs on.
const CLOCK_TICKS = 100;

/**
 * Runs `work` for each item with at most `concurrency` at once; returns wall time, per-item
 * latencies, this process's CPU time (user + system, every thread: libuv's pool included) and the
 * whole machine's (this process, the database servers and anything else running).
 */
async function pool<T>(
  items: T[],
  concurrency: number,
  work: (item: T) => Promise<void>,
): Promise<{ seconds: number; latencies: number[]; cpuMs: number; machineCpuMs?: number }> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  const machine = machineBusyMs();
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const item = items[next++]!;
        const t0 = performance.now();
        await work(item);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  const machineNow = machineBusyMs();
  const machineCpuMs = machine === undefined || machineNow === undefined ? undefined : machineNow - machine;
  return { seconds: (performance.now() - started) / 1000, latencies, cpuMs: (used.user + used.system) / 1000, machineCpuMs };
}

const password = () => `B${randomBytes(18).toString('base64url')}1!`;

interface EngineAdmin {
  run(sql: string, params?: unknown[]): Promise<void>;
  tryLogin(user: string, pw: string): Promise<void>;
  close(): Promise<void>;
}

function admin(engine: Engine, s: ServerLogin, concurrency: number): EngineAdmin {
  if (engine === 'postgres') {
    const p = new pg.Pool({ host: s.host, port: s.port, user: s.user, password: s.password, database: s.database, max: concurrency });
    return {
      run: async (sql, params) => void (await p.query(sql, params as unknown[])),
      tryLogin: async (user, pw) => {
        const c = new pg.Client({ host: s.host, port: s.port, user, password: pw, database: s.database });
        await c.connect();
        await c.query('SELECT 1');
        await c.end();
      },
      close: () => p.end(),
    };
  }
  const p = mysql.createPool({ host: s.host, port: s.port, user: s.user, password: s.password, database: s.database, connectionLimit: concurrency });
  return {
    run: async (sql, params) => void (await p.query(sql, params)),
    tryLogin: async (user, pw) => {
      const c = await mysql.createConnection({ host: s.host, port: s.port, user, password: pw, database: s.database });
      await c.query('SELECT 1');
      await c.end();
    },
    close: () => p.end(),
  };
}

async function benchRotation(args: Args, servers: Record<Engine, ServerLogin>): Promise<Record<string, unknown>[]> {
  const results: Record<string, unknown>[] = [];
  const targets = new DatabaseTargets();
  // The HMSL hash every stored value is indexed by (GitGuardian's scrypt): its CPU, alone.
  const hmslTimes: number[] = [];
  for (let i = 0; i < 21; i++) {
    const t0 = process.cpuUsage();
    await hmslHash(password());
    const used = process.cpuUsage(t0);
    hmslTimes.push((used.user + used.system) / 1000);
  }
  const hmslMs = round1(median(hmslTimes));
  for (const engine of ['postgres', 'mysql'] as Engine[]) {
    const s = servers[engine];
    const db = admin(engine, s, args.concurrency);
    const storeDir = mkdtempSync(join(tmpdir(), 'rekey-bench-store-'));
    const services = await buildServices(parseConfig({ REKEY_STORE_DIR: storeDir, REKEY_MASTER_KEY: randomBytes(32).toString('base64') }), { logger: silentLogger });
    const users = Array.from({ length: args.n }, (_, i) => `bench_${engine}_${i}_${randomBytes(3).toString('hex')}`);
    const engineName = engine === 'postgres' ? 'postgres' : 'mariadb';
    const adminId = `bench/${engine}/admin`;
    await services.deps.store.createSecret(adminId, new Sealed(JSON.stringify({ engine: engineName, host: s.host, port: s.port, username: s.user, password: s.password, dbname: s.database })));
    for (const user of users) {
      const pw = password();
      if (engine === 'postgres') await db.run(`CREATE ROLE "${user}" LOGIN PASSWORD '${pw}'`);
      else {
        await db.run(`CREATE USER ?@'%' IDENTIFIED BY ?`, [user, pw]);
        // Logins name the database, so the user needs a privilege on it (as an application user would).
        await db.run(`GRANT SELECT ON ${mysql.escapeId(s.database)}.* TO ?@'%'`, [user]);
      }
      await services.deps.store.createSecret(
        `bench/${engine}/${user}`,
        new Sealed(JSON.stringify({ engine: engineName, host: s.host, port: s.port, username: user, password: pw, dbname: s.database, masterarn: adminId })),
        { tags: { 'rekey:strategy': 'single' } },
      );
    }
    const baselineRates: number[] = [];
    const rekeyRates: number[] = [];
    const targetRates: number[] = [];
    const cpu = { rekey: [] as number[], target: [] as number[], baseline: [] as number[] };
    const machineCpu = { rekey: [] as number[], target: [] as number[], baseline: [] as number[] };
    const latencies: number[] = [];
    const target = targets.forEngine(engineName);
    const adminLogin: DatabaseSecret = { engine: engineName, host: s.host, port: s.port, username: s.user, password: new Sealed(s.password), dbname: s.database, extra: {} };
    // The database's limit: ALTER the password, then one fresh login with it (what rekey's
    // setSecret and testSecret amount to), on a pool as wide as the concurrency.
    const baselinePhase = (items: string[]) =>
      pool(items, args.concurrency, async (user) => {
        const pw = password();
        if (engine === 'postgres') await db.run(`ALTER ROLE "${user}" WITH LOGIN PASSWORD '${pw}'`);
        else await db.run(`ALTER USER ?@'%' IDENTIFIED BY ?`, [user, pw]);
        await db.tryLogin(user, pw);
      });
    const rekeyPhase = (items: string[]) =>
      pool(items, args.concurrency, async (user) => {
        await services.rotation.rotate(`bench/${engine}/${user}`, { trigger: 'schedule' });
      });
    // rekey's own database work and nothing else: the target's password change as the admin
    // (PostgreSQL: a SCRAM verifier computed here; MariaDB: the user's hosts looked up first) and
    // its verifying login (MariaDB: with the session watermark) — no store, index, audit or lock.
    // The ceiling of any rekey that does this work, whatever its bookkeeping costs.
    const targetPhase = (items: string[]) =>
      pool(items, args.concurrency, async (user) => {
        const next = new Sealed(password());
        const login = { ...adminLogin, username: user, password: next };
        await target.setPassword(login, user, next, { admin: adminLogin });
        await target.verify(login);
      });
    // The baseline changes the passwords behind rekey's back; re-sync the store as an operator
    // would before rekey rotates them again (not timed).
    let storeInSync = true;
    const resync = async (items: string[]) => {
      for (const user of items) {
        const pw = password();
        if (engine === 'postgres') await db.run(`ALTER ROLE "${user}" WITH PASSWORD '${pw}'`);
        else await db.run(`ALTER USER ?@'%' IDENTIFIED BY ?`, [user, pw]);
        await services.deps.store.putSecretValue(
          `bench/${engine}/${user}`,
          randomUUID(),
          new Sealed(JSON.stringify({ engine: engineName, host: s.host, port: s.port, username: user, password: pw, dbname: s.database, masterarn: adminId })),
          ['AWSCURRENT'],
        );
      }
    };
    // Warm-up, not timed: both sides open their pools and run their code once before the clock.
    const warm = users.slice(0, Math.min(users.length, 2 * args.concurrency));
    await rekeyPhase(warm);
    await baselinePhase(warm);
    await targetPhase(warm);
    await resync(warm);
    for (let round = 0; round < args.rounds; round++) {
      // Rounds rotate which side goes first, so none always runs right after another.
      const sides = ['baseline', 'target', 'rekey'] as const;
      for (const side of sides.map((_, i) => sides[(i + round) % sides.length]!)) {
        if (side === 'baseline' || side === 'target') {
          const ran = side === 'baseline' ? await baselinePhase(users) : await targetPhase(users);
          (side === 'baseline' ? baselineRates : targetRates).push(args.n / ran.seconds);
          cpu[side].push(ran.cpuMs / args.n);
          if (ran.machineCpuMs !== undefined) machineCpu[side].push(ran.machineCpuMs / args.n);
          storeInSync = false;
          continue;
        }
        if (!storeInSync) await resync(users);
        storeInSync = true;
        const rotated = await rekeyPhase(users);
        rekeyRates.push(args.n / rotated.seconds);
        cpu.rekey.push(rotated.cpuMs / args.n);
        if (rotated.machineCpuMs !== undefined) machineCpu.rekey.push(rotated.machineCpuMs / args.n);
        latencies.push(...rotated.latencies);
      }
    }
    for (const user of users) {
      if (engine === 'postgres') await db.run(`DROP ROLE IF EXISTS "${user}"`);
      else await db.run(`DROP USER IF EXISTS ?@'%'`, [user]);
    }
    await services.close();
    await db.close();
    rmSync(storeDir, { recursive: true, force: true });
    const perSecond = median(rekeyRates);
    const limitPerSecond = median(baselineRates);
    const targetPerSecond = median(targetRates);
    results.push({
      bench: 'rotation',
      engine,
      n: args.n,
      concurrency: args.concurrency,
      rounds: args.rounds,
      perSecond: round1(perSecond),
      limitPerSecond: round1(limitPerSecond),
      ratio: Math.round((perSecond / limitPerSecond) * 100) / 100,
      p50Ms: round1(percentile(latencies, 50)),
      p99Ms: round1(percentile(latencies, 99)),
      // rekey's database work alone (targetPhase) and its ratio to the limit: the ceiling.
      targetPerSecond: round1(targetPerSecond),
      targetRatio: Math.round((targetPerSecond / limitPerSecond) * 100) / 100,
      // This process's CPU per rotation (medians), each side; the database server's is not counted.
      cpuMsPerRotation: { rekey: round1(median(cpu.rekey)), target: round1(median(cpu.target)), limit: round1(median(cpu.baseline)) },
      hmslMs,
      ...machineFigures(machineCpu, hmslMs),
      loadAverage: round1(loadavg()[0]!),
    });
  }
  await targets.close();
  return results;
}

/**
 * The whole machine's CPU per rotation on each side (medians), and what it bounds. Where the
 * machine's cores are what runs out (its load average at or above its core count), a side's rate
 * is about cores / its CPU per rotation, so the best ratio any rekey could reach that does its
 * database work and one HMSL hash per stored value — with no store, index, audit or lock at all —
 * is limit / (database work + HMSL). Absent where /proc/stat is not there.
 */
function machineFigures(machineCpu: Record<'rekey' | 'target' | 'baseline', number[]>, hmslMs: number): Record<string, unknown> {
  if (machineCpu.rekey.length === 0 || machineCpu.target.length === 0 || machineCpu.baseline.length === 0) return {};
  const rekey = median(machineCpu.rekey);
  const target = median(machineCpu.target);
  const limit = median(machineCpu.baseline);
  return {
    machineCpuMsPerRotation: { rekey: round1(rekey), target: round1(target), limit: round1(limit) },
    cores: cpus().length,
    ratioBound: Math.round((limit / (target + hmslMs)) * 100) / 100,
  };
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const cpuOf = (r: Record<string, unknown>, side: string) => (r.cpuMsPerRotation as Record<string, number>)[side];
const machineOf = (r: Record<string, unknown>, side: string) => (r.machineCpuMsPerRotation as Record<string, number>)[side];

async function withDatabases<T>(fn: (servers: Record<Engine, ServerLogin>) => Promise<T>): Promise<T> {
  // Servers already started with `scripts/test-databases.sh start DIR` (as the tests allow).
  if (process.env.REKEY_TEST_DB_ENV) return fn(parseEnvFile(readFileSync(process.env.REKEY_TEST_DB_ENV, 'utf8')));
  const script = join(import.meta.dirname, 'test-databases.sh');
  const dir = mkdtempSync(join(tmpdir(), 'rekey-bench-db-'));
  execFileSync('bash', [script, 'start', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    return await fn(parseEnvFile(readFileSync(join(dir, 'env'), 'utf8')));
  } finally {
    execFileSync('bash', [script, 'stop', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
}

// ---------------------------------------------------------------------------------- coldstart

const COLDSTART_RUNS = 11;
const COLDSTART_TARGETS = { zipBytes: 1_000_000, importMs: 150 };

/** Imports `file` in a new Node process and returns the milliseconds the import() took. */
function timeImport(file: string): number {
  const probe = `const t0 = performance.now(); await import(${JSON.stringify(pathToFileURL(file).href)}); console.log('importMs=' + (performance.now() - t0));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', probe], {
    encoding: 'utf8',
    timeout: 30_000,
    // What the Lambda runtime would set; no credentials are needed to import.
    env: { PATH: process.env.PATH, AWS_REGION: 'us-east-1', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', REKEY_STORE: 'aws', REKEY_LOG_LEVEL: 'info' },
  });
  const match = /importMs=([\d.]+)/.exec(run.stdout ?? '');
  if (run.status !== 0 || !match) throw new Error(`importing ${file} failed (${run.status ?? run.signal}): ${(run.stderr ?? '').split('\n').slice(0, 5).join('\n')}`);
  return Number(match[1]);
}

async function benchColdstart(args: Args): Promise<Record<string, unknown>[]> {
  if (!packageIsFresh()) {
    if (!args.json) console.error('packaging (npm run package)…');
    await runPackage();
  }
  const zips = functionZips();
  if (zips.size === 0) throw new Error('npm run package produced no function zips');
  const results: Record<string, unknown>[] = [];
  for (const [name, zip] of zips) {
    const dir = mkdtempSync(join(tmpdir(), `rekey-coldstart-${name}-`));
    try {
      const files = extractZip(readFileSync(zip.path), dir);
      const bundle = files.find((f) => f.endsWith(`${name}.mjs`));
      if (!bundle) throw new Error(`${zip.path} holds no ${name}.mjs bundle`);
      const times = Array.from({ length: COLDSTART_RUNS }, () => timeImport(bundle));
      results.push({ bench: 'coldstart', function: name, zipBytes: zip.bytes, importMs: round1(median(times)) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return results;
}

function printColdstart(r: Record<string, unknown>): void {
  const zipBytes = Number(r.zipBytes);
  const importMs = Number(r.importMs);
  const ok = (pass: boolean) => (pass ? 'ok' : 'OVER TARGET');
  console.log(
    `coldstart ${String(r.function).padEnd(19)} zip ${(zipBytes / 1024).toFixed(1).padStart(7)} KB (${ok(zipBytes <= COLDSTART_TARGETS.zipBytes)}, target <= 1 MB)` +
      `  import ${importMs.toFixed(1).padStart(6)} ms median of ${COLDSTART_RUNS} (${ok(importMs <= COLDSTART_TARGETS.importMs)}, target <= ${COLDSTART_TARGETS.importMs} ms)`,
  );
}

// ---------------------------------------------------------------------------------- leak

const LEAK_TARGETS = { p50Ms: 100, p99Ms: 250 };
const LEAK_WARMUP = 2;
// A pause between login probes: back to back, the probes (a MariaDB login costs ~5 ms) load the
// two cores enough to slow the pipeline they time. REKEY_BENCH_POLL_GAP=0 for back to back.
const POLL_GAP_MS = Number(process.env.REKEY_BENCH_POLL_GAP ?? 5);

/** True when the login is accepted, false when refused for its credentials; throws otherwise. */
async function loginWorks(engine: Engine, s: ServerLogin, user: string, pw: string): Promise<boolean> {
  if (engine === 'postgres') {
    const c = new pg.Client({ host: s.host, port: s.port, user, password: pw, database: s.database });
    c.on('error', () => {}); // rekey ending the user's sessions may kill this one right after login
    try {
      await c.connect();
      return true;
    } catch (error) {
      const code = (error as { code?: string }).code ?? '';
      if (code === '28P01' || code === '28000') return false;
      if (code === '57P01') return true; // logged in, then terminated by rekey's end of sessions
      throw error;
    } finally {
      await c.end().catch(() => {});
    }
  }
  let c: mysql.Connection | undefined;
  try {
    // No database: the bench users hold USAGE only; the login itself is what is measured.
    c = await mysql.createConnection({ host: s.host, port: s.port, user, password: pw });
    c.on('error', () => {});
    return true;
  } catch (error) {
    const code = (error as { code?: string }).code ?? '';
    if (code === 'ER_ACCESS_DENIED_ERROR' || code === 'ER_ACCOUNT_HAS_BEEN_LOCKED') return false;
    if (code === 'PROTOCOL_CONNECTION_LOST' || code === 'ER_CONNECTION_KILLED') return true; // logged in, then killed
    throw error;
  } finally {
    await c?.end().catch(() => {});
  }
}

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function benchLeak(args: Args, strategy: 'single' | 'alternating', servers: Record<Engine, ServerLogin>): Promise<Record<string, unknown>> {
  // A bench script may use the test helpers: the GitHub API double is what the tests drive too.
  const { GitHubDouble } = await import('../test/helpers/github-double.ts');
  const n = args.nGiven ? args.n : 40;
  const storeDir = mkdtempSync(join(tmpdir(), 'rekey-bench-leak-'));
  const token = `ghp_${randomBytes(16).toString('hex')}`;
  const webhookSecret = randomBytes(24).toString('hex');
  const github = await GitHubDouble.start({ token });
  const env = {
    REKEY_STORE_DIR: storeDir,
    REKEY_MASTER_KEY: randomBytes(32).toString('base64'),
    REKEY_LOG_LEVEL: process.env.REKEY_LOG_LEVEL ?? 'warn',
    GITHUB_WEBHOOK_SECRET: webhookSecret,
    GITHUB_TOKEN: token,
    GITHUB_API_URL: github.url,
    REKEY_TICKETS_REPO: 'bench/tickets',
  };
  // The bench writes the secrets into the store `rekey serve` reads (same directory and key).
  const services = await buildServices(parseConfig(env), { logger: silentLogger });
  const users: { engine: Engine; username: string; password: string; secretId: string }[] = [];
  const dbs = { postgres: admin('postgres', servers.postgres, 2), mysql: admin('mysql', servers.mysql, 2) };
  const total = n + LEAK_WARMUP;
  for (let i = 0; i < total; i++) {
    const engine: Engine = i % 2 === 0 ? 'postgres' : 'mysql';
    const s = servers[engine];
    const engineName = engine === 'postgres' ? 'postgres' : 'mariadb';
    const adminId = `bench/${engine}/admin`;
    if (i < 2) {
      await services.deps.store.createSecret(adminId, new Sealed(JSON.stringify({ engine: engineName, host: s.host, port: s.port, username: s.user, password: s.password, dbname: s.database })), {
        tags: { 'rekey:managed': 'false' },
      });
    }
    const username = `leak_${i}_${randomBytes(3).toString('hex')}`;
    const pw = password();
    if (engine === 'postgres') await dbs.postgres.run(`CREATE ROLE "${username}" LOGIN PASSWORD '${pw}'`);
    else {
      await dbs.mysql.run(`CREATE USER ?@'%' IDENTIFIED BY ?`, [username, pw]);
      await dbs.mysql.run(`GRANT ALL PRIVILEGES ON \`${s.database}\`.* TO ?@'%'`, [username]);
    }
    const secretId = `bench/${engine}/${username}`;
    await services.deps.store.createSecret(
      secretId,
      new Sealed(JSON.stringify({ engine: engineName, host: s.host, port: s.port, username, password: pw, dbname: s.database, masterarn: adminId })),
      { tags: { 'rekey:strategy': strategy, 'rekey:environment': 'prod' } },
    );
    users.push({ engine, username, password: pw, secretId });
  }

  const child = spawn(process.execPath, [join(import.meta.dirname, 'rekey-bin.mjs'), 'serve', '--port', '0', '--sweep-every', '0'], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = `${stderr}${chunk.toString()}`.slice(process.env.REKEY_BENCH_DUMP ? -200_000 : -4000)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const latencies: Record<Engine, number[]> = { postgres: [], mysql: [] };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const match = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
        if (match) resolve(match[1]!);
      });
      void exited.then((code) => reject(new Error(`rekey serve exited (${code}): ${stderr}`)));
    });
    const template = JSON.parse(readFileSync(join(import.meta.dirname, '../events/github/secret-scanning-alert-created.json'), 'utf8')) as Record<string, any>;
    for (const [i, user] of users.entries()) {
      const s = servers[user.engine];
      const scheme = user.engine === 'postgres' ? 'postgres' : 'mysql';
      const number = i + 1;
      github.addAlert('bench/app', { number, secret: `${scheme}://${user.username}:${user.password}@${s.host}:${s.port}/${s.database}` });
      const payload = structuredClone(template);
      payload.alert.number = number;
      payload.repository.name = 'app';
      payload.repository.full_name = 'bench/app';
      payload.repository.owner.login = 'bench';
      const body = JSON.stringify(payload);
      const headers = {
        'content-type': 'application/json',
        'x-github-event': 'secret_scanning_alert',
        'x-github-delivery': randomUUID(),
        'x-hub-signature-256': `sha256=${createHmac('sha256', webhookSecret).update(body).digest('hex')}`,
      };
      const t0 = performance.now();
      const response = await fetch(`${url}/webhooks/github`, { method: 'POST', body, headers });
      if (response.status !== 202) throw new Error(`webhook answered ${response.status}: ${await response.text()}`);
      await response.text();
      // Poll with real login attempts until the leaked password is refused.
      while (await loginWorks(user.engine, s, user.username, user.password)) {
        if (performance.now() - t0 > 30_000) throw new Error(`leak ${number} (${user.engine}): the leaked password still works after 30 s; rekey serve said: ${stderr}`);
        if (POLL_GAP_MS) await new Promise((resolve) => setTimeout(resolve, POLL_GAP_MS));
      }
      const ms = performance.now() - t0;
      if (i >= LEAK_WARMUP) latencies[user.engine].push(ms);
      // The rest of the remediation (alert, ticket) finishes before the next leak is sent.
      await until(() => github.alert('bench/app', number)?.state === 'resolved' && github.issues('bench/tickets').some((issue) => issue.title.endsWith(user.secretId)), `leak ${number} to be resolved and ticketed`);
    }
  } finally {
    child.kill('SIGTERM');
    await exited;
    for (const user of users) {
      for (const name of [user.username, `${user.username}_clone`]) {
        if (user.engine === 'postgres') {
          await dbs.postgres.run(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [name]).catch(() => {});
          await dbs.postgres.run(`DROP ROLE IF EXISTS "${name}"`).catch(() => {});
        } else await dbs.mysql.run(`DROP USER IF EXISTS ?@'%'`, [name]).catch(() => {});
      }
    }
    await dbs.postgres.close();
    await dbs.mysql.close();
    await services.close();
    await github.close();
    rmSync(storeDir, { recursive: true, force: true });
  }
  if (process.env.REKEY_BENCH_DUMP) console.error(stderr);
  const all = [...latencies.postgres, ...latencies.mysql];
  return {
    bench: 'leak',
    n: all.length,
    p50Ms: round1(percentile(all, 50)),
    p99Ms: round1(percentile(all, 99)),
    strategy,
    postgres: { p50Ms: round1(percentile(latencies.postgres, 50)), p99Ms: round1(percentile(latencies.postgres, 99)) },
    mysql: { p50Ms: round1(percentile(latencies.mysql, 50)), p99Ms: round1(percentile(latencies.mysql, 99)) },
    loadAverage: round1(loadavg()[0]!),
  };
}

async function main(): Promise<void> {
  const { suite, args } = parseArgs(process.argv.slice(2));
  if (suite === 'leak') {
    const strategies = args.strategy ? [args.strategy] : (['single', 'alternating'] as const);
    const results = await withDatabases(async (servers) => {
      const out: Record<string, unknown>[] = [];
      for (const strategy of strategies) out.push(await benchLeak(args, strategy, servers));
      return out;
    });
    for (const r of results) {
      if (args.json) {
        console.log(JSON.stringify({ bench: r.bench, n: r.n, p50Ms: r.p50Ms, p99Ms: r.p99Ms, strategy: r.strategy, loadAverage: r.loadAverage }));
        continue;
      }
      const ok = (value: unknown, target: number) => (Number(value) <= target ? 'ok' : 'OVER TARGET');
      const engines = (['postgres', 'mysql'] as const).map((e) => `${e} p50 ${(r[e] as { p50Ms: number }).p50Ms} ms / p99 ${(r[e] as { p99Ms: number }).p99Ms} ms`).join(', ');
      console.log(
        `leak ${String(r.strategy).padEnd(11)} n=${r.n}: POST → leaked password refused p50 ${r.p50Ms} ms (${ok(r.p50Ms, LEAK_TARGETS.p50Ms)}, target <= ${LEAK_TARGETS.p50Ms} ms), ` +
          `p99 ${r.p99Ms} ms (${ok(r.p99Ms, LEAK_TARGETS.p99Ms)}, target <= ${LEAK_TARGETS.p99Ms} ms); ${engines}; load average ${r.loadAverage}`,
      );
    }
    return;
  }
  if (suite === 'coldstart') {
    if (!args.json) console.log(`coldstart on ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} (import times grow with the load)`);
    for (const r of await benchColdstart(args)) {
      if (args.json) console.log(JSON.stringify(r));
      else printColdstart(r);
    }
    return;
  }
  if (suite !== 'rotation') throw new Error(`unknown bench "${suite}" (known: rotation, coldstart, leak)`);
  const results = await withDatabases((servers) => benchRotation(args, servers));
  for (const r of results) {
    if (args.json) console.log(JSON.stringify(r));
    else
      console.log(
        `rotation ${String(r.engine).padEnd(8)} n=${r.n} c=${r.concurrency}: ${r.perSecond}/s verified rotations, database limit ${r.limitPerSecond}/s, ratio ${r.ratio} (target >= 0.7), p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms; load average ${r.loadAverage}\n` +
          `         rekey's database work alone ${r.targetPerSecond}/s (ratio ${r.targetRatio}); CPU of this process per rotation: rekey ${cpuOf(r, 'rekey')} ms, its database work alone ${cpuOf(r, 'target')} ms, the limit ${cpuOf(r, 'limit')} ms; HMSL hash ${r.hmslMs} ms` +
          (r.machineCpuMsPerRotation
            ? `\n         whole machine (${r.cores} cores, database servers included) CPU per rotation: rekey ${machineOf(r, 'rekey')} ms, its database work alone ${machineOf(r, 'target')} ms, the limit ${machineOf(r, 'limit')} ms; ` +
              `ratio bound for database work + HMSL, nothing else: ${r.ratioBound}`
            : ''),
      );
  }
}

await main();

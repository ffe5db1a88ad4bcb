// npm run demo (or npm start): the main job, locally, in one command. Starts private PostgreSQL and
// MariaDB servers, registers an admin and an application user for each, rotates them, revokes the
// old credentials and proves it by logging in, shows the audit trail, then starts `rekey serve` and
// posts a signed GitGuardian incident (HMAC-SHA-256, no value: the hmsl_hash) of the AWSCURRENT
// PostgreSQL password, waits until that password is refused, and prints the timeline (leak received → rotated → revoked → ticket) with timings.
// Cleans up after itself. No secret value is ever printed.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { LocalChainAuditLog } from '#adapters/audit/local-chain.ts';
import type { AuditRecord } from '#core/audit.ts';
import { hmslHash } from '#core/fingerprint.ts';

const ROOT = resolve(import.meta.dirname, '..');
const BIN = join(ROOT, 'scripts/rekey-bin.mjs');
const execFileAsync = promisify(execFile);

/** Every value the demo creates or reads; REKEY_DEMO_VALUES_FILE (tests) receives them to check the output. */
const values = new Set<string>();
const seen = (value: string) => (values.add(value), value);

const bold = (text: string) => (process.stdout.isTTY ? `\x1b[1m${text}\x1b[0m` : text);
const say = (text = '') => process.stdout.write(`${text}\n`);
const step = (text: string) => say(`\n${bold(`== ${text}`)}`);
const indent = (text: string) => text.replace(/\n$/, '').split('\n').map((l) => `  ${l}`).join('\n');

interface Servers {
  REKEY_TEST_PG_PORT: string;
  REKEY_TEST_PG_PASSWORD: string;
  REKEY_TEST_MYSQL_PORT: string;
  REKEY_TEST_MYSQL_USER: string;
  REKEY_TEST_MYSQL_PASSWORD: string;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'rekey-demo-'));
  // Its own directory: the servers run as service users, who cannot enter `work` (0700).
  const dbDir = await mkdtemp(join(tmpdir(), 'rekey-demo-db-'));
  const env: NodeJS.ProcessEnv = { ...process.env, REKEY_STORE_DIR: join(work, 'store'), REKEY_LOG_LEVEL: 'warn' };
  delete env.REKEY_STORE; // always the local store, whatever the caller's shell says
  let serve: ChildProcess | undefined;
  try {
    step('starting private PostgreSQL and MariaDB (password authentication only)');
    await execFileAsync('bash', [join(ROOT, 'scripts/test-databases.sh'), 'start', dbDir]);
    const db = Object.fromEntries(
      (await readFile(join(dbDir, 'env'), 'utf8')).split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    ) as unknown as Servers;
    seen(db.REKEY_TEST_PG_PASSWORD);
    seen(db.REKEY_TEST_MYSQL_PASSWORD);
    const firstPassword = seen(`Demo-${randomBytes(12).toString('base64url')}`);
    await asPgAdmin(db, async (c) => c.query(`CREATE ROLE demo_app LOGIN PASSWORD ${pg.escapeLiteral(firstPassword)}`));
    await asMyAdmin(db, async (c) => {
      await c.query(`CREATE USER 'demo_app'@'%' IDENTIFIED BY ?`, [firstPassword]);
      await c.query(`GRANT SELECT ON rekey_test.* TO 'demo_app'@'%'`);
    });
    say(`  PostgreSQL on 127.0.0.1:${db.REKEY_TEST_PG_PORT}, MariaDB on 127.0.0.1:${db.REKEY_TEST_MYSQL_PORT}; user demo_app on both`);

    const rekey = (args: string[], options: { input?: string; allowFail?: boolean; quiet?: boolean; env?: NodeJS.ProcessEnv } = {}) =>
      runRekey(args, { env: options.env ?? env, ...options });

    step('registering secrets (rekey put)');
    const pgAdmin = { engine: 'postgres', host: '127.0.0.1', port: Number(db.REKEY_TEST_PG_PORT), username: 'postgres', password: db.REKEY_TEST_PG_PASSWORD, dbname: 'postgres' };
    const myAdmin = { engine: 'mariadb', host: '127.0.0.1', port: Number(db.REKEY_TEST_MYSQL_PORT), username: db.REKEY_TEST_MYSQL_USER, password: db.REKEY_TEST_MYSQL_PASSWORD, dbname: 'rekey_test' };
    await rekey(['put', 'pg-admin', '--tag', 'rekey:managed=false'], { input: JSON.stringify(pgAdmin) });
    await rekey(['put', 'demo/postgres', '--tag', 'rekey:max-age=30d', '--tag', 'rekey:environment=prod', '--tag', 'team=demo'], {
      input: JSON.stringify({ ...pgAdmin, username: 'demo_app', password: firstPassword, masterarn: 'pg-admin' }),
    });
    await rekey(['put', 'mariadb-admin', '--tag', 'rekey:managed=false'], { input: JSON.stringify(myAdmin) });
    await rekey(['put', 'demo/mariadb', '--tag', 'rekey:strategy=single', '--tag', 'rekey:max-age=30d', '--tag', 'team=demo'], {
      input: JSON.stringify({ ...myAdmin, username: 'demo_app', password: firstPassword, masterarn: 'mariadb-admin' }),
    });
    await rekey(['status']);

    step('rotating (rekey rotate): a production secret needs a reason');
    await rekey(['rotate', 'demo/postgres'], { allowFail: true });
    await rekey(['rotate', '--all', '--tag', 'team=demo', '--reason', 'demo: first rotation', '--dry-run']);
    await rekey(['rotate', '--all', '--tag', 'team=demo', '--reason', 'demo: first rotation']);

    step('revoking the previous credentials (rekey revoke)');
    await rekey(['revoke', 'demo/postgres', '--reason', 'demo']);
    await rekey(['revoke', 'demo/mariadb', '--reason', 'demo']);

    step('proving it with real logins');
    const current = async (secretId: string) => {
      const { stdout } = await runRekey(['get', secretId, '--reveal'], { env, quiet: true });
      const value = JSON.parse(stdout) as { username: string; password: string; port: number };
      seen(value.password);
      return value;
    };
    let pgNow = await current('demo/postgres');
    const myNow = await current('demo/mariadb');
    check('old PostgreSQL password refused', !(await canLogIn('postgres', db, 'demo_app', firstPassword)));
    check('old MariaDB password refused', !(await canLogIn('mariadb', db, 'demo_app', firstPassword)));
    check(`AWSCURRENT logs in to PostgreSQL (as ${pgNow.username})`, await canLogIn('postgres', db, pgNow.username, pgNow.password));
    check(`AWSCURRENT logs in to MariaDB (as ${myNow.username})`, await canLogIn('mariadb', db, myNow.username, myNow.password));

    step('the audit trail (rekey audit): who did what, chained by hash');
    await rekey(['audit', '--secret', 'demo/postgres']);
    await rekey(['audit', '--verify']);

    step('a leak: rekey serve, then a signed GitGuardian incident of the AWSCURRENT PostgreSQL password');
    // The signature token GitGuardian and rekey share (Settings → Integrations → Custom webhook), new each run.
    const signatureToken = seen(randomBytes(24).toString('hex'));
    const serveEnv = { ...env, GITGUARDIAN_WEBHOOK_SECRET: signatureToken, REKEY_NOTIFY_CONSOLE: 'true' };
    say('  $ rekey serve --port 0 --sweep-every 0     (GITGUARDIAN_WEBHOOK_SECRET set; chat goes to the console)');
    const started = await startServe(serveEnv);
    serve = started.child;
    say(indent(started.banner));
    const leaked = pgNow;
    // A GitGuardian incident never carries the value: only its HasMySecretLeaked hash, which rekey
    // matches through its fingerprint index. The hash is derived from the password, so it is kept
    // out of the output like a value.
    const hmsl = seen(await hmslHash(leaked.password));
    const incidentId = 1_000_000 + randomBytes(3).readUIntBE(0, 3);
    const commit = randomBytes(20).toString('hex');
    const now = new Date().toISOString();
    const incident = {
      source: 'GitGuardian',
      timestamp: now,
      action: 'incident_triggered',
      message: 'A new incident has been detected.',
      target_user: 'GitGuardian',
      custom_webhook_name: 'rekey',
      incident: {
        id: incidentId,
        date: now,
        detector: { name: 'postgresql_credentials', display_name: 'PostgreSQL Credentials', nature: 'specific', family: 'Other' },
        hmsl_hash: hmsl,
        secret_revoked: false,
        validity: 'valid',
        occurrence_count: 1,
        status: 'triggered',
        severity: 'critical',
        gitguardian_url: `https://dashboard.gitguardian.com/workspace/1/incidents/${incidentId}`,
      },
      occurrence: {
        id: incidentId + 1,
        incident_id: incidentId,
        kind: 'realtime',
        sha: commit,
        date: now,
        presence: 'present',
        url: `https://github.com/example-org/demo-app/commit/${commit}`,
        filepath: 'deploy/.env',
        source: { type: 'github', url: 'https://github.com/example-org/demo-app', full_name: 'example-org/demo-app', visibility: 'private' },
      },
    };
    const body = JSON.stringify(incident);
    check('the delivery carries no value (only the hmsl_hash of the password)', !body.includes(leaked.password) && !body.includes(signatureToken));
    // GitGuardian's signature: HMAC-SHA-256 of the raw body, keyed by the Timestamp header followed by the token.
    const t0 = Date.now();
    const timestamp = String(Math.floor(t0 / 1000));
    const signature = createHmac('sha256', timestamp + signatureToken).update(body).digest('hex');
    const response = await fetch(`${started.url}/webhooks/gitguardian`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', timestamp, 'gitguardian-signature': `sha256=${signature}` },
      body,
    });
    const accepted = Date.now() - t0;
    say(`  POST ${started.url}/webhooks/gitguardian (incident ${incidentId}, Timestamp ${timestamp}, GitGuardian-Signature sha256=…) → HTTP ${response.status}`);
    if (response.status !== 202) throw new Error(`the webhook answered ${response.status}, not 202`);

    say('  waiting until the leaked password is refused…');
    let refusedAt: number | undefined;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
      if (!(await canLogIn('postgres', db, leaked.username, leaked.password))) {
        refusedAt = Date.now() - t0;
        break;
      }
      await sleep(25);
    }
    check(`the leaked password is refused (${refusedAt ?? '?'} ms after the report)`, refusedAt !== undefined);
    const records = await waitForRemediation(join(work, 'store'), t0);

    step('timeline');
    const timeline: [number, string][] = [
      [0, 'GitGuardian incident posted to rekey serve (signed)'],
      [accepted, 'webhook answered HTTP 202 (signature verified, queued)'],
      ...records.map((r): [number, string] => [Date.parse(r.time) - t0, describe(r)]),
      [refusedAt!, 'leaked password refused (checked by logging in)'],
    ];
    timeline.sort((a, b) => a[0] - b[0]);
    for (const [ms, what] of timeline) say(`  ${`+${ms} ms`.padStart(10)}  ${what}`);

    step('chat messages (console channel of rekey serve)');
    await sleep(200);
    say(indent(started.chat().join('') || '(none)'));
    // Warnings and errors of the server, if any (its log level is warn): part of what happened.
    if (started.log().length) {
      step('rekey serve log (warnings and errors)');
      say(indent(started.log().join('')));
    }

    step('tickets (rekey tickets)');
    await rekey(['tickets']);

    step('after the leak');
    pgNow = await current('demo/postgres');
    check(`the new AWSCURRENT logs in to PostgreSQL (as ${pgNow.username})`, await canLogIn('postgres', db, pgNow.username, pgNow.password));
    check('the first PostgreSQL password is still refused', !(await canLogIn('postgres', db, 'demo_app', firstPassword)));
    check('the leaked PostgreSQL password is still refused', !(await canLogIn('postgres', db, leaked.username, leaked.password)));
    check('the first MariaDB password is still refused', !(await canLogIn('mariadb', db, 'demo_app', firstPassword)));
    await rekey(['status']);
    await rekey(['audit', '--verify']);

    say('');
    say(`demo finished: every old password refused, every current one works; the leaked password stopped working ${refusedAt} ms after the report`);
  } finally {
    if (serve && serve.exitCode === null) {
      serve.kill('SIGTERM');
      await new Promise((r) => serve!.once('exit', r));
    }
    if (process.env.REKEY_DEMO_VALUES_FILE) {
      await writeFile(process.env.REKEY_DEMO_VALUES_FILE, JSON.stringify([...values]), { mode: 0o600 });
      await chmod(process.env.REKEY_DEMO_VALUES_FILE, 0o600);
    }
    await execFileAsync('bash', [join(ROOT, 'scripts/test-databases.sh'), 'stop', dbDir]).catch(() => {});
    await rm(work, { recursive: true, force: true });
  }
}

/** Runs the real CLI (as a user would type it), prints the command and its output. */
async function runRekey(args: string[], options: { env: NodeJS.ProcessEnv; input?: string; allowFail?: boolean; quiet?: boolean }): Promise<{ stdout: string; code: number }> {
  if (!options.quiet) say(`  $ rekey ${args.map((a) => (/[\s"]/.test(a) ? JSON.stringify(a) : a)).join(' ')}`);
  const child = spawn(process.execPath, [BIN, ...args], { env: options.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(options.input ?? '');
  const code = await new Promise<number>((resolve) => child.once('close', (c) => resolve(c ?? 1)));
  if (!options.quiet) {
    if (stdout) say(indent(stdout));
    if (stderr) say(indent(stderr));
    if (code !== 0) say(`  (exit ${code})`);
  }
  if (code !== 0 && !options.allowFail) throw new Error(`rekey ${args[0]} failed (exit ${code})`);
  return { stdout, code };
}

async function startServe(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string; banner: string; chat: () => string[]; log: () => string[] }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--sweep-every', '0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const chat: string[] = [];
  const log: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    const lines = stderr.split('\n');
    stderr = lines.pop()!;
    for (const line of lines) (line.startsWith('[chat') ? chat : log).push(`${line}\n`);
  });
  const banner = await new Promise<string>((resolvePromise, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('rekey serve did not start within 30 s')), 30_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) {
        clearTimeout(timer);
        resolvePromise(out.trim());
      }
    });
    child.once('exit', (code) => reject(new Error(`rekey serve exited (${code})`)));
  });
  const url = /listening on (http:\/\/[^/\s]+)/.exec(banner)?.[1];
  if (!url) throw new Error('rekey serve did not say where it listens');
  return { child, url, banner, chat: () => chat, log: () => log };
}

/** The audit records of the leak's remediation, once Leak Remediated is written. */
async function waitForRemediation(storeDir: string, since: number): Promise<AuditRecord[]> {
  const audit = new LocalChainAuditLog({ dir: storeDir });
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(50)) {
    const records = (await audit.read()).filter((r) => Date.parse(r.time) >= since - 1_000 && r.trigger === 'leak');
    if (records.some((r) => r.action === 'Leak Remediated')) return records;
  }
  throw new Error('no Leak Remediated record within 60 s');
}

function describe(r: AuditRecord): string {
  const who = `by ${r.actor}`;
  switch (r.action) {
    case 'Leak Detected':
      return `leak detected: ${r.secretId} (${r.risk?.priority ?? '?'}, risk ${r.risk?.score ?? '?'}/100) ${who}`;
    case 'Rotation Started':
      return `rotation started: new version ${r.versionId?.slice(0, 8)} stored as AWSPENDING`;
    case 'Rotation Succeeded':
      return `rotation succeeded: version ${r.versionId?.slice(0, 8)} is AWSCURRENT`;
    case 'Credential Revoked':
      return `leaked credential revoked (version ${r.versionId?.slice(0, 8)}), proven by a refused login`;
    case 'Ticket Opened':
      return `ticket opened (${r.ticketId ?? '?'})`;
    case 'Leak Remediated':
      return `leak remediated: ${r.outcome}${r.durationMs !== undefined ? ` in ${r.durationMs} ms` : ''}`;
    default:
      return `${r.action}: ${r.outcome}`;
  }
}

function check(what: string, ok: boolean): void {
  say(`  ${ok ? 'ok' : 'FAILED'}: ${what}`);
  if (!ok) throw new Error(`check failed: ${what}`);
}

async function canLogIn(engine: 'postgres' | 'mariadb', db: Servers, user: string, password: string): Promise<boolean> {
  if (engine === 'postgres') {
    const client = new pg.Client({ host: '127.0.0.1', port: Number(db.REKEY_TEST_PG_PORT), user, password, database: 'postgres' });
    // The revocation may end this session between queries: pg reports that as an 'error' event,
    // which unhandled would end the demo; the awaited calls below report what matters.
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch (error) {
      const code = (error as { code?: string }).code ?? '';
      if (['28P01', '28000'].includes(code)) return false;
      // Logged in, then its session was ended by the revocation (pg_terminate_backend) while this
      // check ran: the password still worked at that moment; the next poll sees the refusal.
      if (code === '57P01') return true;
      throw error;
    } finally {
      await client.end().catch(() => {});
    }
  }
  let conn: mysql.Connection | undefined;
  try {
    conn = await mysql.createConnection({ host: '127.0.0.1', port: Number(db.REKEY_TEST_MYSQL_PORT), user, password });
    await conn.query('SELECT 1');
    return true;
  } catch (error) {
    if ((error as { code?: string }).code === 'ER_ACCESS_DENIED_ERROR') return false;
    throw error;
  } finally {
    await conn?.end().catch(() => {});
  }
}

async function asPgAdmin(db: Servers, fn: (c: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ host: '127.0.0.1', port: Number(db.REKEY_TEST_PG_PORT), user: 'postgres', password: db.REKEY_TEST_PG_PASSWORD, database: 'postgres' });
  await client.connect();
  try {
    await fn(client);
  } finally {
    await client.end();
  }
}

async function asMyAdmin(db: Servers, fn: (c: mysql.Connection) => Promise<unknown>): Promise<void> {
  const conn = await mysql.createConnection({ host: '127.0.0.1', port: Number(db.REKEY_TEST_MYSQL_PORT), user: db.REKEY_TEST_MYSQL_USER, password: db.REKEY_TEST_MYSQL_PASSWORD });
  try {
    await fn(conn);
  } finally {
    await conn.end();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});

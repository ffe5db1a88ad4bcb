import { readFile } from 'node:fs/promises';
import { Command, CommanderError, Option } from 'commander';
import Table from 'cli-table3';
import cliProgress from 'cli-progress';
import { cliActor, parseConfig } from '#runtime/config.ts';
import { buildServices, type ServiceOverrides, type Services } from '#runtime/services.ts';
import { ValidationError, publicError, isRekeyError, NotFoundError } from '#core/errors.ts';
import { Sealed } from '#core/sealed.ts';
import { STAGE } from '#core/ports/secret-store.ts';
import { inspectSecret, type SecretStatus } from '#core/inspect.ts';
import { revokeCredential } from '#core/revocation.ts';
import { rotateNow } from '#core/operations.ts';
import { formatDuration, parseDuration } from '#core/duration.ts';
import { buildLeakServices } from '#runtime/leak-services.ts';
import { startLocalServer } from '#runtime/local-server.ts';
import { TAG } from '#core/secret.ts';
import { storeValue } from '#core/registration.ts';
import { assertReasonForProduction, planRotations, rotateMany, type BulkItem, type BulkReport, type RotationPlan } from '#core/bulk.ts';
import type { AuditRecord } from '#core/audit.ts';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  readStdin: () => Promise<string>;
  env: Record<string, string | undefined>;
  /** Tests inject adapters (e.g. a store in a temp dir) without touching the environment. */
  overrides?: ServiceOverrides;
  /** Where a progress bar may be drawn: only a terminal (never a pipe, a file or a test). */
  progress?: NodeJS.WritableStream;
}

const defaultIo = (): CliIo => ({
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  readStdin: async () => {
    if (process.stdin.isTTY) throw new ValidationError('no value given: pass --value-file FILE or pipe the JSON on stdin');
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  },
  env: process.env,
  ...(process.stderr.isTTY ? { progress: process.stderr } : {}),
});

/** Runs one CLI command; returns the exit status. Errors become one line on stderr. */
export async function run(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  let services: Services | undefined;
  const open = async () => (services ??= await buildServices(parseConfig(io.env), io.overrides));
  const print = (text: string) => io.stdout(text.endsWith('\n') ? text : `${text}\n`);
  // A command that ran but did not fully succeed (a bulk rotation with failures, a broken audit chain).
  let exitCode = 0;
  const actor = () => cliActor(parseConfig(io.env));

  const program = new Command('rekey')
    .description('Rotate database credentials, AWS IAM access keys and API keys, and revoke old or leaked ones.')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError(false);

  program
    .command('put')
    .description('store a value: creates the secret, or adds a new AWSCURRENT version')
    .argument('<secretId>')
    .option('--value-file <file>', 'JSON value (default: stdin)')
    .option('--tag <key=value>', 'tag to set (repeatable)', collect, [] as string[])
    .option('--json', 'machine-readable output')
    .action(async (secretId: string, opts: { valueFile?: string; tag: string[]; json?: boolean }) => {
      const { deps } = await open();
      const text = opts.valueFile ? await readFile(opts.valueFile, 'utf8') : await io.readStdin();
      const { versionId, created } = await storeValue(deps, secretId, new Sealed(text.trim()), parseTags(opts.tag));
      print(opts.json ? JSON.stringify({ secretId, versionId, created }) : `${created ? 'created' : 'updated'} ${secretId}: version ${versionId} is AWSCURRENT`);
    });

  program
    .command('get')
    .description('print a version\'s value JSON (needs --reveal)')
    .argument('<secretId>')
    .option('--stage <stage>', 'staging label', STAGE.current)
    .option('--version-id <id>', 'version id instead of a stage')
    .option('--reveal', 'really print the secret value')
    .action(async (secretId: string, opts: { stage: string; versionId?: string; reveal?: boolean }) => {
      if (!opts.reveal) throw new ValidationError('get prints a secret value: add --reveal if you mean it');
      const { deps } = await open();
      const version = await deps.store.getSecretValue(secretId, opts.versionId ? { versionId: opts.versionId } : { stage: opts.stage });
      print(version.value.reveal());
    });

  program
    .command('status')
    .description('versions, stages, ages and last rotation outcome (never values)')
    .argument('[secretId]')
    .option('--json', 'machine-readable output')
    .action(async (secretId: string | undefined, opts: { json?: boolean }) => {
      const { deps } = await open();
      if (secretId) {
        const status = await inspectSecret(deps, secretId);
        print(opts.json ? JSON.stringify(status) : formatStatus(status));
        return;
      }
      const all = await deps.store.listSecrets();
      const statuses = await Promise.all(all.map((d) => inspectSecret(deps, d.secretId, d)));
      print(opts.json ? JSON.stringify(statuses) : formatStatusTable(statuses));
    });

  program
    .command('rotate')
    .description('rotate now: createSecret → setSecret → testSecret → finishSecret; one secret, or many with --due / --all --tag')
    .argument('[secretId]')
    .option('--due', 'every managed secret past its rekey:max-age')
    .option('--all', 'every managed secret carrying the --tag filters (give at least one)')
    .option('--tag <key=value>', 'with --all or --due: only secrets with this tag (repeatable)', collect, [] as string[])
    .option('--dry-run', 'show what would be rotated and change nothing')
    .option('--concurrency <n>', 'rotations at once for --due / --all', '4')
    .option('--reason <text>', 'why (kept in events, chat and the audit trail); required for rekey:environment=prod')
    .option('--json', 'machine-readable output')
    .action(async (secretId: string | undefined, opts: RotateOptions) => {
      const bulk = Boolean(opts.due || opts.all);
      if ((secretId ? 1 : 0) + (opts.due ? 1 : 0) + (opts.all ? 1 : 0) !== 1) {
        throw new ValidationError('rotate takes one secret id, or --due, or --all --tag key=value');
      }
      if (!bulk && opts.tag.length) throw new ValidationError('--tag selects secrets for --all or --due');
      if (opts.all && opts.tag.length === 0) {
        throw new ValidationError('--all needs at least one --tag key=value (--tag rekey:managed=true means every managed secret)');
      }
      const concurrency = Number(opts.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 32) throw new ValidationError('--concurrency must be an integer from 1 to 32');
      const { deps, rotation } = await open();
      const request = { trigger: 'manual' as const, actor: actor(), ...(opts.reason ? { reason: opts.reason } : {}) };

      if (!bulk && !opts.dryRun) {
        const result = await rotateNow(deps, rotation, secretId!, request);
        const notPushed = result.consumers?.failed ?? [];
        if (opts.json) {
          print(JSON.stringify(result));
        } else {
          print(
            `rotated ${secretId}: version ${result.versionId} is AWSCURRENT (${result.strategy}, ${result.keyId ? `key ${result.keyId} of ` : 'user '}${result.username}, ${formatDuration(result.durationMs)}${result.resumed ? ', resumed an interrupted rotation' : ''}); ` +
              (result.revoked
                ? `previous credential revoked (${result.revoked.sessionsEnded} sessions ended)`
                : notPushed.length
                  ? 'previous credential stays valid until every consumer has the new value'
                  : `previous credential stays valid for ${formatDuration(result.graceMs)} (rekey revoke ${secretId} to end it now)`),
          );
          if (result.consumers?.updated.length) print(`consumers updated: ${result.consumers.updated.map((u) => `${u.consumer} (${u.updated.join(', ')})`).join('; ')}`);
          for (const failed of notPushed) print(`consumer NOT updated: ${failed.consumer}: ${failed.error.code}: ${failed.error.message}`);
        }
        // The rotation worked, but someone still holds the old value: not a success to script on.
        if (notPushed.length) exitCode = 1;
        return;
      }

      const plans = await planRotations(deps, secretId ? { secretIds: [secretId] } : { due: Boolean(opts.due), tags: parseTags(opts.tag) });
      // Refuse before anything runs, naming every production secret that needs a reason.
      assertReasonForProduction(plans, request);
      if (opts.dryRun) {
        print(opts.json ? JSON.stringify({ dryRun: true, plans }) : formatPlan(plans));
        return;
      }
      if (plans.length === 0) {
        print(opts.json ? JSON.stringify({ items: [], counts: { succeeded: 0, failed: 0 } }) : opts.due ? 'nothing to rotate: no managed secret is past its max age' : 'nothing to rotate: no managed secret has those tags');
        return;
      }
      const bar = io.progress ? progressBar(io.progress, plans.length) : undefined;
      let report: BulkReport;
      try {
        report = await rotateMany(deps, rotation, plans.map((p) => p.secretId), {
          concurrency,
          request,
          onItem: (item) => bar?.tick(item),
        });
      } finally {
        bar?.stop();
      }
      print(opts.json ? JSON.stringify(report) : formatBulkReport(report));
      if (report.counts.failed > 0) exitCode = 1;
    });

  program
    .command('audit')
    .description('the audit trail: every action, who or what did it, and its outcome (never values)')
    .option('--secret <secretId>', 'only this secret')
    .option('--since <duration>', 'only the last 24h, 30m, 7d…')
    .option('--verify', 'check the hash chain instead: exit 1 and the first broken line if anything was edited')
    .option('--json', 'machine-readable output')
    .action(async (opts: { secret?: string; since?: string; verify?: boolean; json?: boolean }) => {
      const services = await open();
      const since = opts.since ? new Date(services.deps.now().getTime() - parseDuration(opts.since, '--since')) : undefined;
      const audit = services.audit;
      if (!audit) {
        throw new ValidationError(
          'the audit trail of a deployment lives on AWS: the EventBridge archive of the rekey bus (rekey-<stage>-audit) and the on-rekey-event log group (`rekey audit` reads the local trail)',
        );
      }
      if (opts.verify) {
        const check = await audit.verify();
        if (opts.json) print(JSON.stringify(check));
        else if (check.ok) print(`audit trail intact: ${check.records} records, chain head ${check.head}`);
        else print(`audit trail BROKEN at line ${check.line}: ${check.problem} (${check.records} records before it check out)`);
        if (!check.ok) exitCode = 1;
        return;
      }
      const records = await audit.read({ ...(opts.secret ? { secretId: opts.secret } : {}), ...(since ? { since } : {}) });
      print(opts.json ? JSON.stringify(records) : formatAudit(records));
    });

  program
    .command('revoke')
    .description('make a version\'s credential stop working now, end its sessions, prove it by a refused login')
    .argument('<secretId>')
    .addOption(new Option('--stage <stage>', 'staging label of the version to revoke').default(STAGE.previous))
    .option('--version-id <id>', 'version id instead of a stage')
    .option('--reason <text>', 'why')
    .option('--force', 'revoke even though a consumer has not received AWSCURRENT yet (it may still use this value)')
    .option('--json', 'machine-readable output')
    .action(async (secretId: string, opts: { stage: string; versionId?: string; reason?: string; force?: boolean; json?: boolean }) => {
      const { deps } = await open();
      const result = await revokeCredential(deps, secretId, {
        ...(opts.versionId ? { versionId: opts.versionId } : { stage: opts.stage }),
        trigger: 'manual',
        actor: actor(),
        ...(opts.reason ? { reason: opts.reason } : {}),
        ...(opts.force ? { force: true } : {}),
      });
      print(
        opts.json
          ? JSON.stringify(result)
          : `revoked ${secretId} version ${result.versionId} (${result.keyId ? `key ${result.keyId} of ` : 'user '}${result.username}, ${result.method}): login refused, ${result.sessionsEnded} sessions ended, ${formatDuration(result.durationMs)}` +
              (result.purgeAfter ? `; deleted by the sweep after ${result.purgeAfter}` : ''),
      );
    });

  program
    .command('serve')
    .description('the local pipeline: scanner webhooks on /webhooks/<scanner>, the leak worker, and the schedule sweep')
    .option('--port <port>', 'port to listen on (127.0.0.1)', '8787')
    .option('--sweep-every <duration>', 'how often the schedule sweep runs (0 = never)', '5m')
    .action(async (opts: { port: string; sweepEvery: string }) => {
      const services = await open();
      const settings = parseConfig(io.env);
      const leak = buildLeakServices(services, settings, {
        onResult: (r) => services.deps.logger.info('leak remediated', { secretId: r.secretId ?? 'unmatched', priority: r.risk.priority, ms: r.durationMs }),
      });
      const sweepEveryMs = parseDuration(opts.sweepEvery, '--sweep-every');
      const server = await startLocalServer(services, leak, settings, { port: Number(opts.port), ...(sweepEveryMs ? { sweepEveryMs } : {}) });
      const configured = [...leak.intake.scanners.keys()];
      print(`rekey serve: listening on ${server.url}/webhooks/{${configured.join(',') || 'no scanner configured'}}; sweep every ${opts.sweepEvery}; Ctrl-C to stop`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await server.close();
    });

  program
    .command('tickets')
    .description('open remediation tickets, highest risk first')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const services = await open();
      const { leak } = buildLeakServices(services, parseConfig(io.env));
      const tickets = await leak.tickets.list();
      if (opts.json) return print(JSON.stringify(tickets));
      if (tickets.length === 0) return print('no open tickets');
      const table = new Table({ head: ['priority', 'score', 'title', 'updated', 'link'], style: { head: [], border: [] } });
      for (const t of tickets) table.push([t.priority, String(t.score), t.title, t.updatedAt.toISOString(), t.url ?? t.id]);
      print(table.toString());
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 || error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : 2;
    }
    io.stderr(`rekey: ${isRekeyError(error) ? publicError(error).message : 'unexpected error; rerun with REKEY_LOG_LEVEL=debug'}\n`);
    if (!isRekeyError(error)) services?.deps.logger.debug('unexpected error', { name: (error as Error)?.name });
    return 1;
  } finally {
    await services?.close();
  }
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parseTags(pairs: string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new ValidationError(`--tag must be key=value (got a tag without "=")`);
    tags[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return tags;
}

const age = (ms: number | undefined) => (ms === undefined ? '-' : formatDuration(ms));

function formatStatus(s: SecretStatus): string {
  const lines = [
    `${s.secretId}  ${s.engine ?? '?'} ${s.username ?? ''}@${s.host ?? '?'}  strategy ${s.strategy ?? '?'}`,
    `  current age ${age(s.currentAgeMs)}${s.maxAgeMs !== undefined ? ` (max ${formatDuration(s.maxAgeMs)})` : ''}, grace ${formatDuration(s.graceMs)}, compliance ${s.compliance}`,
    `  last outcome ${s.lastOutcome ?? 'never rotated'}${s.lastOutcomeAt ? ` at ${s.lastOutcomeAt}` : ''}`,
    ...(s.keyId ? [`  key ${s.keyId}`] : []),
    ...(s.consumers ? [`  consumers: ${s.consumers.listed}, ${s.consumers.state}${s.consumers.state === 'pushed' ? '' : ' (the previous value is not revoked until a push succeeds)'}`] : []),
    ...(s.purgeAfter ? [`  a revoked credential is disabled, deleted after ${s.purgeAfter}`] : []),
    ...(s.pendingAgeMs !== undefined ? [`  AWSPENDING for ${formatDuration(s.pendingAgeMs)}: an interrupted rotation; \`rekey rotate ${s.secretId}\` finishes it`] : []),
    ...(s.problem ? [`  problem: ${s.problem}`] : []),
    '  versions:',
    ...s.versions.map((v) => `    ${v.versionId}  ${v.stages.join(',')}  ${formatDuration(v.ageMs)} old`),
  ];
  return lines.join('\n');
}

function formatStatusTable(statuses: SecretStatus[]): string {
  if (statuses.length === 0) return 'no secrets (add one with `rekey put <secretId> --value-file F`)';
  const table = new Table({
    head: ['secret', 'engine', 'strategy', 'age', 'max age', 'compliance', 'last outcome', 'previous', 'pending'],
    style: { head: [], border: [] },
  });
  for (const s of statuses) {
    table.push([
      s.secretId,
      s.engine ?? '?',
      s.strategy ?? '?',
      age(s.currentAgeMs),
      s.maxAgeMs === undefined ? '-' : formatDuration(s.maxAgeMs),
      s.compliance,
      s.lastOutcome ?? '-',
      s.previousLive ? 'live' : '-',
      s.pendingAgeMs === undefined ? '-' : formatDuration(s.pendingAgeMs),
    ]);
  }
  return table.toString();
}

interface RotateOptions {
  due?: boolean;
  all?: boolean;
  tag: string[];
  dryRun?: boolean;
  concurrency: string;
  reason?: string;
  json?: boolean;
}

function formatPlan(plans: RotationPlan[]): string {
  if (plans.length === 0) return 'dry run: nothing would be rotated';
  const table = new Table({ head: ['secret', 'strategy', 'env', 'age', 'max age', 'compliance', 'would'], style: { head: [], border: [] } });
  for (const p of plans) {
    const would = p.problem
      ? `fail: ${p.problem}`
      : `${p.resumes ? 'finish the interrupted rotation' : 'rotate'}${p.revokesPrevious ? ', then revoke the previous credential (grace 0)' : `; previous stays valid ${formatDuration(p.graceMs)}`}`;
    table.push([p.secretId, p.strategy ?? '?', p.environment ?? '-', age(p.currentAgeMs), p.maxAgeMs === undefined ? '-' : formatDuration(p.maxAgeMs), p.compliance, would]);
  }
  return `${table.toString()}\ndry run: ${plans.length} secret(s) would be rotated; nothing was changed`;
}

function formatBulkReport(report: BulkReport): string {
  const table = new Table({ head: ['secret', 'outcome', 'duration', 'detail'], style: { head: [], border: [] } });
  // Failures first: they are what the reader has to act on.
  const items = [...report.items].sort((a, b) => (a.outcome === b.outcome ? 0 : a.outcome === 'failed' ? -1 : 1));
  for (const item of items) {
    table.push([item.secretId, item.outcome, formatDuration(item.durationMs), itemDetail(item)]);
  }
  const { succeeded, failed } = report.counts;
  return `${table.toString()}\n${succeeded} succeeded, ${failed} failed of ${report.items.length} in ${formatDuration(report.durationMs)} (batch ${report.batchId})`;
}

function itemDetail(item: BulkItem): string {
  if (item.error) return `${item.error.code}: ${item.error.message}`;
  return [`version ${item.versionId}`, item.resumed ? 'resumed' : '', item.revokedPrevious ? 'previous revoked' : ''].filter(Boolean).join(', ');
}

function formatAudit(records: AuditRecord[]): string {
  if (records.length === 0) return 'no audit records';
  const table = new Table({ head: ['time', 'actor', 'action', 'secret', 'version', 'step', 'outcome', 'duration', 'reason / error'], style: { head: [], border: [] } });
  for (const r of records) {
    table.push([
      r.time,
      r.actor,
      r.action,
      r.secretId,
      r.versionId ? r.versionId.slice(0, 8) : '-',
      r.step ?? '-',
      r.outcome,
      r.durationMs === undefined ? '-' : formatDuration(r.durationMs),
      [r.reason, r.error ? `${r.error.code}: ${r.error.message}` : undefined, r.counts ? Object.entries(r.counts).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ') : undefined]
        .filter(Boolean)
        .join('; ') || '-',
    ]);
  }
  return table.toString();
}

/** A progress bar on a terminal: done/total, successes and failures so far, the last secret. */
function progressBar(stream: NodeJS.WritableStream, total: number): { tick(item: BulkItem): void; stop(): void } {
  const bar = new cliProgress.SingleBar(
    { stream, format: 'rotating {bar} {value}/{total} | {succeeded} ok, {failed} failed | {last}', hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  let succeeded = 0;
  let failed = 0;
  bar.start(total, 0, { succeeded, failed, last: '' });
  return {
    tick(item) {
      if (item.outcome === 'succeeded') succeeded++;
      else failed++;
      bar.increment(1, { succeeded, failed, last: item.secretId });
    },
    stop: () => bar.stop(),
  };
}

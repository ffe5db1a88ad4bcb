import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { parseConfig, type Config } from '#runtime/config.ts';
import { buildLeakServices, type LeakOverrides, type LeakServices } from '#runtime/leak-services.ts';
import { startLocalServer, type LocalServer } from '#runtime/local-server.ts';
import type { LeakTask, RemediationResult } from '#core/remediation.ts';
import type { Target, TargetRegistry } from '#core/ports/target.ts';
import type { Sealed } from '#core/sealed.ts';
import { DatabaseTargets } from '#adapters/targets/registry.ts';
import { GitHubDouble } from './github-double.ts';
import type { LeakGuard } from './leak-guard.ts';
import { testRekey, type TestRekey } from './rekey.ts';

/**
 * The leak path end to end, as `rekey serve` runs it: a local rekey (encrypted store, real
 * databases), the GitHub API double (alerts and issues, through a real Octokit), the leak services
 * built from configuration, and the HTTP server. Every reply, every request rekey made to GitHub,
 * every file in the store directory and every password any target was given are handed to the
 * leak guard on dispose.
 */
export interface LeakPipeline {
  rekey: TestRekey;
  github: GitHubDouble;
  leak: LeakServices;
  server: LocalServer;
  config: Config;
  secrets: { github: string; gitguardian: string; ingest: string; githubToken: string };
  /** Every remediation result, in the order the worker produced them. */
  results: RemediationResult[];
  /** Every task the webhook queued, in order. */
  enqueued: LeakTask[];
  replies: Reply[];
  post(scanner: string, delivery: Delivery): Promise<Reply>;
  /** Resolves when the worker has worked everything queued so far. */
  settle(): Promise<void>;
  /** The result that answers for a delivery (one of its findings). */
  resultOf(deliveryId: string): RemediationResult | undefined;
  dispose(): Promise<void>;
}

export interface Delivery {
  body: string | Buffer;
  headers: Record<string, string>;
  /** The delivery id rekey will report (header or payload), when the builder knows it. */
  deliveryId?: string;
}

export interface Reply {
  status: number;
  text: string;
  json: { message?: string; deliveryId?: string; accepted?: number };
}

export const TICKETS_REPO = 'acme/security-tickets';

export async function startLeakPipeline(options: { githubTickets?: boolean; overrides?: LeakOverrides; withGitHub?: boolean } = {}): Promise<LeakPipeline> {
  const withGitHub = options.withGitHub ?? true;
  const secrets = {
    github: `ghws-${randomBytes(12).toString('hex')}`,
    gitguardian: `ggws-${randomBytes(12).toString('hex')}`,
    ingest: `ingest-${randomBytes(12).toString('hex')}`,
    githubToken: `ghp_${randomBytes(16).toString('hex')}`,
  };
  const github = await GitHubDouble.start({ token: secrets.githubToken, collaborators: ['octocat'] });
  // testRekey's targets hand every password they set (generated or scrambled) to the guard.
  const rekey = await testRekey();
  for (const value of Object.values(secrets)) rekey.guard.secret(value);
  const config = parseConfig({
    ...rekey.env,
    GITHUB_WEBHOOK_SECRET: secrets.github,
    GITGUARDIAN_WEBHOOK_SECRET: secrets.gitguardian,
    REKEY_INGEST_TOKEN: secrets.ingest,
    ...(withGitHub ? { GITHUB_TOKEN: secrets.githubToken, GITHUB_API_URL: github.url } : {}),
    ...(withGitHub && (options.githubTickets ?? true) ? { REKEY_TICKETS_REPO: TICKETS_REPO } : {}),
  });
  const results: RemediationResult[] = [];
  const leak = buildLeakServices(rekey, config, { retryDelaysMs: [50, 100], ...options.overrides, onResult: (r) => results.push(r) });
  const enqueued: LeakTask[] = [];
  const queue = leak.intake.queue;
  leak.intake.queue = {
    enqueue: async (tasks) => {
      enqueued.push(...tasks);
      await queue.enqueue(tasks);
    },
  };
  const server = await startLocalServer(rekey, leak, config, { port: 0 });
  const replies: Reply[] = [];
  return {
    rekey,
    github,
    leak,
    server,
    config,
    secrets,
    results,
    enqueued,
    replies,
    async post(scanner, delivery) {
      const response = await fetch(`${server.url}/webhooks/${scanner}`, { method: 'POST', body: delivery.body, headers: delivery.headers });
      const text = await response.text();
      let json: Reply['json'] = {};
      try {
        json = JSON.parse(text) as Reply['json'];
      } catch {
        // the guard still sees the text
      }
      const reply = { status: response.status, text, json };
      replies.push(reply);
      return reply;
    },
    async settle() {
      await leak.localQueue?.idle();
    },
    resultOf(deliveryId) {
      return results.find((r) => r.tasks.some((t) => t.deliveryId === deliveryId));
    },
    async dispose() {
      await server.close();
      const guard = rekey.guard;
      await registerStoredPasswords(rekey);
      guard.output('webhook replies', replies.map((r) => `${r.status} ${r.text}`).join('\n'));
      guard.output('remediation results', JSON.stringify(results));
      for (const request of github.requests) {
        guard.output(`GitHub ${request.method} ${request.path} (request)`, JSON.stringify({ query: request.query, body: request.body }));
        // GitHub's answer to the alert read holds the secret by design: that is input, not output.
        const readsSecret = request.method === 'GET' && /\/secret-scanning\/alerts\/\d+$/.test(request.path) && request.query.hide_secret !== 'true';
        if (!readsSecret) guard.output(`GitHub ${request.method} ${request.path} (reply)`, JSON.stringify(request.response));
      }
      for (const file of await filesUnder(rekey.dir)) guard.output(`store file ${file.slice(rekey.dir.length)}`, await readFile(file, 'latin1'));
      await github.close();
      await rekey.dispose();
    },
  };
}

/** Every password any version of any secret holds, for the guard (rotations generate them unseen). */
async function registerStoredPasswords(rekey: TestRekey): Promise<void> {
  for (const secret of await rekey.deps.store.listSecrets()) {
    for (const version of secret.versions) {
      try {
        rekey.guard.secretJson((await rekey.deps.store.getSecretValue(secret.secretId, { versionId: version.versionId })).value);
      } catch {
        // a version without a value (AWS's empty AWSPENDING)
      }
    }
  }
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}


// ------------------------------------------------------------------------------- deliveries

const fixture = (path: string): string => readFileSync(new URL(`../../events/${path}`, import.meta.url), 'utf8');
const hmac = (key: string, body: string | Buffer) => createHmac('sha256', key).update(body).digest('hex');

export interface GitHubAlertDelivery {
  owner?: string;
  repo?: string;
  number: number;
  action?: string;
  private?: boolean;
  publiclyLeaked?: boolean;
  deliveryId?: string;
}

/** A `secret_scanning_alert` delivery as GitHub sends it: JSON, signed, with a delivery GUID. */
export function githubDelivery(secret: string, alert: GitHubAlertDelivery): Delivery {
  const owner = alert.owner ?? 'acme';
  const repo = alert.repo ?? 'billing-api';
  const payload = JSON.parse(fixture('github/secret-scanning-alert-created.json')) as Record<string, any>;
  payload.action = alert.action ?? 'created';
  payload.alert.number = alert.number;
  payload.alert.html_url = `https://github.com/${owner}/${repo}/security/secret-scanning/${alert.number}`;
  payload.alert.url = `https://api.github.com/repos/${owner}/${repo}/secret-scanning/alerts/${alert.number}`;
  payload.alert.publicly_leaked = alert.publiclyLeaked ?? false;
  payload.alert.created_at = new Date().toISOString();
  payload.repository.name = repo;
  payload.repository.full_name = `${owner}/${repo}`;
  payload.repository.owner.login = owner;
  payload.repository.private = alert.private ?? true;
  payload.repository.visibility = alert.private === false ? 'public' : 'private';
  const body = JSON.stringify(payload);
  const deliveryId = alert.deliveryId ?? randomUUID();
  return {
    body,
    deliveryId,
    headers: {
      'content-type': 'application/json',
      'user-agent': 'GitHub-Hookshot/abc123',
      'x-github-event': 'secret_scanning_alert',
      'x-github-delivery': deliveryId,
      'x-hub-signature-256': `sha256=${hmac(secret, body)}`,
    },
  };
}

export interface GitGuardianIncident {
  id: number;
  hmslHash?: string;
  action?: string;
  /** The event's own time (it keys de-duplication); default now. */
  eventAt?: Date;
  /** When GitGuardian "sent" it (the Timestamp header); default now. */
  sentAt?: Date;
  visibility?: 'public' | 'private';
  validity?: string;
}

/** A GitGuardian custom-webhook delivery: HMAC-SHA256 keyed with Timestamp + token over the body. */
export function gitguardianDelivery(secret: string, incident: GitGuardianIncident): Delivery {
  const payload = JSON.parse(fixture('gitguardian/new-occurrence.json')) as Record<string, any>;
  payload.action = incident.action ?? 'incident_triggered';
  payload.timestamp = (incident.eventAt ?? new Date()).toISOString();
  payload.incident.id = incident.id;
  payload.incident.gitguardian_url = `https://dashboard.gitguardian.com/workspace/1/incidents/${incident.id}`;
  payload.incident.date = new Date().toISOString();
  payload.incident.validity = incident.validity ?? 'valid';
  if (incident.hmslHash) payload.incident.hmsl_hash = incident.hmslHash;
  else delete payload.incident.hmsl_hash;
  payload.occurrence.incident_id = incident.id;
  payload.occurrence.source.visibility = incident.visibility ?? 'private';
  const body = JSON.stringify(payload);
  const timestamp = String(Math.floor((incident.sentAt ?? new Date()).getTime() / 1000));
  return {
    body,
    headers: { 'content-type': 'application/json', timestamp, 'gitguardian-signature': `sha256=${hmac(timestamp + secret, body)}` },
  };
}

export interface Finding {
  value: string;
  file?: string;
  line?: number;
  /** Public (true) or private (false) GitHub repository; unknown when absent. */
  public?: boolean;
  verified?: boolean;
}

/** TruffleHog `--json` lines posted by CI with the ingest token. */
export function trufflehogDelivery(token: string, findings: Finding[], deliveryId = `ci-${randomUUID()}`): Delivery {
  const template = JSON.parse(fixture('trufflehog/findings.jsonl').trim().split('\n')[0]!) as Record<string, any>;
  const lines = findings.map((f, i) => {
    const line = structuredClone(template);
    line.Raw = f.value;
    line.RawV2 = f.value;
    line.Redacted = '********';
    line.Verified = f.verified ?? false;
    const meta = {
      commit: randomBytes(20).toString('hex'),
      file: f.file ?? `config/app-${i}.env`,
      line: f.line ?? i + 1,
      repository: 'https://github.com/acme/billing-api.git',
      link: `https://github.com/acme/billing-api/blob/main/${f.file ?? `config/app-${i}.env`}#L${f.line ?? i + 1}`,
      timestamp: '2026-11-01 09:12:44 +0000',
      email: 'Dev <dev@example.com>',
      ...(f.public === undefined ? {} : { visibility: f.public ? 0 : 1 }),
    };
    line.SourceMetadata = { Data: f.public === undefined ? { Git: meta } : { Github: meta } };
    return JSON.stringify(line);
  });
  return {
    body: `${lines.join('\n')}\n`,
    deliveryId,
    headers: { 'content-type': 'application/x-ndjson', authorization: `Bearer ${token}`, 'x-rekey-delivery': deliveryId },
  };
}

/** A Gitleaks `--report-format json` report posted by CI with the ingest token. */
export function gitleaksDelivery(token: string, findings: Finding[], deliveryId = `ci-${randomUUID()}`): Delivery {
  const template = (JSON.parse(fixture('gitleaks/report.json')) as Record<string, any>[])[0]!;
  const report = findings.map((f, i) => {
    const commit = randomBytes(20).toString('hex');
    const file = f.file ?? `deploy/values-${i}.yaml`;
    const line = f.line ?? i + 1;
    return {
      ...template,
      Secret: f.value,
      Match: `DATABASE_PASSWORD=${f.value}`,
      File: file,
      StartLine: line,
      EndLine: line,
      Commit: commit,
      Link: `https://github.com/acme/billing-api/blob/${commit}/${file}#L${line}`,
      Date: '2026-11-01T09:12:44Z',
      Fingerprint: `${commit}:${file}:${template.RuleID}:${line}`,
    };
  });
  return {
    body: JSON.stringify(report),
    deliveryId,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-rekey-delivery': deliveryId },
  };
}

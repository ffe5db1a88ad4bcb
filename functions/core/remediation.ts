import type { CoreDeps } from './deps.ts';
import type { RotationEngine } from './rotation.ts';
import type { FingerprintIndex, FingerprintHit } from './ports/fingerprint-index.ts';
import type { TicketSystem, TicketDraft, Ticket } from './ports/tickets.ts';
import type { AlertApi } from './ports/alert-api.ts';
import type { LeakReport } from './leak.ts';
import { REVOKED_LABEL, STAGE, type SecretDescription } from './ports/secret-store.ts';
import { candidatesOfLeak, fingerprint } from './fingerprint.ts';
import { scoreLeak, type LeakState, type Risk } from './risk.ts';
import { revokeCredential } from './revocation.ts';
import { DETAIL_TYPE, emit } from './events.ts';
import { NotFoundError, publicError } from './errors.ts';
import { TAG, isPrivileged } from './secret.ts';
import { mapLimit } from './concurrency.ts';

export interface LeakDeps extends CoreDeps {
  rotation: RotationEngine;
  index: FingerprintIndex;
  indexKey: Buffer;
  tickets: TicketSystem;
  alerts?: AlertApi;
}

/**
 * A leak as it travels from the webhook to the worker: the report without its value, and the
 * keyed fingerprints of the value's candidate forms (computed at intake, so no plaintext is queued).
 * GitHub's webhook carries no value: its fingerprints are computed in the worker after the fetch.
 */
export interface LeakTask {
  deliveryId: string;
  receivedAt: string;
  report: Omit<LeakReport, 'value' | 'exposedAt'> & { exposedAt?: string };
  fingerprints: string[];
  /** The ticket's de-duplication key: the fingerprint of the leaked value as found. */
  key?: string;
}

export function leakTask(indexKey: Buffer, deliveryId: string, report: LeakReport, receivedAt: Date): LeakTask {
  const { value, exposedAt, ...rest } = report;
  const candidates = value ? candidatesOfLeak(value.reveal()) : [];
  return {
    deliveryId,
    receivedAt: receivedAt.toISOString(),
    report: { ...rest, ...(exposedAt ? { exposedAt: exposedAt.toISOString() } : {}) },
    fingerprints: candidates.map((c) => fingerprint(indexKey, c)),
    ...(value ? { key: fingerprint(indexKey, value.reveal().trim()) } : {}),
  };
}

export interface AssessedLeak {
  task: LeakTask;
  state: LeakState;
  hit?: FingerprintHit;
  description?: SecretDescription;
  risk: Risk;
  key: string;
}

const STATE_ORDER: LeakState[] = ['current', 'pending', 'previous-live', 'revoked', 'superseded'];

/** Match by fingerprint lookup (never by decrypting secrets) and score. */
export async function assessLeak(deps: LeakDeps, task: LeakTask): Promise<AssessedLeak> {
  let { fingerprints, key } = task;
  if (fingerprints.length === 0 && task.report.fetch && deps.alerts) {
    const value = await deps.alerts.fetchLeakedValue(hydrate(task));
    if (value) {
      fingerprints = candidatesOfLeak(value.reveal()).map((c) => fingerprint(deps.indexKey, c));
      key = fingerprint(deps.indexKey, value.reveal().trim());
    }
  }
  const hits = (await Promise.all(fingerprints.map((fp) => deps.index.lookup(fp)))).flat();
  const candidates: { hit: FingerprintHit; description: SecretDescription; state: LeakState }[] = [];
  for (const hit of dedupeHits(hits)) {
    try {
      const description = await deps.store.describeSecret(hit.secretId);
      candidates.push({ hit, description, state: stateOf(description, hit.versionId) });
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error; // a deleted secret's stale index entry
    }
  }
  candidates.sort((a, b) => STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state));
  const best = candidates[0];
  const now = deps.now().getTime();
  const exposedAt = task.report.exposedAt ? Date.parse(task.report.exposedAt) : undefined;
  const risk = scoreLeak({
    state: best?.state ?? 'unmatched',
    ...(task.report.public !== undefined ? { public: task.report.public } : {}),
    privileged: best ? isPrivileged(best.description.tags) : false,
    ...(best?.description.tags[TAG.environment] ? { environment: best.description.tags[TAG.environment] } : {}),
    ...(exposedAt !== undefined && !Number.isNaN(exposedAt) ? { exposedForMs: now - exposedAt } : {}),
    occurrences: task.report.occurrences,
    ...(task.report.validity ? { scannerValidity: task.report.validity } : {}),
  });
  return {
    task,
    state: best?.state ?? 'unmatched',
    ...(best ? { hit: best.hit, description: best.description } : {}),
    risk,
    key: key ?? `${task.report.source}:${task.report.sourceId}`,
  };
}

function stateOf(description: SecretDescription, versionId: string): LeakState {
  const version = description.versions.find((v) => v.versionId === versionId);
  if (!version) return 'superseded';
  if (version.stages.includes(STAGE.current)) return 'current';
  if (version.stages.includes(STAGE.pending)) return 'pending';
  if (version.stages.includes(REVOKED_LABEL)) return 'revoked';
  if (version.stages.includes(STAGE.previous)) return 'previous-live';
  return 'superseded';
}

export interface RemediationResult {
  deliveryId: string;
  sourceId: string;
  secretId?: string;
  versionId?: string;
  state: LeakState;
  risk: Risk;
  actions: string[];
  ticket?: Ticket;
  error?: { code: string; message: string };
  durationMs: number;
}

/**
 * Work a leak: rotate now if the value is AWSCURRENT (or about to be), revoke the leaked
 * credential at once with no grace and prove it dead, resolve the scanner's alert, and open or
 * update one ticket for the leaked value. Events at each step; never a value anywhere.
 */
export async function remediateLeak(deps: LeakDeps, leak: AssessedLeak): Promise<RemediationResult> {
  const started = performance.now();
  const { task, risk, hit, state } = leak;
  const secretId = hit?.secretId;
  // The scanner that reported the leak is who acted; every event and audit record names it.
  const actor = `scanner:${task.report.source}`;
  const base = { secretId: secretId ?? 'unmatched', trigger: 'leak' as const, actor, risk: { score: risk.score, priority: risk.priority }, source: task.report.source, sourceId: task.report.sourceId };
  await emit(deps, DETAIL_TYPE.leakDetected, { ...base, ...(hit ? { versionId: hit.versionId } : {}), state, reasons: risk.reasons });
  const actions: string[] = [];
  let failure: { code: string; message: string } | undefined;
  try {
    if (hit && (state === 'current' || state === 'pending')) {
      const rotated = await deps.rotation.rotate(hit.secretId, { trigger: 'leak', actor, reason: `leaked via ${task.report.source} ${task.report.sourceId}` });
      actions.push(`Rotated ${hit.secretId}: version ${rotated.versionId} is now AWSCURRENT (${rotated.strategy}).`);
      if (state === 'pending') {
        // The leaked pending value was just promoted by the resumed rotation: rotate once more.
        const again = await deps.rotation.rotate(hit.secretId, { trigger: 'leak', actor, reason: 'leaked value was pending' });
        actions.push(`Rotated again: version ${again.versionId} is now AWSCURRENT.`);
      }
    }
    if (hit && (state === 'current' || state === 'pending' || state === 'previous-live')) {
      const revoked = await revokeCredential(deps, hit.secretId, { versionId: hit.versionId, trigger: 'leak', actor, reason: `leaked via ${task.report.source}` });
      actions.push(`Revoked the leaked credential (user ${revoked.username}, version ${revoked.versionId}) with no grace; ${revoked.sessionsEnded} session(s) ended; a login with it was refused.`);
    }
    if (hit && (state === 'revoked' || state === 'superseded')) actions.push('No action needed: the leaked value no longer works.');
    if (!hit) actions.push('No managed secret matches this value: nothing was rotated. Find its owner.');
    if (hit && deps.alerts && state !== 'unmatched') {
      const resolved = await deps.alerts.resolveAlert(hydrate(task), `rekey revoked this credential (${hit.secretId}) and opened a remediation ticket.`).catch((error: unknown) => {
        deps.logger.warn('could not resolve the scanner alert', { sourceId: task.report.sourceId, error: publicError(error) });
        return false;
      });
      if (resolved) actions.push(`Resolved the ${task.report.source} alert as revoked.`);
    }
  } catch (error) {
    failure = publicError(error);
    actions.push(`Remediation failed (${failure.code}): ${failure.message}. The ticket is open for a human.`);
    deps.logger.error('leak remediation failed', { secretId: base.secretId, sourceId: task.report.sourceId, error: failure });
  }

  const draft = ticketDraft(leak, actions);
  let ticket: Ticket | undefined;
  try {
    const upserted = await deps.tickets.upsert(draft);
    ticket = upserted.ticket;
    if (upserted.created) await emit(deps, DETAIL_TYPE.ticketOpened, { ...base, ticketId: ticket.id, ...(ticket.url ? { ticketUrl: ticket.url } : {}) });
  } catch (error) {
    deps.logger.error('could not open the remediation ticket', { secretId: base.secretId, error: publicError(error) });
    failure ??= publicError(error);
  }
  const durationMs = Math.round(performance.now() - started);
  await emit(deps, DETAIL_TYPE.leakRemediated, {
    ...base,
    ...(hit ? { versionId: hit.versionId } : {}),
    state,
    durationMs,
    outcome: failure ? 'failed' : 'succeeded',
    ...(ticket ? { ticketId: ticket.id, ...(ticket.url ? { ticketUrl: ticket.url } : {}) } : {}),
    ...(failure ? { error: failure } : {}),
  });
  return {
    deliveryId: task.deliveryId,
    sourceId: task.report.sourceId,
    ...(secretId ? { secretId } : {}),
    ...(hit ? { versionId: hit.versionId } : {}),
    state,
    risk,
    actions,
    ...(ticket ? { ticket } : {}),
    ...(failure ? { error: failure } : {}),
    durationMs,
  };
}

/** Assess a burst, then work it highest risk first (ties: the earliest received). */
export async function remediateBurst(deps: LeakDeps, tasks: LeakTask[], concurrency = 4): Promise<RemediationResult[]> {
  const assessed = await mapLimit(tasks, concurrency, (task) => assessLeak(deps, task));
  assessed.sort((a, b) => b.risk.score - a.risk.score || a.task.receivedAt.localeCompare(b.task.receivedAt));
  const results: RemediationResult[] = [];
  // Sequential on purpose: the riskiest leak gets the databases' full attention first, and two
  // leaks of the same secret never race each other's rotations.
  for (const leak of assessed) results.push(await remediateLeak(deps, leak));
  return results;
}

function ticketDraft(leak: AssessedLeak, actions: string[]): TicketDraft {
  const { task, risk, hit, description } = leak;
  const subject = hit ? hit.secretId : `unmatched ${task.report.secretType}`;
  const where = task.report.locations.map((l) => `- ${[l.repository, l.file && `${l.file}${l.line ? `:${l.line}` : ''}`, l.commit && `commit ${l.commit.slice(0, 12)}`, l.url].filter(Boolean).join(' · ')}`);
  const owner = description?.tags[TAG.owner];
  const body = [
    `**Priority ${risk.priority}** (risk ${risk.score}/100) — leaked ${task.report.secretType} reported by ${task.report.source} (${task.report.sourceId}).`,
    '',
    '### Why this priority',
    ...risk.reasons.map((r) => `- ${r}`),
    '',
    '### Where it leaked',
    ...(where.length ? where : ['- (the scanner gave no location)']),
    `- exposure: ${task.report.public === true ? 'public' : task.report.public === false ? 'private' : 'unknown'}${task.report.exposedAt ? `, since ${task.report.exposedAt}` : ''}`,
    '',
    '### What rekey already did',
    ...actions.map((a) => `- ${a}`),
    '',
    '### What a human must do',
    ...(hit ? [] : ['- [ ] Find the owner of this credential and rotate it where it lives']),
    '- [ ] Purge the value from the repository history (git filter-repo / BFG) and any forks, caches or packages',
    '- [ ] Check the database and access logs for use of the leaked credential since the exposure',
    '- [ ] Close the finding in the scanner once done',
  ].join('\n');
  return {
    key: leak.key,
    title: `[${risk.priority}] Leaked credential: ${subject}`,
    body,
    priority: risk.priority,
    score: risk.score,
    labels: [risk.priority, `source:${task.report.source}`, 'rekey', 'leaked-credential', ...(hit ? [] : ['triage'])],
    ...(owner ? { assignee: owner } : {}),
  };
}

function hydrate(task: LeakTask): LeakReport {
  const { exposedAt, ...rest } = task.report;
  return { ...rest, ...(exposedAt ? { exposedAt: new Date(exposedAt) } : {}) };
}

function dedupeHits(hits: FingerprintHit[]): FingerprintHit[] {
  const seen = new Set<string>();
  return hits.filter((h) => {
    const id = `${h.secretId}\u0000${h.versionId}`;
    return seen.has(id) ? false : (seen.add(id), true);
  });
}

import type { CoreDeps } from './deps.ts';
import type { RotationEngine, RotationResult } from './rotation.ts';
import type { FingerprintIndex, FingerprintHit } from './ports/fingerprint-index.ts';
import type { TicketSystem, TicketDraft, Ticket } from './ports/tickets.ts';
import type { AlertApi } from './ports/alert-api.ts';
import type { LeakLocation, LeakReport, LeakSource } from './leak.ts';
import { REVOKED_LABEL, STAGE, type SecretDescription } from './ports/secret-store.ts';
import { candidatesOfLeak, fingerprint, hmslFingerprint, principalFingerprint } from './fingerprint.ts';
import { kindContext, loadSecret } from './credentials.ts';
import type { CredentialKindRegistry } from './ports/credential-kind.ts';
import { scoreLeak, type LeakState, type Risk } from './risk.ts';
import { revokeCredential } from './revocation.ts';
import { DETAIL_TYPE, emit } from './events.ts';
import { NotFoundError, RotationInProgressError, isRekeyError, publicError } from './errors.ts';
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
  report: TaskReport;
  fingerprints: string[];
  /** The fingerprint of the leaked value as found: the ticket key when no managed secret matches. */
  key?: string;
  /** Non-secret handles found in the value (AWS access key ids): traced when no version matches. */
  identifiers?: string[];
}

/** The handles every kind can trace in a leaked text (`identifiersOfLeak`), at most 10. */
export function identifiersOf(kinds: Pick<CredentialKindRegistry, 'kinds'>, text: string): string[] {
  return [...new Set(kinds.kinds.flatMap((kind) => kind.identifiersOfLeak?.(text) ?? []))].slice(0, 10);
}

type TaskReport = Omit<LeakReport, 'value' | 'exposedAt' | 'hmslHash'> & { exposedAt?: string };

export function leakTask(indexKey: Buffer, deliveryId: string, report: LeakReport, receivedAt: Date, identify?: (text: string) => string[]): LeakTask {
  const { value, exposedAt, hmslHash, ...rest } = report;
  const identifiers = value && identify ? identify(value.reveal()) : [];
  const fingerprints = value ? candidatesOfLeak(value.reveal()).map((c) => fingerprint(indexKey, c)) : [];
  if (hmslHash) fingerprints.push(hmslFingerprint(indexKey, hmslHash));
  const key = value ? fingerprint(indexKey, value.reveal().trim()) : hmslHash ? hmslFingerprint(indexKey, hmslHash) : undefined;
  return {
    deliveryId,
    receivedAt: receivedAt.toISOString(),
    report: { ...rest, ...(exposedAt ? { exposedAt: exposedAt.toISOString() } : {}) },
    fingerprints,
    ...(key ? { key } : {}),
    ...(identifiers.length ? { identifiers } : {}),
  };
}

/**
 * One leaked value as the worker sees it: every task of the burst that reported it (grouped by
 * `key`, so one value found in three files, or by two scanners, is remediated once and ticketed
 * once), the reports merged, what it matched and its risk.
 */
export interface AssessedLeak {
  tasks: LeakTask[];
  report: TaskReport & { sources: LeakSource[] };
  /** The fingerprints looked up (for GitHub: computed after the fetch), kept to re-match cheaply. */
  fingerprints: string[];
  state: LeakState;
  hit?: FingerprintHit;
  description?: SecretDescription;
  risk: Risk;
  /**
   * The ticket and grouping key. A matched leak: its version (`version` fingerprint), so the
   * password and URI forms, or several scanners, of one value share a ticket. Unmatched: the
   * fingerprint of the value as found.
   */
  key: string;
  /** The unmatched fallback key, kept so a merge or a refresh never loses it. */
  valueKey?: string;
  /** Handles traced when nothing matches (from intake, or from the value GitHub's alert gave). */
  identifiers?: string[];
}

/** The ticket key of a matched leak: one per (secret, version), opaque like every other key. */
export function versionKey(indexKey: Buffer, secretId: string, versionId: string): string {
  return fingerprint(indexKey, `version\u0000${secretId}\u0000${versionId}`);
}

const STATE_ORDER: LeakState[] = ['current', 'pending', 'previous-live', 'revoked', 'superseded'];

interface Match {
  hit: FingerprintHit;
  description: SecretDescription;
  state: LeakState;
}

/** Match by fingerprint lookup (never by decrypting secrets) and score. */
export async function assessLeak(deps: LeakDeps, task: LeakTask): Promise<AssessedLeak> {
  const { fingerprints, valueKey, identifiers } = await fingerprintsOf(deps, task);
  const match = await matchFingerprints(deps, fingerprints);
  const leak = assembled(deps, [task], { ...task.report, sources: [task.report.source] }, fingerprints, match, valueKey);
  return identifiers.length ? { ...leak, identifiers } : leak;
}

/** GitHub's webhook omits the value: read it from the alert, fingerprint it, forget it. */
async function fingerprintsOf(deps: LeakDeps, task: LeakTask): Promise<{ fingerprints: string[]; valueKey?: string; identifiers: string[] }> {
  const identifiers = task.identifiers ?? [];
  if (task.fingerprints.length || !task.report.fetch || !deps.alerts) return { fingerprints: task.fingerprints, identifiers, ...(task.key ? { valueKey: task.key } : {}) };
  const value = await deps.alerts.fetchLeakedValue(hydrate(task.report));
  if (!value) return { fingerprints: [], identifiers, ...(task.key ? { valueKey: task.key } : {}) };
  const text = value.reveal();
  return {
    fingerprints: candidatesOfLeak(text).map((c) => fingerprint(deps.indexKey, c)),
    valueKey: fingerprint(deps.indexKey, text.trim()),
    identifiers: identifiersOf(deps.kinds, text),
  };
}

async function matchFingerprints(deps: LeakDeps, fingerprints: string[]): Promise<Match | undefined> {
  const hits = (await Promise.all([...new Set(fingerprints)].map((fp) => deps.index.lookup(fp)))).flat();
  const candidates: Match[] = [];
  for (const hit of dedupeHits(hits)) {
    try {
      const description = await deps.store.describeSecret(hit.secretId);
      candidates.push({ hit, description, state: stateOf(description, hit.versionId) });
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error; // a deleted secret's stale index entry
    }
  }
  candidates.sort((a, b) => STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state));
  return candidates[0];
}

function assembled(
  deps: LeakDeps,
  tasks: LeakTask[],
  report: AssessedLeak['report'],
  fingerprints: string[],
  match: Match | undefined,
  valueKey: string | undefined,
  key?: string,
): AssessedLeak {
  const now = deps.now().getTime();
  const exposedAt = report.exposedAt ? Date.parse(report.exposedAt) : undefined;
  const risk = scoreLeak({
    state: match?.state ?? 'unmatched',
    ...(report.public !== undefined ? { public: report.public } : {}),
    privileged: match ? isPrivileged(match.description.tags) : false,
    ...(match?.description.tags[TAG.environment] ? { environment: match.description.tags[TAG.environment] } : {}),
    ...(exposedAt !== undefined && !Number.isNaN(exposedAt) ? { exposedForMs: now - exposedAt } : {}),
    occurrences: report.occurrences,
    ...(report.validity ? { scannerValidity: report.validity } : {}),
  });
  return {
    tasks,
    report,
    fingerprints,
    state: match?.state ?? 'unmatched',
    ...(match ? { hit: match.hit, description: match.description } : {}),
    risk,
    key: key ?? (match ? versionKey(deps.indexKey, match.hit.secretId, match.hit.versionId) : (valueKey ?? `${report.source}:${report.sourceId}`)),
    ...(valueKey ? { valueKey } : {}),
  };
}

const matchOf = (leak: AssessedLeak): Match | undefined => (leak.hit && leak.description ? { hit: leak.hit, description: leak.description, state: leak.state } : undefined);

/** Two assessments of one value (same key): one leak, its reports merged and scored again. */
function merged(deps: LeakDeps, a: AssessedLeak, b: AssessedLeak): AssessedLeak {
  const seen = new Set<string>();
  const locations = [...a.report.locations, ...b.report.locations].filter((l: LeakLocation) => {
    const id = JSON.stringify(l);
    return seen.has(id) ? false : (seen.add(id), true);
  });
  const pub = a.report.public === true || b.report.public === true ? true : a.report.public === false || b.report.public === false ? false : undefined;
  const validity = a.report.validity === 'active' || b.report.validity === 'active' ? 'active' : (a.report.validity ?? b.report.validity);
  const exposedAt = [a.report.exposedAt, b.report.exposedAt].filter((d): d is string => !!d).sort()[0];
  const { public: _p, validity: _v, exposedAt: _e, ...rest } = a.report;
  const report: AssessedLeak['report'] = {
    ...rest,
    locations,
    occurrences: a.report.occurrences + b.report.occurrences,
    sources: [...new Set([...a.report.sources, ...b.report.sources])],
    ...(pub !== undefined ? { public: pub } : {}),
    ...(validity ? { validity } : {}),
    ...(exposedAt ? { exposedAt } : {}),
  };
  const identifiers = [...new Set([...(a.identifiers ?? []), ...(b.identifiers ?? [])])];
  const leak = assembled(deps, [...a.tasks, ...b.tasks], report, [...new Set([...a.fingerprints, ...b.fingerprints])], matchOf(a), a.valueKey ?? b.valueKey, a.key);
  return identifiers.length ? { ...leak, identifiers } : leak;
}

/** Looks again just before acting: an earlier leak of the burst may have rotated this secret. */
async function refreshed(deps: LeakDeps, leak: AssessedLeak): Promise<AssessedLeak> {
  const match = await matchFingerprints(deps, leak.fingerprints);
  const again = assembled(deps, leak.tasks, leak.report, leak.fingerprints, match, leak.valueKey, leak.key);
  return leak.identifiers ? { ...again, identifiers: leak.identifiers } : again;
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
  /** The first task of the leak (the other tasks of the same value are in `tasks`). */
  deliveryId: string;
  sourceId: string;
  /** Every task this result answers for: one per finding of this value in the burst. */
  tasks: { deliveryId: string; sourceId: string }[];
  secretId?: string;
  versionId?: string;
  state: LeakState;
  risk: Risk;
  actions: string[];
  ticket?: Ticket;
  error?: { code: string; message: string; retryable: boolean };
  durationMs: number;
}

const failureOf = (error: unknown): { code: string; message: string; retryable: boolean } => ({
  ...publicError(error),
  retryable: isRekeyError(error) ? error.retryable : false,
});

/**
 * Work a leak: rotate now if the value is AWSCURRENT (or about to be), revoke the leaked
 * credential at once with no grace and prove it dead, resolve the scanners' alerts, and open or
 * update one ticket for the leaked value. Events at each step; never a value anywhere.
 */
export async function remediateLeak(deps: LeakDeps, leak: AssessedLeak): Promise<RemediationResult> {
  const started = performance.now();
  const { tasks, report, risk, hit, state } = leak;
  const secretId = hit?.secretId;
  // The scanner that reported the leak is who acted; every event and audit record names it.
  const actor = `scanner:${report.source}`;
  const base = {
    secretId: secretId ?? 'unmatched',
    trigger: 'leak' as const,
    actor,
    risk: { score: risk.score, priority: risk.priority },
    source: report.source,
    sourceId: report.sourceId,
    ...(tasks.length > 1 ? { findings: tasks.length, sources: report.sources } : {}),
  };
  // Not awaited before acting (emit never rejects): the rotation starts while the audit trail
  // records the detection; the bus keeps the order, and it is awaited before the next event.
  const detected = emit(deps, DETAIL_TYPE.leakDetected, { ...base, ...(hit ? { versionId: hit.versionId } : {}), state, reasons: risk.reasons });
  const actions: string[] = [];
  // Checklist lines for the ticket beyond the usual ones (a credential to rotate by hand, a consumer to check).
  const todo: string[] = [];
  let failure: RemediationResult['error'];
  // A stray key (no version holds it) traced to the user of a managed secret.
  let strayOwner: string | undefined;
  try {
    // A value no kind handles (an admin credential `{"token": …}`, no `engine`) is indexed by its
    // credential-looking fields so its leak matches, but rekey can neither rotate nor revoke it:
    // matched and ticketed for a human, which is not a failure (a retry could do no more).
    const live = state === 'current' || state === 'pending' || state === 'previous-live';
    const manual = hit && live ? await handledByNoKind(deps, hit) : false;
    if (hit && manual) {
      actions.push(`Nothing rotated or revoked: the value of ${hit.secretId} names no engine rekey handles, so the leaked credential still works.`);
      todo.push(`- [ ] Rotate this credential where it was issued (revoke the leaked one there), then store the new value with \`rekey put ${hit.secretId}\``);
    }
    // The rotation that replaces the leaked value kills it as soon as its successor is verified
    // (in parallel with the promotion), so it dies a rotation's tail earlier; the revoke below
    // then proves it dead without killing it twice. A leaked AWSPENDING is promoted by the
    // resumed rotation first, and killed by the second one.
    let killed: RotationResult['killed'];
    if (hit && !manual && (state === 'current' || state === 'pending')) {
      const kill = { killReplaced: { versionId: hit.versionId } };
      const rotated = await deps.rotation.rotate(hit.secretId, { trigger: 'leak', actor, reason: `leaked via ${report.source} ${report.sourceId}` }, kill);
      actions.push(`Rotated ${hit.secretId}: version ${rotated.versionId} is now AWSCURRENT (${rotated.strategy}).`);
      killed = rotated.killed;
      let pushed = rotated.consumers;
      if (state === 'pending') {
        // The leaked pending value was just promoted by the resumed rotation: rotate once more.
        const again = await deps.rotation.rotate(hit.secretId, { trigger: 'leak', actor, reason: 'leaked value was pending' }, kill);
        actions.push(`Rotated again: version ${again.versionId} is now AWSCURRENT.`);
        killed = again.killed;
        pushed = again.consumers;
      }
      // A leak does not wait for the consumers: the leaked value dies below anyway, so whoever
      // did not get the new one is now broken — the ticket says who (README "Consumers").
      for (const failed of pushed?.failed ?? []) {
        actions.push(`Consumer NOT updated: ${failed.consumer}: ${failed.error.code}: ${failed.error.message}. It still holds the leaked value; the schedule sweep pushes the new one again.`);
        todo.push(`- [ ] Make sure ${failed.consumer} has the new value (its push failed)`);
      }
    }
    if (hit && !manual && live) {
      const revoked = await revokeCredential(deps, hit.secretId, { versionId: hit.versionId, trigger: 'leak', actor, reason: `leaked via ${report.source}`, ...(killed ? { alreadyKilled: killed } : {}) });
      const what = revoked.keyId ? `key ${revoked.keyId} of ${revoked.username}` : `user ${revoked.username}`;
      actions.push(
        `Revoked the leaked credential (${what}, version ${revoked.versionId}, ${revoked.method}) with no grace; ${revoked.sessionsEnded} session(s) ended; a login with it was refused.` +
          (revoked.purgeAfter ? ` It is disabled now and deleted after ${revoked.purgeAfter}.` : ''),
      );
    }
    if (hit && (state === 'revoked' || state === 'superseded')) actions.push(`No action needed: the leaked value (version ${hit.versionId}) no longer works.`);
    if (!hit) {
      const strays = await revokeStrays(deps, leak, actor);
      strayOwner = strays.find((s) => s.secretId)?.secretId;
      actions.push(...strays.map((s) => s.action));
      if (!strays.some((s) => s.secretId)) actions.push('No managed secret matches this value: nothing was rotated. Find its owner.');
    }
    if (hit && deps.alerts) {
      const alerts = deps.alerts;
      const seen = new Set<string>();
      for (const task of tasks) {
        const ref = task.report.fetch;
        if (!ref || seen.has(`${ref.owner}/${ref.repo}#${ref.alertNumber}`)) continue;
        seen.add(`${ref.owner}/${ref.repo}#${ref.alertNumber}`);
        const comment = `rekey revoked this credential (${hit.secretId}, version ${hit.versionId}) and opened a remediation ticket.`;
        const resolved = await alerts.resolveAlert(hydrate(task.report), comment).catch((error: unknown) => {
          deps.logger.warn('could not resolve the scanner alert', { sourceId: task.report.sourceId, error: publicError(error) });
          return false;
        });
        if (resolved) actions.push(`Resolved the ${task.report.source} alert ${task.report.sourceId} as revoked.`);
      }
    }
  } catch (error) {
    failure = failureOf(error);
    actions.push(`Remediation failed (${failure.code}): ${failure.message}. The ticket is open for a human.`);
    deps.logger.error('leak remediation failed', { secretId: base.secretId, sourceId: report.sourceId, error: publicError(error) });
  }

  await detected;
  let ticket: Ticket | undefined;
  try {
    const upserted = await deps.tickets.upsert(ticketDraft(deps, leak, actions, todo));
    ticket = upserted.ticket;
    if (upserted.created) await emit(deps, DETAIL_TYPE.ticketOpened, { ...base, ticketId: ticket.id, ...(ticket.url ? { ticketUrl: ticket.url } : {}) });
  } catch (error) {
    deps.logger.error('could not open the remediation ticket', { secretId: base.secretId, error: publicError(error) });
    failure ??= failureOf(error);
  }
  const durationMs = Math.round(performance.now() - started);
  await emit(deps, DETAIL_TYPE.leakRemediated, {
    ...base,
    ...(hit ? { versionId: hit.versionId } : {}),
    state,
    durationMs,
    outcome: failure ? 'failed' : 'succeeded',
    ...(ticket ? { ticketId: ticket.id, ...(ticket.url ? { ticketUrl: ticket.url } : {}) } : {}),
    ...(failure ? { error: { code: failure.code, message: failure.message } } : {}),
  });
  return {
    deliveryId: tasks[0]!.deliveryId,
    sourceId: report.sourceId,
    tasks: tasks.map((t) => ({ deliveryId: t.deliveryId, sourceId: t.report.sourceId })),
    ...(secretId ?? strayOwner ? { secretId: (secretId ?? strayOwner)! } : {}),
    ...(hit ? { versionId: hit.versionId } : {}),
    state,
    risk,
    actions,
    ...(ticket ? { ticket } : {}),
    ...(failure ? { error: failure } : {}),
    durationMs,
  };
}

/**
 * A leaked credential no stored version holds — a key made by hand in the console and committed
 * somewhere — that still belongs to a principal rekey manages (the IAM user of a managed
 * `aws-iam-user` secret): disable it too. For each handle the leak carries (an AWS access key id),
 * each kind that can trace one names its owner on the system (`ownerOf`); the principal
 * fingerprint finds the managed secret of that owner without decrypting anything; the kind then
 * disables the key (`revokeStray`), never AWSCURRENT's own. Each outcome is one action line.
 */
async function revokeStrays(deps: LeakDeps, leak: AssessedLeak, actor: string): Promise<{ action: string; secretId?: string }[]> {
  const out: { action: string; secretId?: string }[] = [];
  const identifiers = leak.identifiers ?? [];
  if (!identifiers.length) return out;
  for (const kind of deps.kinds.kinds) {
    if (!kind.ownerOf || !kind.revokeStray) continue;
    for (const identifier of identifiers) {
      const principal = await kind.ownerOf(identifier, deps);
      if (!principal) continue;
      const hits = dedupeHits((await Promise.all(kind.engines.map((engine) => deps.index.lookup(principalFingerprint(deps.indexKey, engine, principal))))).flat());
      let managed: string | undefined;
      for (const hit of hits) {
        let description: SecretDescription;
        try {
          description = await deps.store.describeSecret(hit.secretId);
        } catch (error) {
          if (error instanceof NotFoundError) continue;
          throw error;
        }
        if (description.tags[TAG.managed] !== 'true' || stateOf(description, hit.versionId) !== 'current') continue;
        managed = hit.secretId;
        const done = await deps.lock.tryWithLock(hit.secretId, async () => {
          const loaded = await loadSecret(deps, hit.secretId, description);
          return kind.revokeStray!(identifier, kindContext(deps, loaded));
        });
        if (!done.acquired) throw new RotationInProgressError(hit.secretId, 'another process holds its lock');
        const outcome = done.value;
        await emit(deps, DETAIL_TYPE.credentialRevoked, {
          secretId: hit.secretId,
          trigger: 'leak',
          actor,
          reason: `leaked via ${leak.report.source}: a key rekey did not create`,
          method: outcome.method,
          principal: outcome.principal,
          keyId: identifier,
          stray: true,
          sessionsEnded: 0,
          proven: true,
        });
        out.push({
          secretId: hit.secretId,
          action: `Disabled the leaked key ${identifier} of ${principal} (${outcome.method}). rekey did not create it, but ${hit.secretId} manages that principal; delete the key once the investigation is done.`,
        });
        break;
      }
      if (!managed) out.push({ action: `The leaked key ${identifier} belongs to ${principal}, which no managed secret covers: nothing was disabled.` });
    }
  }
  return out;
}

/**
 * A task that could not even be assessed (GitHub's alert API failed, the index is unreachable):
 * nothing was done. Reported as a failure — SQS redelivers it; `rekey serve` retries a retryable
 * one — with an event, so chat and the audit trail see it. A retryable failure opens no ticket (the
 * retry will); a final one (a token without the scope, an alert that is gone) opens a triage
 * ticket saying so, since no retry will ever get further.
 */
async function assessmentFailed(deps: LeakDeps, task: LeakTask, error: unknown): Promise<RemediationResult> {
  const failure = failureOf(error);
  const risk = scoreLeak({ state: 'unmatched', ...(task.report.public !== undefined ? { public: task.report.public } : {}), privileged: false, occurrences: task.report.occurrences });
  deps.logger.error('leak assessment failed', { sourceId: task.report.sourceId, source: task.report.source, error: { code: failure.code, message: failure.message } });
  let ticket: Ticket | undefined;
  if (!failure.retryable) {
    try {
      const report = { ...task.report, sources: [task.report.source] };
      const actions = [`Could not read or match the leaked value (${failure.code}): ${failure.message}. Nothing was rotated.`];
      const draft = ticketDraft(deps, { tasks: [task], report, fingerprints: [], state: 'unmatched', risk, key: `${task.report.source}:${task.report.sourceId}` }, actions);
      ticket = (await deps.tickets.upsert({ ...draft, title: `[${risk.priority}] Leaked credential: could not read ${task.report.source} finding ${task.report.sourceId}` })).ticket;
    } catch (ticketError) {
      deps.logger.error('could not open the remediation ticket', { sourceId: task.report.sourceId, error: publicError(ticketError) });
    }
  }
  await emit(deps, DETAIL_TYPE.leakRemediated, {
    secretId: 'unmatched',
    trigger: 'leak',
    actor: `scanner:${task.report.source}`,
    source: task.report.source,
    sourceId: task.report.sourceId,
    state: 'unmatched',
    outcome: 'failed',
    ...(ticket ? { ticketId: ticket.id, ...(ticket.url ? { ticketUrl: ticket.url } : {}) } : {}),
    error: { code: failure.code, message: failure.message },
  });
  return {
    deliveryId: task.deliveryId,
    sourceId: task.report.sourceId,
    tasks: [{ deliveryId: task.deliveryId, sourceId: task.report.sourceId }],
    state: 'unmatched',
    risk,
    actions: [],
    ...(ticket ? { ticket } : {}),
    error: failure,
    durationMs: 0,
  };
}

export interface BurstOptions {
  /** Assessments in flight at once (index lookups, GitHub alert reads). */
  concurrency?: number;
  /**
   * Tasks that arrived while the burst was being worked (the in-process queue): assessed and
   * ranked with what is left, so the next leak worked is always the riskiest one known.
   */
  more?: () => LeakTask[];
  onResult?: (result: RemediationResult) => void;
}

/**
 * Assess a burst, group the findings of one value, then work it highest risk first (ties: the
 * earliest received, then the order of the report). Sequential on purpose: the riskiest leak gets
 * the databases' full attention first, and two leaks of one secret never race each other's
 * rotations. Each leak is matched again just before it is worked, so a value an earlier leak of
 * the burst already killed is recognised as dead.
 */
export async function remediateBurst(deps: LeakDeps, tasks: LeakTask[], options: BurstOptions = {}): Promise<RemediationResult[]> {
  const results: RemediationResult[] = [];
  const record = (result: RemediationResult) => {
    results.push(result);
    options.onResult?.(result);
  };
  let pending: AssessedLeak[] = [];
  // How many leaks were worked when each pending one was (last) assessed: one assessed since the
  // last remediation cannot be stale, and skips the second look.
  let worked = 0;
  const assessedAt = new WeakMap<AssessedLeak, number>();
  const admit = async (incoming: LeakTask[]) => {
    const assessed = await mapLimit(incoming, options.concurrency ?? 4, async (task) => {
      try {
        return await assessLeak(deps, task);
      } catch (error) {
        record(await assessmentFailed(deps, task, error));
        return undefined;
      }
    });
    for (const leak of assessed) {
      if (!leak) continue;
      const at = pending.findIndex((p) => p.key === leak.key);
      const entry = at >= 0 ? merged(deps, pending[at]!, leak) : leak;
      assessedAt.set(entry, at >= 0 ? Math.min(assessedAt.get(pending[at]!) ?? 0, worked) : worked);
      if (at >= 0) pending[at] = entry;
      else pending.push(entry);
    }
  };
  await admit(tasks);
  for (;;) {
    const extra = options.more?.() ?? [];
    if (extra.length) await admit(extra);
    if (!pending.length) break;
    pending.sort((a, b) => b.risk.score - a.risk.score || a.tasks[0]!.receivedAt.localeCompare(b.tasks[0]!.receivedAt));
    const next = pending.shift()!;
    let leak = next;
    if ((assessedAt.get(next) ?? 0) < worked) {
      try {
        leak = await refreshed(deps, next);
      } catch (error) {
        deps.logger.warn('could not match the leak again before acting; using the first assessment', { sourceId: next.report.sourceId, error: publicError(error) });
      }
    }
    record(await remediateLeak(deps, leak));
    worked += 1;
  }
  return results;
}

/** The matched version's value names no engine a kind handles (it was indexed by its generic fields). */
async function handledByNoKind(deps: LeakDeps, hit: FingerprintHit): Promise<boolean> {
  const { value } = await deps.store.getSecretValue(hit.secretId, { versionId: hit.versionId });
  let engine: unknown;
  try {
    engine = (JSON.parse(value.reveal()) as { engine?: unknown } | null)?.engine;
  } catch {
    return false; // not JSON: let the rotation report it
  }
  if (typeof engine !== 'string') return true;
  try {
    deps.kinds.forEngine(engine);
    return false;
  } catch {
    return true;
  }
}

function ticketDraft(deps: LeakDeps, leak: AssessedLeak, actions: string[], todo: string[] = []): TicketDraft {
  const { report, risk, hit, description, tasks } = leak;
  const repository = report.locations.find((l) => l.repository)?.repository;
  const subject = hit ? hit.secretId : `unmatched ${report.secretType}${repository ? ` in ${repository}` : ''}`;
  const where = report.locations.map((l) => `- ${[l.repository, l.file && `${l.file}${l.line ? `:${l.line}` : ''}`, l.commit && `commit ${l.commit.slice(0, 12)}`, l.url].filter(Boolean).join(' · ')}`);
  const owner = description?.tags[TAG.owner];
  const reportedBy = [...new Set(tasks.map((t) => `${t.report.source} (${t.report.sourceId})`))].join(', ');
  const body = [
    `**Priority ${risk.priority}** (risk ${risk.score}/100) — leaked ${report.secretType} reported by ${reportedBy}.`,
    '',
    '### Why this priority',
    ...risk.reasons.map((r) => `- ${r}`),
    '',
    '### Where it leaked',
    ...(where.length ? where : ['- (the scanner gave no location)']),
    `- exposure: ${report.public === true ? 'public' : report.public === false ? 'private' : 'unknown'}${report.exposedAt ? `, since ${report.exposedAt}` : ''}`,
    '',
    '### What rekey already did',
    ...actions.map((a) => `- ${a}`),
    '',
    '### What a human must do',
    ...(hit ? [] : ['- [ ] Find the owner of this credential and rotate it where it lives']),
    ...todo,
    '- [ ] Purge the value from the repository history (git filter-repo / BFG) and any forks, caches or packages',
    '- [ ] Check the database and access logs for use of the leaked credential since the exposure',
    '- [ ] Close the finding in the scanner once done',
  ].join('\n');
  const dead = leak.state === 'revoked' || leak.state === 'superseded';
  const at = deps.now().toISOString();
  return {
    key: leak.key,
    title: `[${risk.priority}] Leaked credential: ${subject}`,
    body,
    priority: risk.priority,
    score: risk.score,
    labels: [risk.priority, ...report.sources.map((s) => `source:${s}`), 'rekey', 'leaked-credential', ...(hit ? [] : ['triage'])],
    ...(owner ? { assignee: owner } : {}),
    // A value already dead was dealt with before: its ticket keeps its history and priority.
    ...(dead
      ? {
          ifExists: 'note' as const,
          note: [`Reported again by ${reportedBy} at ${at} (risk now ${risk.score}/100, ${risk.priority}).`, ...where, ...actions.map((a) => `- ${a}`)].join('\n'),
        }
      : {}),
  };
}

function hydrate(report: TaskReport): LeakReport {
  const { exposedAt, ...rest } = report;
  return { ...rest, ...(exposedAt ? { exposedAt: new Date(exposedAt) } : {}) };
}

function dedupeHits(hits: FingerprintHit[]): FingerprintHit[] {
  const seen = new Set<string>();
  return hits.filter((h) => {
    const id = `${h.secretId}\u0000${h.versionId}`;
    return seen.has(id) ? false : (seen.add(id), true);
  });
}

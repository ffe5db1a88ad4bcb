import { asBatchSummary, type BatchSummaryDetail } from './batch.ts';
import { formatDuration } from './duration.ts';
import { DETAIL_TYPE, type RekeyEvent } from './events.ts';

/**
 * rekey's events as chat messages, in a neutral model each channel renders its own way (Slack
 * Block Kit, a Teams Adaptive Card, a console line). Pure: the event in, the message out. The
 * message holds only what the event holds — identifiers, outcomes, durations, risk — never a value.
 */

export type Severity = 'good' | 'info' | 'warning' | 'critical';

export interface ChatField {
  label: string;
  value: string;
}

export interface ChatMessage {
  /** The detail-type it came from (Batch Completed for a summary). */
  kind: string;
  /** One line: what happened to what. */
  title: string;
  severity: Severity;
  /** A sentence or two; also the notification preview. */
  text: string;
  fields: ChatField[];
  /** The ticket, when there is one with a URL. */
  link?: { label: string; url: string };
  secretId?: string;
}

/**
 * `summary`: routine successes inside a batch (a schedule sweep or a bulk `rekey rotate`) are not
 * sent one by one; the batch's end sends one summary. `each`: every success is its own message.
 * Failures, stuck rotations and leaks are always sent one by one.
 */
export type SuccessPolicy = 'summary' | 'each';

/**
 * Failures after which the stored AWSCURRENT may be refused (a single-strategy change that could
 * not be undone, or whose promotion cannot be confirmed): the message must not say it still works.
 */
const CURRENT_MAY_BE_STALE = new Set(['RESTORE_FAILED', 'PROMOTION_UNCONFIRMED']);

/** What a Rotation Failed message says of AWSCURRENT: only what is known to be true. */
function currentAfterFailure(d: RekeyEvent['detail']): string {
  if (typeof d.currentRevoked === 'string') {
    return (
      `AWSCURRENT (version ${d.currentRevoked}, the leaked value) was revoked on purpose once its replacement was proven, so it no longer logs in; ` +
      `AWSPENDING version ${d.versionId ?? '?'} works: \`rekey rotate ${d.secretId}\` promotes it now.`
    );
  }
  if (CURRENT_MAY_BE_STALE.has(d.error?.code ?? '')) {
    return `AWSCURRENT may not log in until the rotation is finished: \`rekey rotate ${d.secretId}\` finishes it now (it tries the AWSPENDING value).`;
  }
  return `AWSCURRENT still works; \`rekey rotate ${d.secretId}\` resumes the rotation.`;
}

/** The chat message for an event, or undefined when this event is not worth a message. */
export function messageFor(event: RekeyEvent, policy: SuccessPolicy = 'summary'): ChatMessage | undefined {
  const d = event.detail;
  const inBatch = d.trigger === 'schedule' || typeof d.batchId === 'string';
  switch (event.detailType) {
    case DETAIL_TYPE.rotationStarted:
      return undefined; // the outcome follows; a start is noise
    case DETAIL_TYPE.rotationSucceeded:
      if (policy === 'summary' && inBatch) return undefined;
      return message(event, 'good', `Rotation succeeded: ${d.secretId}`, `Version ${d.versionId ?? '?'} is now AWSCURRENT${d.strategy ? ` (${d.strategy})` : ''}.`, [
        ...common(event),
        field('Duration', d.durationMs),
      ]);
    case DETAIL_TYPE.rotationFailed:
      return message(
        event,
        'critical',
        `Rotation failed: ${d.secretId}`,
        `Step ${d.step ?? '?'} failed: ${d.error?.message ?? 'unknown error'}. ` + currentAfterFailure(d),
        [...common(event), field('Error', d.error?.code), field('Step', d.step), field('Revoked AWSCURRENT', d.currentRevoked)],
      );
    case DETAIL_TYPE.rotationStuck:
      return message(
        event,
        'warning',
        `Rotation stuck: ${d.secretId}`,
        `AWSPENDING version ${d.versionId ?? '?'} has waited ${d.durationMs === undefined ? 'too long' : formatDuration(d.durationMs)}. \`rekey rotate ${d.secretId}\` finishes it.`,
        common(event),
      );
    case DETAIL_TYPE.credentialRevoked:
      if (policy === 'summary' && inBatch) return undefined;
      return message(
        event,
        'info',
        `Credential revoked: ${d.secretId}`,
        `The credential of version ${d.versionId ?? '?'} no longer logs in (proven by a refused login); ${num(d.sessionsEnded)} session(s) ended.`,
        [...common(event), field('Duration', d.durationMs)],
      );
    case DETAIL_TYPE.revocationFailed:
      return message(
        event,
        'critical',
        `Revocation failed: ${d.secretId}`,
        `The credential of version ${d.versionId ?? '?'} may still work: ${d.error?.message ?? 'unknown error'}.`,
        [...common(event), field('Error', d.error?.code)],
      );
    case DETAIL_TYPE.leakDetected: {
      const priority = d.risk?.priority ?? '?';
      const matched = d.secretId !== 'unmatched';
      return message(
        event,
        priority === 'P0' || priority === 'P1' ? 'critical' : 'warning',
        `Leak detected (${priority}): ${matched ? d.secretId : 'unmatched credential'}`,
        matched
          ? `${str(d.source) ?? 'A scanner'} reported a leaked value of ${d.secretId} (${str(d.state) ?? 'unknown state'}). rekey is rotating and revoking it now.`
          : `${str(d.source) ?? 'A scanner'} reported a leaked credential that matches no managed secret. A ticket will ask for its owner.`,
        [...common(event), field('Source', [str(d.source), str(d.sourceId)].filter(Boolean).join(' ')), field('Why', reasons(d.reasons))],
      );
    }
    case DETAIL_TYPE.leakRemediated: {
      const failed = d.outcome === 'failed';
      return message(
        event,
        failed ? 'critical' : 'good',
        `Leak ${failed ? 'remediation failed' : 'remediated'}: ${d.secretId}`,
        failed
          ? `rekey could not finish: ${d.error?.message ?? 'unknown error'}. The ticket is open for a human.`
          : `The leaked value no longer works${d.secretId === 'unmatched' ? ' anywhere rekey manages; find its owner' : ''}. Follow-up is in the ticket.`,
        [...common(event), field('Ticket', d.ticketId), field('Error', d.error?.code)],
      );
    }
    case DETAIL_TYPE.ticketOpened:
      return message(event, 'info', `Ticket opened: ${d.secretId}`, `A remediation ticket tracks what a human must still do.`, [
        ...common(event),
        field('Ticket', d.ticketId),
      ]);
    case DETAIL_TYPE.consumerUpdateFailed:
      return message(
        event,
        'warning',
        `Consumer update failed: ${d.secretId}`,
        `Version ${d.versionId ?? '?'} is AWSCURRENT but did not reach every consumer: ${d.error?.message ?? 'unknown error'}. The previous value stays valid until a push succeeds; the sweep tries again.`,
        [...common(event), field('Error', d.error?.code)],
      );
    case DETAIL_TYPE.consumersUpdated:
    case DETAIL_TYPE.consumerUpdateRequested:
    case DETAIL_TYPE.credentialPurged:
      return undefined; // routine follow-ups of a rotation or a revoke, kept by the audit trail
    case DETAIL_TYPE.batchCompleted: {
      const batch = asBatchSummary(d);
      return batch ? batchMessage(event, batch) : undefined;
    }
    default:
      return undefined;
  }
}

/** One message for a whole sweep or bulk rotation; none for a sweep that had nothing to do. */
function batchMessage(event: RekeyEvent, b: BatchSummaryDetail): ChatMessage | undefined {
  const { counts } = b;
  if (b.kind === 'sweep' && counts.succeeded + counts.revoked + counts.stuck + counts.failed === 0) return undefined;
  const rotated = b.rotationsAsync ? 'rotations started' : 'rotated';
  const parts = [
    `${counts.succeeded} ${b.kind === 'sweep' ? rotated : 'succeeded'}`,
    ...(counts.revoked ? [`${counts.revoked} revoked`] : []),
    ...(counts.stuck ? [`${counts.stuck} stuck`] : []),
    `${counts.failed} failed`,
  ];
  const title = `${b.kind === 'sweep' ? 'Scheduled sweep' : 'Bulk rotation'}: ${parts.join(', ')}`;
  const text =
    `${b.total} secret(s)${b.kind === 'sweep' ? ` checked, ${counts.skipped} needed nothing` : ' selected'}` +
    (counts.failed ? '; each failure is also reported on its own.' : '.') +
    (b.rotationsAsync ? ' Secrets Manager runs the started rotations and reports each failure.' : '');
  return {
    kind: event.detailType,
    title,
    severity: counts.failed ? 'warning' : 'good',
    text,
    fields: compact([
      field('Actor', event.detail.actor),
      field('Reason', event.detail.reason),
      field('Duration', event.detail.durationMs),
      field(b.kind === 'sweep' ? 'Rotated' : 'Succeeded', list(b.succeeded, counts.succeeded)),
      field('Revoked', list(b.revoked, counts.revoked)),
      field('Stuck', list(b.stuck, counts.stuck)),
      field('Failed', list(b.failed.map((f) => `${f.secretId} (${f.code})`), counts.failed)),
    ]),
  };
}

function message(event: RekeyEvent, severity: Severity, title: string, text: string, fields: (ChatField | undefined)[]): ChatMessage {
  const url = str(event.detail.ticketUrl);
  return {
    kind: event.detailType,
    title,
    severity,
    text,
    fields: compact(fields),
    ...(url && /^https?:\/\//.test(url) ? { link: { label: 'Open the ticket', url } } : {}),
    secretId: event.detail.secretId,
  };
}

/** Secret, trigger, who, why, risk and version: on every per-item message. */
function common(event: RekeyEvent): (ChatField | undefined)[] {
  const d = event.detail;
  return [
    field('Secret', d.secretId),
    field('Trigger', d.trigger),
    field('Actor', d.actor),
    field('Reason', d.reason),
    field('Risk', d.risk ? `${d.risk.priority} (${d.risk.score}/100)` : undefined),
    field('Version', d.versionId),
  ];
}

function field(label: string, value: unknown): ChatField | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (label === 'Duration' && typeof value === 'number') return { label, value: formatDuration(value) };
  return { label, value: String(value) };
}

const compact = (fields: (ChatField | undefined)[]) => fields.filter((f): f is ChatField => f !== undefined);
const str = (value: unknown) => (typeof value === 'string' && value ? value : undefined);
const num = (value: unknown) => (typeof value === 'number' ? value : 0);

function reasons(value: unknown): string | undefined {
  if (!Array.isArray(value)) return undefined;
  return value.filter((r): r is string => typeof r === 'string').slice(0, 4).join('; ') || undefined;
}

/** Names up to 15 ids; the count says how many there are in all (lists in events are capped too). */
function list(ids: string[], total: number): string | undefined {
  if (total === 0) return undefined;
  const shown = ids.slice(0, 15);
  return shown.join(', ') + (total > shown.length ? ` and ${total - shown.length} more` : '');
}

/** Cuts text to `max` characters, marking the cut (chat services refuse, not truncate, long text). */
export function truncate(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

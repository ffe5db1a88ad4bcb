import { createHash } from 'node:crypto';
import type { RekeyEvent } from './events.ts';

/**
 * The audit trail's record of one event: who (actor), what (action = detail-type, step, outcome),
 * on which secret and version, how long, why, and the error code when it failed. Built from the
 * event's identifiers and measurements only, so it can never hold a value.
 */
export interface AuditEntry {
  time: string;
  actor: string;
  action: string;
  trigger?: string;
  secretId: string;
  versionId?: string;
  step?: string;
  outcome: string;
  durationMs?: number;
  reason?: string;
  error?: { code: string; message: string };
  batchId?: string;
  /** Leak events: the risk priority and score. */
  risk?: { score: number; priority: string };
  ticketId?: string;
  /** Batch Completed: the counts per outcome. */
  counts?: Record<string, number>;
  /** Rotation Failed after a leak's early kill: the AWSCURRENT version that was revoked. */
  currentRevoked?: string;
}

/** An entry as stored: numbered and chained to the one before by hash. */
export interface AuditRecord extends AuditEntry {
  v: 1;
  seq: number;
  prevHash: string;
  /** sha256 (hex) of the canonical JSON of the record without `hash`. */
  hash: string;
}

export type ChainCheck = { ok: true; records: number; head: string } | { ok: false; records: number; line: number; problem: string };

/** The prevHash of the first record. */
export const GENESIS_HASH = '0'.repeat(64);

const MAX_REASON = 500;

/** Outcome words per detail-type; Leak Remediated and Batch Completed say theirs in the detail. */
const OUTCOME: Record<string, string> = {
  'Rotation Started': 'started',
  'Rotation Succeeded': 'succeeded',
  'Rotation Failed': 'failed',
  'Rotation Stuck': 'stuck',
  'Credential Revoked': 'revoked',
  'Revocation Failed': 'failed',
  'Leak Detected': 'detected',
  'Ticket Opened': 'opened',
  'Consumers Updated': 'pushed',
  'Consumer Update Failed': 'failed',
  'Consumer Update Requested': 'requested',
  'Credential Purged': 'purged',
};

export function auditEntryOf(event: RekeyEvent): AuditEntry {
  const d = event.detail;
  const counts = d.counts && typeof d.counts === 'object' ? (d.counts as Record<string, number>) : undefined;
  let outcome = OUTCOME[event.detailType] ?? 'recorded';
  if (event.detailType === 'Leak Remediated') outcome = d.outcome === 'failed' ? 'failed' : 'succeeded';
  if (event.detailType === 'Batch Completed') outcome = (counts?.failed ?? 0) > 0 ? 'failed' : 'succeeded';
  const str = (value: unknown) => (typeof value === 'string' && value ? value : undefined);
  const entry: AuditEntry = {
    time: event.time.toISOString(),
    actor: str(d.actor) ?? 'unknown',
    action: event.detailType,
    secretId: d.secretId,
    outcome,
  };
  const optional: Partial<AuditEntry> = {
    trigger: str(d.trigger),
    versionId: str(d.versionId),
    step: str(d.step),
    durationMs: typeof d.durationMs === 'number' ? Math.round(d.durationMs) : undefined,
    reason: str(d.reason)?.slice(0, MAX_REASON),
    error: d.error ? { code: String(d.error.code), message: String(d.error.message).slice(0, MAX_REASON) } : undefined,
    batchId: str(d.batchId),
    risk: d.risk ? { score: d.risk.score, priority: d.risk.priority } : undefined,
    ticketId: str(d.ticketId),
    counts,
    currentRevoked: str(d.currentRevoked),
  };
  for (const [key, value] of Object.entries(optional)) if (value !== undefined) (entry as unknown as Record<string, unknown>)[key] = value;
  return entry;
}

/** JSON with keys sorted at every level and no whitespace: the same record always hashes the same. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

export function hashOf(record: Omit<AuditRecord, 'hash'>): string {
  return createHash('sha256').update(canonicalJson(record)).digest('hex');
}

/** The next record after `previous` (undefined: the first). */
export function chain(entry: AuditEntry, previous: Pick<AuditRecord, 'seq' | 'hash'> | undefined): AuditRecord {
  const unsigned = { ...entry, v: 1 as const, seq: (previous?.seq ?? 0) + 1, prevHash: previous?.hash ?? GENESIS_HASH };
  return { ...unsigned, hash: hashOf(unsigned) };
}

/** Parses one stored line, or says why it is not a record. */
export function parseRecord(line: string): AuditRecord | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return 'not valid JSON';
  }
  const r = parsed as Partial<AuditRecord>;
  if (typeof parsed !== 'object' || parsed === null || typeof r.hash !== 'string' || typeof r.prevHash !== 'string' || typeof r.seq !== 'number') {
    return 'not an audit record (no seq, prevHash or hash)';
  }
  return parsed as AuditRecord;
}

/**
 * Checks a whole trail, line by line: each record parses, is numbered one after the previous,
 * names the previous record's hash, and hashes to its own `hash`. Returns the first broken line.
 */
export function verifyChain(lines: readonly string[]): ChainCheck {
  let previous: AuditRecord | undefined;
  let count = 0;
  for (const [index, line] of lines.entries()) {
    const at = index + 1;
    if (line === '' && index === lines.length - 1) break; // the newline after the last record
    const record = parseRecord(line);
    if (typeof record === 'string') return { ok: false, records: count, line: at, problem: record };
    const { hash, ...unsigned } = record;
    if (record.seq !== (previous?.seq ?? 0) + 1) return { ok: false, records: count, line: at, problem: `sequence number ${record.seq} where ${(previous?.seq ?? 0) + 1} was expected (a record was removed, inserted or reordered)` };
    if (record.prevHash !== (previous?.hash ?? GENESIS_HASH)) return { ok: false, records: count, line: at, problem: 'prevHash does not match the previous record (the chain was cut or reordered)' };
    if (hashOf(unsigned) !== hash) return { ok: false, records: count, line: at, problem: 'hash does not match the record (it was edited)' };
    previous = record;
    count++;
  }
  return { ok: true, records: count, head: previous?.hash ?? GENESIS_HASH };
}

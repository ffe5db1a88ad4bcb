import type { EventDetail } from './events.ts';

/** What happened to one secret in a sweep or a bulk rotation. */
export type BatchOutcome = 'succeeded' | 'revoked' | 'stuck' | 'failed' | 'skipped';

/** At most this many secret ids per list in a Batch Completed event (EventBridge entries are capped at 256 KB). */
export const BATCH_LIST_LIMIT = 200;

/**
 * The detail of a Batch Completed event: counts of every outcome, and the secret ids per outcome
 * (failures with their error code), each list capped. Chat turns it into one summary message; the
 * audit trail keeps it as the end of the batch.
 */
export interface BatchSummary {
  secretId: '*';
  kind: 'sweep' | 'bulk';
  total: number;
  counts: Record<BatchOutcome, number>;
  succeeded: string[];
  revoked: string[];
  stuck: string[];
  failed: { secretId: string; code: string }[];
  /** AWS: "succeeded" means Secrets Manager accepted RotateSecret; each rotation reports itself. */
  rotationsAsync?: boolean;
}

export type BatchSummaryDetail = BatchSummary & EventDetail;

export function batchSummary(kind: 'sweep' | 'bulk', items: readonly { secretId: string; outcome: BatchOutcome; error?: { code: string } }[]): BatchSummary {
  const counts: Record<BatchOutcome, number> = { succeeded: 0, revoked: 0, stuck: 0, failed: 0, skipped: 0 };
  for (const item of items) counts[item.outcome]++;
  const ids = (outcome: BatchOutcome) => items.filter((i) => i.outcome === outcome).slice(0, BATCH_LIST_LIMIT).map((i) => i.secretId);
  return {
    secretId: '*',
    kind,
    total: items.length,
    counts,
    succeeded: ids('succeeded'),
    revoked: ids('revoked'),
    stuck: ids('stuck'),
    failed: items
      .filter((i) => i.outcome === 'failed')
      .slice(0, BATCH_LIST_LIMIT)
      .map((i) => ({ secretId: i.secretId, code: i.error?.code ?? 'INTERNAL' })),
  };
}

/** Reads a Batch Completed detail defensively (it may come from EventBridge, written by another version). */
export function asBatchSummary(detail: EventDetail): BatchSummaryDetail | undefined {
  const d = detail as Partial<BatchSummaryDetail>;
  if (d.secretId !== '*' || (d.kind !== 'sweep' && d.kind !== 'bulk') || typeof d.counts !== 'object' || d.counts === null) return undefined;
  const list = (value: unknown) => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);
  const counts: Record<BatchOutcome, number> = { succeeded: 0, revoked: 0, stuck: 0, failed: 0, skipped: 0 };
  for (const key of Object.keys(counts) as BatchOutcome[]) if (typeof d.counts[key] === 'number') counts[key] = d.counts[key];
  return {
    ...detail,
    secretId: '*',
    kind: d.kind,
    total: typeof d.total === 'number' ? d.total : Object.values(counts).reduce((a, b) => a + b, 0),
    counts,
    succeeded: list(d.succeeded),
    revoked: list(d.revoked),
    stuck: list(d.stuck),
    failed: Array.isArray(d.failed)
      ? d.failed.filter((f): f is { secretId: string; code: string } => typeof f === 'object' && f !== null && typeof f.secretId === 'string').map((f) => ({ secretId: f.secretId, code: String(f.code ?? 'INTERNAL') }))
      : [],
  };
}

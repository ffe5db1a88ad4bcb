import type { AuditEntry, AuditRecord, ChainCheck } from '../audit.ts';

/**
 * The audit trail: one record per rekey event, appended in order and never rewritten.
 *
 * Contract:
 * - `append` resolves once the record is durable; records are chained (each carries the hash of
 *   the one before), so an edited, inserted, removed or reordered record breaks the chain;
 * - appends from several processes at once keep one valid chain (the adapter serialises them);
 * - `read` returns records oldest first, filtered by secret and time; it does not verify;
 * - `verify` checks the whole chain and names the first broken record (1-based line);
 * - records hold identifiers, outcomes and durations: never a secret value.
 */
export interface AuditLog {
  readonly kind: string;
  append(entry: AuditEntry): Promise<AuditRecord>;
  read(filter?: { secretId?: string; since?: Date }): Promise<AuditRecord[]>;
  verify(): Promise<ChainCheck>;
}

import type { CoreDeps } from './deps.ts';
import { consumersOf } from './consumers.ts';
import { kindOf } from './credentials.ts';
import { purgeDue } from './revocation.ts';
import { graceOf, maxAgeOf, TAG } from './secret.ts';
import { REVOKED_LABEL, STAGE, type SecretDescription } from './ports/secret-store.ts';
import { publicError } from './errors.ts';

export interface SecretStatus {
  secretId: string;
  engine?: string;
  host?: string;
  /** Who AWSCURRENT authenticates: a database user, an IAM user, a provider. */
  username?: string;
  /** AWSCURRENT's own non-secret id, where it has one (an IAM access key id, a provider key id). */
  keyId?: string;
  strategy?: string;
  /** The consumers AWSCURRENT lists and whether they all received it (`pushed`, `failed`, `not pushed`). */
  consumers?: { listed: number; state: 'pushed' | 'failed' | 'not pushed' };
  /** A revoked credential that is only disabled, deleted by the sweep after this time. */
  purgeAfter?: string;
  /** Age of AWSCURRENT in ms. */
  currentAgeMs?: number;
  maxAgeMs?: number;
  graceMs: number;
  /** AWSCURRENT is older than rekey:max-age. */
  due: boolean;
  lastRotatedAt?: string;
  lastOutcome?: string;
  lastOutcomeAt?: string;
  /** AWSPREVIOUS exists and has not been revoked. */
  previousLive: boolean;
  pendingAgeMs?: number;
  versions: { versionId: string; stages: string[]; createdAt: string; ageMs: number }[];
  /** The value could not be read or parsed: the code says why. Never a value. */
  problem?: string;
  /** Tagged rekey:managed=true: the sweep and bulk rotations consider it. */
  managed: boolean;
  /** Against rekey:max-age: see `complianceOf`. */
  compliance: Compliance;
}

/**
 * OK: younger than rekey:max-age. DUE: past it (the next schedule sweep rotates it). OVERDUE: past
 * it by more than OVERDUE_AFTER_MS — the schedule should have rotated it by now, so something is
 * failing. never-rotated: within policy (or without one) but rekey has never rotated it, so no
 * rotation has proven it works. `-`: no max age and rotated before. unmanaged: not tagged
 * rekey:managed=true (an admin secret, say): no sweep or bulk rotation touches it, by design.
 */
export type Compliance = 'OK' | 'DUE' | 'OVERDUE' | 'never-rotated' | '-' | 'unmanaged';

/** A day past max age: 24 hourly sweeps had their chance. */
export const OVERDUE_AFTER_MS = 86_400_000;

export function complianceOf(status: Pick<SecretStatus, 'managed' | 'currentAgeMs' | 'maxAgeMs' | 'lastRotatedAt' | 'lastOutcome'>): Compliance {
  const { currentAgeMs, maxAgeMs } = status;
  if (!status.managed) return 'unmanaged';
  if (currentAgeMs !== undefined && maxAgeMs !== undefined && currentAgeMs >= maxAgeMs) {
    return currentAgeMs >= maxAgeMs + OVERDUE_AFTER_MS ? 'OVERDUE' : 'DUE';
  }
  const rotated = status.lastRotatedAt !== undefined || status.lastOutcome?.startsWith('succeeded') === true;
  if (!rotated) return 'never-rotated';
  return maxAgeMs === undefined ? '-' : 'OK';
}

/** Stages, ages and last outcome of a secret: identifiers and times only, never a value. */
export async function inspectSecret(deps: CoreDeps, secretId: string, description?: SecretDescription): Promise<SecretStatus> {
  const d = description ?? (await deps.store.describeSecret(secretId));
  const now = deps.now().getTime();
  const versions = d.versions.map((v) => ({
    versionId: v.versionId,
    stages: v.stages,
    createdAt: v.createdAt.toISOString(),
    ageMs: now - v.createdAt.getTime(),
  }));
  const current = d.versions.find((v) => v.stages.includes(STAGE.current));
  const pending = d.versions.find((v) => v.stages.includes(STAGE.pending) && !v.stages.includes(STAGE.current));
  const previous = d.versions.find((v) => v.stages.includes(STAGE.previous));
  const status: SecretStatus = {
    secretId,
    managed: d.tags[TAG.managed] === 'true',
    graceMs: 0,
    due: false,
    previousLive: Boolean(previous && !previous.stages.includes(REVOKED_LABEL)),
    versions,
    compliance: '-',
    ...(d.lastRotatedAt ? { lastRotatedAt: d.lastRotatedAt.toISOString() } : {}),
    ...(d.tags[TAG.lastOutcome] ? { lastOutcome: d.tags[TAG.lastOutcome] } : {}),
    ...(d.tags[TAG.lastOutcomeAt] ? { lastOutcomeAt: d.tags[TAG.lastOutcomeAt] } : {}),
    ...(pending ? { pendingAgeMs: now - pending.createdAt.getTime() } : {}),
  };
  try {
    status.graceMs = graceOf(d.tags);
    const maxAge = maxAgeOf(d.tags);
    if (current) {
      status.currentAgeMs = now - current.createdAt.getTime();
      if (maxAge !== undefined) {
        status.maxAgeMs = maxAge;
        status.due = status.currentAgeMs >= maxAge;
      }
      const value = (await deps.store.getSecretValue(secretId, { versionId: current.versionId })).value;
      const summary = kindOf(deps, value, secretId).describe(value, secretId, d.tags);
      Object.assign(status, {
        engine: summary.engine,
        username: summary.principal,
        strategy: summary.strategy,
        ...(summary.host ? { host: summary.host } : {}),
        ...(summary.keyId ? { keyId: summary.keyId } : {}),
      });
      const listed = consumersOf(value, secretId).length;
      if (listed) {
        const [version, outcome] = (d.tags[TAG.consumers] ?? '').split(' ');
        status.consumers = { listed, state: version !== current.versionId ? 'not pushed' : outcome === 'ok' ? 'pushed' : 'failed' };
      }
      const purge = purgeDue(d.tags);
      if (purge) status.purgeAfter = purge.after.toISOString();
    }
  } catch (error) {
    status.problem = publicError(error).message;
  }
  status.compliance = complianceOf(status);
  return status;
}

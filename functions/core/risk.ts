import type { Priority } from './ports/tickets.ts';

/** What the leaked value is to us now. */
export type LeakState = 'current' | 'pending' | 'previous-live' | 'revoked' | 'superseded' | 'unmatched';

export interface RiskInput {
  state: LeakState;
  /** Public repository or package; undefined when the scanner does not say. */
  public?: boolean;
  /** An admin secret, or one that is another secret's masterarn. */
  privileged: boolean;
  environment?: string;
  /** How long the value has been exposed, as far as the scanner knows. */
  exposedForMs?: number;
  occurrences: number;
  /** The scanner's own check of the value. */
  scannerValidity?: 'active' | 'inactive' | 'unknown';
}

export interface Risk {
  score: number;
  priority: Priority;
  reasons: string[];
}

const STATE_POINTS: Record<LeakState, [number, string]> = {
  current: [40, 'the leaked value is AWSCURRENT: it works right now'],
  pending: [35, 'the leaked value is AWSPENDING: it is about to become current'],
  'previous-live': [30, 'the leaked value is AWSPREVIOUS and still within its grace: it still works'],
  unmatched: [20, 'the leaked value matches no managed secret: owner unknown, triage needed'],
  revoked: [0, 'the leaked value was already revoked'],
  superseded: [0, 'the leaked value belongs to an old version that no longer works'],
};

const HOUR = 3_600_000;

/**
 * A pure score 0–100 with named reasons, and P0–P3 from it. Dead values (revoked, superseded)
 * stay low whatever else is true: nothing can be done with them.
 */
export function scoreLeak(input: RiskInput): Risk {
  const reasons: string[] = [];
  const add = (points: number, reason: string) => {
    reasons.push(reason);
    return points;
  };
  const [statePoints, stateReason] = STATE_POINTS[input.state];
  let score = add(statePoints, stateReason);

  if (input.public === true) score += add(25, 'exposed publicly (public repository or package)');
  else if (input.public === false) score += add(8, 'exposed in a private repository');
  else score += add(15, 'exposure unknown: treated as possibly public');

  if (input.privileged) score += add(15, 'privileged: an admin credential that manages other users');

  const env = input.environment?.toLowerCase();
  if (env === 'prod' || env === 'production') score += add(15, 'production environment');
  else if (env === 'staging') score += add(8, 'staging environment');
  else if (env === 'dev' || env === 'development') score += add(2, 'development environment');
  else score += add(8, 'environment not tagged (rekey:environment)');

  if (input.exposedForMs !== undefined && input.exposedForMs >= 24 * HOUR) score += add(5, 'exposed for more than a day');
  if (input.occurrences > 1) score += add(Math.min(5, input.occurrences - 1), `found in ${input.occurrences} places`);
  if (input.scannerValidity === 'active' && (input.state === 'unmatched')) score += add(5, 'the scanner verified the value works');

  if (input.state === 'revoked' || input.state === 'superseded') score = Math.min(score, 10);
  score = Math.max(0, Math.min(100, Math.round(score)));
  return { score, priority: priorityOf(score), reasons };
}

export function priorityOf(score: number): Priority {
  if (score >= 75) return 'P0';
  if (score >= 55) return 'P1';
  if (score >= 30) return 'P2';
  return 'P3';
}

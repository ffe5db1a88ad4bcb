/** rekey's event catalogue (DESIGN.md §6). Details hold identifiers and measurements, never a value. */
export const EVENT_SOURCE = 'rekey';

export const DETAIL_TYPE = {
  rotationStarted: 'Rotation Started',
  rotationSucceeded: 'Rotation Succeeded',
  rotationFailed: 'Rotation Failed',
  rotationStuck: 'Rotation Stuck',
  credentialRevoked: 'Credential Revoked',
  leakDetected: 'Leak Detected',
  leakRemediated: 'Leak Remediated',
  ticketOpened: 'Ticket Opened',
  /** A revoke that could not be proven (the credential may still work): on-call must look. */
  revocationFailed: 'Revocation Failed',
  /** End of a schedule sweep or a bulk `rekey rotate`: counts, so chat can summarise routine successes. */
  batchCompleted: 'Batch Completed',
  /** Every consumer the new AWSCURRENT lists received it (README "Consumers"). */
  consumersUpdated: 'Consumers Updated',
  /** A consumer did not receive the new AWSCURRENT: the previous value is not revoked until one does. */
  consumerUpdateFailed: 'Consumer Update Failed',
  /** Asks whatever listens on the bus (an ECS redeploy, a Kubernetes rollout) to pick up a new value. */
  consumerUpdateRequested: 'Consumer Update Requested',
  /** A credential revoke only disabled (an IAM key) was deleted after its second grace. */
  credentialPurged: 'Credential Purged',
} as const;

export type DetailType = (typeof DETAIL_TYPE)[keyof typeof DETAIL_TYPE];
export type Trigger = 'schedule' | 'leak' | 'manual';

export interface EventDetail {
  /** `*` on a Batch Completed event, which is about many secrets. */
  secretId: string;
  versionId?: string;
  strategy?: string;
  trigger?: Trigger;
  /** Who or what acted: `cli:<user>`, `schedule`, `scanner:<source>`, `lambda:<function>` (the audit trail's "who"). */
  actor?: string;
  /** Set on every event of one sweep or bulk rotation, and on its Batch Completed event. */
  batchId?: string;
  reason?: string;
  step?: string;
  risk?: { score: number; priority: string };
  durationMs?: number;
  error?: { code: string; message: string };
  /**
   * Rotation Failed during a leak's promotion, after the early kill: the AWSCURRENT version that
   * was revoked on purpose (it leaked); AWSPENDING holds the proven replacement.
   */
  currentRevoked?: string;
  [key: string]: unknown;
}

export interface RekeyEvent {
  source: typeof EVENT_SOURCE;
  detailType: DetailType;
  time: Date;
  detail: EventDetail;
}

/** Who acted when the caller did not say: the trigger is the best we know. */
export function defaultActor(trigger: Trigger): string {
  return trigger === 'schedule' ? 'schedule' : trigger === 'leak' ? 'scanner' : 'unknown';
}

/** Who acted and why, as every action of the core receives it (core reads no environment). */
export interface ActionContext {
  trigger: Trigger;
  actor?: string;
  reason?: string;
  batchId?: string;
}

/** The fields an action's events carry about who acted and why (absent ones left out). */
export function actionFields(request: ActionContext): Pick<EventDetail, 'trigger' | 'actor' | 'reason' | 'batchId'> {
  return {
    trigger: request.trigger,
    actor: request.actor ?? defaultActor(request.trigger),
    ...(request.reason ? { reason: request.reason } : {}),
    ...(request.batchId ? { batchId: request.batchId } : {}),
  };
}

export function rekeyEvent(detailType: DetailType, detail: EventDetail, time = new Date()): RekeyEvent {
  return { source: EVENT_SOURCE, detailType, time, detail };
}

/**
 * Publish one event on behalf of an action that has already happened: a bus failure is logged,
 * never turned into the action's failure (the bus adapter has retried by then).
 */
export async function emit(
  deps: {
    events: { publish(events: RekeyEvent[]): Promise<void> };
    logger: { error(message: string, fields?: Record<string, unknown>): void };
    now: () => Date;
  },
  detailType: DetailType,
  detail: EventDetail,
): Promise<void> {
  try {
    await deps.events.publish([rekeyEvent(detailType, detail, deps.now())]);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    deps.logger.error('could not publish event', { secretId: detail.secretId, detailType, code: typeof code === 'string' ? code : 'INTERNAL' });
  }
}

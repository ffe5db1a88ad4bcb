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
} as const;

export type DetailType = (typeof DETAIL_TYPE)[keyof typeof DETAIL_TYPE];
export type Trigger = 'schedule' | 'leak' | 'manual';

export interface EventDetail {
  secretId: string;
  versionId?: string;
  strategy?: string;
  trigger?: Trigger;
  reason?: string;
  step?: string;
  risk?: { score: number; priority: string };
  durationMs?: number;
  error?: { code: string; message: string };
  [key: string]: unknown;
}

export interface RekeyEvent {
  source: typeof EVENT_SOURCE;
  detailType: DetailType;
  time: Date;
  detail: EventDetail;
}

export function rekeyEvent(detailType: DetailType, detail: EventDetail, time = new Date()): RekeyEvent {
  return { source: EVENT_SOURCE, detailType, time, detail };
}

import { DETAIL_TYPE, rekeyEvent, type DetailType, type EventDetail, type RekeyEvent } from '#core/events.ts';
import { batchSummary } from '#core/batch.ts';

const T = new Date('2026-11-02T10:00:00.000Z');

/** One realistic event of every detail-type, as the core emits them (identifiers only). */
export function sampleEvents(extra: Record<string, unknown> = {}): Record<DetailType, RekeyEvent> {
  const base = { secretId: 'prod/billing-db', versionId: '8a1c2f3e-0000-4000-8000-000000000001', actor: 'cli:alice' };
  const leak = { secretId: 'prod/billing-db', trigger: 'leak' as const, actor: 'scanner:gitleaks', risk: { score: 92, priority: 'P0' }, source: 'gitleaks', sourceId: 'abc:config/db.env:3' };
  // `extra` last: a test overrides any field of every event.
  const event = (type: DetailType, detail: EventDetail) => rekeyEvent(type, { ...detail, ...extra }, T);
  return {
    [DETAIL_TYPE.rotationStarted]: event(DETAIL_TYPE.rotationStarted, { ...base, trigger: 'manual', strategy: 'alternating', step: 'createSecret' }),
    [DETAIL_TYPE.rotationSucceeded]: event(DETAIL_TYPE.rotationSucceeded, { ...base, trigger: 'manual', reason: 'quarterly', strategy: 'alternating', step: 'finishSecret', durationMs: 412 }),
    [DETAIL_TYPE.rotationFailed]: event(DETAIL_TYPE.rotationFailed, {
      ...base,
      trigger: 'manual',
      step: 'setSecret',
      durationMs: 30,
      error: { code: 'TARGET_UNREACHABLE', message: 'cannot reach postgres at 10.0.0.5:5432 for prod/billing-db' },
    }),
    [DETAIL_TYPE.rotationStuck]: event(DETAIL_TYPE.rotationStuck, { ...base, trigger: 'schedule', actor: 'schedule', durationMs: 3 * 3_600_000, reason: 'AWSPENDING older than the stuck threshold' }),
    [DETAIL_TYPE.credentialRevoked]: event(DETAIL_TYPE.credentialRevoked, { ...base, trigger: 'manual', method: 'password-scrambled', sessionsEnded: 2, proven: true, durationMs: 95 }),
    [DETAIL_TYPE.revocationFailed]: event(DETAIL_TYPE.revocationFailed, { ...base, trigger: 'manual', durationMs: 50, error: { code: 'REVOKE_NOT_PROVEN', message: 'the revoked credential of prod/billing-db (user app) still logs in' } }),
    [DETAIL_TYPE.leakDetected]: event(DETAIL_TYPE.leakDetected, { ...leak, versionId: base.versionId, state: 'current', reasons: ['the leaked value is AWSCURRENT', 'public repository', 'prod'] }),
    [DETAIL_TYPE.leakRemediated]: event(DETAIL_TYPE.leakRemediated, { ...leak, versionId: base.versionId, state: 'current', durationMs: 820, outcome: 'succeeded', ticketId: '42', ticketUrl: 'https://github.com/acme/security/issues/42' }),
    [DETAIL_TYPE.ticketOpened]: event(DETAIL_TYPE.ticketOpened, { ...leak, ticketId: '42', ticketUrl: 'https://github.com/acme/security/issues/42' }),
    [DETAIL_TYPE.consumersUpdated]: event(DETAIL_TYPE.consumersUpdated, {
      ...base,
      trigger: 'manual',
      durationMs: 640,
      consumers: [{ consumer: 'github-actions acme/deploy (environment production)', updated: ['DB_PASSWORD'] }],
    }),
    [DETAIL_TYPE.consumerUpdateFailed]: event(DETAIL_TYPE.consumerUpdateFailed, {
      ...base,
      trigger: 'manual',
      durationMs: 310,
      consumers: [],
      failed: [{ consumer: 'github-actions acme/deploy', code: 'CONSUMER_PUSH_FAILED', message: 'github-actions acme/deploy: could not write DB_PASSWORD: GitHub answered 403' }],
      error: { code: 'CONSUMER_PUSH_FAILED', message: '1 consumer(s) not updated: github-actions acme/deploy' },
    }),
    [DETAIL_TYPE.consumerUpdateRequested]: event(DETAIL_TYPE.consumerUpdateRequested, { ...base, consumer: 'billing-api', request: { action: 'ecs-force-new-deployment', cluster: 'prod', service: 'billing' } }),
    [DETAIL_TYPE.credentialPurged]: event(DETAIL_TYPE.credentialPurged, { ...base, trigger: 'schedule', actor: 'schedule', reason: 'second grace period over' }),
    [DETAIL_TYPE.batchCompleted]: event(DETAIL_TYPE.batchCompleted, {
      ...batchSummary('bulk', [
        { secretId: 'app/a', outcome: 'succeeded' },
        { secretId: 'app/b', outcome: 'succeeded' },
        { secretId: 'app/c', outcome: 'failed', error: { code: 'TARGET_UNREACHABLE' } },
      ]),
      trigger: 'manual',
      actor: 'cli:alice',
      batchId: 'b-1',
      reason: 'quarterly',
      durationMs: 2_500,
    }),
  };
}

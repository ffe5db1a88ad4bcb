import { describe, expect, it } from 'vitest';
import { DETAIL_TYPE, rekeyEvent, type DetailType } from '#core/events.ts';
import { messageFor, truncate } from '#core/notifications.ts';
import { batchSummary } from '#core/batch.ts';
import { sampleEvents } from '#test/helpers/sample-events.ts';

describe('notifications', () => {
  describe('messageFor', () => {
    it('has a template for every event type on-call must see, and none for Rotation Started', () => {
      const events = sampleEvents();
      const titled = Object.fromEntries((Object.keys(events) as DetailType[]).map((type) => [type, messageFor(events[type], 'each')?.title]));
      expect(titled).toEqual({
        [DETAIL_TYPE.rotationStarted]: undefined,
        [DETAIL_TYPE.rotationSucceeded]: 'Rotation succeeded: prod/billing-db',
        [DETAIL_TYPE.rotationFailed]: 'Rotation failed: prod/billing-db',
        [DETAIL_TYPE.rotationStuck]: 'Rotation stuck: prod/billing-db',
        [DETAIL_TYPE.credentialRevoked]: 'Credential revoked: prod/billing-db',
        [DETAIL_TYPE.revocationFailed]: 'Revocation failed: prod/billing-db',
        [DETAIL_TYPE.leakDetected]: 'Leak detected (P0): prod/billing-db',
        [DETAIL_TYPE.leakRemediated]: 'Leak remediated: prod/billing-db',
        [DETAIL_TYPE.ticketOpened]: 'Ticket opened: prod/billing-db',
        [DETAIL_TYPE.batchCompleted]: 'Bulk rotation: 2 succeeded, 1 failed',
        [DETAIL_TYPE.consumersUpdated]: undefined,
        [DETAIL_TYPE.consumerUpdateFailed]: 'Consumer update failed: prod/billing-db',
        [DETAIL_TYPE.consumerUpdateRequested]: undefined,
        [DETAIL_TYPE.credentialPurged]: undefined,
      });
    });

    it('names the secret, trigger, actor, reason, duration and version of a success', () => {
      const message = messageFor(sampleEvents()[DETAIL_TYPE.rotationSucceeded], 'each')!;
      expect(message.severity).toBe('good');
      expect(Object.fromEntries(message.fields.map((f) => [f.label, f.value]))).toEqual({
        Secret: 'prod/billing-db',
        Trigger: 'manual',
        Actor: 'cli:alice',
        Reason: 'quarterly',
        Version: '8a1c2f3e-0000-4000-8000-000000000001',
        Duration: '412ms',
      });
    });

    it('says which step failed, with the error code, and how to resume', () => {
      const message = messageFor(sampleEvents()[DETAIL_TYPE.rotationFailed])!;
      expect(message.severity).toBe('critical');
      expect(message.text).toContain('Step setSecret failed: cannot reach postgres');
      expect(message.text).toContain('AWSCURRENT still works');
      expect(message.text).toContain('`rekey rotate prod/billing-db`');
      expect(message.fields).toContainEqual({ label: 'Error', value: 'TARGET_UNREACHABLE' });
    });

    it.each(['RESTORE_FAILED', 'PROMOTION_UNCONFIRMED'])('after %s, does not claim AWSCURRENT still works, and says how to finish', (code) => {
      const message = messageFor(sampleEvents({ step: 'finishSecret', error: { code, message: 'the new password of app was not confirmed' } })[DETAIL_TYPE.rotationFailed])!;
      expect(message.text).not.toContain('still works');
      expect(message.text).toContain('AWSCURRENT may not log in until the rotation is finished');
      expect(message.text).toContain('`rekey rotate prod/billing-db`');
    });

    it('after a leak\'s early kill, says AWSCURRENT was revoked and AWSPENDING is the one to promote', () => {
      const message = messageFor(
        sampleEvents({ step: 'finishSecret', trigger: 'leak', currentRevoked: 'v-leaked', error: { code: 'STORE_WRITE_FAILED', message: 'the promotion could not be written' } })[DETAIL_TYPE.rotationFailed],
      )!;
      expect(message.text).not.toContain('still works');
      expect(message.text).toContain('version v-leaked, the leaked value) was revoked on purpose');
      expect(message.text).toContain('`rekey rotate prod/billing-db` promotes it now');
      expect(message.fields).toContainEqual({ label: 'Revoked AWSCURRENT', value: 'v-leaked' });
    });

    it('gives a leak its risk and links the ticket', () => {
      const events = sampleEvents();
      const detected = messageFor(events[DETAIL_TYPE.leakDetected])!;
      expect(detected.severity).toBe('critical');
      expect(detected.fields).toContainEqual({ label: 'Risk', value: 'P0 (92/100)' });
      expect(detected.fields).toContainEqual({ label: 'Source', value: 'gitleaks abc:config/db.env:3' });
      const remediated = messageFor(events[DETAIL_TYPE.leakRemediated])!;
      expect(remediated.link).toEqual({ label: 'Open the ticket', url: 'https://github.com/acme/security/issues/42' });
      expect(messageFor(events[DETAIL_TYPE.ticketOpened])!.link?.url).toBe('https://github.com/acme/security/issues/42');
    });

    it('links only http(s) ticket URLs', () => {
      const event = sampleEvents({ ticketUrl: 'javascript:alert(1)' })[DETAIL_TYPE.ticketOpened];
      expect(messageFor(event)!.link).toBeUndefined();
    });

    it('summarises successes inside a batch or a schedule sweep, and still sends failures one by one', () => {
      const inBatch = sampleEvents({ batchId: 'b-1' });
      expect(messageFor(inBatch[DETAIL_TYPE.rotationSucceeded], 'summary')).toBeUndefined();
      expect(messageFor(inBatch[DETAIL_TYPE.credentialRevoked], 'summary')).toBeUndefined();
      expect(messageFor(inBatch[DETAIL_TYPE.rotationFailed], 'summary')).toBeDefined();
      expect(messageFor(inBatch[DETAIL_TYPE.rotationSucceeded], 'each')).toBeDefined();
      const scheduled = sampleEvents({ trigger: 'schedule' });
      expect(messageFor(scheduled[DETAIL_TYPE.rotationSucceeded], 'summary')).toBeUndefined();
      // A manual rotation outside any batch is always its own message.
      expect(messageFor(sampleEvents()[DETAIL_TYPE.rotationSucceeded], 'summary')).toBeDefined();
    });

    it('summarises a batch with its counts and names the failures with their codes', () => {
      const message = messageFor(sampleEvents()[DETAIL_TYPE.batchCompleted])!;
      expect(message.severity).toBe('warning');
      expect(message.text).toBe('3 secret(s) selected; each failure is also reported on its own.');
      expect(message.fields).toContainEqual({ label: 'Succeeded', value: 'app/a, app/b' });
      expect(message.fields).toContainEqual({ label: 'Failed', value: 'app/c (TARGET_UNREACHABLE)' });
    });

    it('names 15 secrets of a long list and counts the rest', () => {
      const items = Array.from({ length: 97 }, (_, i) => ({ secretId: `app/${i}`, outcome: 'succeeded' as const }));
      const event = rekeyEvent(DETAIL_TYPE.batchCompleted, { ...batchSummary('bulk', items), trigger: 'manual', actor: 'cli:bob', batchId: 'b' });
      const succeeded = messageFor(event)!.fields.find((f) => f.label === 'Succeeded')!.value;
      expect(succeeded.split(', ')).toHaveLength(15);
      expect(succeeded).toMatch(/ and 82 more$/);
    });

    it('sends nothing for a sweep that had nothing to do, and says "rotations started" on AWS', () => {
      const idle = rekeyEvent(DETAIL_TYPE.batchCompleted, { ...batchSummary('sweep', [{ secretId: 'a', outcome: 'skipped' }]), trigger: 'schedule', actor: 'schedule', batchId: 'b' });
      expect(messageFor(idle)).toBeUndefined();
      const busy = rekeyEvent(DETAIL_TYPE.batchCompleted, {
        ...batchSummary('sweep', [{ secretId: 'a', outcome: 'succeeded' }, { secretId: 'b', outcome: 'revoked' }]),
        trigger: 'schedule',
        actor: 'schedule',
        batchId: 'b',
        rotationsAsync: true,
      });
      expect(messageFor(busy)!.title).toBe('Scheduled sweep: 1 rotations started, 1 revoked, 0 failed');
    });

    it('builds messages from named fields only, so a stray field in a detail never reaches chat', () => {
      const stray = 'Stray-Value-That-Must-Not-Travel-1';
      for (const event of Object.values(sampleEvents({ value: stray, password: stray, connection: `postgres://u:${stray}@h/db` }))) {
        expect(JSON.stringify(messageFor(event, 'each') ?? {})).not.toContain(stray);
      }
    });
  });

  describe('truncate', () => {
    it('keeps short text and cuts long text to the limit with an ellipsis, counting characters not bytes', () => {
      expect(truncate('abc', 3)).toBe('abc');
      expect(truncate('abcdef', 4)).toBe('abc…');
      expect([...truncate('🔑'.repeat(200), 150)]).toHaveLength(150);
    });
  });
});

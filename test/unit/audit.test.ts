import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DETAIL_TYPE } from '#core/events.ts';
import { auditEntryOf, canonicalJson, chain, GENESIS_HASH, hashOf, verifyChain, type AuditEntry, type AuditRecord } from '#core/audit.ts';
import { LocalChainAuditLog } from '#adapters/audit/local-chain.ts';
import { sampleEvents } from '#test/helpers/sample-events.ts';

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');

const entry = (i: number, extra: Partial<AuditEntry> = {}): AuditEntry => ({
  time: new Date(Date.UTC(2026, 10, 2, 10, 0, i)).toISOString(),
  actor: 'cli:alice',
  action: 'Rotation Succeeded',
  secretId: `app/${i % 2 ? 'odd' : 'even'}`,
  outcome: 'succeeded',
  durationMs: 100 + i,
  ...extra,
});

function trail(n: number): string[] {
  const records: AuditRecord[] = [];
  for (let i = 0; i < n; i++) records.push(chain(entry(i), records.at(-1)));
  return records.map((r) => JSON.stringify(r));
}

describe('audit', () => {
  describe('auditEntryOf', () => {
    it('records who, what, which secret and version, step, outcome, duration, reason and error code of every event', () => {
      const events = sampleEvents();
      expect(auditEntryOf(events[DETAIL_TYPE.rotationFailed])).toEqual({
        time: '2026-11-02T10:00:00.000Z',
        actor: 'cli:alice',
        action: 'Rotation Failed',
        trigger: 'manual',
        secretId: 'prod/billing-db',
        versionId: '8a1c2f3e-0000-4000-8000-000000000001',
        step: 'setSecret',
        outcome: 'failed',
        durationMs: 30,
        error: { code: 'TARGET_UNREACHABLE', message: 'cannot reach postgres at 10.0.0.5:5432 for prod/billing-db' },
      });
      expect(auditEntryOf(events[DETAIL_TYPE.leakRemediated])).toMatchObject({ actor: 'scanner:gitleaks', outcome: 'succeeded', risk: { score: 92, priority: 'P0' }, ticketId: '42' });
      expect(auditEntryOf(events[DETAIL_TYPE.batchCompleted])).toMatchObject({ secretId: '*', outcome: 'failed', batchId: 'b-1', counts: { succeeded: 2, failed: 1 } });
      expect(Object.values(events).map((e) => auditEntryOf(e).outcome)).toEqual([
        'started', 'succeeded', 'failed', 'stuck', 'revoked', 'failed', 'detected', 'succeeded', 'opened',
        'pushed', 'failed', 'requested', 'purged', 'failed',
      ]);
    });

    it('keeps only named fields, so a stray value in a detail never reaches the trail', () => {
      const stray = 'Stray-Value-For-The-Audit-1';
      for (const event of Object.values(sampleEvents({ value: stray, password: stray }))) expect(JSON.stringify(auditEntryOf(event))).not.toContain(stray);
    });
  });

  describe('canonicalJson', () => {
    it('sorts keys at every level and drops undefined, so equal records hash equally', () => {
      expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: undefined, x: 'é' }], c: null } })).toBe('{"a":{"c":null,"d":[2,{"x":"é","z":1}]},"b":1}');
      expect(hashOf({ ...chain(entry(1), undefined), hash: undefined } as never)).toBe(chain(entry(1), undefined).hash);
    });
  });

  describe('verifyChain', () => {
    it('accepts an intact trail and reports its length and head hash', () => {
      const lines = trail(5);
      expect(verifyChain([...lines, ''])).toEqual({ ok: true, records: 5, head: (JSON.parse(lines[4]!) as AuditRecord).hash });
      expect(verifyChain([])).toEqual({ ok: true, records: 0, head: GENESIS_HASH });
    });

    it('finds an edited line', () => {
      const lines = trail(5);
      lines[2] = lines[2]!.replace('"outcome":"succeeded"', '"outcome":"failed"');
      expect(verifyChain(lines)).toMatchObject({ ok: false, line: 3, records: 2, problem: 'hash does not match the record (it was edited)' });
    });

    it('finds an edit whose author recomputed the line\'s own hash, at the next line', () => {
      const lines = trail(5);
      const { hash: _old, ...record } = JSON.parse(lines[1]!) as AuditRecord;
      const forged = { ...record, actor: 'cli:mallory' };
      lines[1] = JSON.stringify({ ...forged, hash: hashOf(forged) });
      expect(verifyChain(lines)).toMatchObject({ ok: false, line: 3, problem: 'prevHash does not match the previous record (the chain was cut or reordered)' });
    });

    it('finds a removed, a duplicated and a reordered line, and a line that is not a record', () => {
      const lines = trail(5);
      expect(verifyChain([lines[0]!, lines[2]!, lines[3]!])).toMatchObject({ ok: false, line: 2, problem: expect.stringContaining('sequence number 3 where 2 was expected') });
      expect(verifyChain([lines[0]!, lines[1]!, lines[1]!])).toMatchObject({ ok: false, line: 3 });
      expect(verifyChain([lines[1]!, lines[0]!])).toMatchObject({ ok: false, line: 1 });
      expect(verifyChain([lines[0]!, '{"half": '])).toMatchObject({ ok: false, line: 2, problem: 'not valid JSON' });
      expect(verifyChain([lines[0]!, '{"a": 1}'])).toMatchObject({ ok: false, line: 2, problem: 'not an audit record (no seq, prevHash or hash)' });
    });
  });

  describe('LocalChainAuditLog', () => {
    let dir: string;
    let audit: LocalChainAuditLog;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'rekey-audit-'));
      audit = new LocalChainAuditLog({ dir });
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('appends chained records to <dir>/audit.jsonl, readable only by its owner', async () => {
      const first = await audit.append(entry(0));
      const second = await audit.append(entry(1));
      expect(first).toMatchObject({ v: 1, seq: 1, prevHash: GENESIS_HASH });
      expect(second).toMatchObject({ seq: 2, prevHash: first.hash });
      const text = await readFile(join(dir, 'audit.jsonl'), 'utf8');
      expect(text.split('\n')).toEqual([JSON.stringify(first), JSON.stringify(second), '']);
      expect((await stat(join(dir, 'audit.jsonl'))).mode & 0o777).toBe(0o600);
      expect(await audit.verify()).toEqual({ ok: true, records: 2, head: second.hash });
    });

    it('keeps one chain when many appends are in flight in one process', async () => {
      await Promise.all(Array.from({ length: 40 }, (_, i) => audit.append(entry(i))));
      expect(await audit.verify()).toMatchObject({ ok: true, records: 40 });
      expect((await audit.read()).map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    });

    it('keeps one valid chain when two processes append at the same time', async () => {
      const writer = (actor: string) => execFileAsync(process.execPath, ['--import', 'tsx', 'test/helpers/audit-writer.ts', dir, '30', actor], { cwd: ROOT });
      await Promise.all([writer('proc-a'), writer('proc-b'), audit.append(entry(0, { actor: 'proc-main' }))]);
      const check = await audit.verify();
      expect(check).toMatchObject({ ok: true, records: 61 });
      const records = await audit.read();
      expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 61 }, (_, i) => i + 1));
      expect(records.filter((r) => r.actor === 'proc-a')).toHaveLength(30);
      expect(records.filter((r) => r.actor === 'proc-b')).toHaveLength(30);
    });

    it('chains onto a record another process appended after this one\'s last append', async () => {
      const first = await audit.append(entry(0, { actor: 'proc-main' }));
      await execFileAsync(process.execPath, ['--import', 'tsx', 'test/helpers/audit-writer.ts', dir, '1', 'proc-other'], { cwd: ROOT });
      const third = await audit.append(entry(2, { actor: 'proc-main' }));
      const records = await audit.read();
      expect(records.map((r) => r.actor)).toEqual(['proc-main', 'proc-other', 'proc-main']);
      expect(records[1]!.prevHash).toBe(first.hash);
      expect(third).toMatchObject({ seq: 3, prevHash: records[1]!.hash });
      expect(await audit.verify()).toMatchObject({ ok: true, records: 3 });
    });

    it('writes appends that queue up meanwhile as one group, each resolving with its own record', async () => {
      const records = await Promise.all(Array.from({ length: 12 }, (_, i) => audit.append(entry(i))));
      expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
      for (let i = 1; i < records.length; i++) expect(records[i]!.prevHash).toBe(records[i - 1]!.hash);
      // A second instance over the same file (another process's view) continues the same chain.
      const other = new LocalChainAuditLog({ dir });
      expect(await other.append(entry(12))).toMatchObject({ seq: 13, prevHash: records.at(-1)!.hash });
      expect(await audit.append(entry(13))).toMatchObject({ seq: 14 });
      expect(await audit.verify()).toMatchObject({ ok: true, records: 14 });
    });

    it('reads by secret and since a time, oldest first', async () => {
      for (let i = 0; i < 6; i++) await audit.append(entry(i));
      expect((await audit.read({ secretId: 'app/odd' })).map((r) => r.durationMs)).toEqual([101, 103, 105]);
      expect((await audit.read({ since: new Date(Date.UTC(2026, 10, 2, 10, 0, 4)) })).map((r) => r.durationMs)).toEqual([104, 105]);
      expect(await new LocalChainAuditLog({ dir: join(dir, 'none') }).read()).toEqual([]);
    });

    it('detects an edited line and names it', async () => {
      for (let i = 0; i < 4; i++) await audit.append(entry(i));
      const file = join(dir, 'audit.jsonl');
      const lines = (await readFile(file, 'utf8')).split('\n');
      lines[1] = lines[1]!.replace('"actor":"cli:alice"', '"actor":"cli:bob"');
      await writeFile(file, lines.join('\n'));
      expect(await audit.verify()).toMatchObject({ ok: false, line: 2, records: 1 });
    });

    it('refuses to append after a partial last line, rather than chain onto it', async () => {
      await audit.append(entry(0));
      await appendFile(join(dir, 'audit.jsonl'), '{"seq":2,"prev');
      await expect(audit.append(entry(1))).rejects.toMatchObject({ code: 'AUDIT_BROKEN' });
      expect(await audit.verify()).toMatchObject({ ok: false, line: 2, problem: 'not valid JSON' });
    });
  });
});

import { describe, expect, it } from 'vitest';
import type { Ticket, TicketDraft, TicketSystem } from '#core/ports/tickets.ts';

export interface TicketsBackend {
  /** A new adapter instance over the same tickets: another process, or a cold Lambda container. */
  open(): TicketSystem;
  /** Closes a ticket the way a human would (outside the port, which has no close). */
  close(ticket: Ticket): Promise<void>;
  /** What a human sees on the ticket besides its title: labels, body and the notes added to it. */
  inspect(ticket: Ticket): Promise<{ labels: string[]; body: string; notes: string[] }>;
}

let counter = 0;
/** A draft as remediation builds it; the key is a fingerprint-like hex string unless given. */
export function draft(overrides: Partial<TicketDraft> = {}): TicketDraft {
  counter += 1;
  const key = overrides.key ?? counter.toString(16).padStart(64, 'a');
  const priority = overrides.priority ?? 'P1';
  return {
    key,
    title: `[${priority}] Leaked credential: app/db-${counter}`,
    body: `**Priority ${priority}** (risk 80/100) — leaked postgres_connection_uri reported by github (${counter}).`,
    priority,
    score: 80,
    labels: [priority, 'source:github', 'rekey', 'leaked-credential'],
    ...overrides,
  };
}

/**
 * The TicketSystem port's contract (functions/core/ports/tickets.ts), run against every adapter:
 * one ticket per key whatever the number of deliveries, instances or concurrent calls; `list`
 * returns open tickets, highest score first.
 */
export function ticketsContract(name: string, make: () => Promise<TicketsBackend>): void {
  describe(`${name} tickets (contract)`, () => {
    describe('upsert', () => {
      it('opens a ticket for a key it has not seen', async () => {
        const tickets = (await make()).open();
        const d = draft({ priority: 'P0', score: 97, title: '[P0] Leaked credential: prod/orders' });
        const { ticket, created } = await tickets.upsert(d);
        expect(created).toBe(true);
        expect(ticket).toMatchObject({ key: d.key, title: d.title, priority: 'P0', score: 97, state: 'open' });
        expect(ticket.id).not.toBe('');
        expect(ticket.createdAt).toBeInstanceOf(Date);
      });

      it('updates the same ticket for a key it has seen and never opens a second', async () => {
        const tickets = (await make()).open();
        const first = await tickets.upsert(draft({ key: 'k-redelivered' }));
        const second = await tickets.upsert(draft({ key: 'k-redelivered', title: '[P2] Leaked credential: app/db', priority: 'P2', score: 45 }));
        expect(second.created).toBe(false);
        expect(second.ticket.id).toBe(first.ticket.id);
        expect(second.ticket).toMatchObject({ title: '[P2] Leaked credential: app/db', priority: 'P2', score: 45 });
        expect((await tickets.list()).filter((t) => t.key === 'k-redelivered')).toHaveLength(1);
      });

      it('opens a separate ticket for each different key', async () => {
        const tickets = (await make()).open();
        const a = await tickets.upsert(draft());
        const b = await tickets.upsert(draft());
        expect(b.created).toBe(true);
        expect(b.ticket.id).not.toBe(a.ticket.id);
        expect(await tickets.list()).toHaveLength(2);
      });

      it('finds the ticket another instance opened after this one last looked', async () => {
        const backend = await make();
        const mine = backend.open();
        const theirs = backend.open();
        await mine.upsert(draft()); // this instance has now looked at every ticket there is
        const d = draft();
        const opened = await theirs.upsert(d);
        const again = await mine.upsert({ ...d, score: 88 });
        expect(again).toMatchObject({ created: false, ticket: { id: opened.ticket.id, score: 88 } });
        expect(await backend.open().list()).toHaveLength(2);
      });

      it('finds the ticket a previous instance opened', async () => {
        const backend = await make();
        const d = draft();
        const opened = await backend.open().upsert(d);
        const again = await backend.open().upsert(d);
        expect(again).toMatchObject({ created: false, ticket: { id: opened.ticket.id } });
      });

      it('opens one ticket when the same key arrives several times at once', async () => {
        const tickets = (await make()).open();
        const d = draft();
        const results = await Promise.all([1, 2, 3, 4].map((n) => tickets.upsert({ ...d, score: 70 + n })));
        expect(results.filter((r) => r.created)).toHaveLength(1);
        expect(new Set(results.map((r) => r.ticket.id)).size).toBe(1);
        expect(await tickets.list()).toHaveLength(1);
      });

      it('opens a closed ticket again when its key is delivered again', async () => {
        const backend = await make();
        const tickets = backend.open();
        const d = draft();
        const { ticket } = await tickets.upsert(d);
        await backend.close(ticket);
        expect(await tickets.list()).toHaveLength(0);
        const again = await tickets.upsert(d);
        expect(again).toMatchObject({ created: false, ticket: { id: ticket.id, state: 'open' } });
        expect(await tickets.list()).toHaveLength(1);
      });

      it('adds a note to a known ticket and keeps its title, body, priority, score and state', async () => {
        const backend = await make();
        const tickets = backend.open();
        const first = await tickets.upsert(draft({ key: 'k-noted', priority: 'P0', score: 95, title: '[P0] Leaked credential: prod/db', body: 'rotated and revoked' }));
        const noted = await backend.open().upsert(
          draft({ key: 'k-noted', priority: 'P3', score: 10, title: '[P3] x', body: 'nothing to do', labels: ['P3', 'source:trufflehog', 'rekey'], ifExists: 'note', note: 'Reported again by trufflehog.' }),
        );
        expect(noted.created).toBe(false);
        expect(noted.ticket).toMatchObject({ id: first.ticket.id, title: '[P0] Leaked credential: prod/db', priority: 'P0', score: 95, state: 'open' });
        const seen = await backend.inspect(noted.ticket);
        expect(seen.notes).toEqual(['Reported again by trufflehog.']);
        expect(seen.body).toContain('rotated and revoked');
        expect(seen.labels).toEqual(expect.arrayContaining(['P0', 'source:github', 'source:trufflehog']));
        expect(seen.labels).not.toContain('P3');
      });

      it('leaves a closed ticket closed when it is noted', async () => {
        const backend = await make();
        const tickets = backend.open();
        const { ticket } = await tickets.upsert(draft({ key: 'k-noted-closed' }));
        await backend.close(ticket);
        const noted = await tickets.upsert(draft({ key: 'k-noted-closed', ifExists: 'note', note: 'again' }));
        expect(noted).toMatchObject({ created: false, ticket: { id: ticket.id, state: 'closed' } });
        expect(await tickets.list()).toHaveLength(0);
      });

      it('opens a ticket from the draft when a key to be noted has none', async () => {
        const tickets = (await make()).open();
        const d = draft({ priority: 'P3', score: 8, title: '[P3] Leaked credential: app/old', ifExists: 'note', note: 'again' });
        const { ticket, created } = await tickets.upsert(d);
        expect(created).toBe(true);
        expect(ticket).toMatchObject({ title: '[P3] Leaked credential: app/old', priority: 'P3', score: 8, state: 'open' });
      });

      it('keeps keys with separators and markup apart and finds each again', async () => {
        const tickets = (await make()).open();
        const keys = ['gitleaks:1f2e/config.yml:generic-api-key:12', 'gitleaks:1f2e/config.yml:generic-api-key:13', 'x --> <!-- rekey:key=y -->'];
        const created = await Promise.all(keys.map((key) => tickets.upsert(draft({ key }))));
        const again = await Promise.all(keys.map((key) => tickets.upsert(draft({ key }))));
        expect(new Set(created.map((r) => r.ticket.id)).size).toBe(3);
        expect(again.map((r) => [r.created, r.ticket.id, r.ticket.key])).toEqual(created.map((r) => [false, r.ticket.id, r.ticket.key]));
      });
    });

    describe('list', () => {
      it('returns an empty list before any ticket', async () => {
        expect(await (await make()).open().list()).toEqual([]);
      });

      it('returns open tickets only, highest score first, with their title and priority', async () => {
        const backend = await make();
        const tickets = backend.open();
        const low = await tickets.upsert(draft({ priority: 'P3', score: 12, title: '[P3] low' }));
        const high = await tickets.upsert(draft({ priority: 'P0', score: 95, title: '[P0] high' }));
        const mid = await tickets.upsert(draft({ priority: 'P2', score: 50, title: '[P2] mid' }));
        const closed = await tickets.upsert(draft({ priority: 'P0', score: 99, title: '[P0] closed' }));
        await backend.close(closed.ticket);
        const listed = await tickets.list();
        expect(listed.map((t) => [t.id, t.title, t.priority, t.score, t.state])).toEqual([
          [high.ticket.id, '[P0] high', 'P0', 95, 'open'],
          [mid.ticket.id, '[P2] mid', 'P2', 50, 'open'],
          [low.ticket.id, '[P3] low', 'P3', 12, 'open'],
        ]);
      });

      it('reflects the latest delivery of a key in its position', async () => {
        const tickets = (await make()).open();
        const a = draft({ score: 30 });
        await tickets.upsert(a);
        await tickets.upsert(draft({ score: 60 }));
        await tickets.upsert({ ...a, score: 90, priority: 'P0' });
        expect((await tickets.list()).map((t) => [t.key, t.score])[0]).toEqual([a.key, 90]);
      });
    });
  });
}

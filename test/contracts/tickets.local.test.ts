import { afterAll } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalFileTickets } from '#adapters/ticketing/local.ts';
import { ticketsContract } from './tickets.contract.ts';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

ticketsContract('local-file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rekey-tickets-'));
  dirs.push(dir);
  const file = join(dir, 'tickets.json');
  return {
    open: () => new LocalFileTickets({ file }),
    // A human closing a ticket edits the file: the port has no close.
    close: async (ticket) => {
      const data = JSON.parse(await readFile(file, 'utf8')) as { tickets: { id: string; state: string }[] };
      for (const t of data.tickets) if (t.id === ticket.id) t.state = 'closed';
      await writeFile(file, JSON.stringify(data));
    },
    inspect: async (ticket) => {
      const data = JSON.parse(await readFile(file, 'utf8')) as { tickets: { id: string; labels: string[]; body: string; notes?: { text: string }[] }[] };
      const found = data.tickets.find((t) => t.id === ticket.id)!;
      return { labels: found.labels, body: found.body, notes: (found.notes ?? []).map((n) => n.text) };
    },
  };
});

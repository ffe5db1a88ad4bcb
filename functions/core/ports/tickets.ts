export type Priority = 'P0' | 'P1' | 'P2' | 'P3';

export interface TicketDraft {
  /** De-duplication key: one ticket per leaked value (its fingerprint), never the value. */
  key: string;
  title: string;
  body: string;
  priority: Priority;
  score: number;
  labels: string[];
  assignee?: string;
  /**
   * What a known key's ticket gets. `replace` (default): the draft's title, body, priority, labels,
   * and a closed ticket opens again. `note`: the ticket keeps its title, body, priority, score and
   * state; `note` is added to it (a comment on GitHub) with any non-priority labels it lacks — for a
   * re-delivery of a leak already dealt with, whose history must not be overwritten.
   */
  ifExists?: 'replace' | 'note';
  /** The text added by `ifExists: 'note'` (identifiers only, like the body). */
  note?: string;
}

export interface Ticket {
  key: string;
  id: string;
  url?: string;
  title: string;
  priority: Priority;
  score: number;
  state: 'open' | 'closed';
  createdAt: Date;
  updatedAt: Date;
}

/**
 * Where remediation tickets go (GitHub issues, or a local file). Contract: `upsert` opens a ticket
 * for a new key and updates the same ticket for a known one (a re-delivery never opens a second);
 * `list` returns open tickets. Ticket text is built from identifiers only.
 */
export interface TicketSystem {
  readonly kind: string;
  upsert(draft: TicketDraft): Promise<{ ticket: Ticket; created: boolean }>;
  list(): Promise<Ticket[]>;
}

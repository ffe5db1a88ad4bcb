import { ValidationError } from '#core/errors.ts';
import type { Priority, Ticket, TicketDraft } from '#core/ports/tickets.ts';

/** Every rekey ticket carries this label: it is how the GitHub adapter lists its own issues. */
export const BASE_LABEL = 'rekey';
export const PRIORITIES: readonly Priority[] = ['P0', 'P1', 'P2', 'P3'];
export const PRIORITY_LABEL = /^P[0-3]$/i;
export const GITHUB_LOGIN = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/;

// GitHub refuses bodies over 65,536 characters; leave room for the note and the markers.
const MAX_BODY_CHARS = 60_000;
const MAX_TITLE_CHARS = 256;
const KEY_MARKER = /<!-- rekey:key=([^\s<>]+) -->/;
const SCORE_MARKER = /<!-- rekey:score=(\d{1,3}) -->/;

export function validateDraft(draft: TicketDraft): void {
  if (typeof draft.key !== 'string' || draft.key.length === 0 || draft.key.length > 512) throw new ValidationError('ticket key must be 1 to 512 characters');
  if (!PRIORITIES.includes(draft.priority)) throw new ValidationError('ticket priority must be P0 to P3');
  if (!Number.isFinite(draft.score)) throw new ValidationError('ticket score must be a number');
  if (typeof draft.title !== 'string' || draft.title.length === 0) throw new ValidationError('ticket title is missing');
}

export const clampScore = (score: number): number => Math.min(100, Math.max(0, Math.round(score)));

export const titleOf = (draft: TicketDraft): string =>
  draft.title.length > MAX_TITLE_CHARS ? `${draft.title.slice(0, MAX_TITLE_CHARS - 1)}…` : draft.title;

/** The draft's labels with exactly one priority label (the draft's priority) and the base label. */
export function labelsOf(draft: TicketDraft): string[] {
  const others = draft.labels.map((l) => l.trim()).filter((l) => l && !PRIORITY_LABEL.test(l));
  return [...new Set([draft.priority, ...others, BASE_LABEL])];
}

/**
 * The issue body: the draft's text, an optional note from rekey, then hidden markers holding the
 * de-duplication key (URI-encoded, so no key can close the HTML comment) and the score.
 */
export function composeBody(draft: TicketDraft, note?: string): string {
  const text = draft.body.length > MAX_BODY_CHARS ? `${draft.body.slice(0, MAX_BODY_CHARS)}\n\n…(truncated by rekey)` : draft.body;
  return [
    text,
    ...(note ? ['', `> **Note from rekey:** ${note}`] : []),
    '',
    `<!-- rekey:key=${encodeURIComponent(draft.key)} -->`,
    `<!-- rekey:score=${clampScore(draft.score)} -->`,
  ].join('\n');
}

export function keyOf(body: string): string | undefined {
  const encoded = KEY_MARKER.exec(body)?.[1];
  if (encoded === undefined) return undefined;
  try {
    return decodeURIComponent(encoded);
  } catch {
    return undefined; // a marker mangled by hand is not ours any more
  }
}

export function scoreOf(body: string): number {
  const digits = SCORE_MARKER.exec(body)?.[1];
  return digits === undefined ? 0 : clampScore(Number(digits));
}

/** The highest priority among the labels; P3 when a human removed them all. */
export function priorityOf(labels: string[]): Priority {
  const found = labels.map((l) => l.toUpperCase()).filter((l): l is Priority => (PRIORITIES as string[]).includes(l));
  return found.sort()[0] ?? 'P3';
}

/** Highest risk first; ties by priority, then the oldest ticket first. */
export function compareTickets(a: Ticket, b: Ticket): number {
  return b.score - a.score || a.priority.localeCompare(b.priority) || a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id, 'en', { numeric: true });
}

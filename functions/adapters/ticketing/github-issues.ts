import type { Octokit } from '@octokit/rest';
import { ConfigError, RekeyError } from '#core/errors.ts';
import type { Ticket, TicketDraft, TicketSystem } from '#core/ports/tickets.ts';
import { redactCause } from '#core/redact.ts';
import {
  BASE_LABEL,
  GITHUB_LOGIN,
  PRIORITY_LABEL,
  compareTickets,
  composeBody,
  keyOf,
  priorityOf,
  scoreOf,
  titleOf,
  validateDraft,
  labelsOf,
} from './common.ts';

/** The fields of a GitHub issue this adapter reads (REST `issue` object). */
interface Issue {
  number: number;
  title: string;
  body?: string | null;
  state: string;
  labels: (string | { name?: string | null })[];
  assignees?: { login: string }[] | null;
  html_url: string;
  created_at: string;
  updated_at: string;
  pull_request?: unknown;
}

const LABEL_COLORS: Record<string, string> = {
  P0: 'b60205',
  P1: 'd93f0b',
  P2: 'fbca04',
  P3: '0e8a16',
  [BASE_LABEL]: '5319e7',
  'leaked-credential': 'b60205',
  triage: 'fef2c0',
};
// Labels rekey sets itself: replaced on every update. Anything else on the issue is a human's.
const MANAGED_LABEL = /^(P[0-3]|source:.+|rekey|leaked-credential|triage)$/i;
// Overlap between scans: GitHub's `updated_at` and its `Date` header may come from different hosts.
const SCAN_SKEW_MS = 5 * 60_000;
const REPO = /^([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))\/([A-Za-z0-9._-]{1,100})$/;

/**
 * Tickets as GitHub issues in one repository (`REKEY_TICKETS_REPO`), one per `draft.key`, found
 * again by a hidden marker in the body. Existing issues are found by listing the `rekey`-labelled
 * issues (all states) rather than the search API: search is eventually consistent (a just-created
 * issue can be missing for seconds to minutes, so a quick re-delivery would open a duplicate) and
 * has its own, much smaller rate limit. The key → issue map is cached and refreshed with `since`.
 */
export class GitHubIssuesTickets implements TicketSystem {
  readonly kind = 'github-issues';
  readonly #octokit: Octokit;
  readonly #owner: string;
  readonly #repo: string;
  readonly #byKey = new Map<string, number>();
  #scannedAt: Date | undefined;
  #labels: Map<string, string> | undefined; // lower-case name → name, as GitHub compares labels
  readonly #queues = new Map<string, Promise<unknown>>();

  constructor(options: { octokit: Octokit; repo: string }) {
    const match = REPO.exec(options.repo);
    if (!match) throw new ConfigError('REKEY_TICKETS_REPO must be owner/name');
    this.#octokit = options.octokit;
    this.#owner = match[1]!;
    this.#repo = match[2]!;
  }

  get repository(): string {
    return `${this.#owner}/${this.#repo}`;
  }

  async upsert(draft: TicketDraft): Promise<{ ticket: Ticket; created: boolean }> {
    validateDraft(draft);
    // Two deliveries of the same leak in this process must not both miss and both create.
    return this.#serialised(draft.key, async () => {
      try {
        return await this.#upsert(draft);
      } catch (error) {
        throw this.#failure('open or update the ticket in', error, [draft.body, draft.title, ...(draft.note ? [draft.note] : [])]);
      }
    });
  }

  async list(): Promise<Ticket[]> {
    try {
      const { issues } = await this.#listIssues({ state: 'open' });
      const tickets: Ticket[] = [];
      for (const issue of issues) {
        const key = keyOf(issue.body ?? '');
        if (key !== undefined) tickets.push(toTicket(issue, key));
      }
      return tickets.sort(compareTickets);
    } catch (error) {
      throw this.#failure('list the tickets in', error, []);
    }
  }

  async #upsert(draft: TicketDraft): Promise<{ ticket: Ticket; created: boolean }> {
    const labels = labelsOf(draft);
    await this.#ensureLabels(labels);
    const existing = await this.#find(draft.key);
    if (existing && draft.ifExists === 'note') {
      // Already dealt with: the issue keeps its title, body, priority and state; a comment says
      // what happened, and labels it lacks (another scanner's source label) are added.
      const have = new Set(labelNames(existing).map((name) => name.toLowerCase()));
      const missing = labels.filter((name) => !PRIORITY_LABEL.test(name) && !have.has(name.toLowerCase()));
      await this.#octokit.rest.issues.createComment({ owner: this.#owner, repo: this.#repo, issue_number: existing.number, body: draft.note ?? draft.body });
      let issue = existing;
      if (missing.length) {
        const { data } = await this.#octokit.rest.issues.update({ owner: this.#owner, repo: this.#repo, issue_number: existing.number, labels: [...labelNames(existing), ...missing] });
        issue = data as Issue;
      }
      return { ticket: toTicket(issue, draft.key), created: false };
    }
    if (existing) {
      const kept = labelNames(existing).filter((name) => !MANAGED_LABEL.test(name));
      // An issue someone already assigned keeps its assignees; only an unassigned one gets ours.
      const assignee = existing.assignees?.length ? undefined : draft.assignee;
      const issue = await this.#withAssignee(draft, assignee, async (body, assignees) => {
        const { data } = await this.#octokit.rest.issues.update({
          owner: this.#owner,
          repo: this.#repo,
          issue_number: existing.number,
          title: titleOf(draft),
          body,
          labels: [...new Set([...labels, ...kept])],
          ...(assignees ? { assignees } : {}),
          ...(existing.state === 'open' ? {} : { state: 'open' as const }), // a re-delivery means it leaked again
        });
        return data as Issue;
      });
      return { ticket: toTicket(issue, draft.key), created: false };
    }
    const issue = await this.#withAssignee(draft, draft.assignee, async (body, assignees) => {
      const { data } = await this.#octokit.rest.issues.create({
        owner: this.#owner,
        repo: this.#repo,
        title: titleOf(draft),
        body,
        labels,
        ...(assignees ? { assignees } : {}),
      });
      return data as Issue;
    });
    this.#byKey.set(draft.key, issue.number);
    return { ticket: toTicket(issue, draft.key), created: true };
  }

  /** Sends with the assignee; GitHub answers 422 for a login it cannot assign, so send again without. */
  async #withAssignee(draft: TicketDraft, assignee: string | undefined, send: (body: string, assignees?: string[]) => Promise<Issue>): Promise<Issue> {
    if (!assignee) return send(composeBody(draft));
    if (!GITHUB_LOGIN.test(assignee)) {
      return send(composeBody(draft, 'The owner tag is not a GitHub login, so nobody was assigned: assign the owner by hand.'));
    }
    try {
      return await send(composeBody(draft), [assignee]);
    } catch (error) {
      if (statusOf(error) !== 422) throw error;
      return send(composeBody(draft, `GitHub refused to assign \`${assignee}\` (not a collaborator?): assign the owner by hand.`));
    }
  }

  /** The issue holding `key`: from the cache (checked), else from issues changed since the last scan. */
  async #find(key: string): Promise<Issue | undefined> {
    const cached = this.#byKey.get(key);
    if (cached !== undefined) {
      try {
        const { data } = await this.#octokit.rest.issues.get({ owner: this.#owner, repo: this.#repo, issue_number: cached });
        const issue = data as Issue;
        if (keyOf(issue.body ?? '') === key) return issue;
      } catch (error) {
        const status = statusOf(error);
        if (status !== 404 && status !== 410) throw error;
      }
      // Deleted, or a human removed the marker: forget what we knew and look at every issue again.
      this.#byKey.delete(key);
      this.#scannedAt = undefined;
    }
    const since = this.#scannedAt ? new Date(this.#scannedAt.getTime() - SCAN_SKEW_MS).toISOString() : undefined;
    const { issues, serverTime } = await this.#listIssues({ state: 'all', ...(since ? { since } : {}) });
    if (!since) this.#byKey.clear();
    let found: Issue | undefined;
    for (const issue of issues) {
      const issueKey = keyOf(issue.body ?? '');
      if (issueKey === undefined) continue;
      // Should a race between processes have opened two, the oldest one is the ticket.
      const known = this.#byKey.get(issueKey);
      if (known === undefined || issue.number < known) this.#byKey.set(issueKey, issue.number);
      if (issueKey === key && (!found || issue.number < found.number)) found = issue;
    }
    this.#scannedAt = serverTime;
    return found;
  }

  /**
   * The `rekey` issues (pull requests excluded), and GitHub's clock when it answered: `since` is
   * compared with GitHub's `updated_at`, so the next scan starts from GitHub's time, not ours.
   */
  async #listIssues(filter: { state: 'open' | 'all'; since?: string }): Promise<{ issues: Issue[]; serverTime: Date }> {
    const issues: Issue[] = [];
    let serverTime: Date | undefined;
    const pages = this.#octokit.paginate.iterator(this.#octokit.rest.issues.listForRepo, {
      owner: this.#owner,
      repo: this.#repo,
      labels: BASE_LABEL,
      per_page: 100,
      ...filter,
    });
    for await (const page of pages) {
      if (!serverTime) {
        const date = page.headers.date ? new Date(page.headers.date) : undefined;
        serverTime = date && !Number.isNaN(date.getTime()) ? date : new Date();
      }
      for (const issue of page.data as Issue[]) if (!issue.pull_request) issues.push(issue);
    }
    return { issues, serverTime: serverTime ?? new Date() };
  }

  /** Creates the labels the repository lacks, so each gets rekey's colour and description. */
  async #ensureLabels(wanted: string[]): Promise<void> {
    if (!this.#labels) {
      const existing = await this.#octokit.paginate(this.#octokit.rest.issues.listLabelsForRepo, { owner: this.#owner, repo: this.#repo, per_page: 100 });
      this.#labels = new Map(existing.map((label) => [label.name.toLowerCase(), label.name]));
    }
    for (const name of wanted) {
      if (this.#labels.has(name.toLowerCase())) continue;
      try {
        await this.#octokit.rest.issues.createLabel({
          owner: this.#owner,
          repo: this.#repo,
          name,
          color: LABEL_COLORS[name] ?? (name.startsWith('source:') ? 'c5def5' : 'ededed'),
          description: 'Managed by rekey',
        });
      } catch (error) {
        if (statusOf(error) !== 422) throw error; // 422 already_exists: another process made it first
      }
      this.#labels.set(name.toLowerCase(), name);
    }
  }

  async #serialised<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(key) ?? Promise.resolve();
    const run = previous.then(work, work);
    const tail = run.catch(() => undefined);
    this.#queues.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.#queues.get(key) === tail) this.#queues.delete(key);
    }
  }

  #failure(what: string, error: unknown, scrubbed: string[]): RekeyError {
    const status = statusOf(error);
    const detail = status !== undefined ? `HTTP ${status}` : 'no answer';
    return new RekeyError('TICKET_FAILED', `could not ${what} ${this.repository} (${detail})`, {
      retryable: status === undefined || status === 429 || status >= 500,
      cause: redactCause(error, scrubbed),
    });
  }
}

function toTicket(issue: Issue, key: string): Ticket {
  const body = issue.body ?? '';
  return {
    key,
    id: String(issue.number),
    url: issue.html_url,
    title: issue.title,
    priority: priorityOf(labelNames(issue)),
    score: scoreOf(body),
    state: issue.state === 'closed' ? 'closed' : 'open',
    createdAt: new Date(issue.created_at),
    updatedAt: new Date(issue.updated_at),
  };
}

function labelNames(issue: Issue): string[] {
  return issue.labels.map((label) => (typeof label === 'string' ? label : (label.name ?? ''))).filter(Boolean);
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { status?: unknown } | undefined)?.status;
  return typeof status === 'number' ? status : undefined;
}

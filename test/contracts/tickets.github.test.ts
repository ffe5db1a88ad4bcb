import { afterAll, beforeAll } from 'vitest';
import { GitHubIssuesTickets } from '#adapters/ticketing/github-issues.ts';
import { GitHubDouble } from '#test/helpers/github-double.ts';
import { ticketsContract } from './tickets.contract.ts';

let github: GitHubDouble;
let repos = 0;

// Two issues per page, so every listing the adapter does has to follow pagination.
beforeAll(async () => {
  github = await GitHubDouble.start({ maxPerPage: 2 });
});
afterAll(async () => {
  await github.close();
});

ticketsContract('github-issues', async () => {
  repos += 1;
  const repo = `acme/security-tickets-${repos}`; // a fresh repository per test: no shared state
  return {
    open: () => new GitHubIssuesTickets({ octokit: github.octokit(), repo }),
    close: async (ticket) => github.closeIssue(repo, Number(ticket.id)),
    inspect: async (ticket) => {
      const issue = github.issues(repo).find((i) => i.number === Number(ticket.id))!;
      return { labels: issue.labels, body: issue.body ?? '', notes: issue.comments.map((c) => c.body) };
    },
  };
});

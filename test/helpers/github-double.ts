import { text as readText } from 'node:stream/consumers';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Octokit } from '@octokit/rest';

/**
 * A GitHub REST API double at the HTTP level: a node:http server on 127.0.0.1 implementing only
 * the endpoints rekey uses (issues, comments, labels, secret scanning alerts), with state in memory. The
 * production adapters talk to it through a real Octokit, so what is tested is what is sent.
 * Every request is recorded (method, path, query, parsed body) together with the reply.
 */

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  body: unknown;
  status: number;
  /** The JSON the double answered with (for asserting where a value did, or did not, travel). */
  response: unknown;
}

export interface DoubleIssue {
  number: number;
  title: string;
  body: string | null;
  state: 'open' | 'closed';
  labels: string[];
  assignees: string[];
  /** Comments posted on the issue, oldest first. */
  comments: { body: string; createdAt: string }[];
  createdAt: string;
  updatedAt: string;
}

export interface DoubleAlert {
  number: number;
  secret: string;
  secretType: string;
  state: 'open' | 'resolved';
  resolution: string | null;
  resolutionComment: string | null;
}

interface Repo {
  issues: DoubleIssue[];
  labels: { name: string; color: string; description: string | null }[];
  alerts: Map<number, DoubleAlert>;
}

interface Failure {
  method: string;
  path: RegExp;
  status: number;
  message: string;
  times: number;
}

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

const RESOLUTIONS = new Set(['false_positive', 'wont_fix', 'revoked', 'used_in_tests']);
const LABEL_COLOR = /^[0-9a-fA-F]{6}$/;

export class GitHubDouble {
  readonly requests: RecordedRequest[] = [];
  readonly #server: Server;
  readonly #token: string;
  readonly #maxPerPage: number;
  readonly #collaborators: Set<string>;
  readonly #repos = new Map<string, Repo>();
  readonly #failures: Failure[] = [];

  private constructor(server: Server, options: GitHubDoubleOptions) {
    this.#server = server;
    this.#token = options.token ?? 'test-token';
    this.#maxPerPage = options.maxPerPage ?? 100;
    this.#collaborators = new Set((options.collaborators ?? ['octocat']).map((l) => l.toLowerCase()));
  }

  static async start(options: GitHubDoubleOptions = {}): Promise<GitHubDouble> {
    let double: GitHubDouble | undefined;
    const server = createServer((req, res) => void double!.#handle(req, res));
    double = new GitHubDouble(server, options);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return double;
  }

  get url(): string {
    const { port } = this.#server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  /** An Octokit pointed at the double, as production builds one for GitHub Enterprise. */
  octokit(token = this.#token): Octokit {
    return new Octokit({ auth: token, baseUrl: this.url, log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} } });
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** The next `times` requests matching method and path get `status` (after authentication). */
  fail(method: string, path: RegExp, status: number, options: { message?: string; times?: number } = {}): void {
    this.#failures.push({ method: method.toUpperCase(), path, status, message: options.message ?? 'Resource not accessible by integration', times: options.times ?? 1 });
  }

  issues(fullName: string): DoubleIssue[] {
    return this.#repo(fullName).issues;
  }

  labels(fullName: string): string[] {
    return this.#repo(fullName).labels.map((l) => l.name);
  }

  addLabel(fullName: string, name: string): void {
    this.#repo(fullName).labels.push({ name, color: 'ededed', description: null });
  }

  /** Closes an issue as a human would on github.com (not a recorded API request). */
  closeIssue(fullName: string, number: number): void {
    const issue = this.issues(fullName).find((i) => i.number === number);
    if (!issue) throw new Error(`no issue #${number} in ${fullName}`);
    issue.state = 'closed';
    issue.updatedAt = this.#tick();
  }

  addAlert(fullName: string, alert: Pick<DoubleAlert, 'number' | 'secret'> & Partial<DoubleAlert>): DoubleAlert {
    const full: DoubleAlert = { secretType: 'postgres_connection_uri', state: 'open', resolution: null, resolutionComment: null, ...alert };
    this.#repo(fullName).alerts.set(full.number, full);
    return full;
  }

  alert(fullName: string, number: number): DoubleAlert | undefined {
    return this.#repo(fullName).alerts.get(number);
  }

  requestsTo(method: string, path: RegExp): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method.toUpperCase() && path.test(r.path));
  }

  #repo(fullName: string): Repo {
    const key = fullName.toLowerCase();
    let repo = this.#repos.get(key);
    if (!repo) {
      repo = { issues: [], labels: [], alerts: new Map() };
      this.#repos.set(key, repo);
    }
    return repo;
  }

  // Real time at GitHub's precision (seconds): adapters compare it with the `Date` header for `since`.
  #tick(): string {
    return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const method = (req.method ?? 'GET').toUpperCase();
    const query = Object.fromEntries(url.searchParams);
    const text = await readText(req);
    let body: unknown;
    let reply: Reply;
    try {
      body = text ? JSON.parse(text) : undefined;
      reply = this.#authorized(req) ? this.#route(method, url, query, body) : { status: 401, body: { message: 'Bad credentials' } };
    } catch {
      reply = { status: 400, body: { message: 'Problems parsing JSON' } };
    }
    this.requests.push({ method, path: url.pathname, query, body, status: reply.status, response: reply.body });
    res.writeHead(reply.status, { 'content-type': 'application/json; charset=utf-8', ...reply.headers });
    res.end(reply.body === undefined ? '' : JSON.stringify(reply.body));
  }

  #authorized(req: IncomingMessage): boolean {
    const header = req.headers.authorization ?? '';
    const match = /^(token|bearer) (.+)$/i.exec(header);
    return match?.[2] === this.#token;
  }

  #route(method: string, url: URL, query: Record<string, string>, body: unknown): Reply {
    const failure = this.#failures.find((f) => f.method === method && f.path.test(url.pathname));
    if (failure) {
      failure.times -= 1;
      if (failure.times <= 0) this.#failures.splice(this.#failures.indexOf(failure), 1);
      return { status: failure.status, body: { message: failure.message, documentation_url: 'https://docs.github.com/rest' } };
    }
    const input = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    let m: RegExpExecArray | null;
    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/issues$/.exec(url.pathname))) {
      const fullName = `${m[1]}/${m[2]}`;
      if (method === 'GET') return this.#listIssues(fullName, url, query);
      if (method === 'POST') return this.#createIssue(fullName, input);
    }
    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)$/.exec(url.pathname))) {
      const fullName = `${m[1]}/${m[2]}`;
      const issue = this.issues(fullName).find((i) => i.number === Number(m![3]));
      if (!issue) return notFound();
      if (method === 'GET') return { status: 200, body: this.#issueJson(fullName, issue) };
      if (method === 'PATCH') return this.#updateIssue(fullName, issue, input);
    }
    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)\/comments$/.exec(url.pathname))) {
      const fullName = `${m[1]}/${m[2]}`;
      const issue = this.issues(fullName).find((i) => i.number === Number(m![3]));
      if (!issue) return notFound();
      if (method === 'POST') return this.#createComment(fullName, issue, input);
      if (method === 'GET') return this.#page(url, query, issue.comments.map((c, i) => ({ id: issue.number * 1000 + i, body: c.body, created_at: c.createdAt })));
    }
    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/labels$/.exec(url.pathname))) {
      const fullName = `${m[1]}/${m[2]}`;
      if (method === 'GET') return this.#page(url, query, this.#repo(fullName).labels.map((l, i) => ({ id: i + 1, ...l })));
      if (method === 'POST') return this.#createLabel(fullName, input);
    }
    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/secret-scanning\/alerts\/(\d+)$/.exec(url.pathname))) {
      const fullName = `${m[1]}/${m[2]}`;
      const alert = this.alert(fullName, Number(m[3]));
      if (!alert) return notFound();
      if (method === 'GET') return { status: 200, body: this.#alertJson(fullName, alert, query.hide_secret === 'true') };
      if (method === 'PATCH') return this.#updateAlert(fullName, alert, input);
    }
    return notFound();
  }

  #listIssues(fullName: string, url: URL, query: Record<string, string>): Reply {
    const state = query.state ?? 'open';
    const wanted = (query.labels ?? '').split(',').map((l) => l.trim().toLowerCase()).filter(Boolean);
    const since = query.since ? Date.parse(query.since) : undefined;
    const issues = this.issues(fullName)
      .filter((i) => state === 'all' || i.state === state)
      .filter((i) => wanted.every((w) => i.labels.some((l) => l.toLowerCase() === w)))
      .filter((i) => since === undefined || Date.parse(i.updatedAt) >= since)
      .sort((a, b) => b.number - a.number); // GitHub's default: newest first
    return this.#page(url, query, issues.map((i) => this.#issueJson(fullName, i)));
  }

  #createIssue(fullName: string, input: Record<string, unknown>): Reply {
    if (typeof input.title !== 'string' || !input.title) return invalid('Issue', 'title', 'missing_field');
    const assignees = stringArray(input.assignees);
    if (assignees.some((a) => !this.#collaborators.has(a.toLowerCase()))) return invalid('Issue', 'assignees', 'invalid');
    const repo = this.#repo(fullName);
    const now = this.#tick();
    const issue: DoubleIssue = {
      number: repo.issues.reduce((max, i) => Math.max(max, i.number), 0) + 1,
      title: input.title,
      body: typeof input.body === 'string' ? input.body : null,
      state: 'open',
      labels: this.#applyLabels(fullName, stringArray(input.labels)),
      assignees,
      comments: [],
      createdAt: now,
      updatedAt: now,
    };
    repo.issues.push(issue);
    return { status: 201, body: this.#issueJson(fullName, issue) };
  }

  #updateIssue(fullName: string, issue: DoubleIssue, input: Record<string, unknown>): Reply {
    if (input.assignees !== undefined && stringArray(input.assignees).some((a) => !this.#collaborators.has(a.toLowerCase()))) {
      return invalid('Issue', 'assignees', 'invalid');
    }
    if (input.state !== undefined && input.state !== 'open' && input.state !== 'closed') return invalid('Issue', 'state', 'invalid');
    if (typeof input.title === 'string') issue.title = input.title;
    if (typeof input.body === 'string') issue.body = input.body;
    if (input.labels !== undefined) issue.labels = this.#applyLabels(fullName, stringArray(input.labels));
    if (input.assignees !== undefined) issue.assignees = stringArray(input.assignees);
    if (input.state === 'open' || input.state === 'closed') issue.state = input.state;
    issue.updatedAt = this.#tick();
    return { status: 200, body: this.#issueJson(fullName, issue) };
  }

  #createComment(fullName: string, issue: DoubleIssue, input: Record<string, unknown>): Reply {
    if (typeof input.body !== 'string' || !input.body) return invalid('IssueComment', 'body', 'missing_field');
    const now = this.#tick();
    issue.comments.push({ body: input.body, createdAt: now });
    issue.updatedAt = now;
    return { status: 201, body: { id: issue.number * 1000 + issue.comments.length - 1, body: input.body, html_url: `${this.url}/${fullName}/issues/${issue.number}#comment`, created_at: now } };
  }

  /** As GitHub does for a writer: unknown labels on an issue are created with the default colour. */
  #applyLabels(fullName: string, names: string[]): string[] {
    const repo = this.#repo(fullName);
    return names.map((name) => {
      const found = repo.labels.find((l) => l.name.toLowerCase() === name.toLowerCase());
      if (found) return found.name;
      repo.labels.push({ name, color: 'ededed', description: null });
      return name;
    });
  }

  #createLabel(fullName: string, input: Record<string, unknown>): Reply {
    if (typeof input.name !== 'string' || !input.name) return invalid('Label', 'name', 'missing_field');
    if (input.color !== undefined && (typeof input.color !== 'string' || !LABEL_COLOR.test(input.color))) return invalid('Label', 'color', 'invalid');
    const repo = this.#repo(fullName);
    const name = input.name;
    if (repo.labels.some((l) => l.name.toLowerCase() === name.toLowerCase())) return invalid('Label', 'name', 'already_exists');
    const label = { name, color: typeof input.color === 'string' ? input.color : 'ededed', description: typeof input.description === 'string' ? input.description : null };
    repo.labels.push(label);
    return { status: 201, body: { id: repo.labels.length, ...label } };
  }

  #updateAlert(fullName: string, alert: DoubleAlert, input: Record<string, unknown>): Reply {
    if (input.state !== 'open' && input.state !== 'resolved') return invalid('SecretScanningAlert', 'state', 'invalid');
    if (input.state === 'resolved' && (typeof input.resolution !== 'string' || !RESOLUTIONS.has(input.resolution))) {
      return invalid('SecretScanningAlert', 'resolution', 'invalid');
    }
    const resolution = input.state === 'resolved' ? (input.resolution as string) : null;
    // GitHub: "400 Bad request, resolution comment is invalid or the resolution was not changed".
    if (alert.state === input.state && alert.resolution === resolution) return { status: 400, body: { message: 'The resolution was not changed' } };
    alert.state = input.state;
    alert.resolution = resolution;
    alert.resolutionComment = typeof input.resolution_comment === 'string' ? input.resolution_comment : null;
    return { status: 200, body: this.#alertJson(fullName, alert, true) };
  }

  #page(url: URL, query: Record<string, string>, items: unknown[]): Reply {
    const perPage = Math.min(Number(query.per_page ?? 30) || 30, this.#maxPerPage);
    const page = Math.max(1, Number(query.page ?? 1) || 1);
    const last = Math.max(1, Math.ceil(items.length / perPage));
    const link = (n: number, rel: string): string => {
      const next = new URL(url);
      next.searchParams.set('page', String(n));
      next.searchParams.set('per_page', String(perPage));
      return `<${next.toString()}>; rel="${rel}"`;
    };
    const links = page < last ? [link(page + 1, 'next'), link(last, 'last')] : [];
    return { status: 200, body: items.slice((page - 1) * perPage, page * perPage), ...(links.length ? { headers: { link: links.join(', ') } } : {}) };
  }

  #issueJson(fullName: string, issue: DoubleIssue): Record<string, unknown> {
    const repo = this.#repo(fullName);
    return {
      id: 1000 + issue.number,
      node_id: `I_${issue.number}`,
      url: `${this.url}/repos/${fullName}/issues/${issue.number}`,
      repository_url: `${this.url}/repos/${fullName}`,
      html_url: `${this.url}/${fullName}/issues/${issue.number}`,
      number: issue.number,
      title: issue.title,
      body: issue.body,
      state: issue.state,
      labels: issue.labels.map((name) => {
        const label = repo.labels.find((l) => l.name === name);
        return { name, color: label?.color ?? 'ededed', description: label?.description ?? null };
      }),
      assignee: issue.assignees[0] ? { login: issue.assignees[0] } : null,
      assignees: issue.assignees.map((login) => ({ login })),
      comments: issue.comments.length,
      user: { login: 'rekey-bot' },
      created_at: issue.createdAt,
      updated_at: issue.updatedAt,
      closed_at: issue.state === 'closed' ? issue.updatedAt : null,
    };
  }

  #alertJson(fullName: string, alert: DoubleAlert, hideSecret: boolean): Record<string, unknown> {
    return {
      number: alert.number,
      url: `${this.url}/repos/${fullName}/secret-scanning/alerts/${alert.number}`,
      html_url: `${this.url}/${fullName}/security/secret-scanning/${alert.number}`,
      state: alert.state,
      resolution: alert.resolution,
      resolution_comment: alert.resolutionComment,
      secret_type: alert.secretType,
      ...(hideSecret ? {} : { secret: alert.secret }),
    };
  }
}

export interface GitHubDoubleOptions {
  /** The token requests must carry (`token <t>` or `Bearer <t>`); 401 otherwise. */
  token?: string;
  /** Caps `per_page`, so tests can make the adapters follow pagination with few items. */
  maxPerPage?: number;
  /** Logins that can be assigned; anyone else gets 422 as on GitHub. */
  collaborators?: string[];
}

const notFound = (): Reply => ({ status: 404, body: { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' } });

function invalid(resource: string, field: string, code: string): Reply {
  return { status: 422, body: { message: 'Validation Failed', errors: [{ resource, field, code }], documentation_url: 'https://docs.github.com/rest' } };
}

function stringArray(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

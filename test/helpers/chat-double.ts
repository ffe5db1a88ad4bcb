import { text } from 'node:stream/consumers';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';

/**
 * A Slack or Teams incoming webhook at the HTTP level: a node:http server on 127.0.0.1 that
 * checks each payload against the service's documented shape (and refuses a bad one the way the
 * service does), records every request, and replies as scripted: 429 with Retry-After, 5xx, a
 * hang. The production notifiers post to it unchanged. Its URL carries a random token, as the real
 * ones do: tests register it with the leak guard, because a webhook URL is a credential.
 */

export interface ChatRequest {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  raw: string;
  body: unknown;
  status: number;
  /** Shape problems found in the payload (empty for a valid one). */
  problems: string[];
}

export interface ScriptedReply {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Never answer (until the double closes): a channel that hangs. */
  hang?: boolean;
}

export type ChatService = 'slack' | 'teams';

export class ChatDouble {
  readonly requests: ChatRequest[] = [];
  readonly token = randomBytes(12).toString('hex');
  readonly #server: Server;
  readonly #service: ChatService;
  readonly #script: ScriptedReply[] = [];
  #always?: ScriptedReply;
  #waiters: (() => void)[] = [];
  readonly #hung: ServerResponse[] = [];

  private constructor(service: ChatService, server: Server) {
    this.#service = service;
    this.#server = server;
  }

  static async start(service: ChatService): Promise<ChatDouble> {
    let double: ChatDouble | undefined;
    const server = createServer((req, res) => void double!.#handle(req, res));
    double = new ChatDouble(service, server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return double;
  }

  /** Where the notifier posts: a path with a secret token, like hooks.slack.com/services/T…/B…/<token>. */
  get url(): string {
    const { port } = this.#server.address() as AddressInfo;
    return this.#service === 'slack'
      ? `http://127.0.0.1:${port}/services/T0REKEY/B0REKEY/${this.token}`
      : `http://127.0.0.1:${port}/workflows/rekey/triggers/manual/paths/invoke?sig=${this.token}`;
  }

  /** The next replies, in order; after them the service's normal answer. */
  script(...replies: ScriptedReply[]): void {
    this.#script.push(...replies);
  }

  /** Every request gets this reply until `recover`. */
  fail(reply: ScriptedReply): void {
    this.#always = reply;
  }

  recover(): void {
    this.#always = undefined;
  }

  /** Accepted messages (valid shape, 2xx) as parsed JSON. */
  get delivered(): unknown[] {
    return this.requests.filter((r) => r.status >= 200 && r.status < 300).map((r) => r.body);
  }

  /** Resolves once `count` requests arrived. */
  async waitForRequests(count: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.requests.length < count) {
      if (Date.now() > deadline) throw new Error(`${this.#service} double: ${this.requests.length} of ${count} requests after ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** Answers every request held by a `hang` reply. */
  release(reply: Omit<ScriptedReply, 'hang'>): void {
    for (const res of this.#hung.splice(0)) {
      res.writeHead(reply.status, { 'content-type': 'text/plain; charset=utf-8', ...reply.headers });
      res.end(reply.body ?? '');
    }
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await text(req);
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    let body: unknown;
    let problems: string[];
    try {
      body = JSON.parse(raw);
      problems = this.#service === 'slack' ? slackProblems(body) : teamsProblems(body, Buffer.byteLength(raw));
    } catch {
      problems = ['body is not JSON'];
    }
    const tokenOk = this.#service === 'slack' ? url.pathname.endsWith(`/${this.token}`) : url.searchParams.get('sig') === this.token;
    let reply: ScriptedReply;
    if (req.method !== 'POST') reply = { status: 405, body: 'method_not_allowed' };
    else if (!tokenOk) reply = { status: 404, body: this.#service === 'slack' ? 'no_service' : '' };
    else if (this.#script.length) reply = this.#script.shift()!;
    else if (this.#always) reply = this.#always;
    else if (problems.length) reply = { status: 400, body: this.#service === 'slack' ? 'invalid_blocks' : 'BadRequest' };
    else reply = this.#service === 'slack' ? { status: 200, body: 'ok' } : { status: 202, body: '' };
    this.requests.push({ path: url.pathname, headers: req.headers, raw, body, status: reply.hang ? 0 : reply.status, problems });
    for (const wake of this.#waiters.splice(0)) wake();
    if (reply.hang) {
      this.#hung.push(res); // answered by `release`, or never (the client gives up)
      return;
    }
    res.writeHead(reply.status, { 'content-type': 'text/plain; charset=utf-8', ...reply.headers });
    res.end(reply.body ?? '');
  }
}

// ---------------------------------------------------------------- documented shapes

const SLACK_BLOCKS = new Set(['header', 'section', 'actions', 'context', 'divider']);

/**
 * Slack Block Kit for an incoming webhook (docs.slack.dev/reference/block-kit): `text` or `blocks`;
 * at most 50 blocks; header plain_text ≤ 150; section text ≤ 3000, ≤ 10 fields of ≤ 2000 each, text
 * or fields required; actions 1–25 elements, a button's plain_text ≤ 75 and url ≤ 3000; context
 * 1–10 text elements; block_id ≤ 255.
 */
export function slackProblems(payload: unknown): string[] {
  const problems: string[] = [];
  const p = payload as { text?: unknown; blocks?: unknown };
  if (typeof payload !== 'object' || payload === null) return ['payload is not an object'];
  if (p.text === undefined && p.blocks === undefined) problems.push('needs text or blocks');
  if (p.text !== undefined && (typeof p.text !== 'string' || p.text.length === 0)) problems.push('text must be a non-empty string');
  if (p.blocks === undefined) return problems;
  if (!Array.isArray(p.blocks)) return [...problems, 'blocks must be an array'];
  if (p.blocks.length > 50) problems.push(`${p.blocks.length} blocks (max 50)`);
  p.blocks.forEach((block: Record<string, unknown>, i: number) => {
    const at = `blocks[${i}]`;
    if (!SLACK_BLOCKS.has(String(block.type))) return problems.push(`${at}: unknown type ${String(block.type)}`);
    if (block.block_id !== undefined && String(block.block_id).length > 255) problems.push(`${at}: block_id over 255`);
    if (block.type === 'header') textObject(block.text, `${at}.text`, 150, problems, 'plain_text');
    if (block.type === 'section') {
      if (block.text === undefined && block.fields === undefined) problems.push(`${at}: needs text or fields`);
      if (block.text !== undefined) textObject(block.text, `${at}.text`, 3000, problems);
      if (block.fields !== undefined) {
        if (!Array.isArray(block.fields) || block.fields.length === 0 || block.fields.length > 10) problems.push(`${at}.fields: 1 to 10 items`);
        else block.fields.forEach((f: unknown, j: number) => textObject(f, `${at}.fields[${j}]`, 2000, problems));
      }
    }
    if (block.type === 'actions') {
      const elements = block.elements as Record<string, unknown>[] | undefined;
      if (!Array.isArray(elements) || elements.length === 0 || elements.length > 25) problems.push(`${at}.elements: 1 to 25 items`);
      else
        elements.forEach((e, j) => {
          if (e.type !== 'button') return problems.push(`${at}.elements[${j}]: only buttons are used`);
          textObject(e.text, `${at}.elements[${j}].text`, 75, problems, 'plain_text');
          if (e.url !== undefined && (typeof e.url !== 'string' || e.url.length > 3000)) problems.push(`${at}.elements[${j}].url over 3000`);
          if (e.action_id !== undefined && String(e.action_id).length > 255) problems.push(`${at}.elements[${j}].action_id over 255`);
        });
    }
    if (block.type === 'context') {
      const elements = block.elements as unknown[] | undefined;
      if (!Array.isArray(elements) || elements.length === 0 || elements.length > 10) problems.push(`${at}.elements: 1 to 10 items`);
      else elements.forEach((e, j) => textObject(e, `${at}.elements[${j}]`, 3000, problems));
    }
    return undefined;
  });
  return problems;
}

function textObject(value: unknown, at: string, max: number, problems: string[], only?: 'plain_text' | 'mrkdwn'): void {
  const t = value as { type?: unknown; text?: unknown };
  if (typeof value !== 'object' || value === null) return void problems.push(`${at}: not a text object`);
  if (t.type !== 'plain_text' && t.type !== 'mrkdwn') return void problems.push(`${at}: type must be plain_text or mrkdwn`);
  if (only && t.type !== only) problems.push(`${at}: must be ${only}`);
  if (typeof t.text !== 'string' || t.text.length === 0) return void problems.push(`${at}: text must be a non-empty string`);
  if ([...t.text].length > max) problems.push(`${at}: ${[...t.text].length} characters (max ${max})`);
}

const CARD_ELEMENTS = new Set(['TextBlock', 'FactSet', 'ColumnSet', 'Container', 'Image']);

/**
 * A Teams message carrying an Adaptive Card: `type: message`, attachments with contentType
 * application/vnd.microsoft.card.adaptive and the card in `content` (type AdaptiveCard, a version
 * Teams renders — up to 1.5 — a body of known elements), Action.OpenUrl actions with a url; the
 * whole message at most 28 KB.
 */
export function teamsProblems(payload: unknown, bytes: number): string[] {
  const problems: string[] = [];
  const p = payload as { type?: unknown; attachments?: unknown };
  if (bytes > 28 * 1024) problems.push(`${bytes} bytes (max 28 KB)`);
  if (typeof payload !== 'object' || payload === null) return ['payload is not an object'];
  if (p.type !== 'message') problems.push('type must be "message"');
  if (!Array.isArray(p.attachments) || p.attachments.length === 0) return [...problems, 'attachments must be a non-empty array'];
  p.attachments.forEach((a: Record<string, unknown>, i: number) => {
    const at = `attachments[${i}]`;
    if (a.contentType !== 'application/vnd.microsoft.card.adaptive') problems.push(`${at}.contentType must be application/vnd.microsoft.card.adaptive`);
    const card = a.content as Record<string, unknown> | undefined;
    if (typeof card !== 'object' || card === null) return problems.push(`${at}.content must be the card`);
    if (card.type !== 'AdaptiveCard') problems.push(`${at}.content.type must be AdaptiveCard`);
    const version = String(card.version ?? '');
    if (!/^1\.[0-5]$/.test(version)) problems.push(`${at}.content.version ${version || '(none)'}: Teams renders 1.0 to 1.5`);
    if (!Array.isArray(card.body) || card.body.length === 0) return problems.push(`${at}.content.body must be a non-empty array`);
    (card.body as Record<string, unknown>[]).forEach((e, j) => {
      const where = `${at}.content.body[${j}]`;
      if (!CARD_ELEMENTS.has(String(e.type))) return problems.push(`${where}: unknown element ${String(e.type)}`);
      if (e.type === 'TextBlock' && (typeof e.text !== 'string' || e.text.length === 0)) problems.push(`${where}: TextBlock needs text`);
      if (e.type === 'FactSet') {
        const facts = e.facts as { title?: unknown; value?: unknown }[] | undefined;
        if (!Array.isArray(facts) || facts.some((f) => typeof f.title !== 'string' || typeof f.value !== 'string')) problems.push(`${where}: facts need string title and value`);
      }
      return undefined;
    });
    if (card.actions !== undefined) {
      if (!Array.isArray(card.actions)) problems.push(`${at}.content.actions must be an array`);
      else
        (card.actions as Record<string, unknown>[]).forEach((action, j) => {
          if (action.type !== 'Action.OpenUrl' || typeof action.url !== 'string' || typeof action.title !== 'string') problems.push(`${at}.content.actions[${j}]: Action.OpenUrl with title and url`);
        });
    }
    return undefined;
  });
  return problems;
}

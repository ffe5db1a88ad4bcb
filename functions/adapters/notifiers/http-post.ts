import { RekeyError } from '#core/errors.ts';

/**
 * The one HTTP poster every webhook notifier shares: POST JSON, retry 429 and 5xx (and network
 * errors, timeouts) with capped exponential backoff, honouring Retry-After (seconds or an
 * HTTP-date). A Retry-After longer than `maxDelayMs` is not waited out: the message fails rather
 * than holding a Lambda or a CLI for minutes. Errors name the channel, never the URL (a webhook URL
 * is a credential) and keep no driver error as cause (undici's can carry the host).
 */
export interface PostOptions {
  channel: string;
  /** Tries in all, the first included. */
  attempts?: number;
  baseDelayMs?: number;
  /** The longest single wait, for backoff and for Retry-After alike. */
  maxDelayMs?: number;
  /** Per try. */
  timeoutMs?: number;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  random?: () => number;
}

export interface PostResult {
  status: number;
  /** The reply's first 200 characters (Slack answers `ok`, Teams workflows nothing). */
  body: string;
  attempts: number;
}

export class ChatDeliveryError extends RekeyError {
  readonly channel: string;
  readonly status?: number;
  readonly attempts: number;

  constructor(code: string, channel: string, message: string, details: { status?: number; attempts: number; retryable?: boolean }) {
    super(code, `${channel}: ${message}`, { retryable: details.retryable ?? false });
    this.channel = channel;
    if (details.status !== undefined) this.status = details.status;
    this.attempts = details.attempts;
  }
}

export const DEFAULT_POST = { attempts: 4, baseDelayMs: 500, maxDelayMs: 30_000, timeoutMs: 10_000 } as const;

const sleepFor = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function postJson(url: string, payload: unknown, options: PostOptions): Promise<PostResult> {
  const { channel } = options;
  const attempts = Math.max(1, options.attempts ?? DEFAULT_POST.attempts);
  const baseDelayMs = options.baseDelayMs ?? DEFAULT_POST.baseDelayMs;
  const maxDelayMs = options.maxDelayMs ?? DEFAULT_POST.maxDelayMs;
  const timeoutMs = options.timeoutMs ?? DEFAULT_POST.timeoutMs;
  const doFetch = options.fetch ?? fetch;
  const sleep = options.sleep ?? sleepFor;
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const body = JSON.stringify(payload);

  for (let attempt = 1; ; attempt++) {
    let status: number | undefined;
    let retryAfterMs: number | undefined;
    let failure: ChatDeliveryError;
    try {
      const response = await doFetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=utf-8' },
        body,
        // A webhook that redirects is not the webhook configured: never resend the body elsewhere.
        redirect: 'error',
        signal: AbortSignal.timeout(timeoutMs),
      });
      status = response.status;
      const text = (await response.text().catch(() => '')).slice(0, 200);
      if (response.ok) return { status, body: text, attempts: attempt };
      retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), now());
      const retryable = status === 429 || status === 408 || status >= 500;
      // Slack explains a refusal in one word (invalid_blocks, channel_is_archived): safe to keep.
      const reason = /^[a-z_]{1,60}$/.test(text.trim()) ? ` (${text.trim()})` : '';
      failure = new ChatDeliveryError(status === 429 ? 'CHAT_RATE_LIMITED' : retryable ? 'CHAT_UNAVAILABLE' : 'CHAT_REJECTED', channel, `the webhook answered HTTP ${status}${reason}`, {
        status,
        attempts: attempt,
        retryable,
      });
    } catch (error) {
      if (error instanceof ChatDeliveryError) throw error;
      const name = (error as Error)?.name;
      const code = (error as { cause?: { code?: unknown } })?.cause?.code;
      const why = name === 'TimeoutError' || name === 'AbortError' ? `no answer within ${timeoutMs} ms` : `could not reach the webhook (${typeof code === 'string' ? code : name ?? 'error'})`;
      failure = new ChatDeliveryError('CHAT_UNREACHABLE', channel, why, { attempts: attempt, retryable: true });
    }
    if (!failure.retryable || attempt >= attempts) throw failure;
    const backoff = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1)) * (0.5 + random() / 2);
    const wait = retryAfterMs ?? backoff;
    if (wait > maxDelayMs) {
      throw new ChatDeliveryError('CHAT_RATE_LIMITED', channel, `the webhook asked to wait ${Math.ceil(wait / 1000)} s (Retry-After), longer than rekey waits`, {
        ...(status !== undefined ? { status } : {}),
        attempts: attempt,
        retryable: true,
      });
    }
    await sleep(Math.max(0, Math.round(wait)));
  }
}

/** Retry-After as milliseconds from now: delta-seconds or an HTTP-date; undefined when absent or unreadable. */
export function parseRetryAfter(header: string | null, nowMs: number): number | undefined {
  if (header === null) return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}

/**
 * A webhook URL must be https (http only to a loopback address, for local doubles). The error
 * names the setting, never the URL.
 */
export function checkWebhookUrl(url: string, setting: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RekeyError('CONFIG_INVALID', `${setting} is not a URL`);
  }
  const loopback = parsed.hostname === '127.0.0.1' || parsed.hostname === 'localhost' || parsed.hostname === '[::1]';
  if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && loopback)) {
    throw new RekeyError('CONFIG_INVALID', `${setting} must be an https URL`);
  }
  return url;
}

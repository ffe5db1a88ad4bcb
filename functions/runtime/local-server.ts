import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { acceptDelivery, failedReply } from '#core/intake.ts';
import { MAX_BODY_BYTES } from '#core/leak.ts';
import { sweep } from '#core/sweep.ts';
import { parseDuration } from '#core/duration.ts';
import { publicError } from '#core/errors.ts';
import type { Config } from './config.ts';
import type { Services } from './services.ts';
import type { LeakServices } from './leak-services.ts';

export interface LocalServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/**
 * `rekey serve`: the laptop's pipeline in one process — the same webhook intake as the Lambda,
 * the in-process worker behind it, and the schedule sweep on a timer.
 */
export async function startLocalServer(
  services: Services,
  leak: LeakServices,
  config: Config,
  options: { port: number; host?: string; sweepEveryMs?: number },
): Promise<LocalServer> {
  const log = services.deps.logger;
  const server = createServer((req, res) => {
    const reply = (status: number, body: object) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const match = /^\/webhooks\/([a-z0-9-]{1,40})\/?$/.exec(req.url?.split('?')[0] ?? '');
    if (req.method === 'GET' && req.url === '/healthz') return reply(200, { ok: true });
    if (!match) return reply(404, { message: 'not found' });
    if (req.method !== 'POST') return reply(405, { message: 'POST only' });
    readBody(req)
      .then(async (body) => {
        if (!body) return reply(413, { message: 'body larger than 1 MiB' });
        const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v]));
        const answer = await acceptDelivery(leak.intake, match[1]!, { body, headers });
        reply(answer.status, answer.body);
      })
      .catch((error: unknown) => {
        log.error('webhook failed', { error: publicError(error) });
        const failed = failedReply(error);
        if (!res.headersSent) reply(failed.status, failed.body);
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  let timer: NodeJS.Timeout | undefined;
  // The sweep under way, if any: one at a time, and awaited by close().
  let sweeping: Promise<void> | undefined;
  if (options.sweepEveryMs) {
    timer = setInterval(() => {
      if (sweeping) return;
      sweeping = sweep(services.deps, services.trigger, { concurrency: config.REKEY_SWEEP_CONCURRENCY, stuckAfterMs: parseDuration(config.REKEY_STUCK_AFTER) })
        .then(
          () => {},
          (error: unknown) => log.error('sweep failed', { error: publicError(error) }),
        )
        .finally(() => (sweeping = undefined));
    }, options.sweepEveryMs);
    timer.unref();
  }
  return {
    url: `http://${address.address}:${address.port}`,
    server,
    async close() {
      if (timer) clearInterval(timer);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      // Finish what is being worked — a sweep's rotations too: stopping one between two steps is
      // safe (the next run resumes it) but leaves a pending version behind for no reason.
      // Leak retries still waiting are dropped (their tickets say so).
      leak.localQueue?.stop();
      await Promise.all([leak.localQueue?.idle(), sweeping]);
    },
  };
}

/** The raw bytes, or undefined past the 1 MiB limit (stops reading at once). */
function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        over = true;
        resolve(undefined);
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!over) resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

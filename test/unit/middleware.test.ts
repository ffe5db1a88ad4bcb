import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ConfigError, RekeyError, ValidationError } from '#core/errors.ts';
import type { Logger } from '#core/ports/logger.ts';
import { Sealed } from '#core/sealed.ts';
import { lambdaHandler, type HandlerContext } from '#runtime/middleware.ts';
import { parseConfig } from '#runtime/config.ts';
import { buildServices, type Services } from '#runtime/services.ts';
import { jsonLogger } from '#runtime/logger.ts';
import { createHandler as createRotateSecretHandler } from '../../functions/rotate-secret.ts';
import { createHandler as createOpsHandler } from '../../functions/ops.ts';
import { createHandler as createSweepHandler } from '../../functions/scheduled-rotation.ts';
import { lambdaContext } from '#test/helpers/lambda.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';
import { testRekey, type TestRekey } from '#test/helpers/rekey.ts';

/**
 * The one middy stack every handler shares (functions/runtime/middleware.ts) and the configuration
 * it reads: what reaches a log, what a caller gets back on failure, the abort before the timeout.
 */

type Failure = { ok: false; error: { code: string; message: string } };

let guard: LeakGuard;
let canary: string;
let logs: string[];
let stderr: string[];

/** Services whose logger writes into `logs`; nothing else of them is used by these handlers. */
const services = async () => ({ logger: capturingLogger(logs) });

beforeEach(() => {
  guard = new LeakGuard();
  canary = `canary-${randomBytes(12).toString('base64url')}`;
  guard.secret(canary);
  logs = [];
  stderr = [];
  // The fallback logger (used when the services could not even be built) writes JSON lines on stderr.
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr.push(String(chunk));
    return true;
  });
});

afterEach(() => {
  vi.restoreAllMocks();
  guard.output('logs', logs.join('\n'));
  guard.output('stderr', stderr.join(''));
  guard.assertClean();
});

/** An event carrying the canary everywhere a caller might put a value: a body, a header, a field. */
const eventWithCanary = () => ({
  body: JSON.stringify({ password: canary }),
  headers: { authorization: `Bearer ${canary}` },
  detail: { value: canary },
  secretId: 'app/db',
});

async function rejectionOf(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error as Error,
  );
}

describe('lambdaHandler', () => {
  describe('logging', () => {
    it('logs the start and end of an invocation with the function and request id, never the event', async () => {
      const handler = lambdaHandler('probe', async (event: { secretId: string }) => ({ secretId: event.secretId }), { errors: 'throw', services });
      const context = lambdaContext();
      expect(await handler(eventWithCanary(), context)).toEqual({ secretId: 'app/db' });
      const lines = logs.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.map((l) => l.msg)).toEqual(['handler start', 'handler done']);
      for (const line of lines) expect(line).toMatchObject({ function: 'probe', requestId: context.awsRequestId });
      expect(logs.join('\n')).not.toContain('authorization');
    });

    it('logs a failure through the invocation logger with the safe error only, never the event or the original message', async () => {
      const handler = lambdaHandler(
        'probe',
        async (event: { body: string }) => {
          JSON.parse(`${event.body}}`); // a parser error quotes the body it choked on
          return {};
        },
        { errors: 'return', services },
      );
      const result = (await handler(eventWithCanary(), lambdaContext())) as Failure;
      guard.output('result', result);
      expect(result).toEqual({ ok: false, error: { code: 'INTERNAL', message: 'internal error' } });
      const failed = logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'handler failed');
      expect(failed).toMatchObject({ level: 'error', function: 'probe', error: { code: 'INTERNAL', message: 'internal error' } });
      expect(stderr).toEqual([]);
    });

    it('keeps the event out of the logs of the real handlers too', async () => {
      const rekey = await testRekey({ logger: capturingLogger(logs) });
      try {
        const rotate = createRotateSecretHandler({ services: async () => rekey });
        const ops = createOpsHandler({ services: async () => rekey });
        const arn = `arn:aws:secretsmanager:us-east-1:123456789012:secret:${canary}-AbCdEf`;
        const error = await rejectionOf(rotate({ Step: 'createSecret', SecretId: 'app/missing', ClientRequestToken: canary, RotationToken: canary, extra: eventWithCanary() }, lambdaContext()));
        guard.error('rotate-secret error', error);
        expect(error.message).toMatch(/^NOT_FOUND: /);
        guard.output('ops result', await ops({ ...eventWithCanary(), action: 'inspect', secretId: 'app/missing', reason: canary }, lambdaContext()));
        guard.output('ops result', await ops({ action: 'explode', secretId: arn, body: canary }, lambdaContext()));
        expect(logs.some((l) => l.includes('handler failed'))).toBe(true);
      } finally {
        await rekey.dispose();
      }
    });
  });

  describe('abort signal', () => {
    it('aborts the handler signal when the remaining time reaches the one-second margin, and answers TIMEOUT', async () => {
      let signal: AbortSignal | undefined;
      let sawAbort = false;
      const handler = lambdaHandler(
        'probe',
        async (_event: unknown, ctx: HandlerContext<{ logger: Logger }>) => {
          signal = ctx.signal;
          await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
          sawAbort = true;
          return { finished: true };
        },
        { errors: 'throw', services },
      );
      // 1 s left: exactly the margin, so the abort is due at once (no clock involved).
      const error = await rejectionOf(handler({}, lambdaContext(1_000)));
      expect(error.message).toBe('TIMEOUT: probe ran out of time before finishing; the next invocation resumes');
      expect(signal?.aborted).toBe(true);
      await vi.waitFor(() => expect(sawAbort).toBe(true));
      expect(logs.map((l) => JSON.parse(l) as { msg: string; error?: { code: string } }).find((l) => l.msg === 'handler failed')?.error?.code).toBe('TIMEOUT');
    });

    it('does not abort a handler that finishes in time', async () => {
      let signal: AbortSignal | undefined;
      const handler = lambdaHandler('probe', async (_event: unknown, ctx: HandlerContext<{ logger: Logger }>) => ((signal = ctx.signal), { done: true }), { errors: 'throw', services });
      expect(await handler({}, lambdaContext(60_000))).toEqual({ done: true });
      expect(signal?.aborted).toBe(false);
    });

    it('runs without an abort deadline when there is no Lambda context (local scripts)', async () => {
      const handler = lambdaHandler('probe', async () => ({ done: true }), { errors: 'throw', services });
      expect(await handler({}, {} as never)).toEqual({ done: true });
    });
  });

  describe("errors: 'return'", () => {
    it('turns an exposed RekeyError into { ok: false, error: { code, message } }', async () => {
      const handler = lambdaHandler('probe', async () => Promise.reject(new ValidationError('secretId is required')), { errors: 'return', services });
      expect(await handler({}, lambdaContext())).toEqual({ ok: false, error: { code: 'INVALID_INPUT', message: 'secretId is required' } });
    });

    it('summarises a RekeyError that is not exposed by its code, dropping message and cause', async () => {
      const hidden = new RekeyError('DRIVER_FAILED', `driver said ${canary}`, { expose: false, cause: new Error(canary) });
      const handler = lambdaHandler('probe', async () => Promise.reject(hidden), { errors: 'return', services });
      const result = await handler({}, lambdaContext());
      guard.output('result', result);
      expect(result).toEqual({ ok: false, error: { code: 'DRIVER_FAILED', message: 'internal error (DRIVER_FAILED)' } });
    });

    it('never exposes the message of an error that is not a RekeyError', async () => {
      const handler = lambdaHandler('probe', async () => Promise.reject(new TypeError(`cannot read ${canary}`)), { errors: 'return', services });
      const result = await handler({}, lambdaContext());
      guard.output('result', result);
      expect(result).toEqual({ ok: false, error: { code: 'INTERNAL', message: 'internal error' } });
    });
  });

  describe("errors: 'throw'", () => {
    it('throws a plain Error holding only "CODE: message" (no cause, no other fields)', async () => {
      const original = new RekeyError('TOKEN_NOT_PENDING', 'version v1 of secret app/db is not set as AWSPENDING for rotation', { cause: new Error(canary) });
      const handler = lambdaHandler('probe', async () => Promise.reject(original), { errors: 'throw', services });
      const error = await rejectionOf(handler({}, lambdaContext()));
      guard.error('thrown', error);
      expect(error).not.toBe(original);
      expect(error).not.toBeInstanceOf(RekeyError);
      expect(error.name).toBe('RekeyError');
      expect(error.message).toBe('TOKEN_NOT_PENDING: version v1 of secret app/db is not set as AWSPENDING for rotation');
      expect(error.cause).toBeUndefined();
      expect(Object.keys(error)).toEqual(['name']); // errorType in the Lambda runtime's report
    });

    it('throws INTERNAL for an error that is not a RekeyError, without its message', async () => {
      const handler = lambdaHandler('probe', async () => Promise.reject(new Error(`connect ECONNREFUSED postgres://app:${canary}@db`)), { errors: 'throw', services });
      const error = await rejectionOf(handler({}, lambdaContext()));
      guard.error('thrown', error);
      expect(error.message).toBe('INTERNAL: internal error');
    });

    it('reports services that failed to build (bad configuration) with the safe error, on the fallback logger', async () => {
      const badKey = Buffer.from(canary).toString('base64');
      guard.secret(badKey);
      const broken = () => buildServices(parseConfig({ REKEY_STORE: 'aws', REKEY_INDEX_KEY: badKey, REKEY_EVENT_BUS_NAME: 'rekey-test', AWS_REGION: 'us-east-1' }));
      const handler = lambdaHandler('probe', async () => ({}), { errors: 'throw', services: broken as () => Promise<Services> });
      const error = await rejectionOf(handler({}, lambdaContext()));
      guard.error('thrown', error);
      expect(error.message).toBe('CONFIG_INVALID: REKEY_INDEX_KEY must be base64 of exactly 32 bytes');
      const line = JSON.parse(stderr.join('').trim().split('\n').at(-1)!) as Record<string, unknown>;
      expect(line).toMatchObject({ level: 'error', msg: 'handler failed', function: 'probe', error: { code: 'CONFIG_INVALID' } });
    });
  });

  describe("errors: 'http'", () => {
    type HttpResult = { statusCode: number; headers?: Record<string, string>; body?: string };
    const answer503 = (result: HttpResult) => {
      expect(result.statusCode).toBe(503);
      expect(result.headers).toEqual({ 'content-type': 'application/json', 'retry-after': '30' });
      expect(JSON.parse(result.body!)).toEqual({ message: 'rekey could not take the request; send it again later' });
    };

    it('answers the early timeout 503 with Retry-After — never { ok: false }, which an HTTP API would send as 200', async () => {
      const handler = lambdaHandler('probe', async (_event: unknown, ctx: HandlerContext<{ logger: Logger }>) => new Promise<HttpResult>((resolve) => ctx.signal.addEventListener('abort', () => resolve({ statusCode: 202 }), { once: true })), {
        errors: 'http',
        services,
      });
      // 1 s left: exactly the margin, so the timeout is due at once (no clock involved).
      const result = (await handler(eventWithCanary(), lambdaContext(1_000))) as HttpResult;
      guard.output('result', result);
      answer503(result);
      expect(logs.map((l) => JSON.parse(l) as { msg: string; error?: { code: string } }).find((l) => l.msg === 'handler failed')?.error?.code).toBe('TIMEOUT');
    });

    it('answers 503 for a throw, without the body, a header or the error in the reply', async () => {
      const handler = lambdaHandler(
        'probe',
        async (event: { body: string }) => {
          JSON.parse(`${event.body}}`); // a parser error quotes the body it choked on
          return { statusCode: 202 };
        },
        { errors: 'http', services },
      );
      const result = (await handler(eventWithCanary(), lambdaContext())) as HttpResult;
      guard.output('result', result);
      answer503(result);
    });

    it('answers 503 when the services could not be built, logging on the fallback logger', async () => {
      const handler = lambdaHandler('probe', async () => ({ statusCode: 202 }), { errors: 'http', services: () => Promise.reject(new ConfigError(`REKEY_LOG_LEVEL is invalid`)) });
      const result = (await handler(eventWithCanary(), lambdaContext())) as HttpResult;
      answer503(result);
      expect(JSON.parse(stderr.join('').trim().split('\n').at(-1)!)).toMatchObject({ msg: 'handler failed', error: { code: 'CONFIG_INVALID' } });
    });
  });

  describe('handlers built on it', () => {
    let rekey: TestRekey;
    beforeEach(async () => {
      rekey = await testRekey({ logger: capturingLogger(logs) });
    });
    afterEach(async () => {
      await rekey.dispose();
    });

    it('rotate-secret and scheduled-rotation throw (the invoker retries); ops returns { ok: false }', async () => {
      const rotate = await rejectionOf(createRotateSecretHandler({ services: async () => rekey })({ Step: 'nope' }, lambdaContext()));
      expect(rotate.message).toMatch(/^INVALID_INPUT: /);
      rekey.deps.store.listSecrets = async () => Promise.reject(new RekeyError('SECRETS_MANAGER_UNAVAILABLE', 'Secrets Manager ListSecrets failed (ThrottlingException); try again', { retryable: true }));
      const sweep = await rejectionOf(createSweepHandler({ services: async () => rekey })({}, lambdaContext()));
      expect(sweep.message).toMatch(/^SECRETS_MANAGER_UNAVAILABLE: /);
      expect(await createOpsHandler({ services: async () => rekey })({ action: 'inspect' }, lambdaContext())).toMatchObject({ ok: false, error: { code: 'INVALID_INPUT' } });
    });
  });
});

describe('configuration', () => {
  describe('parseConfig', () => {
    it('names every invalid variable and what it should be, never the value it had', () => {
      const error = (() => {
        try {
          parseConfig({
            REKEY_STORE: canary,
            REKEY_SWEEP_CONCURRENCY: canary,
            REKEY_STUCK_AFTER: canary,
            REKEY_INGEST_TOKEN: canary.slice(0, 10),
            SLACK_WEBHOOK_URL: `hooks.slack.com/${canary}`,
            REKEY_LOG_LEVEL: canary,
          });
        } catch (e) {
          return e as Error;
        }
        throw new Error('expected parseConfig to throw');
      })();
      guard.secret(canary.slice(0, 10));
      guard.error('config error', error);
      expect(error).toBeInstanceOf(ConfigError);
      for (const name of ['REKEY_STORE', 'REKEY_SWEEP_CONCURRENCY', 'REKEY_STUCK_AFTER', 'REKEY_INGEST_TOKEN', 'SLACK_WEBHOOK_URL', 'REKEY_LOG_LEVEL']) {
        expect(error.message).toContain(name);
      }
      expect(error.message).toContain('REKEY_INGEST_TOKEN must be at least 16 characters');
      expect(error.message).toContain('REKEY_STORE must be local or aws');
    });

    it('takes an empty variable as unset: a deploy parameter left empty (ticketsRepo) must not stop every invocation', () => {
      const parsed = parseConfig({ REKEY_TICKETS_REPO: '', GITHUB_TOKEN: '', SLACK_WEBHOOK_URL: '', REKEY_LOG_LEVEL: '' });
      expect(parsed.REKEY_TICKETS_REPO).toBeUndefined();
      expect(parsed.GITHUB_TOKEN).toBeUndefined();
      expect(parsed.SLACK_WEBHOOK_URL).toBeUndefined();
      expect(parsed.REKEY_LOG_LEVEL).toBe('warn');
    });

    it('applies the documented defaults', () => {
      expect(parseConfig({})).toMatchObject({ REKEY_STORE: 'local', REKEY_LOG_LEVEL: 'warn', REKEY_SWEEP_CONCURRENCY: 4, REKEY_STUCK_AFTER: '2h', REKEY_VERIFY_ATTEMPTS: 3 });
    });
  });

  describe('buildServices', () => {
    it('refuses REKEY_STORE=aws without REKEY_INDEX_KEY, naming the variable', async () => {
      await expect(buildServices(parseConfig({ REKEY_STORE: 'aws', AWS_REGION: 'us-east-1' }))).rejects.toThrow(/^REKEY_INDEX_KEY must be set when REKEY_STORE=aws/);
    });

    it('refuses a master key of the wrong length without echoing it', async () => {
      const error = await rejectionOf(buildServices(parseConfig({ REKEY_STORE_DIR: '/nonexistent/rekey-test', REKEY_MASTER_KEY: canary })));
      guard.error('master key error', error);
      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toMatch(/^REKEY_MASTER_KEY must be base64 of exactly 32 bytes/);
    });
  });

  describe('jsonLogger', () => {
    it('writes one JSON line per entry at or above its level, and a Sealed field as [sealed]', () => {
      const lines: string[] = [];
      const log = jsonLogger('info', (line) => lines.push(line));
      log.debug('hidden');
      log.info('shown', { secretId: 'app/db', value: new Sealed(canary) });
      guard.output('json logger', lines.join(''));
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'info', msg: 'shown', secretId: 'app/db', value: '[sealed]' });
    });
  });
});

function capturingLogger(lines: string[]): Logger {
  const log = (level: string) => (msg: string, fields: Record<string, unknown> = {}) => {
    lines.push(JSON.stringify({ level, msg, ...fields }));
  };
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

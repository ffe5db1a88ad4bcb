import { expect, vi } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import { UpdateSecretVersionStageCommand } from '@aws-sdk/client-secrets-manager';
import { parseConfig } from '#runtime/config.ts';
import { buildServices, type ServiceOverrides, type Services } from '#runtime/services.ts';
import type { Logger } from '#core/ports/logger.ts';
import type { RekeyEvent } from '#core/events.ts';
import { ROTATION_STEPS, type RotationStep } from '#core/rotation.ts';
import { STAGE } from '#core/ports/secret-store.ts';
import { InProcessEventBus } from '#adapters/buses/in-process.ts';
import { createHandler as createRotateSecretHandler } from '../../functions/rotate-secret.ts';
import { startFakeSecretsManager, type FakeSecretsManager, type RotationCall, stubLambdaEnvFor } from './fake-secrets-manager.ts';
import { lambdaContext } from './lambda.ts';
import { LeakGuard } from './leak-guard.ts';
import { GITHUB_TOKEN_READERS, SECRETS_ACTIONS, TAG_KEYS, type LambdaFunctionName } from './iam.ts';

/**
 * rekey as it runs on AWS, against the fake Secrets Manager endpoint: services built by
 * `buildServices` from a REKEY_STORE=aws configuration exactly as a Lambda cold start builds them —
 * the SDK client finds the fake through AWS_ENDPOINT_URL_SECRETS_MANAGER, as an unmodified client
 * does — with logs and events captured for the leak guard. Only the event bus is in-process.
 *
 *   const rekey = await awsTestRekey();
 *   rekey.driveRotations();                 // after each RotateSecret, invoke rotate-secret as AWS does
 *   await rekey.rotateSecret({ Step, SecretId, ClientRequestToken });   // one invocation by hand
 *   await rekey.sm.settled();               // wait for the rotations RotateSecret started
 *   await rekey.dispose();  rekey.guard.assertClean();
 */
export interface AwsTestRekey extends Services {
  sm: FakeSecretsManager;
  guard: LeakGuard;
  events: RekeyEvent[];
  logs: string[];
  /** Every rotate-secret invocation, in order, with what it returned or threw. */
  invocations: Invocation[];
  /** Rotations Secrets Manager started whose steps stopped on an error (AWS marks them failed). */
  failedRotations: { call: RotationCall; step: RotationStep; error: Error }[];
  /** Invokes the rotate-secret handler once with `event`; rethrows what it threw. */
  rotateSecret(event: unknown): Promise<RotateSecretOutcome>;
  /** Event Secrets Manager sends for one step of a rotation. */
  stepEvent(step: RotationStep, secretId: string, token: string): RotationEvent;
  /** How the fake invokes rotate-secret after RotateSecret (undefined: it invokes nothing). */
  driveRotations(driver?: RotationDriver): void;
  /** Holds the rotations RotateSecret starts until the returned function is called (AWS may run them any time later). */
  holdRotations(): () => void;
  /** Runs `work` as an invocation of `fn`: the Secrets Manager calls made meanwhile are that function's. */
  invokeAs<T>(fn: LambdaFunction, work: () => Promise<T>): Promise<T>;
  /** The Secrets Manager operations each function was seen calling. */
  operationsOf(fn: LambdaFunction): string[];
  /**
   * Fails when a function called an operation its IAM role (serverless.yml) does not grant, or read
   * the GitHub token secret (`env.REKEY_GITHUB_TOKEN_SECRET_ID`) without its role granting it.
   */
  assertGrantedByIam(): void;
  dispose(): Promise<void>;
}

export type LambdaFunction = LambdaFunctionName;

export interface RotationEvent {
  Step: RotationStep;
  SecretId: string;
  ClientRequestToken: string;
  RotationToken: string;
}

export type RotateSecretOutcome = { step: RotationStep; secretId: string; versionId: string; outcome: 'done' | 'already-current' };

export interface Invocation {
  event: unknown;
  result?: RotateSecretOutcome;
  error?: Error;
}

/** Plays one rotation the way Secrets Manager would, calling `step` for each invocation. */
export type RotationDriver = (call: RotationCall, step: (name: RotationStep) => Promise<RotateSecretOutcome>, rekey: AwsTestRekey) => Promise<void>;

/**
 * What Secrets Manager does after RotateSecret: with RotateImmediately (the default) the four steps
 * in order, stopping at the first failure; without, only testSecret — the configuration test —
 * after which it takes AWSPENDING off the version it created for the test.
 */
export const asSecretsManager: RotationDriver = async (call, step, rekey) => {
  if (!call.rotateImmediately) {
    try {
      await step('testSecret');
    } finally {
      await rekey.sm.client().send(new UpdateSecretVersionStageCommand({ SecretId: call.secretId, VersionStage: STAGE.pending, RemoveFromVersionId: call.versionId }));
    }
    return;
  }
  for (const name of ROTATION_STEPS) await step(name);
};

/** Every step delivered twice in a row (Lambda's and Secrets Manager's retries of a step that in fact worked). */
export const everyStepTwice: RotationDriver = async (call, step) => {
  if (!call.rotateImmediately) throw new Error('everyStepTwice drives immediate rotations only');
  for (const name of ROTATION_STEPS) {
    await step(name);
    await step(name);
  }
};

/** `env`: more of the functions' environment (REKEY_GITHUB_TOKEN_SECRET_ID, GITHUB_API_URL…), as serverless.yml sets it. */
export async function awsTestRekey(options: { now?: () => Date; overrides?: Partial<ServiceOverrides>; env?: Record<string, string> } = {}): Promise<AwsTestRekey> {
  const sm = await startFakeSecretsManager();
  stubLambdaEnvFor(sm);
  const env: Record<string, string> = {
    REKEY_STORE: 'aws',
    AWS_REGION: 'us-east-1',
    REKEY_INDEX_KEY: randomBytes(32).toString('base64'),
    REKEY_EVENT_BUS_NAME: 'rekey-test',
    REKEY_LOG_LEVEL: 'debug',
    ...options.env,
  };
  const guard = new LeakGuard();
  const events: RekeyEvent[] = [];
  const logs: string[] = [];
  const bus = new InProcessEventBus();
  bus.subscribe(async (event: RekeyEvent) => {
    events.push(event);
  });
  const services = await buildServices(parseConfig(env), {
    logger: capturingLogger(logs),
    events: bus,
    verifyBaseDelayMs: 20,
    ...(options.now ? { now: options.now } : {}),
    ...options.overrides,
  });
  const invocations: Invocation[] = [];
  const failedRotations: AwsTestRekey['failedRotations'] = [];
  // Request indexes [from, to) of each invocation: sm.requests records a call once answered, and a
  // handler's calls are all answered before it returns.
  const windows: { fn: LambdaFunction; from: number; to: number }[] = [];
  let held: Promise<void> | undefined;
  const invokeAs = async <T>(fn: LambdaFunction, work: () => Promise<T>): Promise<T> => {
    const window = { fn, from: sm.requests.length, to: Number.POSITIVE_INFINITY };
    windows.push(window);
    try {
      return await work();
    } finally {
      window.to = sm.requests.length;
    }
  };
  const operationsOf = (fn: LambdaFunction) =>
    [...new Set(windows.filter((w) => w.fn === fn).flatMap((w) => sm.requests.slice(w.from, w.to).map((r) => r.operation)))].sort();
  let rekey: AwsTestRekey;
  const handler = createRotateSecretHandler({ services: async () => rekey });

  const rotateSecret = async (event: unknown): Promise<RotateSecretOutcome> => {
    const invocation: Invocation = { event };
    invocations.push(invocation);
    try {
      const result = (await invokeAs('rotate-secret', () => handler(event, lambdaContext()))) as RotateSecretOutcome;
      invocation.result = result;
      return result;
    } catch (error) {
      invocation.error = error as Error;
      throw error;
    }
  };
  const stepEvent = (step: RotationStep, secretId: string, token: string): RotationEvent => ({
    Step: step,
    SecretId: secretId,
    ClientRequestToken: token,
    RotationToken: randomUUID(),
  });

  rekey = {
    ...services,
    sm,
    guard,
    events,
    logs,
    invocations,
    failedRotations,
    rotateSecret,
    stepEvent,
    driveRotations(driver?: RotationDriver) {
      if (!driver) {
        sm.onRotate(undefined);
        return;
      }
      sm.onRotate(async (call) => {
        await held;
        let current: RotationStep = 'createSecret';
        try {
          await driver(call, (name) => ((current = name), rotateSecret(stepEvent(name, call.secretId, call.versionId))), rekey);
        } catch (error) {
          failedRotations.push({ call, step: current, error: error as Error });
        }
      });
    },
    holdRotations() {
      let release!: () => void;
      held = new Promise<void>((resolve) => (release = resolve));
      return () => {
        held = undefined;
        release();
      };
    },
    invokeAs,
    operationsOf,
    assertGrantedByIam() {
      for (const fn of Object.keys(SECRETS_ACTIONS) as LambdaFunction[]) {
        const granted: readonly string[] = SECRETS_ACTIONS[fn];
        expect(operationsOf(fn).filter((operation) => !granted.includes(operation)), `${fn} called Secrets Manager operations its role does not grant`).toEqual([]);
      }
      // Tag writes only under the keys the roles' aws:TagKeys condition allows (StringLike: `*`).
      const allowed = TAG_KEYS.map((p) => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`));
      const keys = windows
        .flatMap((w) => sm.requests.slice(w.from, w.to))
        .flatMap((r) => (r.operation === 'TagResource' ? ((r.body.Tags ?? []) as { Key: string }[]).map((t) => t.Key) : r.operation === 'UntagResource' ? (r.body.TagKeys as string[]) : []));
      expect(keys.filter((key) => !allowed.some((pattern) => pattern.test(key))), 'tag keys no role may write').toEqual([]);
      // The token secret has no rekey tag: only its by-ARN statement, on the readers' roles, reaches it.
      const token = env.REKEY_GITHUB_TOKEN_SECRET_ID;
      if (token) {
        const readers = new Set(windows.filter((w) => sm.requests.slice(w.from, w.to).some((r) => r.operation === 'GetSecretValue' && r.body.SecretId === token)).map((w) => w.fn));
        expect([...readers].filter((fn) => !(GITHUB_TOKEN_READERS as readonly string[]).includes(fn)), 'read the GitHub token secret without its role granting it').toEqual([]);
      }
    },
    async dispose() {
      await sm.settled();
      // Every value that ever reached the store is watched, whoever generated it.
      for (const request of sm.requests) {
        const value = request.body.SecretString;
        if ((request.operation === 'CreateSecret' || request.operation === 'PutSecretValue') && typeof value === 'string') guard.secretJson(value);
      }
      guard.output('logs', logs.join('\n'));
      guard.output('events', JSON.stringify(events));
      for (const invocation of invocations) {
        if (invocation.result) guard.output('rotate-secret result', invocation.result);
        if (invocation.error) guard.error('rotate-secret error', invocation.error);
      }
      for (const { error } of failedRotations) guard.error('failed rotation', error);
      // No request but the two that store a value may carry one (tags, stages, descriptions…).
      for (const request of sm.requests) {
        if (request.operation !== 'CreateSecret' && request.operation !== 'PutSecretValue') guard.output(`${request.operation} request`, request.raw);
      }
      await services.close();
      await sm.close();
      vi.unstubAllEnvs();
    },
  };
  return rekey;
}

function capturingLogger(lines: string[]): Logger {
  const log = (level: string) => (msg: string, fields: Record<string, unknown> = {}) => {
    lines.push(JSON.stringify({ level, msg, ...fields }));
  };
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

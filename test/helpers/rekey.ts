import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig } from '#runtime/config.ts';
import { buildServices, type ServiceOverrides, type Services } from '#runtime/services.ts';
import type { Logger } from '#core/ports/logger.ts';
import type { RekeyEvent } from '#core/events.ts';
import { InProcessEventBus } from '#adapters/buses/in-process.ts';
import { DatabaseTargets } from '#adapters/targets/registry.ts';
import type { Target, TargetRegistry } from '#core/ports/target.ts';
import { LeakGuard } from './leak-guard.ts';
import { adminSecret, servers, type TestEngine } from './databases.ts';
import { createUser } from './users.ts';

/** A local rekey (encrypted store in a temp dir) whose logs and events are captured for the leak guard. */
export interface TestRekey extends Services {
  dir: string;
  env: Record<string, string>;
  guard: LeakGuard;
  events: RekeyEvent[];
  logs: string[];
  overrides: ServiceOverrides;
  dispose(): Promise<void>;
}

export async function testRekey(extra: Partial<ServiceOverrides> = {}): Promise<TestRekey> {
  const dir = await mkdtemp(join(tmpdir(), 'rekey-store-'));
  const env = { REKEY_STORE_DIR: dir, REKEY_MASTER_KEY: randomBytes(32).toString('base64'), REKEY_LOG_LEVEL: 'debug' };
  const guard = new LeakGuard();
  const events: RekeyEvent[] = [];
  const logs: string[] = [];
  const logger = capturingLogger(logs);
  const bus = new InProcessEventBus();
  bus.subscribe(async (event: RekeyEvent) => {
    events.push(event);
  });
  const overrides: ServiceOverrides = { logger, events: bus, verifyBaseDelayMs: 20, ...extra, targets: recordingTargets(extra.targets ?? new DatabaseTargets(), guard) };
  const services = await buildServices(parseConfig(env), overrides);
  // CLI runs build their own services; sharing the store keeps tests fast and the state in one place.
  overrides.store = services.deps.store;
  overrides.lock = services.deps.lock;
  return {
    ...services,
    dir,
    env,
    guard,
    events,
    logs,
    overrides,
    async dispose() {
      guard.output('logs', logs.join('\n'));
      guard.output('events', JSON.stringify(events));
      await guardStoredValues(services, guard);
      await services.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Every value the store holds, in every version a test left — generated, staged, promoted or
 * revoked — is a value no output may show, whether or not the test read it back.
 */
async function guardStoredValues(services: Services, guard: LeakGuard): Promise<void> {
  const store = services.deps.store;
  for (const secret of await store.listSecrets().catch(() => [])) {
    for (const version of secret.versions) {
      const value = await store.getSecretValue(secret.secretId, { versionId: version.versionId }).catch(() => undefined);
      if (!value) continue;
      try {
        guard.secretJson(value.value);
      } catch {
        guard.secret(value.value); // not JSON: the whole text is the secret
      }
    }
  }
}

/** Targets that hand every password they set (generated or scrambled) to the guard first. */
export function recordingTargets(inner: TargetRegistry, guard: LeakGuard): TargetRegistry {
  return {
    forEngine(engine: string): Target {
      const target = inner.forEngine(engine);
      return new Proxy(target, {
        get(obj, prop, receiver) {
          if (prop === 'setPassword') {
            return (...args: Parameters<Target['setPassword']>) => {
              guard.secret(args[2]);
              return obj.setPassword(...args);
            };
          }
          const value = Reflect.get(obj, prop, receiver) as unknown;
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(obj) : value;
        },
      });
    },
    close: () => inner.close(),
  };
}

function capturingLogger(lines: string[]): Logger {
  const log = (level: string) => (msg: string, fields: Record<string, unknown> = {}) => {
    lines.push(JSON.stringify({ level, msg, ...fields }));
  };
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

export interface ManagedUser {
  secretId: string;
  adminSecretId: string;
  username: string;
  password: string;
}

/**
 * Creates a throwaway database user with a random password, the admin secret (masterarn) and the
 * user's secret in the store. `strategy` becomes the `rekey:strategy` tag.
 */
export async function managedUser(
  rekey: Pick<TestRekey, 'deps' | 'guard'>,
  engine: TestEngine,
  options: {
    username: string;
    strategy: 'single' | 'alternating';
    withAdmin?: boolean;
    tags?: Record<string, string>;
    port?: number;
    /** Tags of the admin secret (default rekey:managed=false; on AWS, rekey:admin=true is what IAM reads). */
    adminTags?: Record<string, string>;
  },
): Promise<ManagedUser> {
  const password = `Init-${randomBytes(12).toString('base64url')}`;
  rekey.guard.secret(password);
  await createUser(engine, options.username, password);
  const admin = adminSecret(engine);
  const adminSecretId = `admin/${engine}/${randomBytes(4).toString('hex')}`;
  const adminValue = JSON.stringify({ engine: admin.engine, host: admin.host, port: admin.port, username: admin.username, password: admin.password.reveal(), dbname: admin.dbname });
  rekey.guard.secret(admin.password);
  await rekey.deps.store.createSecret(adminSecretId, sealed(adminValue), { tags: { 'rekey:managed': 'false', ...options.adminTags } });
  const withAdmin = options.withAdmin ?? options.strategy === 'alternating';
  const s = servers()[engine];
  const value = {
    engine: admin.engine,
    host: s.host,
    port: options.port ?? s.port,
    username: options.username,
    password,
    dbname: s.database,
    ...(withAdmin ? { masterarn: adminSecretId } : {}),
  };
  const secretId = `app/${engine}/${options.strategy}/${randomBytes(4).toString('hex')}`;
  await rekey.deps.store.createSecret(secretId, sealed(JSON.stringify(value)), {
    tags: { 'rekey:managed': 'true', 'rekey:strategy': options.strategy, ...options.tags },
  });
  return { secretId, adminSecretId, username: options.username, password };
}

import { Sealed } from '#core/sealed.ts';
const sealed = (text: string) => new Sealed(text);

/** The stored credential of a stage, registered with the guard. */
export async function storedLogin(rekey: Pick<TestRekey, 'deps' | 'guard'>, secretId: string, selector: { stage?: string; versionId?: string }): Promise<{ username: string; password: string; versionId: string }> {
  const version = await rekey.deps.store.getSecretValue(secretId, selector);
  const value = JSON.parse(version.value.reveal()) as { username: string; password: string };
  rekey.guard.secret(value.password);
  return { username: value.username, password: value.password, versionId: version.versionId };
}

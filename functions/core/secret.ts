import * as z from 'zod/mini';
import { ValidationError } from './errors.ts';
import { Sealed } from './sealed.ts';
import { parseDuration } from './duration.ts';

/** Engines as AWS's rotation templates spell them, mapped to rekey's targets. */
const ENGINE_ALIASES: Record<string, DatabaseEngine> = {
  postgres: 'postgres',
  postgresql: 'postgres',
  'aurora-postgresql': 'postgres',
  mysql: 'mysql',
  'aurora-mysql': 'mysql',
  aurora: 'mysql',
  mariadb: 'mariadb',
};

export type DatabaseEngine = 'postgres' | 'mysql' | 'mariadb';
export type Strategy = 'single' | 'alternating';

const nonEmpty = () => z.string().check(z.minLength(1));
const valueSchema = z.looseObject({
  engine: z.string(),
  host: z.string().check(z.minLength(1), z.maxLength(255)),
  port: z.optional(z.coerce.number().check(z.int(), z.minimum(1), z.maximum(65535))),
  username: nonEmpty(),
  password: nonEmpty(),
  dbname: z.optional(nonEmpty()),
  masterarn: z.optional(nonEmpty()),
  ssl: z.optional(z.boolean()),
});

/** A database credential as stored (JSON compatible with AWS's rotation templates). */
export interface DatabaseSecret {
  engine: DatabaseEngine;
  host: string;
  port: number;
  username: string;
  password: Sealed<string>;
  dbname?: string;
  masterarn?: string;
  ssl?: boolean;
  /** Fields rekey does not know, kept as they were. */
  extra: Record<string, unknown>;
}

const DEFAULT_PORTS: Record<DatabaseEngine, number> = { postgres: 5432, mysql: 3306, mariadb: 3306 };

/**
 * A stored value's JSON checked against a kind's schema. Errors name the fields that are wrong,
 * never echo a value (zod's own messages can quote the input).
 */
export function parseSecretJson<S extends z.ZodMiniType>(json: Sealed<string>, secretId: string, schema: S): z.infer<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(json.reveal());
  } catch {
    throw new ValidationError(`secret ${secretId} is not valid JSON`, 'SECRET_INVALID');
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((issue) => issue.path.join('.') || '(root)'))].join(', ');
    throw new ValidationError(`secret ${secretId} has invalid or missing fields: ${fields}`, 'SECRET_INVALID');
  }
  return parsed.data;
}

/** Parse a stored value. Errors name the field, never echo the value. */
export function parseDatabaseSecret(json: Sealed<string>, secretId: string): DatabaseSecret {
  const { engine: engineName, host, port, username, password, dbname, masterarn, ssl, ...extra } = parseSecretJson(json, secretId, valueSchema);
  const engine = ENGINE_ALIASES[engineName.toLowerCase()];
  if (!engine) throw new ValidationError(`secret ${secretId} has unsupported engine "${engineName}"`, 'SECRET_INVALID');
  return {
    engine,
    host,
    port: port ?? DEFAULT_PORTS[engine],
    username,
    password: new Sealed(password),
    ...(dbname !== undefined ? { dbname } : {}),
    ...(masterarn !== undefined ? { masterarn } : {}),
    ...(ssl !== undefined ? { ssl } : {}),
    extra,
  };
}

export function serializeDatabaseSecret(secret: DatabaseSecret, engineSpelling?: string): Sealed<string> {
  const { extra, password, engine, ...rest } = secret;
  return new Sealed(JSON.stringify({ ...extra, ...rest, engine: engineSpelling ?? engine, password: password.reveal() }));
}

export const CLONE_SUFFIX = '_clone';

/** The other user of an alternating pair, as AWS's alternating template names it. */
export function alternateUsername(username: string): string {
  return username.endsWith(CLONE_SUFFIX) ? username.slice(0, -CLONE_SUFFIX.length) : username + CLONE_SUFFIX;
}

/** The original (owner) user of an alternating pair. */
export function baseUsername(username: string): string {
  return username.endsWith(CLONE_SUFFIX) ? username.slice(0, -CLONE_SUFFIX.length) : username;
}

export const TAG = {
  managed: 'rekey:managed',
  strategy: 'rekey:strategy',
  environment: 'rekey:environment',
  owner: 'rekey:owner',
  maxAge: 'rekey:max-age',
  grace: 'rekey:grace',
  lastOutcome: 'rekey:last-outcome',
  lastOutcomeAt: 'rekey:last-outcome-at',
  /** Set on an admin secret (another secret's masterarn): its leak is riskier. */
  privileged: 'rekey:privileged',
  /** Set by whoever deploys rekey on the admin secrets it may read (IAM grants reads on it). */
  admin: 'rekey:admin',
  /** `<versionId> ok|failed`: whether every consumer listed by that version received it. */
  consumers: 'rekey:consumers',
  /** `<versionId> <ISO time>` (or `<versionId> done`): the disabled credential to delete after its second grace. */
  purge: 'rekey:purge',
  /** `<versionId> <watermark>`: what that version's verify reported (VerifyReport), for its later revokes. */
  sessionWatermark: 'rekey:session-watermark',
} as const;

/** An admin credential: its leak is riskier. */
export function isPrivileged(tags: Record<string, string>): boolean {
  return tags[TAG.privileged] === 'true' || tags[TAG.admin] === 'true';
}

export function strategyOf(secret: DatabaseSecret, tags: Record<string, string>): Strategy {
  const tagged = tags[TAG.strategy];
  if (tagged === undefined) return secret.masterarn ? 'alternating' : 'single';
  if (tagged !== 'single' && tagged !== 'alternating') {
    throw new ValidationError(`tag ${TAG.strategy} must be single or alternating`);
  }
  return tagged;
}

/** How long AWSPREVIOUS keeps working after a scheduled rotation, when `rekey:grace` is not set. */
export const DEFAULT_GRACE_MS = 3_600_000;

export function graceOf(tags: Record<string, string>): number {
  return tags[TAG.grace] === undefined ? DEFAULT_GRACE_MS : parseDuration(tags[TAG.grace]!, `tag ${TAG.grace}`);
}

export function maxAgeOf(tags: Record<string, string>): number | undefined {
  return tags[TAG.maxAge] === undefined ? undefined : parseDuration(tags[TAG.maxAge]!, `tag ${TAG.maxAge}`);
}

const PRODUCTION = new Set(['prod', 'production']);

/** `rekey:environment` = prod (or production): manual rotations need a reason. */
export function isProduction(tags: Record<string, string>): boolean {
  return PRODUCTION.has((tags[TAG.environment] ?? '').trim().toLowerCase());
}

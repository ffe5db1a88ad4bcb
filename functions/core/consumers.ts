import type { CoreDeps } from './deps.ts';
import { ValidationError, isRekeyError, publicError } from './errors.ts';
import { DETAIL_TYPE, actionFields, emit, type ActionContext } from './events.ts';
import type { ConsumerPushOutcome, ConsumerRegistry, ConsumerSpec } from './ports/consumer.ts';
import { Sealed } from './sealed.ts';
import { TAG } from './secret.ts';

/** The value's field listing its consumers (README "Consumers"). */
export const CONSUMERS_FIELD = 'consumers';
export const MAX_CONSUMERS = 20;

/**
 * The consumers a stored value lists under `"consumers"`; [] when it lists none. ValidationError
 * (naming the secret and the position, never a value) when the list is malformed.
 */
export function consumersOf(value: Sealed<string>, secretId: string): ConsumerSpec[] {
  let raw: unknown;
  try {
    raw = (JSON.parse(value.reveal()) as Record<string, unknown> | null)?.[CONSUMERS_FIELD];
  } catch {
    throw new ValidationError(`secret ${secretId} is not valid JSON`, 'SECRET_INVALID');
  }
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new ValidationError(`secret ${secretId}: "${CONSUMERS_FIELD}" must be a list`, 'CONSUMER_INVALID');
  if (raw.length > MAX_CONSUMERS) throw new ValidationError(`secret ${secretId} lists more than ${MAX_CONSUMERS} consumers`, 'CONSUMER_INVALID');
  return raw.map((item, i) => {
    if (!item || typeof item !== 'object' || Array.isArray(item) || typeof (item as { type?: unknown }).type !== 'string') {
      throw new ValidationError(`secret ${secretId}: consumer ${i + 1} must be an object with a "type"`, 'CONSUMER_INVALID');
    }
    return item as ConsumerSpec;
  });
}

/** Checks every consumer a value lists against its adapter (`rekey put`, before anything depends on it). */
export function validateConsumers(registry: ConsumerRegistry, value: Sealed<string>, secretId: string): void {
  consumersOf(value, secretId).forEach((spec, i) => registry.forType(spec.type).validate(spec, `secret ${secretId}, consumer ${i + 1}`));
}

export interface ConsumerFailure {
  consumer: string;
  error: { code: string; message: string; retryable: boolean };
}

export interface ConsumerReport {
  versionId: string;
  updated: ConsumerPushOutcome[];
  failed: ConsumerFailure[];
}

/** `rekey:consumers` = `<versionId> ok` once every consumer of that version accepted it. */
export const consumersTag = (versionId: string, ok: boolean) => `${versionId} ${ok ? 'ok' : 'failed'}`;

/**
 * True when AWSCURRENT lists consumers that have not all received it: revoking the previous
 * value now would cut off whoever still holds it. A leak's revoke ignores this (the leaked value
 * must die); every other revoke waits for a successful push.
 */
export function consumersPending(tags: Record<string, string>, currentVersionId: string, current: Sealed<string>, secretId: string): boolean {
  let listed: ConsumerSpec[];
  try {
    listed = consumersOf(current, secretId);
  } catch {
    return true; // a malformed list cannot have been pushed
  }
  return listed.length > 0 && tags[TAG.consumers] !== consumersTag(currentVersionId, true);
}

/**
 * Push a version that is now AWSCURRENT to every consumer its value lists, one after another
 * (one failure does not stop the others). Never throws for a consumer's failure: the new value is
 * already safe in the store; the failure is recorded (`rekey:consumers`), logged and published
 * (`Consumer Update Failed`), and it keeps the previous value from being revoked until a later
 * push (the schedule sweep retries) succeeds. Returns undefined when the value lists no consumers.
 */
export async function pushToConsumers(
  deps: CoreDeps,
  secretId: string,
  versionId: string,
  value: Sealed<string>,
  request: ActionContext,
): Promise<ConsumerReport | undefined> {
  const started = performance.now();
  let specs: ConsumerSpec[];
  const report: ConsumerReport = { versionId, updated: [], failed: [] };
  try {
    specs = consumersOf(value, secretId);
  } catch (error) {
    specs = [];
    report.failed.push({ consumer: 'consumers', error: failureOf(error) });
  }
  if (specs.length === 0 && report.failed.length === 0) return undefined;
  const secrets = secretsOf(deps, value);
  for (const spec of specs) {
    let name = spec.type;
    try {
      const adapter = deps.consumers.forType(spec.type);
      name = adapter.describe(spec);
      report.updated.push(await adapter.push({ secretId, versionId, value, secrets, consumer: spec }));
    } catch (error) {
      report.failed.push({ consumer: name, error: failureOf(error) });
    }
  }
  const ok = report.failed.length === 0;
  try {
    await deps.store.tagSecret(secretId, { [TAG.consumers]: consumersTag(versionId, ok) });
  } catch (error) {
    // Without the record a later revoke waits for another push: safe, so only logged.
    deps.logger.warn('could not record the consumer push', { secretId, versionId, error: publicError(error) });
  }
  const base = { secretId, versionId, ...actionFields(request), durationMs: Math.round(performance.now() - started) };
  const updated = report.updated.map((u) => ({ consumer: u.consumer, updated: u.updated }));
  if (ok) {
    deps.logger.info('consumers updated', { secretId, versionId, consumers: updated.length });
    await emit(deps, DETAIL_TYPE.consumersUpdated, { ...base, consumers: updated });
  } else {
    const failed = report.failed.map((f) => ({ consumer: f.consumer, code: f.error.code, message: f.error.message }));
    deps.logger.warn('consumer update failed', { secretId, versionId, failed });
    await emit(deps, DETAIL_TYPE.consumerUpdateFailed, {
      ...base,
      consumers: updated,
      failed,
      error: { code: report.failed[0]!.error.code, message: `${report.failed.length} consumer(s) not updated: ${report.failed.map((f) => f.consumer).join(', ')}` },
    });
  }
  return report;
}

function failureOf(error: unknown): ConsumerFailure['error'] {
  return { ...publicError(error), retryable: isRekeyError(error) ? error.retryable : false };
}

/** The value's sensitive texts (its kind's forms): adapters scrub them from whatever they report. */
function secretsOf(deps: CoreDeps, value: Sealed<string>): Sealed<string>[] {
  try {
    const engine = (JSON.parse(value.reveal()) as { engine?: unknown }).engine;
    if (typeof engine !== 'string') return [];
    return deps.kinds.forEngine(engine).sensitiveForms(value).map((f) => new Sealed(f.text));
  } catch {
    return [];
  }
}

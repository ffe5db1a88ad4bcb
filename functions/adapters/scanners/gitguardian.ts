import { AuthError, PayloadError } from '#core/errors.ts';
import type { LeakLocation, LeakReport, ParsedDelivery } from '#core/leak.ts';
import type { Scanner, ScannerRequest } from '#core/ports/scanner.ts';
import {
  MAX_TYPE_CHARS,
  bodyText,
  checkCount,
  checkSha256Signature,
  date,
  field,
  hmacSha256Hex,
  identifier,
  isObject,
  location,
  parseJson,
  path,
  positiveInt,
  requireSecret,
  text,
} from './common.ts';

/**
 * Events that mean "this secret is exposed (again)". The rest — resolved, ignored, assigned,
 * severity changed, access granted, shared publicly… — change GitGuardian's bookkeeping only.
 */
const ACTIONABLE = new Set(['incident_triggered', 'incident_regression', 'incident_reopened', 'new_occurrence', 'incident_validity_changed']);
const VALIDITY: Record<string, LeakReport['validity']> = {
  valid: 'active',
  invalid: 'inactive',
  failed_to_check: 'unknown',
  no_checker: 'unknown',
  not_checked: 'unknown',
  unknown: 'unknown',
};
const HMSL_HASH = /^[0-9a-fA-F]{64}$/;
// Unix seconds, possibly with a fraction; 13+ digits would be milliseconds.
const TIMESTAMP = /^\d{1,16}(?:\.\d{1,9})?$/;

/**
 * GitGuardian custom webhook (docs.gitguardian.com, "Custom webhook"). GitGuardian signs the raw
 * body with HMAC-SHA-256 whose KEY is the `Timestamp` header concatenated with the signature token
 * (`key = timestamp + token`, `message = body`), and sends `GitGuardian-Signature: sha256=<hex>`.
 * Binding the timestamp into the key is what makes a stale delivery detectable.
 *
 * The payload never carries the secret: only `secret_hash` / `hmsl_hash` and the detector. The
 * `hmsl_hash` is HasMySecretLeaked's public hash of the value (scrypt with a published salt), which
 * the fingerprint index also keeps (under its own key) for every version: so an incident is matched
 * to a managed secret without the value ever travelling. Without it, the incident is a triage ticket.
 */
export class GitGuardianScanner implements Scanner {
  readonly source = 'gitguardian' as const;
  readonly #secret: string;
  readonly #toleranceMs: number;

  constructor(options: { webhookSecret: string; toleranceSeconds?: number }) {
    this.#secret = requireSecret(options.webhookSecret, 'webhookSecret');
    const tolerance = options.toleranceSeconds ?? 300;
    if (!Number.isFinite(tolerance) || tolerance <= 0) throw new TypeError('toleranceSeconds must be a positive number');
    this.#toleranceMs = tolerance * 1000;
  }

  verify(request: ScannerRequest): void {
    const timestamp = request.headers['timestamp'];
    if (!timestamp) throw new AuthError('missing Timestamp');
    const signature = request.headers['gitguardian-signature'];
    if (!signature) throw new AuthError('missing GitGuardian-Signature');
    if (!TIMESTAMP.test(timestamp)) throw new AuthError('Timestamp is not a Unix time');
    const seconds = Number(timestamp);
    const sentMs = seconds >= 1e12 ? seconds : seconds * 1000;
    // Both directions: a delivery from the future is as suspect as a replayed one.
    if (Math.abs(request.now.getTime() - sentMs) > this.#toleranceMs) {
      throw new AuthError(`timestamp outside the ${this.#toleranceMs / 1000} s tolerance`);
    }
    checkSha256Signature(signature, 'GitGuardian-Signature', hmacSha256Hex(timestamp + this.#secret, request.body));
  }

  parse(request: ScannerRequest): ParsedDelivery {
    const payload = parseJson(bodyText(request.body), 'body');
    if (!isObject(payload)) throw new PayloadError('body is not a JSON object');
    const action = field(payload, 'action');
    if (typeof action !== 'string') throw new PayloadError('action is missing');
    const incident = field(payload, 'incident');
    if (!isObject(incident)) throw new PayloadError('incident is missing');
    const id = positiveInt(field(incident, 'id'));
    if (id === undefined) throw new PayloadError('incident.id is missing or not a positive integer');

    // GitGuardian sends no delivery header. The event's own timestamp is stable across its
    // retries (the Timestamp header is not: it is the send time), so it keys de-duplication.
    const eventAt = date(field(payload, 'timestamp')) ?? headerTime(request.headers['timestamp']);
    if (!eventAt) throw new PayloadError('timestamp is missing');
    const occurrenceId = positiveInt(path(payload, 'occurrence', 'id'));
    const actionId = identifier(action) ?? 'other';
    const deliveryId = `gitguardian-${id}-${actionId}${occurrenceId ? `-${occurrenceId}` : ''}-${eventAt.toISOString()}`;

    if (!ACTIONABLE.has(action)) return { deliveryId, reports: [], ignored: `incident action ${actionId}` };

    const secretType = text(path(incident, 'detector', 'display_name'), MAX_TYPE_CHARS) ?? text(path(incident, 'detector', 'name'), MAX_TYPE_CHARS);
    if (!secretType) throw new PayloadError('incident.detector is missing');

    const occurrences = occurrencesOf(payload);
    checkCount(occurrences.length);
    const locations: LeakLocation[] = [];
    let isPublic: boolean | undefined;
    for (const occurrence of occurrences) {
      const source = field(occurrence, 'source');
      const where = location({
        repository: text(field(source, 'full_name')) ?? text(field(source, 'url')),
        file: text(field(occurrence, 'filepath')),
        commit: text(field(occurrence, 'sha'), 64),
        url: text(field(occurrence, 'url')),
      });
      if (where) locations.push(where);
      const visibility = field(source, 'visibility');
      if (visibility === 'public') isPublic = true;
      else if ((visibility === 'private' || visibility === 'internal') && isPublic === undefined) isPublic = false;
    }
    const incidentUrl = text(field(incident, 'gitguardian_url'));
    if (incidentUrl) locations.push({ url: incidentUrl });

    const validity = VALIDITY[String(field(incident, 'validity'))];
    const exposedAt = date(field(incident, 'date'));
    const count = positiveInt(field(incident, 'occurrence_count')) ?? positiveInt(field(incident, 'occurrences_count')) ?? Math.max(occurrences.length, 1);

    const hmsl = field(incident, 'hmsl_hash');
    const report: LeakReport = {
      source: 'gitguardian',
      sourceId: String(id),
      secretType,
      ...(typeof hmsl === 'string' && HMSL_HASH.test(hmsl) ? { hmslHash: hmsl.toLowerCase() } : {}),
      locations,
      ...(isPublic === undefined ? {} : { public: isPublic }),
      ...(validity ? { validity } : {}),
      ...(exposedAt ? { exposedAt } : {}),
      occurrences: count,
    };
    return { deliveryId, reports: [report] };
  }
}

/** `new_occurrence` carries one `occurrence`; some payloads list `incident.occurrences`. */
function occurrencesOf(payload: Record<string, unknown>): unknown[] {
  const out: unknown[] = [];
  const single = field(payload, 'occurrence');
  if (isObject(single)) out.push(single);
  for (const list of [field(payload, 'occurrences'), path(payload, 'incident', 'occurrences')]) {
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) throw new PayloadError('occurrences is not a list');
    checkCount(out.length + list.length);
    for (const item of list) if (isObject(item)) out.push(item);
  }
  return out;
}

function headerTime(header: string | undefined): Date | undefined {
  if (!header || !TIMESTAMP.test(header)) return undefined;
  const seconds = Number(header);
  const at = new Date(seconds >= 1e12 ? seconds : seconds * 1000);
  return Number.isNaN(at.getTime()) ? undefined : at;
}

import { PayloadError } from '#core/errors.ts';
import type { LeakLocation, LeakReport, ParsedDelivery } from '#core/leak.ts';
import type { Scanner, ScannerRequest } from '#core/ports/scanner.ts';
import { seal } from '#core/sealed.ts';
import {
  MAX_TYPE_CHARS,
  MAX_VALUE_CHARS,
  bodyText,
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

/** Actions that mean "this value is (still, again, now publicly) exposed": each is worth acting on. */
const ACTIONABLE = new Set(['created', 'reopened', 'validated', 'publicly_leaked']);
const VALIDITY: Record<string, LeakReport['validity']> = { active: 'active', inactive: 'inactive', unknown: 'unknown' };
// GitHub sends a GUID; anything else is refused so the id is safe to echo in a reply.
const DELIVERY_ID = /^[A-Za-z0-9-]{1,100}$/;
// GitHub's own rules for owner and repository names (plus dots and underscores for repositories).
const OWNER = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/;
const REPO = /^[A-Za-z0-9._-]{1,100}$/;

/**
 * GitHub secret scanning (`secret_scanning_alert` webhook). Signed with `X-Hub-Signature-256`
 * (HMAC-SHA-256 of the raw body under the webhook secret). The payload does not carry the secret:
 * the report says where to fetch it (`GET /repos/{owner}/{repo}/secret-scanning/alerts/{number}`).
 */
export class GitHubScanner implements Scanner {
  readonly source = 'github' as const;
  readonly #secret: string;

  constructor(options: { webhookSecret: string }) {
    this.#secret = requireSecret(options.webhookSecret, 'webhookSecret');
  }

  verify(request: ScannerRequest): void {
    checkSha256Signature(request.headers['x-hub-signature-256'], 'X-Hub-Signature-256', hmacSha256Hex(this.#secret, request.body));
  }

  parse(request: ScannerRequest): ParsedDelivery {
    const delivery = request.headers['x-github-delivery'];
    if (!delivery) throw new PayloadError('missing X-GitHub-Delivery');
    if (!DELIVERY_ID.test(delivery)) throw new PayloadError('X-GitHub-Delivery is not a delivery id');
    const deliveryId = delivery;
    const payload = parseJson(bodyText(request.body), 'body');
    if (!isObject(payload)) throw new PayloadError('body is not a JSON object');

    const event = request.headers['x-github-event'];
    if (!event) throw new PayloadError('missing X-GitHub-Event');
    if (event !== 'secret_scanning_alert') {
      return { deliveryId, reports: [], ignored: `event ${identifier(event) ?? '(unnamed)'} is not a secret scanning alert` };
    }
    const action = field(payload, 'action');
    if (typeof action !== 'string') throw new PayloadError('action is missing');
    if (!ACTIONABLE.has(action)) return { deliveryId, reports: [], ignored: `alert action ${identifier(action) ?? '(unnamed)'}` };

    const alert = field(payload, 'alert');
    if (!isObject(alert)) throw new PayloadError('alert is missing');
    // GitHub's validity check confirming the value is dead (after rekey revoked it): nothing to do.
    if (action === 'validated' && field(alert, 'validity') === 'inactive') return { deliveryId, reports: [], ignored: 'alert validated inactive' };
    const number = positiveInt(field(alert, 'number'));
    if (number === undefined) throw new PayloadError('alert.number is missing or not a positive integer');
    const repository = field(payload, 'repository');
    if (!isObject(repository)) throw new PayloadError('repository is missing');
    const owner = path(repository, 'owner', 'login');
    const repo = field(repository, 'name');
    if (typeof owner !== 'string' || !OWNER.test(owner)) throw new PayloadError('repository.owner.login is missing or not a GitHub login');
    if (typeof repo !== 'string' || !REPO.test(repo)) throw new PayloadError('repository.name is missing or not a repository name');
    const secretType = text(field(alert, 'secret_type'), MAX_TYPE_CHARS);
    if (!secretType) throw new PayloadError('alert.secret_type is missing');

    const privateRepo = field(repository, 'private');
    const isPublic = action === 'publicly_leaked' || field(alert, 'publicly_leaked') === true || privateRepo === false ? true : privateRepo === true ? false : undefined;
    const validity = VALIDITY[String(field(alert, 'validity'))];
    const exposedAt = date(field(alert, 'created_at'));
    const where = location({ repository: text(field(repository, 'full_name')) ?? `${owner}/${repo}`, url: text(field(alert, 'html_url')) });
    const locations: LeakLocation[] = where ? [where] : [];
    // The webhook normally omits the value; some schema versions document an optional `secret`.
    const secret = field(alert, 'secret');
    const value = typeof secret === 'string' && secret.length > 0 && secret.length <= MAX_VALUE_CHARS ? seal(secret) : undefined;

    const report: LeakReport = {
      source: 'github',
      sourceId: `${owner}/${repo}#${number}`,
      secretType,
      ...(value ? { value } : {}),
      fetch: { kind: 'github-alert', owner, repo, alertNumber: number },
      locations,
      ...(isPublic === undefined ? {} : { public: isPublic }),
      ...(validity ? { validity } : {}),
      ...(exposedAt ? { exposedAt } : {}),
      occurrences: 1,
    };
    return { deliveryId, reports: [report] };
  }
}

import { PayloadError } from '#core/errors.ts';
import type { LeakReport, ParsedDelivery } from '#core/leak.ts';
import type { Scanner, ScannerRequest } from '#core/ports/scanner.ts';
import { seal } from '#core/sealed.ts';
import {
  MAX_TYPE_CHARS,
  MAX_VALUE_CHARS,
  bodyText,
  CiReportScanner,
  checkCount,
  date,
  field,
  isObject,
  location,
  parseJson,
  positiveInt,
  text,
} from './common.ts';

// `https://host/owner/repo/blob/<commit>/path#L1` → `owner/repo` (GitHub, GitLab `/-/blob/`, Gitea).
const LINK_REPO = /^https?:\/\/[^/\s]+\/([^/\s]+\/[^/\s]+?)(?:\/-)?\/(?:blob|src|tree|commit)\//;

/**
 * Gitleaks `--report-format json` output: a JSON array of findings, posted by CI with
 * `Authorization: Bearer <REKEY_INGEST_TOKEN>`. One report per finding; the value is `Secret`,
 * the scanner id is gitleaks' own `Fingerprint` (`commit:file:rule:line`).
 */
export class GitleaksScanner extends CiReportScanner implements Scanner {
  readonly source = 'gitleaks' as const;

  parse(request: ScannerRequest): ParsedDelivery {
    const deliveryId = this.deliveryIdOf(request);
    const findings = parseJson(bodyText(request.body), 'body');
    // A clean scan is `[]`; `null` (some wrappers write it) means the same.
    if (findings === null) return { deliveryId, reports: [], ignored: 'no findings' };
    if (!Array.isArray(findings)) throw new PayloadError('body is not a JSON array of findings');
    checkCount(findings.length);
    const reports = findings.map((finding, index) => reportOf(finding, index + 1));
    if (!reports.length) return { deliveryId, reports, ignored: 'no findings' };
    return { deliveryId, reports };
  }
}

function reportOf(finding: unknown, n: number): LeakReport {
  if (!isObject(finding)) throw new PayloadError(`finding ${n} is not a JSON object`);
  const secret = field(finding, 'Secret');
  if (typeof secret !== 'string' || secret.length === 0) throw new PayloadError(`finding ${n} has no Secret`);
  if (secret.length > MAX_VALUE_CHARS) throw new PayloadError(`finding ${n} has a Secret longer than ${MAX_VALUE_CHARS} characters`);
  const secretType = text(field(finding, 'RuleID'), MAX_TYPE_CHARS) ?? text(field(finding, 'Description'), MAX_TYPE_CHARS);
  if (!secretType) throw new PayloadError(`finding ${n} has no RuleID`);

  const link = text(field(finding, 'Link'));
  const file = text(field(finding, 'File'));
  const line = positiveInt(field(finding, 'StartLine'));
  const commit = text(field(finding, 'Commit'), 64);
  const where = location({ repository: link ? LINK_REPO.exec(link)?.[1] : undefined, file, line, commit, url: link });
  const fingerprint = text(field(finding, 'Fingerprint'));
  // Older gitleaks and `--no-git` reports may lack a fingerprint: rebuild gitleaks' own shape.
  const sourceId = fingerprint ?? [commit, file, secretType, line].filter((p) => p !== undefined).join(':');
  const exposedAt = date(field(finding, 'Date'));

  return {
    source: 'gitleaks',
    sourceId,
    secretType,
    value: seal(secret),
    locations: where ? [where] : [],
    // gitleaks does not verify secrets and does not know the repository's visibility.
    validity: 'unknown',
    ...(exposedAt ? { exposedAt } : {}),
    occurrences: 1,
  };
}


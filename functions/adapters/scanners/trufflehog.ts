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
  path,
  positiveInt,
  text,
} from './common.ts';

/** trufflehog's source metadata kinds that carry git-like fields (file, commit, repository, line). */
const SOURCES = ['Git', 'Github', 'Gitlab', 'Bitbucket', 'Filesystem', 'Azure', 'Gerrit', 'Huggingface'] as const;

/**
 * TruffleHog v3 `--json` output, one finding per line, posted by CI with
 * `Authorization: Bearer <REKEY_INGEST_TOKEN>`. The value is `RawV2` when the detector sets it
 * (for URIs it is the full URL with its password; for Postgres the `postgresql://user:pass@host:port`
 * form), else `Raw`.
 */
export class TruffleHogScanner extends CiReportScanner implements Scanner {
  readonly source = 'trufflehog' as const;

  parse(request: ScannerRequest): ParsedDelivery {
    const deliveryId = this.deliveryIdOf(request);
    const lines = bodyText(request.body).split('\n');
    const reports: LeakReport[] = [];
    lines.forEach((raw, index) => {
      const line = raw.trim();
      if (!line) return;
      const n = index + 1;
      checkCount(reports.length + 1);
      const finding = parseJson(line, `line ${n}`);
      if (!isObject(finding)) throw new PayloadError(`line ${n} is not a JSON object`);
      reports.push(reportOf(finding, n));
    });
    if (!reports.length) return { deliveryId, reports, ignored: 'no findings' };
    return { deliveryId, reports };
  }
}

function reportOf(finding: Record<string, unknown>, n: number): LeakReport {
  const value = [field(finding, 'RawV2'), field(finding, 'Raw')].find((v): v is string => typeof v === 'string' && v.length > 0);
  if (!value) throw new PayloadError(`line ${n} has no Raw`);
  if (value.length > MAX_VALUE_CHARS) throw new PayloadError(`line ${n} has a Raw longer than ${MAX_VALUE_CHARS} characters`);
  const secretType = text(field(finding, 'DetectorName'), MAX_TYPE_CHARS);
  if (!secretType) throw new PayloadError(`line ${n} has no DetectorName`);

  const data = path(finding, 'SourceMetadata', 'Data');
  const kind = SOURCES.find((name) => isObject(field(data, name)));
  const meta = kind ? field(data, kind) : undefined;
  const where = location({
    repository: text(field(meta, 'repository')),
    file: text(field(meta, 'file')),
    line: positiveInt(field(meta, 'line')),
    commit: text(field(meta, 'commit'), 64),
    url: text(field(meta, 'link')),
  });
  // Only the GitHub source reports visibility (source_metadata.proto: public 0, private 1, shared 2,
  // unknown 3). TruffleHog marshals the generated Go structs, whose proto3 fields are `omitempty`:
  // a public repository's 0 is left out, so an absent visibility under Github means public.
  const visibility = kind === 'Github' ? (isObject(meta) && !Object.hasOwn(meta, 'visibility') ? 0 : field(meta, 'visibility')) : undefined;
  const isPublic = visibility === 0 || visibility === 'public' ? true : visibility === 1 || visibility === 'private' ? false : undefined;
  const verified = field(finding, 'Verified');
  const exposedAt = date(field(meta, 'timestamp'));

  return {
    source: 'trufflehog',
    // trufflehog has no finding id: detector and place identify it (the value never does).
    sourceId: [secretType, where?.repository, where?.commit, where?.file, where?.line].filter((p) => p !== undefined).join(':').slice(0, 512),
    secretType,
    value: seal(value),
    locations: where ? [where] : [],
    ...(isPublic === undefined ? {} : { public: isPublic }),
    // Unverified is not "inactive": verification may have been off, or the target unreachable.
    validity: verified === true ? 'active' : 'unknown',
    ...(exposedAt ? { exposedAt } : {}),
    occurrences: 1,
  };
}


import { createHash, createHmac, hkdfSync, scrypt } from 'node:crypto';
import type { Sealed } from './sealed.ts';
import type { CredentialKindRegistry, SensitiveForm } from './ports/credential-kind.ts';

/**
 * Keyed fingerprints of a secret's sensitive fields, so a leaked value is matched by lookup and
 * never by decrypting every secret. HMAC-SHA-256 under an index key: without the key a
 * fingerprint reveals nothing (not even whether two secrets share a password).
 *
 * Which texts are sensitive is each credential kind's business (`sensitiveForms`): a database's
 * password and connection URI, an IAM key's secret, id and the two run together, an API key. A
 * form is a short lower-case name kept with the fingerprint (`password`, `uri`, `secret-access-key`,
 * `access-key-id`, `key-pair`, `key`), plus `hmsl` and `principal` (below).
 */
export type FingerprintForm = string;
/** The forms rekey writes today (the index adapters accept any name of this shape: FORM_NAME). */
export const FINGERPRINT_FORMS: readonly FingerprintForm[] = ['password', 'uri', 'hmsl', 'secret-access-key', 'access-key-id', 'key-pair', 'key', 'principal'];
export const FORM_NAME = /^[a-z][a-z-]{0,31}$/;

export interface Fingerprint {
  form: FingerprintForm;
  value: string;
}

export function fingerprint(key: Buffer, text: string): string {
  return createHmac('sha256', key).update(text, 'utf8').digest('hex');
}

/** The index key derived from the store's master key, so a laptop needs one key, not two. */
export function deriveIndexKey(masterKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'rekey fingerprint index v1', 32));
}

// HasMySecretLeaked's public hashing (api.hasmysecretleaked.com/docs, ggshield `hmsl`):
// scrypt(secret, salt = SHA-256("GitGuardian"), N=2048, r=8, p=1, 32 bytes), hex.
const HMSL_PEPPER = createHash('sha256').update('GitGuardian').digest();
const HMSL_PARAMS = { N: 2048, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

/**
 * The HMSL hash GitGuardian puts in every incident (`incident.hmsl_hash`) instead of the secret.
 * Computed off the event loop (scrypt runs in libuv's pool: ~5 ms of CPU each).
 */
export function hmslHash(text: string): Promise<string> {
  return new Promise((resolve, reject) =>
    scrypt(text, HMSL_PEPPER, 32, HMSL_PARAMS, (error, key) => (error ? reject(error) : resolve(key.toString('hex')))),
  );
}

/** A GitGuardian `hmsl_hash` as the index keys it: the HMAC of the hash, never the hash itself. */
export const hmslFingerprint = (key: Buffer, hash: string): string => fingerprint(key, `hmsl:${hash.toLowerCase()}`);

/**
 * The principal fingerprint: which managed secret holds a principal (an IAM user) on a system. Not
 * a secret form — a scanner never reports it — but how a leaked key that rekey did not create is
 * traced to the managed secret of its user (remediation.ts, stray keys), without decrypting secrets.
 */
export const principalFingerprint = (key: Buffer, engine: string, principal: string): string => fingerprint(key, `principal\u0000${engine}\u0000${principal}`);

/** Credential-looking fields of a value no kind handles (a provider's admin secret, `{"token": …}`). */
const GENERIC_FIELDS = /^(password|passwd|token|secret|api[_-]?key|access[_-]?token|client[_-]?secret|private[_-]?key)$/i;

/**
 * The fingerprints indexed per version: each of its kind's sensitive forms, the HMSL hash of its
 * primary secret (`hmsl`: what GitGuardian reports in place of the value), and, for kinds that
 * trace stray keys (`ownerOf`), its principal. A value no kind handles (an admin secret without an
 * `engine`) is indexed by its credential-looking fields, so its leak still matches and is ticketed.
 * Budget on AWS (secret tags, 50 per secret, 5 versions kept): a database 3 per version, an IAM
 * key 5, an API key 2. One scrypt per stored value (~5 ms of CPU, off the event loop).
 */
export async function fingerprintsOfValue(key: Buffer, json: Sealed<string>, kinds: Pick<CredentialKindRegistry, 'forEngine'>): Promise<Fingerprint[]> {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(json.reveal()) as Record<string, unknown>;
  } catch {
    return [];
  }
  if (!value || typeof value !== 'object') return [];
  let forms: SensitiveForm[];
  let principal: string | undefined;
  let kind;
  try {
    kind = typeof value.engine === 'string' ? kinds.forEngine(value.engine) : undefined;
  } catch {
    kind = undefined;
  }
  if (kind) {
    forms = kind.sensitiveForms(json);
    if (kind.ownerOf && forms.length) {
      try {
        const summary = kind.describe(json, 'value');
        principal = principalFingerprint(key, summary.engine, summary.principal);
      } catch {
        principal = undefined;
      }
    }
  } else {
    forms = Object.entries(value)
      .filter(([field, text]) => GENERIC_FIELDS.test(field) && typeof text === 'string' && text.length >= 8)
      .map(([, text], i) => ({ form: 'password', text: text as string, hmsl: i === 0 }));
  }
  forms = forms.filter((f) => f.text.length > 0 && FORM_NAME.test(f.form));
  if (!forms.length) return [];
  const primary = forms.find((f) => f.hmsl);
  const hmsl = primary ? hmslHash(primary.text) : undefined;
  const out: Fingerprint[] = forms.map((f) => ({ form: f.form, value: fingerprint(key, f.text) }));
  if (hmsl) out.push({ form: 'hmsl', value: hmslFingerprint(key, await hmsl) });
  if (principal) out.push({ form: 'principal', value: principal });
  return out;
}

/**
 * Candidate texts from a leaked value as scanners report it: the value itself, and — when it is a
 * URI — its password and its URI without query or trailing slash.
 */
export function candidatesOfLeak(leaked: string): string[] {
  const text = leaked.trim();
  const out = new Set<string>([text]);
  // Userinfo runs to the LAST @ before the host: unencoded passwords may hold # ? and friends.
  const uri = /^([a-z][a-z0-9+.-]*):\/\/(\S+)@([^@/?#\s]+)(\/[^?#\s]*)?/i.exec(text);
  if (uri) {
    const [, scheme, userinfo, hostport, path] = uri;
    const cleanPath = path && path !== '/' ? path.replace(/\/$/, '') : '';
    out.add(`${scheme!.toLowerCase()}://${userinfo}@${hostport}${cleanPath}`);
    const colon = userinfo!.indexOf(':');
    if (colon >= 0) {
      const pass = userinfo!.slice(colon + 1);
      out.add(pass);
      try {
        out.add(decodeURIComponent(pass));
      } catch {
        // not percent-encoded: the raw form is already a candidate
      }
    }
  }
  return [...out];
}

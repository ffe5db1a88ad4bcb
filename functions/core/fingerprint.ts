import { createHash, createHmac, hkdfSync, scrypt } from 'node:crypto';
import type { Sealed } from './sealed.ts';

/**
 * Keyed fingerprints of a secret's sensitive fields, so a leaked value is matched by lookup and
 * never by decrypting every secret. HMAC-SHA-256 under an index key: without the key a
 * fingerprint reveals nothing (not even whether two secrets share a password).
 */
export type FingerprintForm = 'password' | 'uri' | 'hmsl';
export const FINGERPRINT_FORMS: readonly FingerprintForm[] = ['password', 'uri', 'hmsl'];

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

const SCHEMES: Record<string, string> = { postgres: 'postgres', mysql: 'mysql', mariadb: 'mariadb' };

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
 * The forms indexed per version: the password, the canonical connection URI
 * (`postgres://user:pass@host:port/db`), and the HMSL hash of the password — what GitGuardian
 * reports in place of the value (its database detectors are multi-match: host, port, user and
 * password, the password being the secret). Other URI spellings a scanner may report match through
 * `candidatesOfLeak`, which pulls the password out of any URI. Three per version keeps the AWS
 * index (secret tags, 50 per secret) small: 3 × 5 versions kept = 15. One scrypt per stored value
 * (~5 ms of CPU, off the event loop, while the store writes).
 */
export async function fingerprintsOfValue(key: Buffer, json: Sealed<string>): Promise<Fingerprint[]> {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(json.reveal()) as Record<string, unknown>;
  } catch {
    return [];
  }
  const password = typeof value.password === 'string' ? value.password : undefined;
  if (!password) return [];
  const hmsl = hmslHash(password);
  const out: Fingerprint[] = [{ form: 'password', value: fingerprint(key, password) }];
  const engine = typeof value.engine === 'string' ? value.engine.toLowerCase().replace(/^aurora-?/, '').replace('postgresql', 'postgres') || 'mysql' : '';
  const scheme = SCHEMES[engine];
  if (scheme && typeof value.username === 'string' && typeof value.host === 'string') {
    const port = value.port === undefined ? '' : `:${String(value.port)}`;
    const db = typeof value.dbname === 'string' ? `/${value.dbname}` : '';
    out.push({ form: 'uri', value: fingerprint(key, `${scheme}://${encodeURIComponent(value.username)}:${encodeURIComponent(password)}@${value.host}${port}${db}`) });
  }
  out.push({ form: 'hmsl', value: hmslFingerprint(key, await hmsl) });
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

import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

export const SCRAM_ITERATIONS = 4096;

/**
 * RFC 4013 SASLprep, reduced to the steps that change bytes (as libpq and node-postgres apply them
 * client-side before PBKDF2): non-ASCII spaces become U+0020, "mapped to nothing" characters go,
 * then NFKC. Without it a password not already in NFKC form would be stored under one key and
 * proven under another. ASCII passwords are unchanged.
 */
export function saslprep(password: string): string {
  return password
    .replace(/[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g, ' ')
    .replace(/[\u00AD\u034F\u1806\u180B\u180C\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/g, '')
    .normalize('NFKC');
}

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores in pg_authid.rolpassword (RFC 5802 / RFC 7677).
 * Sending this instead of the plaintext means no server log, pg_stat_activity row or error
 * message can ever show the password. The result holds only base64 characters, `$` and `:`.
 * PBKDF2 runs on libuv's thread pool so concurrent rotations do not stall the event loop.
 */
export async function scramSha256Verifier(password: string, options: { salt?: Buffer; iterations?: number } = {}): Promise<string> {
  const salt = options.salt ?? randomBytes(16);
  const iterations = options.iterations ?? SCRAM_ITERATIONS;
  const salted = await pbkdf2Async(Buffer.from(saslprep(password), 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

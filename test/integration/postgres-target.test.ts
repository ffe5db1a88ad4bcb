import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import pg from 'pg';
import { PostgresTarget } from '#adapters/targets/postgres.ts';
import { scramSha256Verifier } from '#adapters/targets/scram.ts';
import { TargetError, ValidationError } from '#core/errors.ts';
import type { Login } from '#core/ports/target.ts';
import { Sealed } from '#core/sealed.ts';
import { adminQuery, adminSecret, assertCanLogIn, assertCannotLogIn, openSession, servers, uniqueName } from '#test/helpers/databases.ts';
import { LeakGuard } from '#test/helpers/leak-guard.ts';
import { createUser, dropUser } from '#test/helpers/users.ts';

const created: string[] = [];
const password = (label = 'pw'): string => `${label}-${randomBytes(12).toString('base64url')}`;
const q = (name: string) => pg.escapeIdentifier(name);

let target: PostgresTarget;
let admin: Login;
const loginAs = (username: string, pw: string): Login => ({ ...admin, username, password: new Sealed(pw) });

async function user(name = uniqueName('rkpg'), pw = password('init')): Promise<{ name: string; pw: string; login: Login }> {
  created.push(name);
  await createUser('postgres', name, pw);
  return { name, pw, login: loginAs(name, pw) };
}

/** Runs `fn` on a fresh connection as `username`, independently of the target. */
async function asUser<T>(username: string, pw: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const s = servers().postgres;
  const client = new pg.Client({ host: s.host, port: s.port, user: username, password: pw, database: s.database });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const rolpassword = async (name: string): Promise<string> =>
  (await adminQuery<{ rolpassword: string }>('postgres', 'SELECT rolpassword FROM pg_authid WHERE rolname = $1', [name]))[0]!.rolpassword;

beforeAll(() => {
  target = new PostgresTarget();
  admin = adminSecret('postgres');
});

afterAll(async () => {
  await target.close();
  for (const name of created) {
    await dropUser('postgres', `${name}_clone`).catch(() => {});
    await dropUser('postgres', name).catch(() => {});
  }
});

describe('scramSha256Verifier', () => {
  it('formats a verifier PostgreSQL stores as-is: 4096 iterations, a 16-byte salt, two 32-byte keys', async () => {
    const verifier = await scramSha256Verifier('pencil');
    const match = /^SCRAM-SHA-256\$4096:([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(verifier);
    expect(match).not.toBeNull();
    expect(Buffer.from(match![1]!, 'base64')).toHaveLength(16);
    expect(Buffer.from(match![2]!, 'base64')).toHaveLength(32);
    expect(Buffer.from(match![3]!, 'base64')).toHaveLength(32);
  });

  it('uses a fresh random salt each time', async () => {
    expect(await scramSha256Verifier('pencil')).not.toBe(await scramSha256Verifier('pencil'));
  });

  it("derives keys that reproduce RFC 7677's example exchange (user, pencil)", async () => {
    const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
    const [, storedB64, serverB64] = /\$([^$:]+):([^$:]+)$/.exec(await scramSha256Verifier('pencil', { salt }))!;
    const authMessage = [
      'n=user,r=rOprNGfwEbeRWgbNEkqO',
      'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
      'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
    ].join(',');
    const serverSignature = createHmac('sha256', Buffer.from(serverB64!, 'base64')).update(authMessage).digest('base64');
    expect(serverSignature).toBe('6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
    // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage), and StoredKey = SHA256(ClientKey).
    const storedKey = Buffer.from(storedB64!, 'base64');
    const clientSignature = createHmac('sha256', storedKey).update(authMessage).digest();
    const proof = Buffer.from('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', 'base64');
    const clientKey = Buffer.from(proof.map((byte, i) => byte ^ clientSignature[i]!));
    expect(createHash('sha256').update(clientKey).digest().equals(storedKey)).toBe(true);
  });

  it('stored directly with ALTER ROLE, lets that password log in and refuses another', async () => {
    const u = await user();
    const next = password('scram');
    await adminQuery('postgres', `ALTER ROLE ${q(u.name)} PASSWORD ${pg.escapeLiteral(await scramSha256Verifier(next))}`);
    await assertCanLogIn('postgres', u.name, next);
    await assertCannotLogIn('postgres', u.name, `${next}x`);
    await assertCannotLogIn('postgres', u.name, u.pw);
  });

  it('applies SASLprep as clients do, so a password not in NFKC form (combining accent, ligature, no-break space) logs in', async () => {
    const u = await user();
    const next = `cafe\u0301-\uFB01-a\u00A0b-${randomBytes(4).toString('hex')}`;
    await adminQuery('postgres', `ALTER ROLE ${q(u.name)} PASSWORD ${pg.escapeLiteral(await scramSha256Verifier(next))}`);
    await assertCanLogIn('postgres', u.name, next);
  });
});

describe('PostgresTarget', () => {
  describe('setPassword', () => {
    afterEach(() => {
      vi.restoreAllMocks();
    });

    /** Every SQL text sent through any pg.Client (pooled or not) while `fn` runs. */
    async function sqlSentDuring(fn: () => Promise<void>): Promise<string[]> {
      const texts: string[] = [];
      const original = pg.Client.prototype.query;
      vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: unknown[]) {
        const first = args[0] as string | { text?: string };
        texts.push(typeof first === 'string' ? first : (first.text ?? ''));
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      } as typeof original);
      await fn();
      return texts;
    }

    it('stores a SCRAM-SHA-256 verifier in pg_authid, via admin and via self', async () => {
      const u = await user();
      const viaAdmin = password('admin');
      await target.setPassword(u.login, u.name, new Sealed(viaAdmin), { admin });
      expect(await rolpassword(u.name)).toMatch(/^SCRAM-SHA-256\$4096:/);
      const viaSelf = password('self');
      const before = await rolpassword(u.name);
      await target.setPassword(u.login, u.name, new Sealed(viaSelf), { self: [loginAs(u.name, viaAdmin)] });
      expect(await rolpassword(u.name)).toMatch(/^SCRAM-SHA-256\$4096:/);
      expect(await rolpassword(u.name)).not.toBe(before);
      await assertCanLogIn('postgres', u.name, viaSelf);
    });

    it('never sends the plaintext password in SQL text, only its verifier', async () => {
      const u = await user();
      const viaAdmin = `plain-${randomBytes(8).toString('hex')}`;
      const viaSelf = `plain-${randomBytes(8).toString('hex')}`;
      const texts = await sqlSentDuring(async () => {
        await target.setPassword(u.login, u.name, new Sealed(viaAdmin), { admin });
        await target.setPassword(u.login, u.name, new Sealed(viaSelf), { self: [loginAs(u.name, viaAdmin)] });
      });
      const alters = texts.filter((t) => t.includes('ALTER ROLE'));
      expect(alters).toHaveLength(2);
      for (const text of alters) expect(text).toMatch(/PASSWORD 'SCRAM-SHA-256\$4096:/);
      for (const text of texts) {
        expect(text).not.toContain(viaAdmin);
        expect(text).not.toContain(viaSelf);
      }
      await assertCanLogIn('postgres', u.name, viaSelf);
    });

    it("via the clone's own login, changes the clone's password and not the original's, although the clone runs as the original", async () => {
      const u = await user(uniqueName('rkpg_orig'));
      const clone = `${u.name}_clone`;
      await target.syncClone(admin, u.name, clone);
      const first = password('clone1');
      await target.setPassword(loginAs(clone, first), clone, new Sealed(first), { admin });
      const originalVerifier = await rolpassword(u.name);
      const second = password('clone2');
      await target.setPassword(loginAs(clone, second), clone, new Sealed(second), { self: [loginAs(clone, first)] });
      await assertCanLogIn('postgres', clone, second);
      await assertCannotLogIn('postgres', clone, first);
      expect(await rolpassword(u.name)).toBe(originalVerifier);
      await assertCanLogIn('postgres', u.name, u.pw);
    });

    it('refuses a self login for another user (it could only change its own password)', async () => {
      const u = await user();
      const other = await user();
      await expect(target.setPassword(u.login, u.name, new Sealed(password()), { self: [other.login] })).rejects.toThrow(ValidationError);
      await assertCanLogIn('postgres', u.name, u.pw);
    });
  });

  describe('syncClone', () => {
    it('makes objects the clone creates belong to the original, which can then use them', async () => {
      const u = await user(uniqueName('rkpg_orig'));
      const clone = `${u.name}_clone`;
      await target.syncClone(admin, u.name, clone);
      const clonePw = password('clone');
      await target.setPassword(loginAs(clone, clonePw), clone, new Sealed(clonePw), { admin });

      const table = uniqueName('rk_owned');
      const who = await asUser(clone, clonePw, async (client) => {
        await client.query(`CREATE TABLE public.${q(table)} (id int)`);
        await client.query(`INSERT INTO public.${q(table)} VALUES (1)`);
        return (await client.query<{ session_user: string; current_user: string }>('SELECT session_user, current_user')).rows[0]!;
      });
      expect(who).toEqual({ session_user: clone, current_user: u.name });
      const [owner] = await adminQuery<{ tableowner: string }>('postgres', 'SELECT tableowner FROM pg_tables WHERE tablename = $1', [table]);
      expect(owner!.tableowner).toBe(u.name);

      const rows = await asUser(u.name, u.pw, async (client) => {
        await client.query(`INSERT INTO public.${q(table)} VALUES (2)`);
        return (await client.query<{ id: number }>(`SELECT id FROM public.${q(table)} ORDER BY id`)).rows;
      });
      expect(rows.map((r) => r.id)).toEqual([1, 2]);
    });

    it('repairs a clone that lost its membership or its SET ROLE, and an original that lost LOGIN', async () => {
      const u = await user(uniqueName('rkpg_orig'));
      const clone = `${u.name}_clone`;
      await target.syncClone(admin, u.name, clone);
      await adminQuery('postgres', `REVOKE ${q(u.name)} FROM ${q(clone)}`);
      await adminQuery('postgres', `ALTER ROLE ${q(clone)} RESET role`);
      await adminQuery('postgres', `ALTER ROLE ${q(u.name)} NOLOGIN`);

      await target.syncClone(admin, u.name, clone);
      const clonePw = password('clone');
      await target.setPassword(loginAs(clone, clonePw), clone, new Sealed(clonePw), { admin });
      expect(await asUser(clone, clonePw, async (c) => (await c.query<{ current_user: string }>('SELECT current_user')).rows[0]!.current_user)).toBe(u.name);
      await assertCanLogIn('postgres', u.name, u.pw);
    });

    it('repairs a clone set to run as another role, and leaves a pair in shape alone', async () => {
      const u = await user(uniqueName('rkpg_orig'));
      const other = await user(uniqueName('rkpg_other'));
      const clone = `${u.name}_clone`;
      await target.syncClone(admin, u.name, clone);
      await adminQuery('postgres', `ALTER ROLE ${q(clone)} SET role = ${pg.escapeLiteral(other.name)}`);
      await target.syncClone(admin, u.name, clone);
      const clonePw = password('clone');
      await target.setPassword(loginAs(clone, clonePw), clone, new Sealed(clonePw), { admin });
      const currentUser = async () => asUser(clone, clonePw, async (c) => (await c.query<{ current_user: string }>('SELECT current_user')).rows[0]!.current_user);
      expect(await currentUser()).toBe(u.name);
      const [before] = await adminQuery<{ rolconfig: string[] }>('postgres', 'SELECT rolconfig FROM pg_roles WHERE rolname = $1', [clone]);
      await target.syncClone(admin, u.name, clone);
      const [after] = await adminQuery<{ rolconfig: string[] }>('postgres', 'SELECT rolconfig FROM pg_roles WHERE rolname = $1', [clone]);
      expect(after!.rolconfig).toEqual(before!.rolconfig);
      expect(await currentUser()).toBe(u.name);
    });

    it('pairs hostile names (quotes, semicolons, %, backslashes, mixed case, spaces) without running them as SQL', async () => {
      const canary = await user(uniqueName('rkc'));
      const tag = randomBytes(2).toString('hex');
      const names = [
        `w"i;DROP ROLE ${canary.name};--${tag}`,
        `w'i;DROP ROLE ${canary.name};--${tag}`,
        `O'Brien%\\${tag}`,
        `MixedCase ${tag}`,
        `$1 ?${tag}`,
      ];
      for (const name of names) {
        target.validateUsername(name, { alternating: true });
        const u = await user(name);
        const clone = `${name}_clone`;
        await target.syncClone(admin, name, clone);
        await target.syncClone(admin, name, clone); // the next rotation's sync leaves it in shape
        const clonePw = password('clone');
        await target.setPassword(loginAs(clone, clonePw), clone, new Sealed(clonePw), { admin });
        const who = await asUser(clone, clonePw, async (c) => (await c.query<{ session_user: string; current_user: string }>('SELECT session_user, current_user')).rows[0]!);
        expect(who).toEqual({ session_user: clone, current_user: name });
        await assertCanLogIn('postgres', name, u.pw);
      }
      // Had any name been spliced into SQL, the canary would be gone.
      await assertCanLogIn('postgres', canary.name, canary.pw);
    });

    it('throws ROLE_NOT_FOUND when the original does not exist, creating nothing', async () => {
      const missing = uniqueName('rkpg_missing');
      await expect(target.syncClone(admin, missing, `${missing}_clone`)).rejects.toMatchObject({ code: 'ROLE_NOT_FOUND' });
      expect(await adminQuery('postgres', 'SELECT 1 FROM pg_roles WHERE rolname = $1', [`${missing}_clone`])).toHaveLength(0);
    });
  });

  describe('endSessions', () => {
    it("ends the clone's sessions via the clone's own login although it runs as the original", async () => {
      const u = await user(uniqueName('rkpg_orig'));
      const clone = `${u.name}_clone`;
      await target.syncClone(admin, u.name, clone);
      const clonePw = password('clone');
      await target.setPassword(loginAs(clone, clonePw), clone, new Sealed(clonePw), { admin });
      const cloneSession = await openSession('postgres', clone, clonePw);
      const originalSession = await openSession('postgres', u.name, u.pw);
      try {
        expect(await target.endSessions(loginAs(clone, clonePw), clone, { self: [loginAs(clone, clonePw)] })).toBe(1);
        expect(await originalSession.alive()).toBe(true);
      } finally {
        await cloneSession.close();
        await originalSession.close();
      }
    });
  });

  describe('verify', () => {
    it('with ssl: true against a server without TLS, fails with TLS_FAILED instead of falling back to plaintext', async () => {
      const u = await user();
      const guard = new LeakGuard();
      guard.secret(u.pw);
      const error = await target.verify({ ...u.login, ssl: true }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TargetError);
      expect((error as TargetError).code).toBe('TLS_FAILED');
      guard.error('verify', error);
      guard.assertClean();
    });
  });

  describe('validateUsername', () => {
    const ascii = (n: number) => 'u'.repeat(n);

    it('accepts 63 bytes alone and refuses 64, naming the 63-byte limit', () => {
      expect(() => target.validateUsername(ascii(63), { alternating: false })).not.toThrow();
      expect(() => target.validateUsername(ascii(64), { alternating: false })).toThrow(/63 bytes/);
    });

    it('with alternating, refuses a name whose _clone form exceeds 63 bytes', () => {
      expect(() => target.validateUsername(ascii(57), { alternating: true })).not.toThrow();
      expect(() => target.validateUsername(ascii(58), { alternating: true })).toThrow(/_clone/);
      expect(() => target.validateUsername(`${ascii(57)}_clone`, { alternating: true })).not.toThrow();
    });

    it('counts bytes, not characters', () => {
      expect(() => target.validateUsername('é'.repeat(31), { alternating: false })).not.toThrow();
      expect(() => target.validateUsername('é'.repeat(32), { alternating: false })).toThrow(ValidationError);
    });

    it('refuses an over-long name in every method before sending any SQL', async () => {
      await expect(target.setPassword(admin, ascii(64), new Sealed(password()), { admin })).rejects.toThrow(ValidationError);
      await expect(target.endSessions(admin, ascii(64), { admin })).rejects.toThrow(ValidationError);
      await expect(target.syncClone(admin, ascii(60), `${ascii(60)}_clone`)).rejects.toThrow(ValidationError);
    });

    it('lets a 57-byte original and its 63-byte clone exist with their exact names', async () => {
      const name = `rkpg_${randomBytes(26).toString('hex')}`.slice(0, 57);
      target.validateUsername(name, { alternating: true });
      const u = await user(name);
      await target.syncClone(admin, name, `${name}_clone`);
      const rows = await adminQuery<{ rolname: string }>('postgres', 'SELECT rolname FROM pg_roles WHERE rolname = $1', [`${name}_clone`]);
      expect(rows.map((r) => r.rolname)).toEqual([`${name}_clone`]);
      await assertCanLogIn('postgres', u.name, u.pw);
    });
  });
});

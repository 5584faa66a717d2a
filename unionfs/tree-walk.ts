// Small helpers shared by the tree walkers: directory listings with checked names, relative path joins.
import { readdirSync } from 'node:fs';
import { InvalidInputError } from '../sys/errors.js';

/**
 * listNames returns the entry names of a directory, sorted bytewise. Throws InvalidInputError for a name that is
 * not valid UTF-8 (a change set and a layer tar name paths as UTF-8 strings).
 */
export function listNames(dir: string): string[] {
  const raw = readdirSync(dir, { encoding: 'buffer' });
  const names = raw.map((b) => {
    const s = b.toString('utf8');
    if (!Buffer.from(s, 'utf8').equals(b)) {
      throw new InvalidInputError(`${dir}/${b.toString('latin1')}: file name is not valid UTF-8`);
    }
    return s;
  });
  return names.sort(byteOrder);
}

/** byteOrder compares strings the way sortChanges does (UTF-16 code units, which is bytewise for BMP text). */
export function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** childPath joins a relative directory ('' for the root) and a name. */
export function childPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** parentPath is the relative directory of a relative path ('' for a top-level name). */
export function parentPath(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

/** yieldToLoop lets timers and I/O callbacks run during a long synchronous walk. */
export function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

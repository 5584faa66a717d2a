// Disk full, said plainly: an ENOSPC (or EDQUOT) anywhere in a write becomes one NoSpaceError naming the mount point
// that is full and what was being written, instead of whatever the stream it surfaced through makes of it ("not a
// valid tar archive", "ENOSPC: no space left on device, write").
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { NoSpaceError } from './errors.js';

const FULL = new Set(['ENOSPC', 'EDQUOT']);

/** isNoSpace tells whether an error (or one of its causes) is a full filesystem or a spent quota. */
export function isNoSpace(err: unknown): boolean {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 8; e = (e as Error).cause, depth++) {
    if (e instanceof NoSpaceError) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && FULL.has(code)) return true;
    if (/\bENOSPC\b|no space left on device/i.test(String((e as { message?: unknown }).message ?? ''))) return true;
  }
  return false;
}

/**
 * noSpace turns a disk-full error into a NoSpaceError about `path` (its mount point is named) and `what`; any other
 * error, and a NoSpaceError already made, is returned unchanged.
 */
export function noSpace(err: unknown, path: string, what: string): unknown {
  if (err instanceof NoSpaceError || !isNoSpace(err)) return err;
  const found = findNoSpace(err);
  return found ?? new NoSpaceError(mountPointOf(path), what, err);
}

function findNoSpace(err: unknown): NoSpaceError | undefined {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 8; e = (e as Error).cause, depth++)
    if (e instanceof NoSpaceError) return e;
  return undefined;
}

/** mountPointOf is the mount point that holds `path` (the longest matching one in /proc/self/mountinfo), else `path`. */
export function mountPointOf(path: string, mountinfo?: string): string {
  const abs = resolve(path);
  let text = mountinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/mountinfo', 'utf8');
    } catch {
      return abs;
    }
  }
  let best = '';
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (!field) continue;
    const mp = field.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    const inside = mp === '/' || abs === mp || abs.startsWith(`${mp}/`);
    if (inside && mp.length > best.length) best = mp;
  }
  return best || abs;
}

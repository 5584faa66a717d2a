// The native diff: the change set of a step, read from an overlay upperdir (cost grows with what changed).
import { constants, lstatSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import type { Change } from '../layers/model/changeset.js';
import { sortChanges } from '../layers/model/changeset.js';
import { TsbuildError, wrap } from '../sys/errors.js';
import { getXattrs, Lstat, lstatInto, majorMinor, XattrNames } from '../sys/libc.js';
import { isOpaqueDirectory, LowerView, type LowerEntry } from './lower-view.js';
import { childPath, listNames, yieldToLoop } from './tree-walk.js';
import { isComparedXattr, METACOPY_XATTR, REDIRECT_XATTR } from '../layers/tar/whiteout.js';

const { S_IFMT, S_IFDIR, S_IFCHR } = constants;

/** UpperdirNotDiffError: the upperdir uses redirects or metacopy, so it is not a diff of the lowers on its own. */
export class UpperdirNotDiffError extends TsbuildError {
  constructor(
    readonly path: string,
    xattr: string,
  ) {
    super('E_UPPER_NOT_DIFF', `${path} carries ${xattr}: this upperdir is not a plain diff`, {
      hint: 'mount with redirect_dir=off,metacopy=off (mountOverlay does), or use the manifest diff',
    });
  }
}

/**
 * diffUpperdir returns the change set an overlay upperdir holds, sorted with sortChanges. It reads only the
 * upperdir, plus the lowerdirs (top first) at the changed paths to tell 'add' from 'modify':
 * - a char 0/0 whiteout → delete (left out when the lowers have nothing there: it hides nothing);
 * - a directory with trusted.overlay.opaque=y → modify with opaque: true when the lowers have a directory there,
 *   and every entry below it is listed;
 * - a directory the lowers also have as a directory, with the same mode, owner, mtime and xattrs, is a parent
 *   copied up for a change below it and is not listed itself;
 * - anything else is listed: 'modify' if the lowers have the path, 'add' if not. The root itself never is.
 * Every change but a delete says whether the path is a directory (`dir`).
 * overlayfs xattrs (trusted.overlay.*) are never compared nor reported. Throws UpperdirNotDiffError when it meets a
 * redirect or metacopy xattr. The upperdir should not change meanwhile (unmount, or no process writing).
 */
export async function diffUpperdir(opts: { upperdir: string; lowerdirs: string[] }): Promise<Change[]> {
  const view = new LowerView(opts.lowerdirs);
  const changes: Change[] = [];
  const st = new Lstat(); // one statx buffer, filled per entry (no BigInt stats for the upper's entries)
  const xattrNames = new XattrNames();
  let seen = 0;

  const walk = async (dir: string, listAll: boolean): Promise<void> => {
    for (const name of listNames(join(opts.upperdir, dir))) {
      if (++seen % 4096 === 0) await yieldToLoop();
      const path = childPath(dir, name);
      const abs = join(opts.upperdir, path);
      // statx into the reused buffer; Node's lstat when that fails (its error names the call and the path, or it
      // works where statx is refused, as under an old seccomp profile)
      const e: EntryStat = lstatInto(abs, st) === 0 ? st : fromNode(lstatSync(abs, { bigint: true }));
      // most entries have no xattrs; a copied-up one has the overlay's own (its origin)
      const names = xattrNames.list(abs);
      const hasXattrs = names.length !== 0;
      for (const x of names) {
        if (x === REDIRECT_XATTR || x === METACOPY_XATTR) throw new UpperdirNotDiffError(abs, x);
      }
      const type = e.mode & S_IFMT;
      if (type !== S_IFDIR) {
        const inLowers = view.has(path); // no Node stats: only whether the lowers have the path
        if (type === S_IFCHR && e.rdevMajor === 0 && e.rdevMinor === 0) {
          // an overlay whiteout. Below an opaque or new directory nothing of the lowers shows: nothing to delete.
          if (!listAll && inLowers) changes.push({ path, kind: 'delete' });
        } else changes.push({ path, kind: inLowers ? 'modify' : 'add', dir: false });
        continue;
      }
      const lower = view.lookup(path);
      const kind = lower === undefined ? 'add' : 'modify';
      if (listAll || lower === undefined || !lower.st.isDirectory()) {
        changes.push({ path, kind, dir: true });
        await walk(path, true);
      } else if (hasXattrs && isOpaqueDirectory(abs)) {
        changes.push({ path, kind: 'modify', opaque: true, dir: true });
        await walk(path, true);
      } else {
        if (dirChanged(abs, e, hasXattrs, lower)) changes.push({ path, kind: 'modify', dir: true });
        await walk(path, false);
      }
    }
  };

  try {
    await walk('', false);
  } catch (e) {
    throw wrap(`diffing upperdir ${opts.upperdir}`, e);
  }
  return sortChanges(changes);
}

/** EntryStat: what the diff reads of an upper entry's lstat (a Lstat buffer has these fields). */
type EntryStat = Pick<Lstat, 'mode' | 'uid' | 'gid' | 'rdevMajor' | 'rdevMinor' | 'mtimeSeconds' | 'mtimeNanoseconds'>;

/** fromNode is the EntryStat of Node's BigInt lstat. */
function fromNode(s: BigIntStats): EntryStat {
  const sec = s.mtimeNs / 1_000_000_000n - (s.mtimeNs % 1_000_000_000n < 0n ? 1n : 0n); // the floor, as statx's
  const { major, minor } = majorMinor(Number(s.rdev));
  return {
    mode: Number(s.mode),
    uid: Number(s.uid),
    gid: Number(s.gid),
    rdevMajor: major,
    rdevMinor: minor,
    mtimeSeconds: Number(sec),
    mtimeNanoseconds: Number(s.mtimeNs - sec * 1_000_000_000n),
  };
}

/** dirChanged compares an upper directory with the lower one it was copied up from. */
function dirChanged(abs: string, st: EntryStat, hasXattrs: boolean, lower: LowerEntry): boolean {
  const l = lower.st;
  if (st.mode !== Number(l.mode) || st.uid !== Number(l.uid) || st.gid !== Number(l.gid)) return true;
  if (BigInt(st.mtimeSeconds) * 1_000_000_000n + BigInt(st.mtimeNanoseconds) !== l.mtimeNs) return true;
  return !sameXattrs(hasXattrs ? getXattrs(abs) : {}, getXattrs(lower.path));
}

/** sameXattrs compares two xattr sets, ignoring overlay bookkeeping and SELinux labels. */
export function sameXattrs(a: Record<string, Buffer>, b: Record<string, Buffer>): boolean {
  const ka = Object.keys(a).filter(isComparedXattr);
  const kb = Object.keys(b).filter(isComparedXattr);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => b[k] !== undefined && (a[k] as Buffer).equals(b[k] as Buffer));
}

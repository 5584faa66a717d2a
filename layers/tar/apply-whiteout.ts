// The whiteouts of a layer being applied (layers/tar/apply.ts): `<dir>/.wh.<name>` and `<dir>/.wh..wh..opq`, either
// carried out on a plain rootfs ('delete') or turned into overlayfs's own form ('overlay': char device 0/0 through
// host.mknod, the opaque xattr). The names and the overlay form are defined once, in layers/tar/whiteout.ts.
import { lstatSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { InvalidInputError, UnsafeEntryError } from '../../sys/errors.js';
import { setXattr } from '../../sys/libc.js';
import { dirnameOf, type ResolvedPath } from '../../sys/secure-path.js';
import { createFresh, markWritten, throughLower, mayRemove, type ApplyState } from './apply-state.js';
import {
  OCI_OPAQUE_NAME,
  OCI_WHITEOUT_PREFIX,
  OPAQUE_XATTR,
  OPAQUE_XATTR_VALUE,
  USER_OPAQUE_XATTR,
  OVERLAY_WHITEOUT_MAJOR,
  OVERLAY_WHITEOUT_MINOR,
  OVERLAY_WHITEOUT_MODE,
} from './whiteout.js';

/** AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`) starts with this: not part of the image. */
const WH_META = `${OCI_WHITEOUT_PREFIX}${OCI_WHITEOUT_PREFIX}`;

/** whiteout applies the whiteout entry `entry` (cleaned path rel, base name base, which starts with `.wh.`). */
export function whiteout(state: ApplyState, entry: string, rel: string, base: string): void {
  rel = throughLower(state, entry, rel); // a snapshot: where applying onto the lower layers would act
  if (base === OCI_OPAQUE_NAME) return opaque(state, entry, rel);
  if (base.startsWith(WH_META)) return; // AUFS metadata: not part of the image
  const name = base.slice(OCI_WHITEOUT_PREFIX.length);
  if (name === '') throw new InvalidInputError(`layer entry ${JSON.stringify(entry)} is a whiteout that names nothing`);
  if (name === '.' || name === '..') throw new UnsafeEntryError(entry, `whiteout of ${JSON.stringify(name)}`);
  const dir = dirnameOf(rel);
  const victim = dir === '' ? name : `${dir}/${name}`;
  if (state.whiteouts === 'overlay') {
    const p = state.resolver.resolve(entry, victim, { create: true }) as ResolvedPath;
    createFresh(state, entry, p, () =>
      state.host.mknod(p.abs, OVERLAY_WHITEOUT_MODE, OVERLAY_WHITEOUT_MAJOR, OVERLAY_WHITEOUT_MINOR),
    );
    markWritten(state, p.rel);
    return;
  }
  const p = state.resolver.resolve(entry, victim);
  if (p === undefined) return; // its directory is not there: nothing to hide
  const st = lstatSync(p.abs, { throwIfNoEntry: false });
  if (!st) return;
  mayRemove(state, p.rel);
  if (st.isDirectory()) rmSync(p.abs, { recursive: true, force: true });
  else unlinkSync(p.abs); // a symlink: remove the link, not what it points to
  if (st.isDirectory() || st.isSymbolicLink()) state.resolver.forget();
  state.dirs.delete(p.abs);
}

/** opaque handles `<dir>/.wh..wh..opq`: hide every lower child of dir (delete) or mark dir opaque (overlay). */
function opaque(state: ApplyState, entry: string, markerRel: string): void {
  const overlay = state.whiteouts === 'overlay';
  // Resolving the marker itself resolves its directory the way every other entry under it is resolved.
  const marker = state.resolver.resolve(entry, markerRel, { create: overlay });
  if (marker === undefined) return;
  const dirRel = dirnameOf(marker.rel);
  const dirAbs = state.resolver.abs(dirRel);
  if (overlay) {
    // rootless (a user namespace): the overlay is mounted with userxattr and reads its marks from user.*
    setXattr(dirAbs, state.host.caps().userns ? USER_OPAQUE_XATTR : OPAQUE_XATTR, Buffer.from(OPAQUE_XATTR_VALUE));
    markWritten(state, dirRel);
    return;
  }
  if (clearLower(state, dirRel)) state.resolver.forget();
}

/** clearLower removes the children of a directory that this layer did not write; true when it removed some. */
function clearLower(state: ApplyState, dirRel: string): boolean {
  let removed = false;
  for (const d of readdirSync(state.resolver.abs(dirRel), { withFileTypes: true })) {
    const childRel = dirRel === '' ? d.name : `${dirRel}/${d.name}`;
    if (!state.written.has(childRel)) {
      const abs = state.resolver.abs(childRel);
      rmSync(abs, { recursive: true, force: true });
      state.dirs.delete(abs);
      removed = true;
    } else if (d.isDirectory()) {
      removed = clearLower(state, childRel) || removed;
    }
  }
  return removed;
}

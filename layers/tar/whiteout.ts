// The two ways of saying "deleted" and "opaque": OCI layer tars (`.wh.` names) and kernel overlayfs directories
// (char device 0/0, `trusted.overlay.opaque=y`). Pure: no I/O; callers pass what lstat and getxattr returned.
// This is the one definition of both forms: layers/tar (create, apply), unionfs and convert import it from here.

const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;

/** An overlay whiteout is a character device (this file type, no permission bits) numbered 0/0. */
export const OVERLAY_WHITEOUT_MODE = S_IFCHR;
export const OVERLAY_WHITEOUT_MAJOR = 0;
export const OVERLAY_WHITEOUT_MINOR = 0;

/** OPAQUE_XATTR marks an overlay directory whose lower layers are hidden (value `y`). */
export const OPAQUE_XATTR = 'trusted.overlay.opaque';
/** The opaque mark of an overlay mounted with `userxattr` (rootless: a user namespace cannot write trusted.*). */
export const USER_OPAQUE_XATTR = 'user.overlay.opaque';
/** The names an opaque mark may have, the root form first: readers accept either. */
export const OPAQUE_XATTRS: readonly string[] = [OPAQUE_XATTR, USER_OPAQUE_XATTR];
/** The value OPAQUE_XATTR takes on an opaque directory. */
export const OPAQUE_XATTR_VALUE = 'y';
/** Present on an upper directory renamed with redirect_dir=on: the upperdir then no longer equals the diff. */
export const REDIRECT_XATTR = 'trusted.overlay.redirect';
/** Present on a metadata-only copy-up (metacopy=on): the upper file has no data of its own. */
export const METACOPY_XATTR = 'trusted.overlay.metacopy';

/** The OCI whiteout prefix: `<dir>/.wh.<name>` deletes `<dir>/<name>` from the lower layers. */
export const OCI_WHITEOUT_PREFIX = '.wh.';
/** The OCI opaque marker: `<dir>/.wh..wh..opq` hides everything the lower layers had below `<dir>`. */
export const OCI_OPAQUE_NAME = '.wh..wh..opq';

/** StatLike is the part of fs.Stats (number or bigint flavour) that whiteout detection reads. */
export interface StatLike {
  mode: number | bigint;
  rdev: number | bigint;
}

/** isOverlayWhiteout tells whether an lstat result is an overlay whiteout: a character device numbered 0/0. */
export function isOverlayWhiteout(st: StatLike): boolean {
  return (Number(st.mode) & S_IFMT) === S_IFCHR && Number(st.rdev) === 0;
}

/** isOpaqueValue tells whether an opaque xattr value means "opaque" (`y`; kernel 6.7+ also writes `x` on lower dirs
 * that merely contain xattr whiteouts, which is not opaque). */
export function isOpaqueValue(value: Uint8Array | undefined): boolean {
  return value !== undefined && value.length === 1 && value[0] === 0x79; // 'y'
}

/** isOverlayXattr tells whether an xattr is overlayfs bookkeeping (`trusted.overlay.*`, `user.overlay.*`): such
 * attributes describe the union, never the file, and never reach a change set or a layer. */
export function isOverlayXattr(name: string): boolean {
  return name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.');
}

/** isComparedXattr tells whether an xattr counts when deciding if a path changed: not overlay bookkeeping and not
 * the host's SELinux label (which layers do not carry either). */
export function isComparedXattr(name: string): boolean {
  return !isOverlayXattr(name) && name !== 'security.selinux';
}

/**
 * keepXattr tells whether an xattr belongs in a layer tar: overlayfs bookkeeping (`trusted.overlay.*`, and
 * `user.overlay.*` of rootless `userxattr` mounts) and the host's SELinux label (`security.selinux`) do not. The
 * same xattrs as isComparedXattr: what does not reach a layer does not make a path changed.
 */
export const keepXattr: (name: string) => boolean = isComparedXattr;

/** isOciWhiteoutName tells whether a base name is an OCI whiteout or opaque marker (anything starting `.wh.`). */
export function isOciWhiteoutName(base: string): boolean {
  return base.startsWith(OCI_WHITEOUT_PREFIX);
}

/** isOciOpaqueName tells whether a base name is the opaque marker `.wh..wh..opq`. */
export function isOciOpaqueName(base: string): boolean {
  return base === OCI_OPAQUE_NAME;
}

/**
 * ociWhiteoutTarget gives the base name an OCI whiteout deletes (`.wh.foo` → `foo`), or undefined for a name that is
 * not a plain whiteout: the opaque marker, other AUFS metadata (`.wh..wh.*`), an empty rest, or any other name.
 */
export function ociWhiteoutTarget(base: string): string | undefined {
  if (!base.startsWith(OCI_WHITEOUT_PREFIX) || base.startsWith(`${OCI_WHITEOUT_PREFIX}${OCI_WHITEOUT_PREFIX}`))
    return undefined;
  const rest = base.slice(OCI_WHITEOUT_PREFIX.length);
  return rest === '' || rest === '.' || rest === '..' || rest.includes('/') ? undefined : rest;
}

/** ociWhiteoutPath is the tar entry that deletes `path` (relative, '/'-separated): `<dir>/.wh.<base>`. */
export function ociWhiteoutPath(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? OCI_WHITEOUT_PREFIX + path : `${path.slice(0, i + 1)}${OCI_WHITEOUT_PREFIX}${path.slice(i + 1)}`;
}

/** ociOpaquePath is the tar entry that makes directory `path` opaque: `<path>/.wh..wh..opq`. */
export function ociOpaquePath(path: string): string {
  return `${path}/${OCI_OPAQUE_NAME}`;
}

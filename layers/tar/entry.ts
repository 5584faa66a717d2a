// Pure helpers for layer tar headers: file status → tar-stream header, whiteout markers, xattr filtering. No I/O
// here: layers/tar/create.ts does the reading. The entry order of a layer is layers/tar/plan-tree.ts's.
import type { Header } from 'tar-stream';
import { xattrRecords, type PaxValue } from './pax.js';

/** EntryHeader is what tar-stream's pack().entry() takes, with the PAX records it writes (after installPaxCodec). */
export type EntryHeader = Partial<Omit<Header, 'pax'>> & { name: string; pax?: Record<string, PaxValue> };

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;
const S_IFSOCK = 0o140000;

/** The largest value of an 8-byte octal ustar field (uid, gid) and of the 12-byte ones (size, mtime). */
const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;
/** tar-stream writes mtime through a 32-bit signed integer: larger values go to a PAX `mtime` record. */
const MAX_USTAR_MTIME = 2 ** 31 - 1;

export type EntryKind = 'file' | 'directory' | 'symlink' | 'character-device' | 'block-device' | 'fifo' | 'socket';

/** kindOf names the file type in a stat mode, or undefined for a type tar cannot hold. */
export function kindOf(mode: number): EntryKind | undefined {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'directory';
    case S_IFLNK:
      return 'symlink';
    case S_IFCHR:
      return 'character-device';
    case S_IFBLK:
      return 'block-device';
    case S_IFIFO:
      return 'fifo';
    case S_IFSOCK:
      return 'socket';
    default:
      return undefined;
  }
}

/** EntryStat is what a header needs from lstat, in plain numbers (seconds for mtime). */
export interface EntryStat {
  /** st_mode: file type and permission bits */
  mode: number;
  uid: number;
  gid: number;
  /** bytes; only used for regular files */
  size: number;
  /** whole seconds since the epoch (floor) */
  mtime: number;
}

export interface HeaderExtras {
  /** symlink target, or for a 'link' entry the name of the earlier entry */
  linkname?: string;
  /** write a hardlink entry ('link', size 0) instead of the stat's own type */
  hardlink?: boolean;
  devmajor?: number;
  devminor?: number;
  /** xattrs to record (already filtered by keepXattr) */
  xattrs?: Record<string, Uint8Array>;
  /** SOURCE_DATE_EPOCH in seconds */
  sourceDateEpoch?: number;
}

/** clampMtime returns `mtime`, or `sourceDateEpoch` when it is given and earlier. */
export function clampMtime(mtime: number, sourceDateEpoch: number | undefined): number {
  return sourceDateEpoch !== undefined && mtime > sourceDateEpoch ? sourceDateEpoch : mtime;
}

/**
 * headerFor builds the tar-stream header of one entry: `name` relative and '/'-separated (directories end in '/'),
 * permission bits incl. setuid/setgid/sticky, numeric uid/gid with empty uname/gname, mtime in whole seconds
 * (clamped to sourceDateEpoch), no atime/ctime. Values that a ustar field cannot hold (uid/gid ≥ 2^21, size ≥ 8 GiB,
 * mtime outside 0..2^31-1) also go into PAX records, so readers see the exact value. Throws on a socket or an
 * unknown type: the caller skips those.
 */
export function headerFor(name: string, st: EntryStat, extras: HeaderExtras = {}): EntryHeader {
  const kind = kindOf(st.mode);
  if (kind === undefined || kind === 'socket')
    throw new Error(`headerFor ${name}: no tar type for mode ${st.mode.toString(8)}`);
  const type: Header['type'] = extras.hardlink ? 'link' : kind;
  const size = type === 'file' ? st.size : 0;
  const mtime = clampMtime(st.mtime, extras.sourceDateEpoch);
  const pax: Record<string, PaxValue> = {};
  if (st.uid > MAX_OCTAL_7) pax.uid = String(st.uid);
  if (st.gid > MAX_OCTAL_7) pax.gid = String(st.gid);
  if (mtime < 0 || mtime > MAX_USTAR_MTIME) pax.mtime = String(mtime);
  if (size > MAX_OCTAL_11) pax.size = String(size);
  if (extras.xattrs && !extras.hardlink) Object.assign(pax, xattrRecords(extras.xattrs));
  const header: EntryHeader = {
    name,
    // tar-stream replaces a falsy mode by 0644/0755 and masks with 07777: keep the type bits so that mode 0 survives.
    mode: st.mode & (S_IFMT | 0o7777) || S_IFREG,
    uid: st.uid,
    gid: st.gid,
    size,
    mtime: new Date(Math.min(Math.max(mtime, 0), MAX_USTAR_MTIME) * 1000),
    type,
  };
  if (extras.linkname !== undefined) header.linkname = extras.linkname;
  if (type === 'character-device' || type === 'block-device') {
    header.devmajor = extras.devmajor ?? 0;
    header.devminor = extras.devminor ?? 0;
  }
  if (Object.keys(pax).length > 0) header.pax = pax;
  return header;
}

/**
 * markerHeader is the header of a whiteout or opaque marker: a regular file, size 0, mode 0, uid/gid 0 and mtime 0
 * (0 is never later than SOURCE_DATE_EPOCH, so clamping leaves it alone and markers are the same in every build).
 */
export function markerHeader(name: string): EntryHeader {
  return { name, mode: S_IFREG, uid: 0, gid: 0, size: 0, mtime: new Date(0), type: 'file' };
}

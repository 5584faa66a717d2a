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

// ─── the common header, written in place ───────────────────────────────────────────────────────────────────────

/** tar-stream's type flags (headers.js toTypeflag) of the types headerFor writes */
export const TYPEFLAG: Readonly<Record<Exclude<EntryKind, 'socket'> | 'link', number>> = {
  file: 0,
  link: 1,
  symlink: 2,
  'character-device': 3,
  'block-device': 4,
  directory: 5,
  fifo: 6,
};

/** isAsciiString tells whether every char of s is below 0x80 (its UTF-8 bytes are its chars). */
export function isAsciiString(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** putAscii writes a string's chars as bytes; returns their sum (for the checksum), or -1 when one is not ASCII. */
function putAscii(buf: Uint8Array, off: number, s: string): number {
  let sum = 0;
  let all = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    buf[off + i] = c;
    sum += c;
    all |= c;
  }
  return all > 0x7f ? -1 : sum;
}

/**
 * putOctal writes tar-stream's encodeOct(val, n): n octal digits zero-padded and a space, or n sevens and a space when
 * val needs more digits (val is a whole number ≥ 0 here). Returns the bytes' sum.
 */
function putOctal(buf: Uint8Array, off: number, val: number, n: 6 | 11): number {
  buf[off + n] = 32;
  if (val >= (n === 6 ? 0o1000000 : 0o100000000000)) {
    for (let i = 0; i < n; i++) buf[off + i] = 0x37;
    return 32 + 0x37 * n;
  }
  let sum = 32 + 0x30 * n;
  if (val < 0x40000000) {
    for (let i = off + n - 1, v = val | 0; i >= off; i--, v >>= 3) {
      buf[i] = 0x30 + (v & 7);
      sum += v & 7;
    }
  } else {
    // sizes and mtimes beyond 30 bits (up to 8^11)
    for (let i = off + n - 1, v = val; i >= off; i--) {
      const d = v % 8;
      v = (v - d) / 8;
      buf[i] = 0x30 + d;
      sum += d;
    }
  }
  return sum;
}

/** the sum of the magic and version bytes: "ustar\0" "00" */
const MAGIC_SUM = [0x75, 0x73, 0x74, 0x61, 0x72, 0x00, 0x30, 0x30].reduce((a, b) => a + b, 0);

/**
 * putUstarHeader writes at buf[off, off+512) (zeros there) the header that tar-stream's headers.encode writes for an
 * entry with no PAX records — uname, gname empty — and returns true; or returns false when encode would not take the
 * entry (a name or link target that is not ASCII or does not fit: the caller writes PAX then), having written
 * anything there.
 * Every number must be a whole number ≥ 0: `mode` the permission bits (encode masks with 07777), `size` below
 * 8^11 (encode switches to base-256 above), `mtime` seconds.
 */
export function putUstarHeader(
  buf: Uint8Array,
  off: number,
  name: string,
  mode: number,
  uid: number,
  gid: number,
  size: number,
  mtime: number,
  typeflag: number,
  linkname: string | undefined,
  devmajor: number,
  devminor: number,
): boolean {
  let prefix = '';
  if (name.length > 100) {
    if (!isAsciiString(name)) return false;
    // encode's split: move leading components into the 155-byte prefix until the rest fits
    while (name.length > 100) {
      const i = name.indexOf('/');
      if (i === -1) return false;
      prefix += prefix ? `/${name.slice(0, i)}` : name.slice(0, i);
      name = name.slice(i + 1);
    }
    if (prefix.length > 155) return false;
  }
  if (linkname && linkname.length > 100) return false;
  const nameSum = putAscii(buf, off, name);
  if (nameSum < 0) return false;
  let sum = 8 * 32 + MAGIC_SUM + 0x30 + typeflag + nameSum; // the checksum field counts as spaces
  sum += putOctal(buf, off + 100, mode & 0o7777, 6);
  sum += putOctal(buf, off + 108, uid, 6);
  sum += putOctal(buf, off + 116, gid, 6);
  sum += putOctal(buf, off + 124, size, 11);
  sum += putOctal(buf, off + 136, mtime, 11);
  buf[off + 156] = 0x30 + typeflag;
  if (linkname) {
    const linkSum = putAscii(buf, off + 157, linkname);
    if (linkSum < 0) return false;
    sum += linkSum;
  }
  buf[off + 257] = 0x75; // ustar\0
  buf[off + 258] = 0x73;
  buf[off + 259] = 0x74;
  buf[off + 260] = 0x61;
  buf[off + 261] = 0x72;
  buf[off + 263] = 0x30; // 00
  buf[off + 264] = 0x30;
  sum += putOctal(buf, off + 329, devmajor, 6);
  sum += putOctal(buf, off + 337, devminor, 6);
  if (prefix) sum += putAscii(buf, off + 345, prefix);
  putOctal(buf, off + 148, sum, 6);
  return true;
}

/** Whether a header needs PAX records by headerFor's rules (owners, mtime, size; xattrs are the caller's). */
export function needsPax(uid: number, gid: number, mtime: number, size: number): boolean {
  return uid > MAX_OCTAL_7 || gid > MAX_OCTAL_7 || mtime < 0 || mtime > MAX_USTAR_MTIME || size > MAX_OCTAL_11;
}

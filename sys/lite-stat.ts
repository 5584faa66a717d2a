// lstat without Node's Stats objects, for walks over many files (a COPY's sources: their selection, checksum and
// copy). Node 20 builds four Date objects for every Stats; a context of 2,000 files spent more in those and their
// garbage than in the lstat calls. liteLstat is one statx into a reused buffer (sys/libc.ts's Lstat), copied into a
// small object with the fields of fs.Stats that such walks read, computed as Node computes them (the same numbers:
// a memo of digests keyed by them keeps working).
import { constants as fsc, lstatSync, type Stats } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { Lstat, lstatInto, makedev } from './libc.js';

/** FileStat is what walks read of an lstat: fs.Stats has it all, and so has liteLstat's result. */
export type FileStat = Pick<
  Stats,
  | 'dev'
  | 'ino'
  | 'mode'
  | 'nlink'
  | 'uid'
  | 'gid'
  | 'rdev'
  | 'size'
  | 'atimeMs'
  | 'mtimeMs'
  | 'ctimeMs'
  | 'isFile'
  | 'isDirectory'
  | 'isSymbolicLink'
  | 'isCharacterDevice'
  | 'isBlockDevice'
  | 'isFIFO'
  | 'isSocket'
>;

const ENOENT = osConstants.errno.ENOENT;
const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK } = fsc;
const buf = new Lstat();

/**
 * liteLstat is lstat of `path` (the link itself); undefined for a missing path when `throwIfNoEntry` is false.
 * Errors are Node's (a failing statx is made again with Node's lstat, which reports it, or works where statx is
 * refused).
 */
export function liteLstat(path: string, opts: { throwIfNoEntry: false }): FileStat | undefined;
export function liteLstat(path: string): FileStat;
export function liteLstat(path: string, opts?: { throwIfNoEntry: false }): FileStat | undefined {
  const err = lstatInto(path, buf);
  if (err === ENOENT && opts) return undefined;
  if (err !== 0) return lstatSync(path, opts ?? {});
  return new LiteStat(buf);
}

/** the last device number converted: a walk stays on one filesystem, so its st_dev is converted once */
let lastDev = { major: -1, minor: -1, dev: 0 };

/** devNumber is libc's makedev (glibc's encoding) as the Number Node gives, without BigInt work per file */
function devNumber(major: number, minor: number): number {
  if (major === 0 && minor === 0) return 0; // rdev of everything but devices
  if (major !== lastDev.major || minor !== lastDev.minor)
    lastDev = { major, minor, dev: Number(makedev(major, minor)) };
  return lastDev.dev;
}

/** Node's msFromTimeSpec */
function ms(sec: number, nsec: number): number {
  return sec * 1e3 + nsec / 1e6;
}

class LiteStat implements FileStat {
  readonly dev: number;
  readonly ino: number;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev: number;
  readonly size: number;
  readonly atimeMs: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;

  constructor(s: Lstat) {
    this.dev = devNumber(s.devMajor, s.devMinor);
    this.ino = s.inoLow + s.inoHigh * 2 ** 32;
    this.mode = s.mode;
    this.nlink = s.nlink;
    this.uid = s.uid;
    this.gid = s.gid;
    this.rdev = devNumber(s.rdevMajor, s.rdevMinor);
    this.size = s.size;
    this.atimeMs = ms(s.atimeSeconds, s.atimeNanoseconds);
    this.mtimeMs = ms(s.mtimeSeconds, s.mtimeNanoseconds);
    this.ctimeMs = ms(s.ctimeSeconds, s.ctimeNanoseconds);
  }

  private is(type: number): boolean {
    return (this.mode & S_IFMT) === type;
  }
  isFile(): boolean {
    return this.is(S_IFREG);
  }
  isDirectory(): boolean {
    return this.is(S_IFDIR);
  }
  isSymbolicLink(): boolean {
    return this.is(S_IFLNK);
  }
  isCharacterDevice(): boolean {
    return this.is(S_IFCHR);
  }
  isBlockDevice(): boolean {
    return this.is(S_IFBLK);
  }
  isFIFO(): boolean {
    return this.is(S_IFIFO);
  }
  isSocket(): boolean {
    return this.is(S_IFSOCK);
  }
}

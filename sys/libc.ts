// Syscalls Node does not offer, through koffi. Only sys/ imports koffi.
// Every function throws a SysError shaped like Node's fs errors (code, syscall, path).
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';

const require = createRequire(import.meta.url);

/** SysError is a failed syscall, shaped like Node's own fs errors. */
export class SysError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly syscall: string;
  readonly path: string | undefined;
  constructor(syscall: string, errno: number, path?: string) {
    const code = errnoName(errno);
    super(`${syscall}${path === undefined ? '' : ` ${path}`}: ${code}`);
    this.errno = errno;
    this.code = code;
    this.syscall = syscall;
    this.path = path;
  }
  override get name(): string {
    return 'SysError';
  }
}

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(osConstants.errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

type Fn = (...args: unknown[]) => number;
interface Libc {
  koffi: { errno(): number; address(value: unknown): bigint };
  mount: Fn;
  umount2: Fn;
  mknod: Fn;
  lgetxattr: Fn;
  llistxattr: Fn;
  lsetxattr: Fn;
  lremovexattr: Fn;
  sethostname: Fn;
  pivot_root: Fn;
  chroot: Fn;
  unshare: Fn;
  statx: Fn;
  open: Fn;
  pread: Fn;
  close: Fn;
  readlink: Fn;
  /** glibc ≥ 2.30 */
  getdents64: Fn | undefined;
  preadAddress: Fn;
  /** not in every libc */
  syncFileRange: Fn | undefined;
  ioctl: Fn;
}

let cached: Libc | undefined;
function libc(): Libc {
  if (cached) return cached;
  // koffi is loaded lazily so that commands which never make a syscall start fast.
  const koffi = loadKoffi();
  const lib = koffi.load('libc.so.6');
  cached = {
    koffi,
    mount: lib.func(
      'int mount(const char *src, const char *target, const char *fstype, unsigned long flags, const char *data)',
    ),
    umount2: lib.func('int umount2(const char *target, int flags)'),
    mknod: lib.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
    lgetxattr: lib.func('intptr_t lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)'),
    llistxattr: lib.func('intptr_t llistxattr(const char *path, _Out_ uint8_t *list, size_t size)'),
    lsetxattr: lib.func(
      'int lsetxattr(const char *path, const char *name, const uint8_t *value, size_t size, int flags)',
    ),
    lremovexattr: lib.func('int lremovexattr(const char *path, const char *name)'),
    sethostname: lib.func('int sethostname(const char *name, size_t len)'),
    pivot_root: lib.func('long syscall(long nr, const char *newroot, const char *putold)'),
    chroot: lib.func('int chroot(const char *path)'),
    unshare: lib.func('int unshare(int flags)'),
    statx: lib.func('int statx(int dirfd, const char *path, int flags, unsigned int mask, void *buf)'),
    open: lib.func('int open(const char *path, int flags)'),
    pread: lib.func('intptr_t pread(int fd, void *buf, size_t count, int64_t offset)'),
    close: lib.func('int close(int fd)'),
    readlink: lib.func('intptr_t readlink(const char *path, void *buf, size_t size)'),
    getdents64: optional(() => lib.func('intptr_t getdents64(int fd, void *buf, size_t size)')),
    preadAddress: lib.func('intptr_t pread(int fd, uintptr_t buf, size_t count, int64_t offset)'),
    ioctl: lib.func('int ioctl(int fd, unsigned long request, _Inout_ uint8_t *arg)'),
    syncFileRange: optional(() =>
      lib.func('int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags)'),
    ),
  };
  return cached;
}

/** optional is a function libc may not have (an older glibc), or undefined. */
function optional(load: () => Fn): Fn | undefined {
  try {
    return load();
  } catch {
    return undefined;
  }
}

/**
 * loadKoffi loads koffi's native module for this machine directly where its package is known (glibc x86_64 and
 * arm64; libc.so.6 below is glibc's anyway; the package is the one koffi pins as an optional dependency): koffi's
 * entry finds the same file after reading node's ELF header to tell glibc from musl and wraps deprecated functions,
 * 4–8 ms at a cold start, about as long as all of `tsbuild run`'s own work. Anywhere else, or when that file does not
 * load, koffi's entry. (It returns the same module object: Node loads a .node file once per path.)
 */
function loadKoffi(): Libc['koffi'] & { load(path: string): { func(decl: string): Fn } } {
  const native: Record<string, string> = { x64: 'linux-x64/linux_x64', arm64: 'linux-arm64/linux_arm64' };
  const dir = process.platform === 'linux' ? native[process.arch] : undefined;
  if (dir) {
    try {
      return require(`@koromix/koffi-${dir}/koffi.node`);
    } catch {
      // not installed this way: koffi's entry below
    }
  }
  return require('koffi');
}

function check(ret: number, syscall: string, path?: string): number {
  if (ret < 0) throw new SysError(syscall, libc().koffi.errno(), path);
  return ret;
}

export const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  REMOUNT: 32,
  BIND: 4096,
  MOVE: 8192,
  REC: 16384,
  PRIVATE: 1 << 18,
  SLAVE: 1 << 19,
  STRICTATIME: 1 << 24,
} as const;
export const MNT_DETACH = 2;

export function mount(
  source: string | null,
  target: string,
  fstype: string | null,
  flags: number,
  data: string | null,
): void {
  check(libc().mount(source, target, fstype, flags, data), 'mount', target);
}

export function umount(target: string, flags = 0): void {
  check(libc().umount2(target, flags), 'umount', target);
}

/** mknod creates a device node or fifo; `mode` includes the file-type bits (S_IFCHR, S_IFBLK, S_IFIFO). */
export function mknod(path: string, mode: number, major = 0, minor = 0): void {
  check(libc().mknod(path, mode, makedev(major, minor)), 'mknod', path);
}

/** makedev packs a device number the way glibc does. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}

/** majorMinor splits a device number from fs.Stats.rdev. */
export function majorMinor(rdev: number): { major: number; minor: number } {
  const d = BigInt(rdev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return { major, minor };
}

const ENODATA = osConstants.errno.ENODATA;
const ENOTSUP = osConstants.errno.ENOTSUP ?? 95;
const ERANGE = osConstants.errno.ERANGE;
const ENOSYS = osConstants.errno.ENOSYS;

/** listXattrs returns the names of a path's extended attributes (the link itself, not its target). */
export function listXattrs(path: string): string[] {
  const l = libc();
  for (let size = 1024; ; size *= 4) {
    const buf = Buffer.alloc(size);
    const n = l.llistxattr(path, buf, size);
    if (n < 0) {
      const errno = l.koffi.errno();
      if (errno === ERANGE && size < 1 << 24) continue;
      if (errno === ENOTSUP) return [];
      throw new SysError('llistxattr', errno, path);
    }
    return splitNames(buf, n);
  }
}

/** getXattr returns one attribute's value, or undefined when the path does not have it. */
export function getXattr(path: string, name: string): Buffer | undefined {
  const l = libc();
  for (let size = 256; ; size *= 4) {
    const buf = Buffer.alloc(size);
    const n = l.lgetxattr(path, name, buf, size);
    if (n < 0) {
      const errno = l.koffi.errno();
      if (errno === ERANGE && size < 1 << 24) continue;
      if (errno === ENODATA || errno === ENOTSUP) return undefined;
      throw new SysError('lgetxattr', errno, path);
    }
    return Buffer.from(buf.subarray(0, n));
  }
}

/** getXattrs returns every extended attribute of a path, names sorted. */
export function getXattrs(path: string): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const name of listXattrs(path).sort()) {
    const v = getXattr(path, name);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

export function setXattr(path: string, name: string, value: Uint8Array): void {
  check(libc().lsetxattr(path, name, value, value.length, 0), 'lsetxattr', path);
}

export function removeXattr(path: string, name: string): void {
  const l = libc();
  if (l.lremovexattr(path, name) < 0) {
    const errno = l.koffi.errno();
    if (errno === ENODATA) return;
    throw new SysError('lremovexattr', errno, path);
  }
}

export function sethostname(name: string): void {
  check(libc().sethostname(name, Buffer.byteLength(name)), 'sethostname');
}

const SYS_pivot_root = 155; // x86_64
export function pivotRoot(newRoot: string, putOld: string): void {
  check(libc().pivot_root(SYS_pivot_root, newRoot, putOld), 'pivot_root', newRoot);
}

export function chroot(path: string): void {
  check(libc().chroot(path), 'chroot', path);
}

/** unshare in this (multi-threaded) process: only for flags that do not need a single thread. */
export function unshare(flags: number): void {
  check(libc().unshare(flags), 'unshare');
}

// ─── walking a tree fast (layers/tar/create.ts) ────────────────────────────────────────────────────────────────────
// Calls made once or more per entry of a tree of many thousands: results land in buffers the caller reuses, in plain
// numbers (no BigInt, no object per call), and a failure is returned as a negative errno rather than thrown, so the
// caller can redo the call with Node's own function when it wants Node's error.

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const STATX_BASIC_STATS = 0x7ff;

/**
 * Lstat is one struct statx, filled in place by lstatInto: the fields of lstat as plain numbers. `size` is exact up
 * to 2^53, as Number(stats.size) of Node's BigInt stats.
 */
export class Lstat {
  /** the struct statx (256 bytes; the kernel's layout, the same on every architecture) */
  readonly raw = new Uint32Array(64);
  get nlink(): number {
    return this.raw[4] as number;
  }
  get uid(): number {
    return this.raw[5] as number;
  }
  get gid(): number {
    return this.raw[6] as number;
  }
  /** st_mode: file type and permission bits */
  get mode(): number {
    return (this.raw[7] as number) & 0xffff;
  }
  get inoLow(): number {
    return this.raw[8] as number;
  }
  get inoHigh(): number {
    return this.raw[9] as number;
  }
  get size(): number {
    return (this.raw[10] as number) + (this.raw[11] as number) * 2 ** 32;
  }
  /** atime and ctime, as mtime below: whole seconds (the floor) and nanoseconds */
  get atimeSeconds(): number {
    return (this.raw[16] as number) + ((this.raw[17] as number) | 0) * 2 ** 32;
  }
  get atimeNanoseconds(): number {
    return this.raw[18] as number;
  }
  get ctimeSeconds(): number {
    return (this.raw[24] as number) + ((this.raw[25] as number) | 0) * 2 ** 32;
  }
  get ctimeNanoseconds(): number {
    return this.raw[26] as number;
  }
  /** mtime in whole seconds (the floor: the nanoseconds are never negative) */
  get mtimeSeconds(): number {
    return (this.raw[28] as number) + ((this.raw[29] as number) | 0) * 2 ** 32;
  }
  get mtimeNanoseconds(): number {
    return this.raw[30] as number;
  }
  get rdevMajor(): number {
    return this.raw[32] as number;
  }
  get rdevMinor(): number {
    return this.raw[33] as number;
  }
  get devMajor(): number {
    return this.raw[34] as number;
  }
  get devMinor(): number {
    return this.raw[35] as number;
  }
}

/** lstatInto is lstat (statx without following a last symlink) of `path` into `into`: 0, or the errno. */
export function lstatInto(path: string, into: Lstat): number {
  const l = libc();
  return l.statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, into.raw) < 0 ? l.koffi.errno() : 0;
}

/**
 * XattrNames lists the xattr names of paths (the links themselves) with one llistxattr per path into a buffer it
 * reuses: most paths have none, and the few that have some (an overlay copy-up's origin) need no second call.
 */
export class XattrNames {
  private readonly buf = Buffer.allocUnsafe(4096);

  /** list returns the names of `path`'s xattrs; what does not fit, or fails, goes to listXattrs (its names or its error). */
  list(path: string): readonly string[] {
    const n = libc().llistxattr(path, this.buf, this.buf.length) as number;
    if (n === 0) return NO_NAMES;
    if (n < 0) return listXattrs(path);
    return splitNames(this.buf, n);
  }
}

const NO_NAMES: readonly string[] = Object.freeze([]);

/** splitNames reads llistxattr's list: names, each ended by a NUL. */
function splitNames(buf: Buffer, n: number): string[] {
  return buf
    .subarray(0, n)
    .toString('utf8')
    .split('\0')
    .filter((s) => s.length > 0);
}

/** O_CLOEXEC of Linux's generic ABI (x86-64, arm64, riscv, mips; not alpha, parisc or sparc) */
const O_CLOEXEC = 0o2000000;

/** openFd is open(2) with O_CLOEXEC added, as libuv opens: a file descriptor, or minus the errno. */
export function openFd(path: string, flags: number): number {
  const l = libc();
  const fd = l.open(path, flags | O_CLOEXEC);
  return fd < 0 ? -l.koffi.errno() : fd;
}

/** preadInto is pread(2) into `buf` (a whole Buffer or a view of one): the bytes read, or minus the errno. */
export function preadInto(fd: number, buf: Uint8Array, position: number): number {
  const l = libc();
  const n = l.pread(fd, buf, buf.length, position);
  return n < 0 ? -l.koffi.errno() : n;
}

/**
 * ReadTarget reads files into parts of one buffer without a view per read (making a Buffer view costs more than a
 * small pread): its memory's address is taken once (an ArrayBuffer's memory never moves, and the target keeps the
 * buffer alive), and every read is checked to lie inside it.
 */
export class ReadTarget {
  private readonly address: number;
  constructor(readonly buf: Uint8Array) {
    this.address = Number(libc().koffi.address(buf));
  }

  /** pread is pread(2) of `length` bytes at file offset `position` into buf[offset…]: the bytes read, or minus the errno. */
  pread(fd: number, offset: number, length: number, position: number): number {
    if (!(offset >= 0 && length >= 0 && offset + length <= this.buf.length))
      throw new RangeError(`pread of ${length} bytes at ${offset} outside a buffer of ${this.buf.length}`);
    const l = libc();
    const n = l.preadAddress(fd, this.address + offset, length, position);
    return n < 0 ? -l.koffi.errno() : n;
  }
}

/** SYNC_FILE_RANGE_WRITE of sync_file_range(2): start writing back the range's dirty pages, without waiting. */
const SYNC_FILE_RANGE_WRITE = 2;

/**
 * startWriteback asks the kernel to start writing bytes [offset, offset + length) of a file to disk and returns
 * without waiting (sync_file_range(2) with SYNC_FILE_RANGE_WRITE): a later fsync then has only the rest to wait for.
 * It is only a hint: it gives no durability, and its failure (or a libc without it) is ignored.
 */
export function startWriteback(fd: number, offset: number, length: number): void {
  libc().syncFileRange?.(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}

/** closeFd is close(2); its errors are ignored (a file only read from). */
export function closeFd(fd: number): void {
  libc().close(fd);
}

/**
 * readlinkInto is readlink(2) of `path` into `buf`: the target's length in bytes, or minus the errno. A length equal
 * to buf.length may be a truncated target.
 */
export function readlinkInto(path: string, buf: Uint8Array): number {
  const l = libc();
  const n = l.readlink(path, buf, buf.length);
  return n < 0 ? -l.koffi.errno() : n;
}

/**
 * readDirents is getdents64(2) on a directory's file descriptor (openFd with O_DIRECTORY): how many bytes of
 * `struct linux_dirent64` records it put in `buf` (0 at the end of the directory), or minus the errno (ENOSYS: a libc
 * without getdents64, before glibc 2.30). A record: u64
 * d_ino, s64 d_off, u16 d_reclen at 16, u8 d_type at 18, the NUL-terminated name from 19.
 */
export function readDirents(fd: number, buf: Uint8Array): number {
  const l = libc();
  if (!l.getdents64) return -ENOSYS;
  const n = l.getdents64(fd, buf, buf.length);
  return n < 0 ? -l.koffi.errno() : n;
}

// _IOR('f', 1, long) and _IOW('f', 2, long) as x86_64 and arm64 encode them; the kernel reads and writes an int
const FS_IOC_GETFLAGS = 0x80086601;
const FS_IOC_SETFLAGS = 0x40086602;
const FS_TOPDIR_FL = 0x00020000;

/**
 * spreadSubdirectories sets the "top of a directory hierarchy" attribute on `dir` (`chattr +T`, FS_TOPDIR_FL), unless
 * it is set: ext4 then places each directory made in `dir` in a block group of its own choosing (Orlov), as it does
 * for directories made in `/`, instead of beside `dir`. For the store's scratch directories, where trees of
 * thousands of directories are made and removed all the time, this matters on an ext4 without a journal: there,
 * the inode allocator skips every inode of the group freed in the last 30 s, reading its inode table block each
 * time, and a tree made just after another was removed paid 0.2–0.5 s for 1,100 mkdirs instead of 0.02 s. Returns
 * whether the attribute is set; a filesystem without it (tmpfs, xfs…) or any error leaves things as they are.
 */
export function spreadSubdirectories(dir: string): boolean {
  if (process.platform !== 'linux' || (process.arch !== 'x64' && process.arch !== 'arm64')) return false;
  let fd: number;
  try {
    fd = openSync(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW);
  } catch {
    return false;
  }
  try {
    const l = libc();
    const flags = Buffer.alloc(8);
    if (l.ioctl(fd, FS_IOC_GETFLAGS, flags) < 0) return false;
    const now = flags.readInt32LE(0);
    if (now & FS_TOPDIR_FL) return true;
    flags.writeInt32LE(now | FS_TOPDIR_FL, 0);
    return l.ioctl(fd, FS_IOC_SETFLAGS, flags) === 0;
  } catch {
    return false; // no koffi here: the attribute is only an optimisation
  } finally {
    closeSync(fd);
  }
}

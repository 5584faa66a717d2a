// Syscalls Node does not offer, through koffi. Only sys/ imports koffi.
// Every function throws a SysError shaped like Node's fs errors (code, syscall, path).
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
  koffi: { errno(): number };
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
  };
  return cached;
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
    return buf
      .subarray(0, n)
      .toString('utf8')
      .split('\0')
      .filter((s) => s.length > 0);
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

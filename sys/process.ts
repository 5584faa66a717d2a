// Process-level syscalls through koffi that sys/libc.ts does not cover: credentials, capabilities, prctl, execve,
// posix_spawn, waitpid, terminals. Used by the Node executor (sys/nsexec.ts) and by the runtime's pty handling.
// Every function throws a SysError (code such as 'EPERM') on failure.
import { closeSync, openSync, constants as fsConstants } from 'node:fs';
import { createRequire } from 'node:module';
import { SysError } from './libc.js';

const require = createRequire(import.meta.url);

type Fn = (...args: unknown[]) => number;
interface Lib {
  koffi: { errno(): number };
  prctl: Fn;
  syscall3: Fn;
  closeRange: Fn;
  fcntl: Fn;
  setgroups: Fn;
  setresuid: Fn;
  setresgid: Fn;
  setsid: Fn;
  ioctl: Fn;
  fchdir: Fn;
  execve: Fn;
  signal: (sig: number, handler: null) => unknown;
  sigprocmask: Fn;
  socket: Fn;
  close: Fn;
  posixSpawn: Fn;
  spawnattrInit: Fn;
  spawnattrSetflags: Fn;
  spawnattrSetsigmask: Fn;
  spawnattrSetsigdefault: Fn;
  spawnattrSetpgroup: Fn;
  waitpid: Fn;
  seccomp: Fn;
  setrlimit: Fn;
  mountSetattr: Fn;
}

let cached: Lib | undefined;
function lib(): Lib {
  if (cached) return cached;
  const koffi = require('koffi');
  const l = koffi.load('libc.so.6');
  koffi.struct('tsbuild_sock_fprog', { len: 'uint16_t', filter: 'uint8_t *' });
  koffi.struct('tsbuild_rlimit', { cur: 'uint64_t', max: 'uint64_t' });
  koffi.struct('tsbuild_mount_attr', { set: 'uint64_t', clr: 'uint64_t', propagation: 'uint64_t', userns: 'uint64_t' });
  cached = {
    koffi,
    prctl: l.func('int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)'),
    syscall3: l.func('long syscall(long nr, uint8_t *a, uint8_t *b)'),
    closeRange: l.func('long syscall(long nr, unsigned int first, unsigned int last, unsigned int flags)'),
    fcntl: l.func('int fcntl(int fd, int cmd, int arg)'),
    setgroups: l.func('int setgroups(size_t size, const uint32_t *list)'),
    setresuid: l.func('int setresuid(uint32_t r, uint32_t e, uint32_t s)'),
    setresgid: l.func('int setresgid(uint32_t r, uint32_t e, uint32_t s)'),
    setsid: l.func('int setsid()'),
    ioctl: l.func('int ioctl(int fd, unsigned long request, uint8_t *arg)'),
    fchdir: l.func('int fchdir(int fd)'),
    execve: l.func('int execve(const char *path, const char **argv, const char **envp)'),
    signal: l.func('void *signal(int sig, void *handler)'),
    sigprocmask: l.func('int sigprocmask(int how, const uint8_t *set, uint8_t *old)'),
    socket: l.func('int socket(int domain, int type, int protocol)'),
    close: l.func('int close(int fd)'),
    posixSpawn: l.func(
      'int posix_spawn(_Out_ int *pid, const char *path, void *actions, uint8_t *attr, const char **argv, const char **envp)',
    ),
    spawnattrInit: l.func('int posix_spawnattr_init(uint8_t *attr)'),
    spawnattrSetflags: l.func('int posix_spawnattr_setflags(uint8_t *attr, short flags)'),
    spawnattrSetsigmask: l.func('int posix_spawnattr_setsigmask(uint8_t *attr, const uint8_t *set)'),
    spawnattrSetsigdefault: l.func('int posix_spawnattr_setsigdefault(uint8_t *attr, const uint8_t *set)'),
    spawnattrSetpgroup: l.func('int posix_spawnattr_setpgroup(uint8_t *attr, int pgroup)'),
    waitpid: l.func('int waitpid(int pid, _Out_ int *status, int options)'),
    seccomp: l.func('long syscall(long nr, unsigned int op, unsigned int flags, const tsbuild_sock_fprog *prog)'),
    setrlimit: l.func('int setrlimit(int resource, const tsbuild_rlimit *rl)'),
    mountSetattr: l.func(
      'long syscall(long nr, int dirfd, const char *path, unsigned int flags, const tsbuild_mount_attr *attr, size_t size)',
    ),
  };
  return cached;
}

/** loadProcessLib loads koffi and libc now (before a pivot_root takes node_modules out of sight). */
export function loadProcessLib(): void {
  lib();
}

function check(ret: number, syscall: string, path?: string): number {
  if (ret < 0) throw new SysError(syscall, lib().koffi.errno(), path);
  return ret;
}

export const PR = { SET_PDEATHSIG: 1, CAPBSET_DROP: 24, SET_NO_NEW_PRIVS: 38 } as const;

export function prctl(option: number, a2 = 0, a3 = 0, a4 = 0, a5 = 0): number {
  return check(lib().prctl(option, a2, a3, a4, a5), 'prctl');
}

const SYS_seccomp = 317; // x86_64
const SECCOMP_SET_MODE_FILTER = 1;
const SECCOMP_FILTER_FLAG_TSYNC = 1;

/**
 * installSeccomp installs a BPF program (struct sock_filter[] bytes) on every thread of this process; the command
 * execve'd or spawned later inherits it. Needs no_new_privs (or CAP_SYS_ADMIN).
 */
export function installSeccomp(program: Buffer): void {
  const r = lib().seccomp(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, {
    len: program.length / 8,
    filter: program,
  });
  // With TSYNC, a positive result is the id of a thread that could not be synchronized.
  if (r > 0) throw new SysError('seccomp(TSYNC)', 16 /* EBUSY */);
  check(r, 'seccomp');
}

const SYS_mount_setattr = 442;
const AT_FDCWD = -100;
const AT_RECURSIVE = 0x8000;

/**
 * setMountAttr applies MOUNT_ATTR_* bits to the mount at `path` and every mount below it. Throws SysError ENOSYS on
 * kernels before 5.12 (the caller falls back to a bind remount).
 */
export function setMountAttr(path: string, set: number): void {
  const attr = { set: BigInt(set), clr: 0n, propagation: 0n, userns: 0n };
  check(lib().mountSetattr(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, attr, 32), 'mount_setattr', path);
}

/** RLIM_INFINITY as setrlimit takes it. */
export const RLIM_INFINITY = 0xffffffffffffffffn;

/** setRlimit sets a resource limit (RLIMIT_* number) of this process; the command inherits it. */
export function setRlimit(resource: number, soft: bigint, hard: bigint): void {
  check(lib().setrlimit(resource, { cur: soft, max: hard }), 'setrlimit');
}

/** dropBoundingCapabilities removes from the bounding set every capability whose bit is not in `keep`. */
export function dropBoundingCapabilities(keep: bigint): void {
  for (let cap = 0; cap < 64; cap++) {
    if (keep & (1n << BigInt(cap))) continue;
    if (lib().prctl(PR.CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      const errno = lib().koffi.errno();
      if (errno === 22) break; // EINVAL: past the kernel's last capability
      throw new SysError('prctl(PR_CAPBSET_DROP)', errno);
    }
  }
}

const SYS_capset = 126; // x86_64
const CAP_V3 = 0x20080522;

/**
 * setCapabilities sets the calling thread's effective and permitted sets to `caps` and clears the inheritable set.
 * (Capabilities are per thread: threads created later, and children forked from this thread, inherit them.)
 */
export function setCapabilities(caps: bigint): void {
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32LE(CAP_V3, 0);
  hdr.writeInt32LE(0, 4);
  const data = Buffer.alloc(24);
  const lo = Number(caps & 0xffffffffn);
  const hi = Number((caps >> 32n) & 0xffffffffn);
  data.writeUInt32LE(lo, 0); // effective
  data.writeUInt32LE(lo, 4); // permitted
  data.writeUInt32LE(hi, 12);
  data.writeUInt32LE(hi, 16);
  check(lib().syscall3(SYS_capset, hdr, data), 'capset');
}

/** setUser switches every thread to the uid, gid and supplementary groups (glibc applies set*id to all threads). */
export function setUser(uid: number, gid: number, groups: number[]): void {
  check(lib().setgroups(groups.length, groups.length ? Uint32Array.from(groups) : null), 'setgroups');
  check(lib().setresgid(gid, gid, gid), 'setresgid');
  check(lib().setresuid(uid, uid, uid), 'setresuid');
}

export function setsid(): void {
  check(lib().setsid(), 'setsid');
}

const TIOCSCTTY = 0x540e;
const TIOCSWINSZ = 0x5414;
const TIOCSPGRP = 0x5410;
const TIOCGPTN = 0x80045430;
const TIOCSPTLCK = 0x40045431;

/** setControllingTerminal makes `fd` (a terminal) the controlling terminal of the calling session leader. */
export function setControllingTerminal(fd: number): void {
  check(lib().ioctl(fd, TIOCSCTTY, null), 'ioctl(TIOCSCTTY)');
}

/** setForegroundGroup makes process group `pgid` the foreground group of the terminal `fd` (tcsetpgrp). */
export function setForegroundGroup(fd: number, pgid: number): void {
  const arg = Buffer.alloc(4);
  arg.writeInt32LE(pgid, 0);
  check(lib().ioctl(fd, TIOCSPGRP, arg), 'ioctl(TIOCSPGRP)');
}

export function fchdir(fd: number): void {
  check(lib().fchdir(fd), 'fchdir');
}

/**
 * prepareExec undoes what Node did to this process that an exec'd command would inherit: signals ignored (SIGPIPE)
 * or blocked, and close-on-exec on stdin, stdout and stderr (Node sets it at startup).
 */
export function prepareExec(): void {
  const l = lib();
  for (let sig = 1; sig < 32; sig++) if (sig !== 9 && sig !== 19) l.signal(sig, null);
  l.sigprocmask(2 /* SIG_SETMASK */, Buffer.alloc(128), null);
  for (let fd = 0; fd <= 2; fd++) l.fcntl(fd, 2 /* F_SETFD */, 0);
}

const SYS_close_range = 436;
const CLOSE_RANGE_CLOEXEC = 4;

/** closeOnExecFrom marks every file descriptor from `first` up close-on-exec, so the command inherits none of them. */
export function closeOnExecFrom(first: number): void {
  check(lib().closeRange(SYS_close_range, first, 0xffffffff, CLOSE_RANGE_CLOEXEC), 'close_range');
}

/** execve replaces the whole (multi-threaded) process; it returns only by throwing. */
export function execve(path: string, argv: string[], env: string[]): never {
  lib().execve(path, [...argv, null], [...env, null]);
  throw new SysError('execve', lib().koffi.errno(), path);
}

/** spawnProcess starts `path` with posix_spawn in its own process group, signals at their defaults; returns the pid. */
export function spawnProcess(path: string, argv: string[], env: string[]): number {
  const l = lib();
  const attr = Buffer.alloc(1024);
  check(l.spawnattrInit(attr), 'posix_spawnattr_init');
  const POSIX_SPAWN_SETPGROUP = 0x02;
  const POSIX_SPAWN_SETSIGDEF = 0x04;
  const POSIX_SPAWN_SETSIGMASK = 0x08;
  l.spawnattrSetflags(attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  l.spawnattrSetpgroup(attr, 0);
  l.spawnattrSetsigmask(attr, Buffer.alloc(128));
  l.spawnattrSetsigdefault(attr, Buffer.alloc(128, 0xff));
  const pid = [0];
  const err = l.posixSpawn(pid, path, null, attr, [...argv, null], [...env, null]);
  if (err !== 0) throw new SysError('posix_spawn', err, path);
  return pid[0] as number;
}

/** reapAny waits (without blocking) for any child; returns its pid and raw status, or undefined if none has exited. */
export function reapAny(): { pid: number; status: number } | undefined {
  const status = [0];
  const pid = lib().waitpid(-1, status, 1 /* WNOHANG */);
  if (pid <= 0) return undefined;
  return { pid, status: status[0] as number };
}

/** exitCodeOfStatus turns a wait status into a shell-style exit code (128+n for a signal). */
export function exitCodeOfStatus(status: number): number {
  const sig = status & 0x7f;
  return sig === 0 ? (status >> 8) & 0xff : 128 + sig;
}

/** loopbackUp brings up `lo` in the current network namespace. */
export function loopbackUp(): void {
  const l = lib();
  const s = check(l.socket(2 /* AF_INET */, 2 /* SOCK_DGRAM */ | 0o2000000 /* SOCK_CLOEXEC */, 0), 'socket');
  try {
    const ifr = Buffer.alloc(40);
    ifr.write('lo', 0);
    check(l.ioctl(s, 0x8913 /* SIOCGIFFLAGS */, ifr), 'ioctl(SIOCGIFFLAGS)', 'lo');
    ifr.writeUInt16LE(ifr.readUInt16LE(16) | 0x1 /* IFF_UP */ | 0x40 /* IFF_RUNNING */, 16);
    check(l.ioctl(s, 0x8914 /* SIOCSIFFLAGS */, ifr), 'ioctl(SIOCSIFFLAGS)', 'lo');
  } finally {
    l.close(s);
  }
}

/** Pty is a pseudo-terminal pair from the host's /dev/ptmx; the caller closes both fds. */
export interface Pty {
  master: number;
  slave: number;
  /** the slave's path on the host, e.g. /dev/pts/3 */
  slavePath: string;
}

/** openPty allocates a pseudo-terminal (master non-blocking, neither becomes our controlling terminal). */
export function openPty(): Pty {
  const master = openSync('/dev/ptmx', fsConstants.O_RDWR | fsConstants.O_NOCTTY | fsConstants.O_NONBLOCK);
  try {
    check(lib().ioctl(master, TIOCSPTLCK, Buffer.alloc(4)), 'ioctl(TIOCSPTLCK)');
    const n = Buffer.alloc(4);
    check(lib().ioctl(master, TIOCGPTN, n), 'ioctl(TIOCGPTN)');
    const slavePath = `/dev/pts/${n.readUInt32LE(0)}`;
    const slave = openSync(slavePath, fsConstants.O_RDWR | fsConstants.O_NOCTTY);
    return { master, slave, slavePath };
  } catch (e) {
    closeSync(master);
    throw e;
  }
}

/** setWindowSize sets a terminal's rows and columns. */
export function setWindowSize(fd: number, rows: number, columns: number): void {
  const ws = Buffer.alloc(8);
  ws.writeUInt16LE(rows, 0);
  ws.writeUInt16LE(columns, 2);
  check(lib().ioctl(fd, TIOCSWINSZ, ws), 'ioctl(TIOCSWINSZ)');
}

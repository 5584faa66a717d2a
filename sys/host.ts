// The Host: the one seam through which tsbuild uses privilege. Everything that mounts, unmounts, makes device
// nodes, gives files to other owners, enters namespaces or makes cgroups does it through a Host it was handed, and
// asks what it may do through caps(), never through getuid(). Two hosts exist: the real one (sys/linux.ts) and a
// recording fake (sys/fake-host.ts) that lets the logic above it be unit-tested without root. Rootless mode is the
// real host inside a user namespace of our own (sys/userns.ts): caps() says so (userns), not a change to callers.
import type { Cgroup, CreateCgroupOptions } from './cgroups.js';
import type { FileBatcher } from './file-writer.js';
import { linuxHost } from './linux.js';
import type { NsProcess, StartOptions } from './namespaces.js';

/** HostCaps says what this process may do; callers choose their strategy from it (overlay or userspace, chown or not). */
export interface HostCaps {
  /** the process's effective uid and gid */
  uid: number;
  gid: number;
  /** root in the initial user namespace: every capability below */
  root: boolean;
  /** may mount filesystems (overlay, bind, tmpfs) in its mount namespace */
  mount: boolean;
  /** may create device nodes */
  mknod: boolean;
  /** may give files to any owner (chown to ids other than its own) */
  chown: boolean;
  /**
   * runs inside a user namespace of its own (rootless mode, sys/userns.ts): uid 0 with the namespace's
   * capabilities, so `mount` and `chown` (to mapped ids) hold but `root` and `mknod` do not; overlay mounts need
   * `userxattr` and mark opaque directories with `user.overlay.opaque`
   */
  userns: boolean;
}

/** Host performs privileged operations. Paths are host paths; errors are SysError (sys/libc.ts) with an errno code. */
export interface Host {
  /** 'linux' for the real host, 'fake' for the recording test double */
  readonly kind: string;
  caps(): HostCaps;
  /** mount(2): fstype null with MS_BIND/MS_PRIVATE flags for binds and propagation changes */
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  /** umount2(2); flags MNT_DETACH for a lazy unmount */
  umount(target: string, flags?: number): void;
  /** mknod(2) for device nodes and fifos; mode carries the file type bits */
  mknod(path: string, mode: number, major?: number, minor?: number): void;
  /** lchown(2): never follows a symlink */
  lchown(path: string, uid: number, gid: number): void;
  /** the text of /proc/self/mountinfo (what is mounted where, seen from this process) */
  mountinfo(): string;
  /** start a process in new namespaces running the executor program `opts.ops` (sys/namespaces.ts) */
  startInNamespaces(opts: StartOptions): Promise<NsProcess>;
  /**
   * a batched writer of new small files (a worker thread that also sets their owners), for applying layers fast;
   * absent on hosts that must see every ownership change (the fake), which then get lchown calls instead
   */
  fileWriter?(): FileBatcher;
  /** make a cgroup for one run with the given limits (sys/cgroups.ts) */
  createCgroup(opts: CreateCgroupOptions): Cgroup;
}

let current: Host | undefined;

/**
 * defaultHost is the host of this process: the real Linux host unless a test installed another with setDefaultHost.
 * Library entry points take `host` in their options and fall back to this.
 */
export function defaultHost(): Host {
  return (current ??= linuxHost());
}

/** setDefaultHost replaces the process's host (tests); undefined restores the real one on next use. */
export function setDefaultHost(host: Host | undefined): void {
  current = host;
}

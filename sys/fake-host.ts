// A recording Host for unit tests: it performs no privileged operation, records every call in order, and answers
// caps() with what the test says. So the logic above sys/ (which mounts to make, which owners to set, which
// executor program to run) is tested without root. Namespaced starts run a plain shell command that the test
// chooses (its output and exit code), so the runtime's stdio and exit handling stay real.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { Cgroup, CreateCgroupOptions } from './cgroups.js';
import type { Host, HostCaps } from './host.js';
import type { NsProcess, Op, StartOptions } from './namespaces.js';

/** HostCall is one recorded call. */
export type HostCall =
  | { op: 'mount'; source: string | null; target: string; fstype: string | null; flags: number; data: string | null }
  | { op: 'umount'; target: string; flags: number }
  | { op: 'mknod'; path: string; mode: number; major: number; minor: number }
  | { op: 'lchown'; path: string; uid: number; gid: number }
  | { op: 'start'; ops: Op[]; newNetwork: boolean; userNetwork: boolean }
  | { op: 'cgroup'; limits: CreateCgroupOptions['limits'] };

/** What a namespaced start does in the fake: print `stdout`/`stderr` and exit with `code`. */
export interface FakeRun {
  stdout?: string;
  stderr?: string;
  code?: number;
}

export interface FakeHostOptions {
  /** what caps() answers; default: an unprivileged user (uid 1000) */
  caps?: Partial<HostCaps>;
  /** what a start does, from the executor program it was given; default: exit 0 */
  onStart?: (ops: Op[]) => FakeRun;
  /** make mknod create an empty regular file at the path (so later code finds an entry there); default true */
  createNodes?: boolean;
  /** an error to throw from mount (e.g. EPERM, to test fallbacks); checked on every call */
  mountError?: (target: string, fstype: string | null, data: string | null) => Error | undefined;
  /** an error createCgroup throws (e.g. a CgroupError: no usable cgroup hierarchy) */
  cgroupError?: Error;
}

/** FakeHost records calls in `calls`; mounted targets are tracked so mountinfo() lists them. */
export class FakeHost implements Host {
  readonly kind = 'fake';
  readonly calls: HostCall[] = [];
  private readonly mounted: string[] = [];
  private readonly c: HostCaps;

  constructor(private readonly opts: FakeHostOptions = {}) {
    this.c = {
      uid: 1000,
      gid: 1000,
      root: false,
      mount: false,
      mknod: false,
      chown: false,
      userns: false,
      ...opts.caps,
    };
  }

  caps(): HostCaps {
    return { ...this.c };
  }

  /** callsOf returns the recorded calls of one kind. */
  callsOf<K extends HostCall['op']>(op: K): Array<Extract<HostCall, { op: K }>> {
    return this.calls.filter((c): c is Extract<HostCall, { op: K }> => c.op === op);
  }

  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void {
    const err = this.opts.mountError?.(target, fstype, data);
    if (err) throw err;
    this.calls.push({ op: 'mount', source, target, fstype, flags, data });
    if (fstype) this.mounted.push(target);
  }

  umount(target: string, flags = 0): void {
    this.calls.push({ op: 'umount', target, flags });
    const i = this.mounted.lastIndexOf(target);
    if (i >= 0) this.mounted.splice(i, 1);
  }

  mknod(path: string, mode: number, major = 0, minor = 0): void {
    this.calls.push({ op: 'mknod', path, mode, major, minor });
    if (this.opts.createNodes ?? true) writeFileSync(path, '', { flag: 'wx' });
  }

  lchown(path: string, uid: number, gid: number): void {
    this.calls.push({ op: 'lchown', path, uid, gid });
  }

  mountinfo(): string {
    return this.mounted.map((t, i) => `${100 + i} 1 0:${50 + i} / ${t} rw,relatime - fake fake rw\n`).join('');
  }

  async startInNamespaces(opts: StartOptions): Promise<NsProcess> {
    this.calls.push({
      op: 'start',
      ops: opts.ops,
      newNetwork: opts.newNetwork,
      userNetwork: opts.userNetwork === true,
    });
    const r = this.opts.onStart?.(opts.ops) ?? {};
    const script = 'printf %s "$1"; printf %s "$2" >&2; exit "$3"';
    const child = spawn('/bin/sh', ['-c', script, 'fake', r.stdout ?? '', r.stderr ?? '', String(r.code ?? 0)], {
      stdio: opts.stdio,
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (code, signal) => resolve({ code, signal }));
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    return { child, executor: 'node', kill: (s) => void child.kill(s), exited };
  }

  createCgroup(opts: CreateCgroupOptions): Cgroup {
    this.calls.push({ op: 'cgroup', limits: opts.limits });
    if (this.opts.cgroupError) throw this.opts.cgroupError;
    return { procsFiles: [], dirs: [], oomKilled: () => false, remove: async () => {} };
  }
}

// RunSpec → the executor's program: join cgroups, build the mount tree, then set up the process (hostname, network,
// terminal, capabilities, user, no_new_privs, cwd, env) and exec.
//
// The seccomp filter takes a few milliseconds to compile in a fresh process (most of the budget of a CLI `run`), so the
// CLI bundle also keeps compiled filters on disk, in the user's cache directory next to the C helper and the code
// caches (equally trusted: read only when this user owns them and nobody else can write them), keyed by the profile,
// the machine and the compiler itself (a hash of sys/seccomp/ that scripts/bundle.mjs writes into the bundle).
import { createHash } from 'node:crypto';
import type { Op } from '../../sys/namespaces.js';
import { rootfsOps } from './mounts.js';
import { CAPABILITY_NUMBERS, type RunSpec } from '../spec.js';
import { InvalidInputError } from '../../sys/errors.js';
import { compileSeccomp, type LinuxSeccomp } from '../../sys/seccomp/bpf.js';
import { readUserCache, writeUserCache } from '../../sys/user-cache.js';

const SIGKILL = 9;

/** capabilityMask turns capability names into the bit mask the kernel uses. */
export function capabilityMask(names: string[]): bigint {
  let mask = 0n;
  for (const name of names) {
    const bit = CAPABILITY_NUMBERS[name];
    if (bit === undefined) throw new InvalidInputError(`unknown capability ${JSON.stringify(name)}`);
    mask |= 1n << BigInt(bit);
  }
  return mask;
}

export interface PlanOptions {
  /** cgroup.procs files to join before anything else */
  cgroupProcs?: string[];
  /** host path of the terminal to use as /dev/console (tty mode) */
  console?: string;
  /** bind the host's null, zero, full, random, urandom, tty instead of mknod (no CAP_MKNOD: rootless) */
  bindDevices?: boolean;
  /** bind the host's /sys read-only instead of mounting sysfs (rootless with the host's network) */
  hostSysfs?: boolean;
}

/** Compiled filters by profile text: every RUN step of a build has the same one (about 5 ms to compile). */
const compiled = new Map<string, string>();

function compiledSeccomp(profile: LinuxSeccomp): string {
  const key = JSON.stringify(profile);
  let hex = compiled.get(key);
  if (hex === undefined) {
    const file = cacheName(key);
    const cached = file === undefined ? undefined : readUserCache(file);
    hex = cached !== undefined && /^(?:[0-9a-f]{16})+$/.test(cached) ? cached : compileSeccomp(profile).toString('hex');
    if (file !== undefined && cached !== hex) writeUserCache(file, hex);
    if (compiled.size >= 16) compiled.clear();
    compiled.set(key, hex);
  }
  return hex;
}

/** Defined in the CLI bundle only (scripts/bundle.mjs): a hash of the compiler, sys/seccomp/. */
declare const __TSBUILD_SECCOMP_COMPILER: string | undefined;

/** cacheName names the file that keeps the filter of a profile; undefined outside the bundle (no compiler hash). */
function cacheName(profile: string): string | undefined {
  if (typeof __TSBUILD_SECCOMP_COMPILER !== 'string') return undefined;
  const id = createHash('sha256')
    .update(`${__TSBUILD_SECCOMP_COMPILER}\0${process.arch}\0${profile}`)
    .digest('hex')
    .slice(0, 32);
  return `seccomp-${id}.bpf`;
}

/** executorOps returns the whole program for the namespace executor, ending with `exec`. */
export function executorOps(spec: RunSpec, opts: PlanOptions = {}): Op[] {
  if (spec.args.length === 0) throw new InvalidInputError('no command specified');
  const caps = capabilityMask(spec.capabilities);
  const ops: Op[] = [];
  for (const procs of opts.cgroupProcs ?? []) ops.push({ op: 'cgroup', procs });
  ops.push(
    ...rootfsOps(spec, {
      ...(opts.console ? { console: opts.console } : {}),
      ...(opts.bindDevices ? { bindDevices: true } : {}),
      ...(opts.hostSysfs ? { hostSysfs: true } : {}),
    }),
  );
  ops.push({ op: 'hostname', name: spec.hostname });
  if (spec.network !== 'host') ops.push({ op: 'loup' });
  ops.push({ op: 'mkdir', path: spec.cwd, mode: 0o755 }, { op: 'umask', mask: 0o022 });
  if (spec.tty) ops.push({ op: 'ctty' });
  // Before the capabilities go: raising a hard limit needs CAP_SYS_RESOURCE.
  for (const r of spec.rlimits ?? []) ops.push({ op: 'rlimit', resource: r.resource, soft: r.soft, hard: r.hard });
  ops.push(
    { op: 'capbset', caps },
    { op: 'user', uid: spec.user.uid, gid: spec.user.gid, groups: spec.user.additionalGids },
    // A non-root user loses its permitted set at setuid (no keep-caps); root keeps exactly the configured set.
    { op: 'capset', caps: spec.user.uid === 0 ? caps : 0n },
  );
  if (spec.noNewPrivileges) ops.push({ op: 'nnp' });
  // Compiled here, installed by the executor right before exec (it needs no_new_privs or CAP_SYS_ADMIN).
  if (spec.seccomp !== 'unconfined') ops.push({ op: 'seccomp', program: compiledSeccomp(spec.seccomp) });
  // Credential changes clear the parent-death signal: set it again, last.
  ops.push({ op: 'pdeathsig', signal: SIGKILL }, { op: 'chdir', path: spec.cwd });
  for (const entry of spec.env) ops.push({ op: 'env', entry });
  ops.push({ op: 'exec', init: spec.init, args: spec.args });
  return ops;
}

// RunSpec → the executor's program: join cgroups, build the mount tree, then set up the process (hostname, network,
// terminal, capabilities, user, no_new_privs, cwd, env) and exec.
import type { Op } from '../../sys/namespaces.js';
import { rootfsOps } from './mounts.js';
import { CAPABILITY_NUMBERS, type RunSpec } from '../spec.js';
import { InvalidInputError } from '../../sys/errors.js';
import { compileSeccomp, type LinuxSeccomp } from '../../sys/seccomp/bpf.js';

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
    hex = compileSeccomp(profile).toString('hex');
    if (compiled.size >= 16) compiled.clear();
    compiled.set(key, hex);
  }
  return hex;
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

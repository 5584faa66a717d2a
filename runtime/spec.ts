// Image config + `run` options → the process spec the runtime executes (docker run semantics). Pure except for
// reading the rootfs's /etc/passwd and /etc/group.
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, posix } from 'node:path';
import { InvalidInputError } from '../sys/errors.js';
import type { ContainerConfig } from '../layers/model/types.js';
import type { LinuxSeccomp } from '../sys/seccomp/bpf.js';
import { seccompFor, type SeccompOption } from './seccomp.js';

/** Mount is a bind mount of a host path into the container (`-v src:dst[:ro]`). */
export interface Mount {
  source: string;
  destination: string;
  readonly: boolean;
}

/** TmpfsMount is a fresh tmpfs at a container path (RUN --mount=type=tmpfs); size in bytes, default the kernel's. */
export interface TmpfsMount {
  destination: string;
  size?: number;
}

export interface Limits {
  /** bytes */
  memory?: number;
  /** maximum number of tasks (processes and threads) */
  pids?: number;
  /** CPUs worth of time, e.g. 1.5 */
  cpus?: number;
}

/** Rlimit is one `--ulimit`: an RLIMIT_* resource with its soft and hard values ('inf' = unlimited). */
export interface Rlimit {
  /** docker's name: nofile, nproc, core, … */
  name: string;
  resource: number;
  soft: bigint | 'inf';
  hard: bigint | 'inf';
}

/** Device is a host device the container may use (`--device`), besides the default list. */
export interface Device {
  /** container path */
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  /** file mode bits of the node (from the host's node) */
  mode: number;
  /** the host's node, bound in place of a new one where nodes cannot be made (rootless) */
  hostPath?: string;
}

/**
 * Network: `none` a new network namespace with only lo; `default` a new one with outbound access through a
 * user-mode stack (sys/usernet.ts) and nothing of the host's; `host` the host's own.
 */
export type Network = 'none' | 'default' | 'host';

/** User is the numeric identity the process runs as. */
export interface User {
  uid: number;
  gid: number;
  additionalGids: number[];
}

/** RunSpec is everything the runtime needs to start one container process; it names no image, only a rootfs. */
export interface RunSpec {
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
  user: User;
  hostname: string;
  network: Network;
  tty: boolean;
  init: boolean;
  mounts: Mount[];
  limits: Limits;
  /** the limits are defaults, not asked for: without a usable cgroup the process runs without them */
  limitsBestEffort?: boolean;
  noNewPrivileges: true;
  /** names such as CAP_CHOWN: the bounding, effective and permitted sets */
  capabilities: string[];
  /** the syscall filter (runtime/seccomp.ts), or 'unconfined' when the user opted out */
  seccomp: LinuxSeccomp | 'unconfined';
  /** devices added to the default list (runtime/exec/mounts.ts DEVICES) */
  devices?: Device[];
  rlimits?: Rlimit[];
  readonlyRootfs?: boolean;
  /** container path → host file, bind-mounted (e.g. /etc/hosts, /etc/resolv.conf) */
  extraFiles?: Record<string, string>;
  /** tmpfs mounts, placed among the bind mounts by depth */
  tmpfs?: TmpfsMount[];
  /** bytes of /dev/shm (default 64 MiB, docker's) */
  shmSize?: number;
  /** BuildKit's `RUN --security=insecure`: no masked or read-only paths, /sys writable (caps, seccomp: above) */
  privileged?: boolean;
}

/** DEFAULT_CAPABILITIES is Docker's default capability set. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** CAPABILITY_NUMBERS maps every capability name to its bit number (linux/capability.h). */
export const CAPABILITY_NUMBERS: Readonly<Record<string, number>> = Object.fromEntries(
  [
    'CHOWN',
    'DAC_OVERRIDE',
    'DAC_READ_SEARCH',
    'FOWNER',
    'FSETID',
    'KILL',
    'SETGID',
    'SETUID',
    'SETPCAP',
    'LINUX_IMMUTABLE',
    'NET_BIND_SERVICE',
    'NET_BROADCAST',
    'NET_ADMIN',
    'NET_RAW',
    'IPC_LOCK',
    'IPC_OWNER',
    'SYS_MODULE',
    'SYS_RAWIO',
    'SYS_CHROOT',
    'SYS_PTRACE',
    'SYS_PACCT',
    'SYS_ADMIN',
    'SYS_BOOT',
    'SYS_NICE',
    'SYS_RESOURCE',
    'SYS_TIME',
    'SYS_TTY_CONFIG',
    'MKNOD',
    'LEASE',
    'AUDIT_WRITE',
    'AUDIT_CONTROL',
    'SETFCAP',
    'MAC_OVERRIDE',
    'MAC_ADMIN',
    'SYSLOG',
    'WAKE_ALARM',
    'BLOCK_SUSPEND',
    'AUDIT_READ',
    'PERFMON',
    'BPF',
    'CHECKPOINT_RESTORE',
  ].map((name, i) => [`CAP_${name}`, i]),
);

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ProcessSpecOptions {
  config: ContainerConfig;
  rootfs: string;
  /** arguments after the image name; replace the image's Cmd when non-empty */
  cmd?: string[];
  /** `--entrypoint`: replaces the image's Entrypoint and drops its Cmd; '' clears the entrypoint */
  entrypoint?: string;
  /** `-e K=V` (sets) or `-e K` (copies K from hostEnv, dropped when unset there) */
  env?: string[];
  /** where `-e K` looks values up (the CLI passes process.env) */
  hostEnv?: Record<string, string | undefined>;
  /** `-w` */
  workdir?: string;
  /** `-u name|uid[:group|gid]` */
  user?: string;
  /** default: 12 random hex digits, like a container id */
  hostname?: string;
  network?: Network;
  tty?: boolean;
  init?: boolean;
  /** `-v src:dst[:ro|rw]` strings */
  volumes?: string[];
  mounts?: Mount[];
  limits?: Limits;
  capAdd?: string[];
  capDrop?: string[];
  /** `--security-opt seccomp=…`; default: the default profile */
  seccomp?: SeccompOption;
  /** `--device HOST[:CONTAINER[:PERMS]]` strings */
  devices?: string[];
  /** `--ulimit NAME=SOFT[:HARD]` strings */
  ulimits?: string[];
  readonlyRootfs?: boolean;
  extraFiles?: Record<string, string>;
}

/** processSpec applies `docker run` semantics to an image config: ENTRYPOINT/CMD, -e over Env, -w, -u, --cap-*. */
export function processSpec(opts: ProcessSpecOptions): RunSpec {
  const { config } = opts;
  let entrypoint = config.Entrypoint ?? [];
  let cmd = config.Cmd ?? [];
  if (opts.entrypoint !== undefined) {
    entrypoint = opts.entrypoint === '' ? [] : [opts.entrypoint];
    cmd = [];
  }
  if (opts.cmd && opts.cmd.length > 0) cmd = opts.cmd;
  const args = [...entrypoint, ...cmd];
  if (args.length === 0)
    throw new InvalidInputError(
      'no command specified',
      'give a command after the image name, or set CMD or ENTRYPOINT in the image',
    );

  const hostname = opts.hostname ?? randomBytes(6).toString('hex');
  const user = resolveUser(opts.rootfs, opts.user ?? config.User ?? '');
  const workdir = opts.workdir ?? config.WorkingDir ?? '';
  if (opts.workdir !== undefined && !posix.isAbsolute(opts.workdir)) {
    throw new InvalidInputError(`the working directory ${JSON.stringify(opts.workdir)} is not an absolute path`);
  }
  const cwd = posix.normalize(posix.join('/', workdir));

  let env = mergeEnv(config.Env ?? [], opts.env ?? [], opts.hostEnv ?? {});
  const defaults = [`PATH=${DEFAULT_PATH}`, `HOSTNAME=${hostname}`, ...(opts.tty ? ['TERM=xterm'] : [])];
  env = mergeEnv(
    defaults.filter((d) => !hasKey(env, keyOf(d))),
    env,
    {},
  );
  if (!hasKey(env, 'HOME')) env.push(`HOME=${homeOf(opts.rootfs, user.uid)}`);

  const mounts = [...(opts.volumes ?? []).map(parseVolume), ...(opts.mounts ?? [])];
  const capabilities = capabilitySet(opts.capAdd ?? [], opts.capDrop ?? []);
  const spec: RunSpec = {
    rootfs: opts.rootfs,
    args,
    env,
    cwd,
    user,
    hostname,
    network: opts.network ?? 'none',
    tty: opts.tty ?? false,
    init: opts.init ?? false,
    mounts,
    limits: { ...opts.limits },
    noNewPrivileges: true,
    capabilities,
    seccomp: seccompFor(opts.seccomp ?? 'default', capabilities) ?? 'unconfined',
  };
  if (opts.devices?.length) spec.devices = opts.devices.map(parseDevice);
  if (opts.ulimits?.length) spec.rlimits = parseUlimits(opts.ulimits);
  if (opts.readonlyRootfs) spec.readonlyRootfs = true;
  if (opts.extraFiles) spec.extraFiles = { ...opts.extraFiles };
  return spec;
}

function keyOf(entry: string): string {
  const i = entry.indexOf('=');
  return i < 0 ? entry : entry.slice(0, i);
}

function hasKey(env: string[], key: string): boolean {
  return env.some((e) => keyOf(e) === key);
}

/** mergeEnv overlays `overrides` on `base` by key, keeping base order and appending new keys. */
function mergeEnv(base: string[], overrides: string[], hostEnv: Record<string, string | undefined>): string[] {
  const out = [...base];
  for (const o of overrides) {
    let entry = o;
    if (!o.includes('=')) {
      const v = hostEnv[o];
      if (v === undefined) continue;
      entry = `${o}=${v}`;
    }
    const k = keyOf(entry);
    if (k === '') throw new InvalidInputError(`invalid environment variable ${JSON.stringify(o)}`);
    const i = out.findIndex((e) => keyOf(e) === k);
    if (i >= 0) out[i] = entry;
    else out.push(entry);
  }
  return out;
}

/** capabilitySet applies --cap-add and --cap-drop (names with or without CAP_, or ALL) to Docker's defaults. */
export function capabilitySet(add: string[], drop: string[]): string[] {
  const norm = (c: string): string => {
    const up = c.toUpperCase();
    if (up === 'ALL') return up;
    const name = up.startsWith('CAP_') ? up : `CAP_${up}`;
    if (CAPABILITY_NUMBERS[name] === undefined) throw new InvalidInputError(`unknown capability ${JSON.stringify(c)}`);
    return name;
  };
  const adds = add.map(norm);
  const drops = drop.map(norm);
  let caps = new Set<string>(DEFAULT_CAPABILITIES);
  if (drops.includes('ALL')) caps = new Set();
  if (adds.includes('ALL')) caps = new Set(Object.keys(CAPABILITY_NUMBERS));
  for (const c of adds) if (c !== 'ALL') caps.add(c);
  for (const c of drops) if (c !== 'ALL') caps.delete(c);
  return [...caps].sort((a, b) => (CAPABILITY_NUMBERS[a] ?? 0) - (CAPABILITY_NUMBERS[b] ?? 0));
}

/** parseVolume reads `-v /host:/container[:ro|rw]`; both paths must be absolute (named volumes are not supported). */
export function parseVolume(v: string): Mount {
  const parts = v.split(':');
  const [source, destination, mode, ...rest] = parts;
  if (!source || !destination || rest.length > 0 || (mode !== undefined && mode !== 'ro' && mode !== 'rw')) {
    throw new InvalidInputError(`invalid volume ${JSON.stringify(v)}`, 'use -v /host/path:/container/path[:ro]');
  }
  if (!isAbsolute(source))
    throw new InvalidInputError(`volume source ${JSON.stringify(source)} is not an absolute host path`);
  if (!posix.isAbsolute(destination))
    throw new InvalidInputError(`volume destination ${JSON.stringify(destination)} is not an absolute path`);
  return { source, destination: posix.normalize(destination), readonly: mode === 'ro' };
}

/** RLIMITS maps docker's `--ulimit` names to RLIMIT_* numbers (asm-generic/resource.h). */
export const RLIMITS: Readonly<Record<string, number>> = {
  cpu: 0,
  fsize: 1,
  data: 2,
  stack: 3,
  core: 4,
  rss: 5,
  nproc: 6,
  nofile: 7,
  memlock: 8,
  as: 9,
  locks: 10,
  sigpending: 11,
  msgqueue: 12,
  nice: 13,
  rtprio: 14,
  rttime: 15,
};

/** parseUlimit reads docker's `--ulimit name=soft[:hard]` (-1 = unlimited; hard defaults to soft). */
export function parseUlimit(s: string): Rlimit {
  const m = /^([a-z]+)=(-1|\d+)(?::(-1|\d+))?$/.exec(s.trim());
  const name = m?.[1] ?? '';
  const resource = RLIMITS[name];
  if (!m || resource === undefined) {
    throw new InvalidInputError(
      `invalid ulimit ${JSON.stringify(s)}`,
      `use NAME=SOFT[:HARD] with NAME one of ${Object.keys(RLIMITS).join(', ')}`,
    );
  }
  const value = (v: string): bigint | 'inf' => (v === '-1' ? 'inf' : BigInt(v));
  const soft = value(m[2] as string);
  const hard = value(m[3] ?? (m[2] as string));
  if (hard !== 'inf' && (soft === 'inf' || soft > hard))
    throw new InvalidInputError(`invalid ulimit ${JSON.stringify(s)}: the soft limit is above the hard limit`);
  return { name, resource, soft, hard };
}

/** parseUlimits reads every `--ulimit`; a later one for the same name replaces an earlier one. */
export function parseUlimits(list: string[]): Rlimit[] {
  const byName = new Map<string, Rlimit>();
  for (const s of list) {
    const r = parseUlimit(s);
    byName.set(r.name, r);
  }
  return [...byName.values()];
}

/** parseDevice reads docker's `--device /dev/HOST[:/dev/CONTAINER][:PERMS]` and looks the node up on the host. */
export function parseDevice(v: string): Device {
  const parts = v.split(':');
  let perms = 'rwm';
  if (parts.length > 1 && /^[rwm]+$/.test(parts[parts.length - 1] as string)) perms = parts.pop() as string;
  const [source = '', destination = source, ...rest] = parts;
  if (!isAbsolute(source) || !posix.isAbsolute(destination) || rest.length > 0)
    throw new InvalidInputError(`invalid device ${JSON.stringify(v)}`, 'use --device /dev/HOST[:/dev/CONTAINER][:rwm]');
  // Without a device cgroup, a node that can be opened can be opened for reading and writing (a read-only mount
  // does not stop writes to a device): refuse what cannot be enforced.
  if (!perms.includes('r') || !perms.includes('w'))
    throw new InvalidInputError(`device ${source}: permissions ${perms} cannot be enforced here; use rw or rwm`);
  let st;
  try {
    st = statSync(source);
  } catch (e) {
    throw new InvalidInputError(`device ${source}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!st.isCharacterDevice() && !st.isBlockDevice())
    throw new InvalidInputError(`device ${source} is not a device node`);
  const rdev = Number(st.rdev);
  // glibc's gnu_dev_major/minor for a 64-bit dev_t
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
  return {
    path: posix.normalize(destination),
    type: st.isCharacterDevice() ? 'c' : 'b',
    major,
    minor,
    mode: st.mode & 0o777,
    hostPath: source,
  };
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** parseBytes reads a size like `64m`, `1.5g`, `512k` or `1048576` (binary units, as docker does). */
export function parseBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$/i.exec(s.trim());
  const unit = UNITS[(m?.[2] ?? '').toLowerCase()];
  if (!m || unit === undefined)
    throw new InvalidInputError(`invalid size ${JSON.stringify(s)}`, 'use a number with an optional unit: 64m, 1g');
  return Math.floor(Number(m[1]) * unit);
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}
interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

function readLines(path: string): string[] | undefined {
  try {
    return readFileSync(path, 'utf8').split('\n');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

function readPasswd(rootfs: string): PasswdEntry[] | undefined {
  return readLines(join(rootfs, 'etc/passwd'))
    ?.map((l) => l.split(':'))
    .filter((f) => f.length >= 7 && f[0] !== '' && !f[0]?.startsWith('#'))
    .map((f) => ({ name: f[0] as string, uid: Number(f[2]), gid: Number(f[3]), home: f[5] as string }))
    .filter((p) => Number.isInteger(p.uid) && Number.isInteger(p.gid));
}

function readGroup(rootfs: string): GroupEntry[] | undefined {
  return readLines(join(rootfs, 'etc/group'))
    ?.map((l) => l.split(':'))
    .filter((f) => f.length >= 4 && f[0] !== '' && !f[0]?.startsWith('#'))
    .map((f) => ({ name: f[0] as string, gid: Number(f[2]), members: (f[3] as string).split(',').filter(Boolean) }))
    .filter((g) => Number.isInteger(g.gid));
}

const ID = /^\d+$/;

function homeOf(rootfs: string, uid: number): string {
  return readPasswd(rootfs)?.find((p) => p.uid === uid)?.home || '/';
}

/**
 * resolveUser turns `-u` (`name`, `uid`, `name:group`, `uid:gid`, '' for root) into numeric ids using the rootfs's
 * /etc/passwd and /etc/group. A name must exist there; a number need not (its gid is then 0). Without an explicit
 * group the user's supplementary groups are the groups that list its name; with one, there are none.
 */
export function resolveUser(rootfs: string, user: string): User {
  const [userPart = '', groupPart, ...extra] = user.split(':');
  if (extra.length > 0 || groupPart === '')
    throw new InvalidInputError(`invalid user ${JSON.stringify(user)}`, 'use name, uid, name:group or uid:gid');
  const passwd = readPasswd(rootfs) ?? [];
  const userArg = userPart === '' ? '0' : userPart;
  const entry = ID.test(userArg)
    ? passwd.find((p) => p.uid === Number(userArg))
    : passwd.find((p) => p.name === userArg);
  if (!entry && !ID.test(userArg)) {
    throw new InvalidInputError(`unable to find user ${userArg}: no matching entries in the image's /etc/passwd`);
  }
  const uid = entry ? entry.uid : Number(userArg);
  let gid = entry ? entry.gid : 0;
  const additionalGids: number[] = [];
  const groups = readGroup(rootfs) ?? [];
  if (groupPart !== undefined) {
    if (ID.test(groupPart)) gid = Number(groupPart);
    else {
      const g = groups.find((gr) => gr.name === groupPart);
      if (!g)
        throw new InvalidInputError(`unable to find group ${groupPart}: no matching entries in the image's /etc/group`);
      gid = g.gid;
    }
  } else if (entry) {
    for (const g of groups)
      if (g.members.includes(entry.name) && !additionalGids.includes(g.gid)) additionalGids.push(g.gid);
  }
  if (uid > 0xfffffffe || gid > 0xfffffffe)
    throw new InvalidInputError(`invalid user ${JSON.stringify(user)}: id out of range`);
  return { uid, gid, additionalGids };
}

// Per-run cgroups for memory, pids and cpu limits, on cgroup v1 (one hierarchy per controller) or v2 (unified).
// Each run gets `<hierarchy>/tsbuild/<owner pid>-<random>`; the runtime's PID 1 joins it by writing "0" to its
// cgroup.procs before exec; remove() deletes it (and `tsbuild/` when no other run uses it) when the run ends, and
// createCgroup() first sweeps away the empty cgroups of runs whose owner died.
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TsbuildError } from './errors.js';
import { isAlive as pidAlive } from './pid.js';

export interface CgroupLimits {
  /** bytes */
  memory?: number;
  pids?: number;
  /** CPUs worth of time, e.g. 0.5 */
  cpus?: number;
}

export type Controller = 'memory' | 'pids' | 'cpu';

/** Hierarchy is a mounted cgroup hierarchy: v1 with its controllers, or the v2 unified one. */
export interface Hierarchy {
  version: 1 | 2;
  mountPoint: string;
  /** v1: the controllers bound to this mount; v2: the controllers the root makes available */
  controllers: string[];
}

/** parseCgroupMounts lists the cgroup hierarchies in a /proc/self/mountinfo text (v2 controllers left empty). */
export function parseCgroupMounts(mountinfo: string): Hierarchy[] {
  const out: Hierarchy[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const [fstype, , superOpts = ''] = line.slice(sep + 3).split(' ');
    const mountPoint = unescapeMount(pre[4] ?? '');
    if (fstype === 'cgroup2') out.push({ version: 2, mountPoint, controllers: [] });
    else if (fstype === 'cgroup') {
      const known = [
        'memory',
        'pids',
        'cpu',
        'cpuacct',
        'cpuset',
        'blkio',
        'devices',
        'freezer',
        'hugetlb',
        'net_cls',
        'net_prio',
        'perf_event',
        'rdma',
        'misc',
      ];
      out.push({ version: 1, mountPoint, controllers: superOpts.split(',').filter((o) => known.includes(o)) });
    }
  }
  return out;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** LimitWrite is one file to write in a run's cgroup directory. */
export interface LimitWrite {
  controller: Controller;
  file: string;
  value: string;
  /** written only when the file exists (swap accounting may be off) */
  optional?: true;
}

const CPU_PERIOD = 100_000;

/** limitWrites lists the files that express `limits` on a cgroup of the given version, in the order to write them. */
export function limitWrites(version: 1 | 2, limits: CgroupLimits): LimitWrite[] {
  const w: LimitWrite[] = [];
  if (limits.memory !== undefined) {
    const m = String(Math.floor(limits.memory));
    if (version === 1) {
      w.push({ controller: 'memory', file: 'memory.limit_in_bytes', value: m });
      w.push({ controller: 'memory', file: 'memory.memsw.limit_in_bytes', value: m, optional: true }); // no swap beyond the limit
    } else {
      w.push({ controller: 'memory', file: 'memory.max', value: m });
      w.push({ controller: 'memory', file: 'memory.swap.max', value: '0', optional: true });
    }
  }
  if (limits.pids !== undefined)
    w.push({ controller: 'pids', file: 'pids.max', value: String(Math.floor(limits.pids)) });
  if (limits.cpus !== undefined) {
    const quota = String(Math.max(1000, Math.round(limits.cpus * CPU_PERIOD)));
    if (version === 1) {
      w.push({ controller: 'cpu', file: 'cpu.cfs_period_us', value: String(CPU_PERIOD) });
      w.push({ controller: 'cpu', file: 'cpu.cfs_quota_us', value: quota });
    } else {
      w.push({ controller: 'cpu', file: 'cpu.max', value: `${quota} ${CPU_PERIOD}` });
    }
  }
  return w;
}

/** oomKillsOf reads the OOM-kill counter from memory.oom_control (v1) or memory.events (v2) text. */
export function oomKillsOf(text: string): number {
  const m = /^oom_kill (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** Cgroup is one run's cgroup, possibly spread over several v1 hierarchies. */
export interface Cgroup {
  /** cgroup.procs files the container's PID 1 writes "0" to */
  procsFiles: string[];
  /** the directories made for this run */
  dirs: string[];
  /** whether the kernel's OOM killer killed a process of this cgroup */
  oomKilled(): boolean;
  /** remove the directories (retrying while the last processes finish exiting) */
  remove(): Promise<void>;
}

export class CgroupError extends TsbuildError {
  constructor(
    message: string,
    cause?: unknown,
    hint = 'resource limits need root and a mounted cgroup hierarchy (mount | grep cgroup)',
  ) {
    super('E_CGROUP', message, { hint, cause });
  }
}

export interface CreateCgroupOptions {
  limits: CgroupLimits;
  /** mountinfo text to read hierarchies from (tests); default /proc/self/mountinfo */
  mountinfo?: string;
  /** directory name under `tsbuild/`; default `<pid>-<random>` */
  name?: string;
  /**
   * rootless (a user namespace): only a delegated cgroup v2 subtree may be used, the parent of this process's own
   * cgroup when the user owns it (systemd's user@UID.service with Delegate=yes); default false
   */
  rootless?: boolean;
  /** /proc/self/cgroup text (tests); default read from /proc */
  selfCgroup?: string;
}

/** RootlessCgroupError: limits asked for where an ordinary user has no cgroup of their own to divide. */
export class RootlessCgroupError extends CgroupError {
  constructor(message: string) {
    super(
      message,
      undefined,
      'run it in a delegated cgroup v2 subtree (systemd-run --user --scope -p Delegate=yes …), or as root',
    );
  }
}

/** ownV2Cgroup is this process's cgroup in the unified hierarchy (the `0::` line of /proc/self/cgroup). */
function ownV2Cgroup(selfCgroup: string): string | undefined {
  return /^0::(\/.*)$/m.exec(selfCgroup)?.[1];
}

/**
 * availableMemory is MemAvailable from /proc/meminfo, or less when this process's cgroup v2 has a memory limit: the
 * limit minus what the cgroup uses (tmpfs pages are charged to it).
 */
export async function availableMemory(): Promise<number> {
  const read = (path: string): Promise<string> => readFile(path, 'utf8').catch(() => '');
  const kib = /^MemAvailable:\s+(\d+) kB$/m.exec(await read('/proc/meminfo'));
  let free = kib ? Number(kib[1]) * 1024 : 0;
  const own = ownV2Cgroup(await read('/proc/self/cgroup'));
  const unified = parseCgroupMounts(await read('/proc/self/mountinfo')).find((h) => h.version === 2);
  if (own !== undefined && unified) {
    const dir = join(unified.mountPoint, own);
    const max = (await read(join(dir, 'memory.max'))).trim();
    const cur = Number((await read(join(dir, 'memory.current'))).trim() || 0);
    if (/^\d+$/.test(max)) free = Math.min(free, Math.max(0, Number(max) - cur));
  }
  return free;
}

/**
 * delegatedParent finds where a rootless run may make cgroups: the unified hierarchy's directory that holds this
 * process's own cgroup, when this process may write it and it offers every controller needed.
 */
function delegatedParent(unified: Hierarchy | undefined, needed: Controller[], selfCgroup: string): string {
  if (!unified)
    throw new RootlessCgroupError('resource limits as an ordinary user need cgroup v2, and this host has none mounted');
  const own = ownV2Cgroup(selfCgroup);
  if (own === undefined)
    throw new RootlessCgroupError(
      'resource limits as an ordinary user need cgroup v2 (this process is in no v2 cgroup)',
    );
  const base = join(unified.mountPoint, dirname(own));
  try {
    accessSync(join(base, 'cgroup.subtree_control'), constants.W_OK);
    accessSync(base, constants.W_OK);
  } catch {
    throw new RootlessCgroupError(
      `resource limits as an ordinary user need a delegated cgroup v2 subtree; ${base} is not yours`,
    );
  }
  const offered = v2Controllers(base);
  const missing = needed.filter((c) => !offered.includes(c));
  if (missing.length > 0)
    throw new RootlessCgroupError(
      `your cgroup v2 subtree ${base} does not delegate the ${missing.join(', ')} controller`,
    );
  return base;
}

const PARENT = 'tsbuild';

function controllersNeeded(limits: CgroupLimits): Controller[] {
  const c: Controller[] = [];
  if (limits.memory !== undefined) c.push('memory');
  if (limits.pids !== undefined) c.push('pids');
  if (limits.cpus !== undefined) c.push('cpu');
  return c;
}

function v2Controllers(mountPoint: string): string[] {
  try {
    return readFileSync(join(mountPoint, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

/** createCgroup makes the run's cgroup in every hierarchy that carries a controller the limits need. */
export function createCgroup(opts: CreateCgroupOptions): Cgroup {
  const needed = controllersNeeded(opts.limits);
  const hierarchies = parseCgroupMounts(opts.mountinfo ?? readFileSync('/proc/self/mountinfo', 'utf8'));
  const unified = hierarchies.find((h) => h.version === 2);
  if (unified) unified.controllers = v2Controllers(unified.mountPoint);
  // Per controller: its v1 hierarchy if it has one, else the unified hierarchy if that offers it.
  const plan = new Map<Hierarchy, Controller[]>();
  if (opts.rootless && needed.length > 0) {
    // The delegated subtree stands in for the hierarchy's root: tsbuild/ is made below it.
    const base = delegatedParent(unified, needed, opts.selfCgroup ?? readFileSync('/proc/self/cgroup', 'utf8'));
    plan.set({ version: 2, mountPoint: base, controllers: v2Controllers(base) }, needed);
  }
  for (const c of opts.rootless ? [] : needed) {
    const h =
      hierarchies.find((x) => x.version === 1 && x.controllers.includes(c)) ??
      (unified?.controllers.includes(c) ? unified : undefined);
    if (!h) throw new CgroupError(`no cgroup hierarchy offers the ${c} controller`);
    plan.set(h, [...(plan.get(h) ?? []), c]);
  }
  const name = opts.name ?? `${process.pid}-${randomBytes(4).toString('hex')}`;
  const dirs: string[] = [];
  const procsFiles: string[] = [];
  const oomFiles: string[] = [];
  const cg: Cgroup = {
    procsFiles,
    dirs,
    oomKilled: () =>
      oomFiles.some((f) => {
        try {
          return oomKillsOf(readFileSync(f, 'utf8')) > 0;
        } catch {
          return false;
        }
      }),
    remove: () => removeDirs([...dirs].reverse()),
  };
  try {
    for (const [h, controllers] of plan) {
      const parent = join(h.mountPoint, PARENT);
      sweepStale(parent);
      const dir = join(parent, name);
      // Another run may remove the shared parent between our two mkdirs: make both again.
      for (let attempt = 0; ; attempt++) {
        if (h.version === 2) enableV2(h.mountPoint, parent, controllers);
        else mkdirSync(parent, { recursive: true });
        try {
          mkdirSync(dir);
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 5) throw e;
        }
      }
      dirs.push(dir);
      procsFiles.push(join(dir, 'cgroup.procs'));
      if (controllers.includes('memory'))
        oomFiles.push(join(dir, h.version === 1 ? 'memory.oom_control' : 'memory.events'));
      for (const w of limitWrites(h.version, opts.limits)) {
        if (!controllers.includes(w.controller)) continue;
        const file = join(dir, w.file);
        if (w.optional && !existsSync(file)) continue;
        try {
          writeFileSync(file, w.value);
        } catch (e) {
          throw new CgroupError(`setting ${w.file} to ${w.value}: ${(e as Error).message}`, e);
        }
      }
    }
  } catch (e) {
    for (const d of [...dirs].reverse()) rmdirQuiet(d);
    if (e instanceof CgroupError) throw e;
    throw new CgroupError(`creating the run's cgroup: ${(e as Error).message}`, e);
  }
  return cg;
}

function enableV2(root: string, parent: string, controllers: Controller[]): void {
  const want = controllers.map((c) => `+${c}`).join(' ');
  writeFileSync(join(root, 'cgroup.subtree_control'), want);
  mkdirSync(parent, { recursive: true });
  writeFileSync(join(parent, 'cgroup.subtree_control'), want);
}

function rmdirQuiet(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

async function removeDirs(dirs: string[]): Promise<void> {
  for (const d of dirs) {
    // The last processes of the run may still be leaving the cgroup: retry for up to a second.
    for (let i = 0; !rmdirQuiet(d); i++) {
      if (i >= 100) throw new CgroupError(`removing cgroup ${d}: still busy`);
      await new Promise((r) => setTimeout(r, 10));
    }
    // The shared parent goes too once no run uses it (fails harmlessly while another run does).
    rmdirQuiet(dirname(d));
  }
}

/** sweepStale removes the empty run cgroups under `parent` whose owner process no longer exists. */
export function sweepStale(parent: string): void {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^(\d+)-[0-9a-f]+$/.exec(n);
    if (!m || pidAlive(Number(m[1]))) continue;
    const dir = join(parent, n);
    try {
      if (readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim() === '') rmdirSync(dir);
    } catch {
      // raced with another sweeper, or not a cgroup directory
    }
  }
}

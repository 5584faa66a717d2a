// Kernel overlayfs mounts: the option string (planned, pure) and performing the plan through a Host (root).
//
// The legacy mount(2) data string is copied into one page by the kernel, so a long lowerdir list does not fit.
// planOverlayMount tries, in order: absolute paths; paths relative to the deepest directory all layers share
// (mounted with that directory as the working directory); short symlinks `0`, `1`, … `1z` … in a scratch directory
// (like containers/storage's `l/` dir, but removed right after the mount, since the kernel resolves each path once);
// and past the kernel's 500-lowerdir limit, a stack: the bottom layers become one read-only overlay that is the
// lowest lowerdir of the top mount. Only the bottom can be grouped: an overlay used as a lowerdir shows no
// whiteouts, so a group of upper layers would stop hiding what lower groups have. With the kernel's stacking depth
// of 2 that gives up to 999 layers (as long as the layers do not live on an overlay themselves).
//
// mountOverlay sets the working directory of the whole process with process.chdir for the duration of one
// synchronous mount(2) call when a step needs it (no JavaScript runs meanwhile; libuv threads doing fs work on
// relative paths at that instant would see it, and tsbuild passes absolute paths). process.chdir does not exist
// in worker threads: mount from the main thread.
import { lstat, mkdir, readdir, rmdir, symlink, unlink } from 'node:fs/promises';
import { release } from 'node:os';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { InvalidInputError, TsbuildError } from '../sys/errors.js';
import { defaultHost, type Host } from '../sys/host.js';
import { MNT_DETACH, MS, SysError } from '../sys/libc.js';

/** OverlayPlan names the layers of one overlay mount. All paths absolute. */
export interface OverlayPlan {
  /** read-only layers, top first */
  lowerdirs: string[];
  upperdir: string;
  /** an empty directory on the upperdir's filesystem */
  workdir: string;
  /** where the merged tree appears */
  target: string;
  /**
   * Where mountOverlay may create symlinks and stacked mountpoints (only when the options would not fit in a page
   * otherwise); default `<workdir>.ovl`. It must not exist yet; unmount removes it.
   */
  scratchDir?: string;
  /**
   * mount with `userxattr` (rootless: a user namespace's overlay keeps its whiteout and opaque marks in
   * `user.overlay.*`); mountOverlay sets it from host.caps().userns
   */
  userxattr?: boolean;
  /**
   * mount with `volatile` (Linux ≥ 5.10): no sync of the upper filesystem, ever, not even when the overlay goes; for a
   * writable layer that is discarded after the run. Older kernels refuse the option (EINVAL).
   */
  volatile?: boolean;
}

/** MountStep is one thing mountOverlay does, in order. Steps that create something are undone by unmount. */
export type MountStep =
  | { op: 'mkdir'; path: string }
  | { op: 'symlink'; path: string; target: string }
  | { op: 'mount'; target: string; data: string; readonly: boolean; cwd?: string }
  /** unlink the symlinks in a directory made by an earlier mkdir step, then remove it */
  | { op: 'remove-links'; path: string };

/** The kernel copies at most one page of mount data, the terminating NUL included. */
export const MOUNT_DATA_MAX = 4096;
/** OVL_MAX_STACK: the most lowerdirs one overlay mount takes. */
export const MAX_LOWERS_PER_MOUNT = 500;
/** One stacked level below the top mount (the kernel's filesystem stacking depth is 2). */
export const MAX_LAYERS = 2 * MAX_LOWERS_PER_MOUNT - 1;
/** Options that keep an upperdir a plain diff: no index, no redirects, no metadata-only copy-up. */
export const OVERLAY_OPTIONS = 'index=off,redirect_dir=off,metacopy=off';
/** The same for a user namespace (rootless): marks in user.overlay.*, and redirects neither made nor followed. */
export const OVERLAY_OPTIONS_USERXATTR = 'index=off,redirect_dir=nofollow,metacopy=off,userxattr';

/** TooManyLayersError: more layers than one stacked overlay can hold. */
export class TooManyLayersError extends TsbuildError {
  constructor(readonly layers: number) {
    super(
      'E_TOO_MANY_LAYERS',
      `an overlay of ${layers} layers is more than tsbuild can mount (at most ${MAX_LAYERS})`,
      {
        hint: 'squash the base image (fewer layers), or use the userspace fallback',
      },
    );
  }
}

/**
 * planOverlayMount builds the steps that mount `plan` (pure: no I/O). The mount data is
 * `lowerdir=…,upperdir=…,workdir=…,index=off,redirect_dir=off,metacopy=off` and never longer than a page; see the
 * file comment for how long lists are shortened. Throws InvalidInputError for relative paths or no lowerdirs, and
 * TooManyLayersError past MAX_LAYERS.
 */
export function planOverlayMount(plan: OverlayPlan): MountStep[] {
  if (plan.lowerdirs.length === 0) throw new InvalidInputError('an overlay mount needs at least one lowerdir');
  for (const p of [
    ...plan.lowerdirs,
    plan.upperdir,
    plan.workdir,
    plan.target,
    ...(plan.scratchDir ? [plan.scratchDir] : []),
  ]) {
    if (!isAbsolute(p)) throw new InvalidInputError(`overlay paths must be absolute: ${JSON.stringify(p)}`);
  }
  const lowers = plan.lowerdirs.map((p) => resolve(p));
  const upper = resolve(plan.upperdir);
  const work = resolve(plan.workdir);
  const target = resolve(plan.target);
  const scratch = resolve(plan.scratchDir ?? `${work}.ovl`);
  if (lowers.length > MAX_LAYERS) throw new TooManyLayersError(lowers.length);

  const userxattr = plan.userxattr === true;
  const steps: MountStep[] = [];
  let scratchMade = false;
  const scratchPath = (name: string): string => {
    if (!scratchMade) steps.push({ op: 'mkdir', path: scratch });
    scratchMade = true;
    return join(scratch, name);
  };

  let top = lowers;
  if (lowers.length > MAX_LOWERS_PER_MOUNT) {
    const keep = MAX_LOWERS_PER_MOUNT - 1;
    const bottom = lowers.slice(keep);
    const mnt = scratchPath('lower');
    steps.push({ op: 'mkdir', path: mnt });
    steps.push(...encodeMount({ lowers: bottom, target: mnt, userxattr, linkDir: () => scratchPath('lower-links') }));
    top = [...lowers.slice(0, keep), mnt];
  }
  const volatile = plan.volatile === true;
  steps.push(
    ...encodeMount({ lowers: top, upper, work, target, userxattr, volatile, linkDir: () => scratchPath('links') }),
  );
  return steps;
}

/** overlayData formats the mount data string; paths are escaped for overlayfs's parser (`\`, `,`, `:`). */
export function overlayData(opts: {
  lowers: string[];
  upper?: string;
  work?: string;
  userxattr?: boolean;
  volatile?: boolean;
}): string {
  const parts = [`lowerdir=${opts.lowers.map(escapePath).join(':')}`];
  const writable = opts.upper !== undefined && opts.work !== undefined;
  if (writable)
    parts.push(`upperdir=${escapePath(opts.upper as string)}`, `workdir=${escapePath(opts.work as string)}`);
  // A user namespace's overlay refuses to follow redirects (the kernel's "conflicting options" otherwise).
  parts.push(opts.userxattr ? OVERLAY_OPTIONS_USERXATTR : OVERLAY_OPTIONS);
  if (writable && opts.volatile) parts.push('volatile');
  return parts.join(',');
}

/** volatileKnown tells whether a kernel (default: this one) is recent enough for `volatile` (Linux 5.10). */
export function volatileKnown(kernel = release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernel);
  return m !== null && (Number(m[1]) > 5 || (Number(m[1]) === 5 && Number(m[2]) >= 10));
}

function escapePath(p: string): string {
  return p.replace(/[\\,:]/g, (c) => `\\${c}`);
}

function fits(data: string): boolean {
  return Buffer.byteLength(data) + 1 <= MOUNT_DATA_MAX;
}

interface MountSpec {
  lowers: string[];
  upper?: string;
  work?: string;
  target: string;
  userxattr?: boolean;
  volatile?: boolean;
  linkDir: () => string;
}

/** encodeMount chooses the shortest encoding that fits: absolute, relative to a shared base, or symlinks. */
function encodeMount(spec: MountSpec): MountStep[] {
  const readonly = spec.upper === undefined;
  const { upper, work } = spec;
  const absolute = overlayData(spec);
  if (fits(absolute)) return [{ op: 'mount', target: spec.target, data: absolute, readonly }];

  const all = [...spec.lowers, ...(upper !== undefined && work !== undefined ? [upper, work] : [])];
  const base = commonDir(all);
  const rel = (p: string): string => relative(base, p) || '.';
  const relData = overlayData({
    userxattr: spec.userxattr === true,
    volatile: spec.volatile === true,
    lowers: spec.lowers.map(rel),
    ...(upper !== undefined && work !== undefined ? { upper: rel(upper), work: rel(work) } : {}),
  });
  if (fits(relData)) return [{ op: 'mount', target: spec.target, data: relData, readonly, cwd: base }];

  const dir = spec.linkDir();
  const names = spec.lowers.map((_, i) => i.toString(36));
  // upperdir and workdir stay absolute: the link directory is the working directory of the mount call
  const linkData = overlayData({
    userxattr: spec.userxattr === true,
    volatile: spec.volatile === true,
    lowers: names,
    ...(upper !== undefined && work !== undefined ? { upper, work } : {}),
  });
  if (!fits(linkData)) {
    throw new InvalidInputError(
      `overlay options for ${spec.target} do not fit in a page even with short links`,
      'use shorter upperdir and workdir paths',
    );
  }
  return [
    { op: 'mkdir', path: dir },
    ...spec.lowers.map((target, i): MountStep => ({ op: 'symlink', path: join(dir, names[i] as string), target })),
    { op: 'mount', target: spec.target, data: linkData, readonly, cwd: dir },
    { op: 'remove-links', path: dir },
  ];
}

/** commonDir is the deepest directory that contains every path (absolute, resolved). */
function commonDir(paths: string[]): string {
  const split = paths.map((p) => p.split(sep).filter((s) => s !== ''));
  const first = split[0] ?? [];
  let n = first.length;
  for (const parts of split) {
    let i = 0;
    while (i < n && i < parts.length && parts[i] === first[i]) i++;
    n = i;
  }
  return sep + first.slice(0, n).join(sep);
}

/** MountedOverlay is a mounted union; unmount undoes every step (idempotent). */
export interface MountedOverlay {
  target: string;
  unmount(): Promise<void>;
}

/**
 * mountOverlay performs planOverlayMount(plan) with `host` (root, or CAP_SYS_ADMIN). It creates upperdir, workdir and target
 * when missing (and leaves them: they hold the result). On failure every step already done is undone and a
 * TsbuildError (code E_OVERLAY_MOUNT, with a hint) is thrown. unmount() unmounts and removes what the steps made;
 * a busy mount is detached lazily (MNT_DETACH) rather than left behind. A `volatile` mount refused with EINVAL is
 * made again without the option.
 */
export async function mountOverlay(plan: OverlayPlan, host: Host = defaultHost()): Promise<MountedOverlay> {
  if (!plan.volatile) return mountPlan(plan, host);
  try {
    return await mountPlan(plan, host);
  } catch (e) {
    // a kernel older than 5.10 does not know the option (its steps are undone): the same overlay without it
    if ((e as { cause?: { code?: unknown } }).cause?.code !== 'EINVAL') throw e;
    return mountPlan({ ...plan, volatile: false }, host);
  }
}

async function mountPlan(plan: OverlayPlan, host: Host): Promise<MountedOverlay> {
  const steps = planOverlayMount(host.caps().userns ? { ...plan, userxattr: true } : plan);
  for (const d of [plan.upperdir, plan.workdir, plan.target]) await mkdir(d, { recursive: true });
  const undo: Array<() => Promise<void>> = [];
  const undoAll = async (): Promise<void> => {
    let first: unknown;
    while (undo.length > 0) {
      try {
        await (undo.pop() as () => Promise<void>)();
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined) throw first;
  };
  try {
    for (const step of steps) await perform(host, step, undo);
  } catch (e) {
    await undoAll().catch(() => {});
    throw e;
  }
  let done = false;
  return {
    target: resolve(plan.target),
    async unmount() {
      if (done) return;
      done = true;
      await undoAll();
    },
  };
}

async function perform(host: Host, step: MountStep, undo: Array<() => Promise<void>>): Promise<void> {
  switch (step.op) {
    case 'mkdir':
      try {
        await mkdir(step.path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        throw new TsbuildError('E_OVERLAY_MOUNT', `overlay scratch directory ${step.path} already exists`, {
          hint: 'a crashed run left it: unmount anything below it, then remove it',
        });
      }
      undo.push(() => rmdir(step.path).catch(ignoreCode('ENOENT')));
      return;
    case 'symlink':
      await symlink(step.target, step.path);
      undo.push(() => unlink(step.path).catch(ignoreCode('ENOENT')));
      return;
    case 'remove-links':
      await removeLinks(step.path);
      return;
    case 'mount':
      mountSync(host, step);
      undo.push(() => unmountPath(host, step.target));
      return;
  }
}

function mountSync(host: Host, step: Extract<MountStep, { op: 'mount' }>): void {
  const flags = step.readonly ? MS.RDONLY : 0;
  const before = step.cwd === undefined ? undefined : process.cwd();
  try {
    if (step.cwd !== undefined) process.chdir(step.cwd);
    try {
      host.mount('overlay', step.target, 'overlay', flags, step.data);
    } finally {
      if (before !== undefined) process.chdir(before);
    }
  } catch (e) {
    throw mountError(step.target, e);
  }
}

function mountError(target: string, e: unknown): TsbuildError {
  const code = e instanceof SysError ? e.code : ((e as NodeJS.ErrnoException).code ?? String(e));
  const hints: Record<string, string> = {
    EPERM: 'overlay mounts need root (CAP_SYS_ADMIN); without them tsbuild uses the userspace fallback',
    ENODEV: 'this kernel has no overlay filesystem (try `modprobe overlay`)',
    EINVAL:
      'the kernel refused the options: `dmesg | tail` says why (layers on an overlay stacked too deep, ' +
      'workdir not on the upperdir filesystem, …)',
    ENOENT: 'a lowerdir, the upperdir, the workdir or the target does not exist',
  };
  const hint = hints[code];
  return new TsbuildError('E_OVERLAY_MOUNT', `mounting overlay at ${target}: ${code}`, {
    cause: e,
    ...(hint ? { hint } : {}),
  });
}

async function unmountPath(host: Host, target: string): Promise<void> {
  try {
    host.umount(target);
  } catch (e) {
    const code = (e as SysError).code;
    if (code === 'EINVAL' || code === 'ENOENT') return; // not mounted any more
    if (code !== 'EBUSY') throw e;
    host.umount(target, MNT_DETACH);
  }
}

/** removeLinks unlinks the symlinks in dir (nothing else: a mistake must not delete real files) and removes it. */
async function removeLinks(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    const p = join(dir, name);
    if ((await lstat(p)).isSymbolicLink()) await unlink(p);
  }
  await rmdir(dir);
}

function ignoreCode(code: string): (e: unknown) => void {
  return (e) => {
    if ((e as NodeJS.ErrnoException).code !== code) throw e;
  };
}

// COPY and ADD writing: the selected sources (builder/steps/copy-select.ts) copied into a root filesystem with
// BuildKit's rules (fsutil copy):
// - a destination ending in `/` (or `.`) is a directory and is created; a file source otherwise becomes the
//   destination path itself, unless that path already is a directory;
// - missing parent directories are created 0755 (or the numeric --chmod), owned by --chown;
// - entries keep their mode (unless --chmod), times (SOURCE_DATE_EPOCH replaces them), xattrs, and owner:
//   0:0 for the build context, the source's for --from, --chown's when given; hard links inside one source stay
//   hard links; a directory onto a non-directory, or a file onto a directory, is an error;
// - ADD extracts local tar archives (plain or compressed) into the destination.
// Every destination path is resolved inside the root filesystem (secureJoin): symlinks in the image can never send
// a write outside it. Device nodes and owners go through the Host (host.mknod, host.lchown).
//
// Speed (a COPY of thousands of small files): the walk runs on the main thread, in order, and hands each regular
// file to a window of concurrent jobs (builder/steps/copy-jobs.ts): the data copy runs in libuv's thread pool (the
// target opened O_CREAT|O_EXCL: never through a symlink), the file's metadata follows on the main thread once it is
// written, and a directory's metadata waits for its children. A directory this copy created is known to be empty:
// its entries are made without an lstat of the target first.
import {
  chmodSync,
  constants as fsc,
  createReadStream,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  type Stats,
} from 'node:fs';
import { copyFile, mkdtemp, open, rm } from 'node:fs/promises';
import { join, posix, relative, sep } from 'node:path';
import { InvalidInputError, TsbuildError, wrap } from '../../sys/errors.js';
import type { Host } from '../../sys/host.js';
import { secureJoin } from '../../sys/secure-path.js';
import { keepXattr } from '../../layers/tar/whiteout.js';
import { majorMinor, setXattr } from '../../sys/libc.js';
import { type JobWindow, walkWith } from './copy-jobs.js';
import type { ChmodSpec } from './copy-chmod.js';

export { type ChmodSpec, parseChmod } from './copy-chmod.js';
import {
  childrenOf,
  type CopyFrom,
  type Owner,
  safeXattrs,
  type Selected,
  type SelNode,
  sortedNames,
} from './copy-select.js';

export interface CopyIntoOptions {
  /** the destination as BuildKit gives it: absolute, cleaned, a trailing `/` when it names a directory */
  dest: string;
  /** --chown, resolved; otherwise sources keep their owner (0:0 from the context) */
  chown?: Owner;
  chmod?: ChmodSpec;
  /** SOURCE_DATE_EPOCH: the mtime of every copied and created entry */
  mtime?: number;
  /** ADD: extract local tar archives (plain, gzip, bzip2, xz, zstd) into the destination */
  unpack?: boolean;
  /** a scratch directory (on any filesystem) for archive extraction */
  tmpDir: string;
  /** makes device nodes and sets owners */
  host: Host;
  /** regular files written at once (default FILES_IN_FLIGHT; 1: one after the other, as tests compare) */
  filesInFlight?: number;
}

/**
 * copyInto copies selected sources into the root filesystem `root` (a host directory that is `/` for the image).
 * Throws CopyError for a type conflict (directory onto a file, file onto a directory) or a destination parent
 * that is not a directory.
 */
export async function copyInto(
  root: string,
  from: CopyFrom,
  sel: readonly Selected[],
  opts: CopyIntoOptions,
): Promise<void> {
  const ctx: Ctx = {
    root,
    host: opts.host,
    resetOwner: from.resetOwner,
    ...(opts.chown ? { chown: opts.chown } : {}),
    ...(opts.chmod ? { chmod: opts.chmod } : {}),
    ...(opts.mtime === undefined ? {} : { mtime: opts.mtime }),
    inodes: new Map(),
    win: undefined as unknown as JobWindow,
  };
  const destDir = opts.dest.endsWith('/');
  const dest = posix.normalize(opts.dest).replace(/(.)\/$/, '$1');
  const perm = opts.chmod?.octal ?? 0o755;
  // The destination itself is created first when it names a directory.
  if (destDir) mkdirAll(ctx, dest, perm);
  else mkdirAll(ctx, posix.dirname(dest), perm);
  for (const s of sel) {
    ctx.inodes = new Map();
    const node = s.node;
    if (opts.unpack && node.st.isFile() && !s.parents && (await isArchive(node.abs))) {
      await extractArchive(ctx, node, dest, perm, opts.tmpDir);
      continue;
    }
    // each source is written completely before the next: a later source may overwrite what an earlier one wrote
    await walkWith(opts.filesInFlight ?? FILES_IN_FLIGHT, async (win) => {
      ctx.win = win;
      await copyOne(ctx, node, s.rel, dest, perm, s.parents);
    });
  }
}

/**
 * FILES_IN_FLIGHT: regular files a COPY writes at once. libuv's pool has 4 threads; a few more jobs than that keep it
 * busy while the main thread walks and sets metadata.
 */
const FILES_IN_FLIGHT = 16;

interface Ctx {
  root: string;
  host: Host;
  resetOwner: boolean;
  chown?: Owner;
  chmod?: ChmodSpec;
  mtime?: number;
  /** dev:ino of a copied file → its host path in the destination and whether it was written (hard links) */
  inodes: Map<string, { path: string; done: Promise<boolean> }>;
  /** the current walk's window of file jobs */
  win: JobWindow;
  /**
   * ADD's archive extraction: a directory of the archive lands on an existing symlink to a directory by following
   * it inside the root (an absolute link is read from the root), as a tar extracted in the image's root does
   */
  throughLinks?: boolean;
}

/** CopyError is a COPY that conflicts with what the destination holds. */
export class CopyError extends TsbuildError {
  constructor(message: string) {
    super('E_COPY', message);
  }
}

/** copyOne is fsutil's prepareTargetDir + copy for one source (CopyDirContents on). */
async function copyOne(
  ctx: Ctx,
  node: SelNode,
  srcRel: string,
  dest: string,
  perm: number,
  contentsOnly: boolean,
): Promise<void> {
  const isDir = node.st.isDirectory();
  let target = resolveIn(ctx, dest);
  const existing = statFollow(target);
  if (!isDir && existing?.isDirectory()) target = join(target, basenameOf(srcRel, node.name));
  if (isDir && !existing) mkdirAll(ctx, dest, perm);
  else mkdirAllHost(ctx, parentOf(target), perm);
  if (isDir || contentsOnly) await copyDirectory(ctx, node, target, false, false);
  else await copyEntry(ctx, node, target, false, false);
}

function basenameOf(srcRel: string, fallback: string): string {
  return srcRel === '' ? fallback : posix.basename(srcRel);
}

function parentOf(hostPath: string): string {
  const i = hostPath.lastIndexOf('/');
  return i <= 0 ? '/' : hostPath.slice(0, i);
}

/** resolveIn resolves a container path inside the root, following symlinks (clamped to the root). */
function resolveIn(ctx: Ctx, p: string): string {
  return p === '/' || p === '' ? ctx.root : secureJoin(ctx.root, p);
}

function statFollow(hostPath: string): Stats | undefined {
  const st = lstatSync(hostPath, { throwIfNoEntry: false });
  return st;
}

/** mkdirAll creates a container directory and its missing parents (perm, --chown owner, epoch time). */
function mkdirAll(ctx: Ctx, p: string, perm: number): void {
  mkdirAllHost(ctx, resolveIn(ctx, p), perm);
}

function mkdirAllHost(ctx: Ctx, hostPath: string, perm: number): void {
  const missing: string[] = [];
  let cur = hostPath;
  for (;;) {
    const st = lstatSync(cur, { throwIfNoEntry: false });
    if (st) {
      if (!st.isDirectory()) throw new CopyError(`cannot copy into ${displayPath(ctx, cur)}: it is not a directory`);
      break;
    }
    missing.push(cur);
    if (cur === ctx.root || cur.length <= ctx.root.length) break;
    cur = parentOf(cur);
  }
  for (const dir of missing.reverse()) {
    mkdirSync(dir, perm);
    chmodSync(dir, perm); // not umasked
    const owner = ctx.chown ?? { uid: 0, gid: 0 };
    lchownSafe(ctx.host, dir, owner.uid, owner.gid);
    if (ctx.mtime !== undefined) lutimesSync(dir, ctx.mtime, ctx.mtime);
  }
}

function displayPath(ctx: Ctx, host: string): string {
  const r = relative(ctx.root, host);
  return `/${r.split(sep).join('/')}`;
}

/**
 * copyDirectory copies a directory's entries into target (created when missing); `fresh`: target's parent was made
 * by this walk, so target does not exist.
 */
async function copyDirectory(
  ctx: Ctx,
  node: SelNode,
  target: string,
  overwrite: boolean,
  fresh: boolean,
): Promise<void> {
  let st = fresh ? undefined : lstatSync(target, { throwIfNoEntry: false });
  if (st?.isSymbolicLink() && ctx.throughLinks) {
    const followed = resolveIn(ctx, displayPath(ctx, target));
    const fst = lstatSync(followed, { throwIfNoEntry: false });
    if (fst?.isDirectory()) {
      target = followed;
      st = fst;
    }
  }
  let created = false;
  if (!st) {
    mkdirSync(target, 0o700);
    created = true;
  } else if (!st.isDirectory()) {
    throw new CopyError(`cannot copy to non-directory: ${displayPath(ctx, target)}`);
  }
  for (const child of childrenOf(node)) {
    await copyEntry(ctx, child, join(target, child.name), true, created);
  }
  // after every file job of its children: setting their metadata never touches the directory, creating them does
  if (created || overwrite) ctx.win.defer(() => setInfo(ctx, node, target));
}

/** copyEntry copies one entry to target; `fresh`: target's parent was made by this walk (target does not exist). */
async function copyEntry(ctx: Ctx, node: SelNode, target: string, overwrite: boolean, fresh: boolean): Promise<void> {
  // before looking at the target: with a window of 1 (ADD's archives), every earlier write is done
  await ctx.win.room();
  const st = node.st;
  if (st.isDirectory()) return copyDirectory(ctx, node, target, overwrite, fresh);
  if (!fresh) {
    // ensureEmptyFileTarget: a file never replaces a directory
    const existing = lstatSync(target, { throwIfNoEntry: false });
    if (existing?.isDirectory())
      throw new CopyError(`cannot replace directory ${displayPath(ctx, target)} with a file`);
    if (existing) unlinkSync(target);
  }
  if (st.isFile()) {
    const key = `${st.dev}:${st.ino}`;
    const first = st.nlink > 1 ? ctx.inodes.get(key) : undefined;
    if (first !== undefined) {
      ctx.win.start(async () => {
        // the first path of the inode is written first (when it failed, its error is the one reported)
        if (await first.done) linkSync(first.path, target);
      });
      return;
    }
    // O_EXCL: the target is new (checked or fresh above), and a symlink put there is never followed
    const done = ctx.win.start(async () => {
      await copyFile(node.abs, target, fsc.COPYFILE_EXCL | fsc.COPYFILE_FICLONE);
      setInfo(ctx, node, target, true);
    });
    if (st.nlink > 1) ctx.inodes.set(key, { path: target, done });
    return;
  } else if (st.isSocket()) {
    // a socket cannot live in a layer: BuildKit's context transfer gives an empty regular file in its place
    writeFileSync(target, '');
  } else if (st.isSymbolicLink()) {
    symlinkSync(readlinkSync(node.abs), target);
  } else if (st.isCharacterDevice() || st.isBlockDevice() || st.isFIFO()) {
    const { major, minor } = majorMinor(st.rdev);
    const type = st.isFIFO() ? fsc.S_IFIFO : st.isBlockDevice() ? fsc.S_IFBLK : fsc.S_IFCHR;
    ctx.host.mknod(target, type | (st.mode & 0o777), major, minor);
  } else return;
  setInfo(ctx, node, target);
}

/**
 * setInfo is fsutil's copyFileInfo: owner, mode, xattrs, times. `modeSet`: the target was made with the source's
 * whole mode (copyFile sets it with fchmod, not umasked).
 */
function setInfo(ctx: Ctx, node: SelNode, target: string, modeSet = false): void {
  const st = node.st;
  const owner = ctx.chown ?? (ctx.resetOwner ? { uid: 0, gid: 0 } : { uid: st.uid, gid: st.gid });
  lchownSafe(ctx.host, target, owner.uid, owner.gid);
  // modeSet: the target has the source's mode already; only chown's clearing of setuid/setgid needs undoing
  if (!st.isSymbolicLink() && (!modeSet || ctx.chmod !== undefined || (st.mode & 0o6000) !== 0)) {
    const mode = ctx.chmod ? ctx.chmod.apply(st.mode & 0o7777, st.isDirectory()) : st.mode & 0o7777;
    chmodSync(target, mode);
  }
  const x = safeXattrs(node.abs);
  for (const [name, value] of Object.entries(x)) {
    if (!keepXattr(name)) continue; // overlay bookkeeping and the host's SELinux label never reach an image
    try {
      setXattr(target, name, value);
    } catch {
      // the filesystem refused it (BuildKit's copier does the same with AllowXAttrErrors)
    }
  }
  const atime = ctx.mtime ?? st.atimeMs / 1000;
  const mtime = ctx.mtime ?? st.mtimeMs / 1000;
  lutimesSync(target, atime, mtime);
}

function lchownSafe(host: Host, path: string, uid: number, gid: number): void {
  try {
    host.lchown(path, uid, gid);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'EINVAL') throw err;
  }
}

// ─── ADD archives ───────────────────────────────────────────────────────────────────────────────────────────────

/** isArchive tells whether a file is a tar archive (plain or gzip/bzip2/xz/zstd), by content. */
export async function isArchive(path: string): Promise<boolean> {
  if (lstatSync(path).size === 0) return false;
  const head = await readDecompressedHead(path, 512);
  return head !== undefined && isTarHeader(head);
}

async function readDecompressedHead(path: string, n: number): Promise<Buffer | undefined> {
  const { autoDecompress } = await import('../../layers/compress/compress.js');
  const input = createReadStream(path, { highWaterMark: 64 << 10 });
  const plain = autoDecompress();
  input.on('error', (err) => plain.destroy(err));
  input.pipe(plain);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of plain) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= n) break;
    }
  } catch {
    return undefined;
  } finally {
    input.destroy();
    plain.destroy();
  }
  const buf = Buffer.concat(chunks);
  return buf.length >= n ? buf.subarray(0, n) : undefined;
}

/** isTarHeader checks the checksum of a 512-byte ustar/v7 header (an all-zero block is not a header). */
export function isTarHeader(b: Buffer): boolean {
  if (b.length < 512 || b.every((x) => x === 0)) return false;
  const field = b.subarray(148, 156).toString('latin1').replace(/\0.*$/s, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  const want = Number.parseInt(field, 8);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!;
  return sum === want;
}

async function extractArchive(ctx: Ctx, node: SelNode, dest: string, perm: number, tmpDir: string): Promise<void> {
  const staging = await mkdtemp(join(tmpDir, 'add-'));
  const [{ autoDecompress }, { applyLayer }] = await Promise.all([
    import('../../layers/compress/compress.js'),
    import('../../layers/tar/apply.js'),
  ]);
  try {
    const input = createReadStream(node.abs, { highWaterMark: 1 << 20 });
    const plain = autoDecompress();
    input.on('error', (err) => plain.destroy(err));
    try {
      await applyLayer(input.pipe(plain), { root: staging, whiteouts: 'delete' });
    } catch (err) {
      throw wrap(`extracting ${node.name}`, err);
    }
    mkdirAll(ctx, dest, perm);
    const tree = treeOf(staging, node.name);
    const sub: Ctx = { ...ctx, resetOwner: false, inodes: new Map(), throughLinks: true };
    // one file at a time: a directory reached through a link may be reached again by its own path
    await walkWith(1, async (win) => {
      sub.win = win;
      await copyDirectory(sub, tree, resolveIn(ctx, dest), false, false);
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** treeOf is a whole directory as a SelNode tree, each directory listed when a walk reaches it. */
export function treeOf(abs: string, name: string): SelNode {
  const st = lstatSync(abs);
  if (!st.isDirectory()) return { abs, name, st };
  return {
    abs,
    name,
    st,
    get children() {
      return sortedNames(abs).map((n) => treeOf(join(abs, n), n));
    },
  };
}

// ─── owners ─────────────────────────────────────────────────────────────────────────────────────────────────────

/**
 * resolveChown reads `--chown=user[:group]` against the destination root's /etc/passwd and /etc/group as BuildKit
 * does: a numeric user alone gives gid = uid; a name alone gives that user's primary group; a name that the files
 * do not list (or files that are missing) gives 0.
 */
export function resolveChown(root: string, spec: string): Owner {
  const [userPart = '', groupPart] = spec.split(':', 2);
  const passwd = readDb(root, '/etc/passwd');
  const group = readDb(root, '/etc/group');
  let uid = 0;
  let gid = 0;
  if (/^[0-9]+$/.test(userPart)) {
    uid = Number(userPart);
    gid = uid;
  } else if (userPart !== '') {
    const e = passwd.find((f) => f[0] === userPart);
    if (e) {
      uid = Number(e[2]) || 0;
      gid = Number(e[3]) || 0;
    }
  }
  if (groupPart !== undefined && groupPart !== '') {
    if (/^[0-9]+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const g = group.find((f) => f[0] === groupPart);
      gid = g ? Number(g[2]) || 0 : 0;
    }
  }
  return { uid, gid };
}

function readDb(root: string, path: string): string[][] {
  try {
    const host = secureJoin(root, path);
    return readFileSync(host, 'utf8')
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => l.split(':'));
  } catch {
    return [];
  }
}

// ─── inline sources ─────────────────────────────────────────────────────────────────────────────────────────────

/** writeStagedFile writes a heredoc or downloaded file into a staging directory for copying (mode, mtime). */
export async function writeStagedFile(
  dir: string,
  name: string,
  content: Uint8Array | string,
  mode: number,
  mtime?: number,
): Promise<string> {
  if (name === '' || name.includes('/') || name === '.' || name === '..')
    throw new InvalidInputError(`invalid file name ${JSON.stringify(name)}`);
  const p = join(dir, name);
  const fh = await open(p, 'wx', mode);
  try {
    await fh.writeFile(content);
    await fh.chmod(mode);
  } finally {
    await fh.close();
  }
  if (mtime !== undefined) lutimesSync(p, mtime, mtime);
  return p;
}

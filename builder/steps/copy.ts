// COPY and ADD: choosing the source files (wildcards, symlinks, .dockerignore, --exclude, --parents), hashing them
// for the cache key, and copying them into a root filesystem, with BuildKit's rules (fsutil copy):
// - a source is cleaned and clamped to its root; a top-level symlink is followed (inside the root), symlinks
//   below it are copied as symlinks; a directory source copies its contents; wildcards match per path component
//   (Go filepath.Match), an empty match is allowed, a missing literal path is an error;
// - a destination ending in `/` (or `.`) is a directory and is created; a file source otherwise becomes the
//   destination path itself, unless that path already is a directory;
// - missing parent directories are created 0755 (or the numeric --chmod), owned by --chown;
// - entries keep their mode (unless --chmod), times (SOURCE_DATE_EPOCH replaces them), xattrs, and owner:
//   0:0 for the build context, the source's for --from, --chown's when given; hard links inside one source stay
//   hard links; a directory onto a non-directory, or a file onto a directory, is an error.
// Every destination path is resolved inside the root filesystem (secureJoin): symlinks in the image can never send
// a write outside it.
import { createHash } from 'node:crypto';
import {
  chmodSync,
  constants as fsc,
  createReadStream,
  linkSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  unlinkSync,
  type Stats,
} from 'node:fs';
import { copyFile, mkdtemp, open, rm } from 'node:fs/promises';
import { basename, join, posix, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import ignore from '@balena/dockerignore';
import { InvalidInputError, TsbuildError, wrap } from '../../sys/errors.js';
import { secureJoin } from '../../sys/secure-path.js';
import { getXattrs, majorMinor, mknod, setXattr } from '../../sys/libc.js';
import type { ContextFilter } from '../context.js';

/** CopyFrom is where sources are read: a directory on this machine and how to treat it. */
export interface CopyFrom {
  /** host directory that is `/` for the sources */
  root: string;
  /** the context's .dockerignore filter (the build context only) */
  filter?: ContextFilter;
  /** for messages: `the build context`, `stage builder`, `image busybox` */
  label: string;
  /** the build context: copied entries are owned by 0:0 (BuildKit resets context ownership) */
  resetOwner: boolean;
}

/** Owner is a numeric uid/gid. */
export interface Owner {
  uid: number;
  gid: number;
}

/** SelNode is one selected source entry; directories carry their selected children (sorted by name). */
export interface SelNode {
  abs: string;
  name: string;
  st: Stats;
  children?: SelNode[];
}

/** Selected is one source after wildcard and symlink resolution: a tree to copy. */
export interface Selected {
  /** the source path relative to the root, '' for the root itself */
  rel: string;
  node: SelNode;
  /** --parents: copy the node's contents (the tree starts at the pivot directory and holds only matched paths) */
  parents: boolean;
}

export interface SelectOptions {
  exclude?: string[];
  parents?: boolean;
}

/** SourceNotFoundError: a literal COPY/ADD source is missing (or excluded by .dockerignore). */
export class SourceNotFoundError extends TsbuildError {
  constructor(readonly source: string, where: string) {
    super('E_COPY_SOURCE', `${JSON.stringify(source)} not found in ${where}`, {
      hint: where === 'the build context' ? 'check the path, and that .dockerignore does not exclude it' : undefined,
    } as { hint?: string });
  }
}

/** containsWildcards tells whether a path has an unescaped `*`, `?` or `[` (Go's rules). */
export function containsWildcards(p: string): boolean {
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === '\\') i++;
    else if (c === '*' || c === '?' || c === '[') return true;
  }
  return false;
}

/** cleanSource turns a source as written into a clean relative path: a leading `/` and `..` are clamped. */
export function cleanSource(src: string): string {
  return posix.join('/', src).slice(1).replace(/\/$/, '');
}

/**
 * selectSources resolves the sources of one COPY/ADD against `from`, reading only the source side. Throws
 * SourceNotFoundError for a missing literal source, InvalidInputError for a bad pattern.
 */
export function selectSources(from: CopyFrom, sources: readonly string[], opts: SelectOptions = {}): Selected[] {
  const out: Selected[] = [];
  const exclude = opts.exclude?.length ? ignore.default({ ignorecase: false }).add(opts.exclude) : undefined;
  const excluded = (rel: string): boolean => exclude !== undefined && rel !== '' && exclude.ignores(rel);
  for (const given of sources) {
    if (opts.parents) {
      out.push(selectParents(from, given, excluded));
      continue;
    }
    const clean = cleanSource(given);
    if (containsWildcards(clean)) {
      const { base, pattern } = splitWildcards(clean);
      for (const rel of resolveWildcards(from, base, pattern)) {
        const relToBase = base === '' ? rel : rel.slice(base.length + 1);
        if (excluded(relToBase)) continue;
        const node = followTop(from, rel, given);
        if (node) out.push({ rel, node: buildTree(from, node, relOf(from, node.abs), '', excluded), parents: false });
      }
      continue;
    }
    const node = followTop(from, clean, given);
    if (!node) throw new SourceNotFoundError(given, from.label);
    out.push({ rel: clean, node: buildTree(from, node, relOf(from, node.abs), '', excluded), parents: false });
  }
  return out;
}

function relOf(from: CopyFrom, abs: string): string {
  const r = relative(from.root, abs);
  return r === '' ? '' : r.split(sep).join('/');
}

/** followTop resolves a source path following every symlink inside the root; undefined when missing or ignored. */
function followTop(from: CopyFrom, rel: string, given: string): SelNode | undefined {
  const abs = rel === '' ? from.root : secureJoin(from.root, rel);
  const st = lstatSync(abs, { throwIfNoEntry: false });
  if (!st) return undefined;
  if (st.isSymbolicLink()) throw new InvalidInputError(`${JSON.stringify(given)}: a symlink loop in ${from.label}`);
  const real = relOf(from, abs);
  if (from.filter && real !== '' && from.filter.excluded(real, st.isDirectory())) return undefined;
  return { abs, name: basename(rel === '' ? '/' : rel), st };
}

/** buildTree lists a directory's selected descendants (context filter and --exclude applied), sorted by name. */
function buildTree(from: CopyFrom, node: SelNode, ctxRel: string, srcRel: string, excluded: (rel: string) => boolean): SelNode {
  if (!node.st.isDirectory()) return node;
  const children: SelNode[] = [];
  for (const name of sortedNames(node.abs)) {
    const abs = join(node.abs, name);
    const st = lstatSync(abs);
    const cRel = ctxRel === '' ? name : `${ctxRel}/${name}`;
    const sRel = srcRel === '' ? name : `${srcRel}/${name}`;
    if (from.filter?.excluded(cRel, st.isDirectory())) continue;
    if (excluded(sRel)) continue;
    children.push(buildTree(from, { abs, name, st }, cRel, sRel, excluded));
  }
  return { ...node, children };
}

function sortedNames(dir: string): string[] {
  return readdirSync(dir).sort((a, b) => (Buffer.compare(Buffer.from(a), Buffer.from(b))));
}

/** splitWildcards splits at the first component with a wildcard: `a/b/*.txt/c` → base `a/b`, pattern `*.txt/c`. */
export function splitWildcards(p: string): { base: string; pattern: string } {
  const parts = p.split('/');
  const i = parts.findIndex(containsWildcards);
  return { base: parts.slice(0, i).join('/'), pattern: parts.slice(i).join('/') };
}

/** resolveWildcards walks base (followed inside the root) and returns the paths matching pattern, not below a match. */
function resolveWildcards(from: CopyFrom, base: string, pattern: string): string[] {
  const baseAbs = base === '' ? from.root : secureJoin(from.root, base);
  const st = lstatSync(baseAbs, { throwIfNoEntry: false });
  if (!st?.isDirectory()) return [];
  const depth = pattern.split('/').length;
  const baseReal = relOf(from, baseAbs);
  const out: string[] = [];
  const walk = (dir: string, rel: string, level: number): void => {
    for (const name of sortedNames(dir)) {
      const abs = join(dir, name);
      const r = rel === '' ? name : `${rel}/${name}`;
      const cst = lstatSync(abs);
      const ctxRel = baseReal === '' ? r : `${baseReal}/${r}`;
      if (from.filter?.excluded(ctxRel, cst.isDirectory())) continue;
      if (goMatch(pattern, r)) {
        out.push(base === '' ? r : `${base}/${r}`);
        continue;
      }
      if (cst.isDirectory() && level + 1 < depth) walk(abs, r, level + 1);
    }
  };
  walk(baseAbs, '', 0);
  return out;
}

/** selectParents handles `COPY --parents`: `pivot/./pattern`, or the whole path below the root. */
function selectParents(from: CopyFrom, given: string, excluded: (rel: string) => boolean): Selected {
  const cut = given.indexOf('/./');
  const pivotRaw = cut < 0 ? '/' : given.slice(0, cut);
  const patternRaw = cut < 0 ? given : given.slice(cut + 3);
  const pivot = cleanSource(pivotRaw);
  const pattern = cleanSource(patternRaw);
  const pivotAbs = pivot === '' ? from.root : secureJoin(from.root, pivot);
  const st = lstatSync(pivotAbs, { throwIfNoEntry: false });
  if (!st?.isDirectory()) throw new SourceNotFoundError(given, from.label);
  const pivotReal = relOf(from, pivotAbs);
  const required = !containsWildcards(pivot) && !containsWildcards(pattern);
  let found = false;
  const walk = (abs: string, rel: string): SelNode[] => {
    const out: SelNode[] = [];
    for (const name of sortedNames(abs)) {
      const cAbs = join(abs, name);
      const cst = lstatSync(cAbs);
      const r = rel === '' ? name : `${rel}/${name}`;
      const ctxRel = pivotReal === '' ? r : `${pivotReal}/${r}`;
      if (from.filter?.excluded(ctxRel, cst.isDirectory())) continue;
      if (excluded(r)) continue;
      const m = prefixMatch(pattern, r);
      if (m === 'full') {
        found = true;
        out.push(buildTree(from, { abs: cAbs, name, st: cst }, ctxRel, r, excluded));
      } else if (m === 'partial' && cst.isDirectory()) {
        const kids = walk(cAbs, r);
        if (kids.length > 0) out.push({ abs: cAbs, name, st: cst, children: kids });
      }
    }
    return out;
  };
  const children = pattern === '' ? (buildTree(from, { abs: pivotAbs, name: '', st }, pivotReal, '', excluded).children ?? []) : walk(pivotAbs, '');
  if (pattern === '') found = true;
  if (required && !found) throw new SourceNotFoundError(given, from.label);
  return { rel: pivot, node: { abs: pivotAbs, name: basename(pivotAbs), st, children }, parents: true };
}

/**
 * prefixMatch matches a path against a `--parents` pattern: 'full' when the path matches (or lies below a
 * match, handled by the caller), 'partial' when a deeper path could match, 'none' otherwise. `**` matches any
 * number of components.
 */
export function prefixMatch(pattern: string, path: string): 'full' | 'partial' | 'none' {
  const pp = pattern.split('/');
  const sp = path.split('/');
  let full = false;
  let partial = false;
  const rec = (i: number, j: number): void => {
    if (full) return;
    if (i === pp.length) {
      if (j === sp.length) full = true;
      return;
    }
    if (j === sp.length) {
      partial = true;
      return;
    }
    const p = pp[i]!;
    if (p === '**') {
      rec(i + 1, j); // zero components
      rec(i, j + 1); // one more component
      return;
    }
    if (goMatch(p, sp[j]!)) rec(i + 1, j + 1);
  };
  rec(0, 0);
  return full ? 'full' : partial ? 'partial' : 'none';
}

/** goMatch is Go's path.Match: `*` and `?` never match `/`, `[...]` classes with `^`/`!` negation, `\` escapes. */
export function goMatch(pattern: string, name: string): boolean {
  return goMatchRe(pattern).test(name);
}

const reCache = new Map<string, RegExp>();
function goMatchRe(pattern: string): RegExp {
  let re = reCache.get(pattern);
  if (re) return re;
  let s = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') s += '[^/]*';
    else if (c === '?') s += '[^/]';
    else if (c === '\\') {
      i++;
      if (i >= pattern.length) throw new InvalidInputError(`bad pattern ${JSON.stringify(pattern)}: trailing backslash`);
      s += escapeRe(pattern[i]!);
    } else if (c === '[') {
      const end = classEnd(pattern, i);
      if (end < 0) throw new InvalidInputError(`bad pattern ${JSON.stringify(pattern)}: unterminated [`);
      let body = pattern.slice(i + 1, end);
      let neg = false;
      if (body.startsWith('^') || body.startsWith('!')) {
        neg = true;
        body = body.slice(1);
      }
      let cls = '';
      for (let k = 0; k < body.length; k++) {
        const ch = body[k]!;
        if (ch === '\\') {
          k++;
          cls += escapeRe(body[k] ?? '\\');
        } else if (ch === '-') cls += '-';
        else cls += escapeRe(ch);
      }
      s += neg ? `[^/${cls}]` : `[${cls}]`;
      i = end;
    } else s += escapeRe(c);
  }
  re = new RegExp(`${s}$`, 's');
  reCache.set(pattern, re);
  return re;
}

function classEnd(p: string, start: number): number {
  let i = start + 1;
  if (p[i] === '^' || p[i] === '!') i++;
  if (p[i] === ']') i++;
  for (; i < p.length; i++) {
    if (p[i] === '\\') i++;
    else if (p[i] === ']') return i;
  }
  return -1;
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

// ─── hashing ────────────────────────────────────────────────────────────────────────────────────────────────────

/** XATTRS_HASHED: xattrs that count for the cache key (BuildKit: not security.* except capability, not system.*). */
function hashedXattr(name: string): boolean {
  if (name === 'security.capability') return true;
  return !name.startsWith('security.') && !name.startsWith('system.') && !name.startsWith('trusted.overlay.') && !name.startsWith('user.overlay.');
}

/**
 * hashSelection is the content checksum of what a COPY/ADD selected: per entry its path, type, mode, owner, size,
 * link target, device numbers, xattrs and data; never its times. Hard links inside a source count as links.
 */
export async function hashSelection(sel: readonly Selected[], resetOwner: boolean): Promise<string> {
  const h = createHash('sha256');
  for (const s of sel) {
    h.update(`source ${JSON.stringify(s.rel)} ${s.parents ? 'parents' : ''}\n`);
    const inodes = new Map<string, string>();
    const visit = async (n: SelNode, rel: string): Promise<void> => {
      const st = n.st;
      const owner = resetOwner ? '0:0' : `${st.uid}:${st.gid}`;
      let line = `${JSON.stringify(rel)} ${st.mode.toString(8)} ${owner}`;
      const key = `${st.dev}:${st.ino}`;
      if (st.isFile() && st.nlink > 1 && inodes.has(key)) line += ` link=${JSON.stringify(inodes.get(key))}`;
      else if (st.isFile()) {
        if (st.nlink > 1) inodes.set(key, rel);
        line += ` ${st.size} ${await hashFile(n.abs)}`;
      } else if (st.isSymbolicLink()) line += ` -> ${JSON.stringify(readlinkSync(n.abs))}`;
      else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const { major, minor } = majorMinor(st.rdev);
        line += ` dev=${major},${minor}`;
      }
      const x = safeXattrs(n.abs);
      for (const name of Object.keys(x).filter(hashedXattr).sort()) line += ` x:${name}=${x[name]!.toString('base64')}`;
      h.update(`${line}\n`);
      for (const c of n.children ?? []) await visit(c, rel === '' ? c.name : `${rel}/${c.name}`);
    };
    await visit(s.node, '');
  }
  return h.digest('hex');
}

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  if (lstatSync(path).size < 1 << 20) return h.update(readFileSync(path)).digest('hex');
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), h);
  return h.digest('hex');
}

function safeXattrs(path: string): Record<string, Buffer> {
  try {
    return getXattrs(path);
  } catch {
    return {};
  }
}

// ─── copying ────────────────────────────────────────────────────────────────────────────────────────────────────

/** ChmodSpec is a parsed --chmod: an octal mode, or symbolic clauses applied to each entry's own mode. */
export interface ChmodSpec {
  /** the octal value, when numeric */
  octal?: number;
  apply(mode: number, isDir: boolean): number;
}

/** parseChmod reads --chmod: octal up to 07777, or symbolic (`u=rwX,go=rX`, `+x`, `a-w`, `g=u`). */
export function parseChmod(spec: string): ChmodSpec {
  if (/^[0-9]+$/.test(spec)) {
    const n = Number.parseInt(spec, 8);
    if (!/^[0-7]+$/.test(spec) || n > 0o7777) {
      throw new InvalidInputError(`invalid chmod parameter: '${spec}'. it should be octal string and between 0 and 07777`);
    }
    return { octal: n, apply: () => n };
  }
  const clauses = spec.split(',').map((clause) => {
    const m = /^([ugoa]*)((?:[-+=](?:[rwxXst]*|[ugo]))+)$/.exec(clause);
    if (!m) throw new InvalidInputError(`invalid chmod parameter: ${JSON.stringify(spec)}: bad clause ${JSON.stringify(clause)}`);
    const who = m[1] || 'a';
    const ops = [...m[2]!.matchAll(/([-+=])([ugo]|[rwxXst]*)/g)].map((o) => ({ op: o[1]!, perms: o[2]! }));
    return { who, ops };
  });
  return {
    apply(mode: number, isDir: boolean): number {
      let m = mode & 0o7777;
      for (const { who, ops } of clauses) {
        let mask = 0;
        if (who.includes('u') || who.includes('a')) mask |= 0o4700;
        if (who.includes('g') || who.includes('a')) mask |= 0o2070;
        if (who.includes('o') || who.includes('a')) mask |= 0o1007;
        for (const { op, perms } of ops) {
          let bits = 0;
          if (perms === 'u' || perms === 'g' || perms === 'o') {
            const shift = perms === 'u' ? 6 : perms === 'g' ? 3 : 0;
            const v = (m >> shift) & 7;
            bits = (v << 6) | (v << 3) | v;
          } else {
            for (const p of perms) {
              if (p === 'r') bits |= 0o444;
              else if (p === 'w') bits |= 0o222;
              else if (p === 'x') bits |= 0o111;
              else if (p === 'X') {
                if (isDir || (mode & 0o111) !== 0) bits |= 0o111;
              } else if (p === 's') bits |= 0o6000;
              else if (p === 't') bits |= 0o1000;
            }
          }
          bits &= mask;
          if (op === '+') m |= bits;
          else if (op === '-') m &= ~bits;
          else m = (m & ~(mask & 0o777)) | bits;
        }
      }
      return m;
    },
  };
}

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
}

/**
 * copyInto copies selected sources into the root filesystem `root` (a host directory that is `/` for the image).
 * Throws CopyError for a type conflict (directory onto a file, file onto a directory) or a destination parent
 * that is not a directory.
 */
export async function copyInto(root: string, from: CopyFrom, sel: readonly Selected[], opts: CopyIntoOptions): Promise<void> {
  const ctx: Ctx = {
    root,
    resetOwner: from.resetOwner,
    ...(opts.chown ? { chown: opts.chown } : {}),
    ...(opts.chmod ? { chmod: opts.chmod } : {}),
    ...(opts.mtime === undefined ? {} : { mtime: opts.mtime }),
    inodes: new Map(),
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
    await copyOne(ctx, node, s.rel, dest, perm, s.parents);
  }
}

interface Ctx {
  root: string;
  resetOwner: boolean;
  chown?: Owner;
  chmod?: ChmodSpec;
  mtime?: number;
  /** dev:ino of a copied file → its host path in the destination (hard links) */
  inodes: Map<string, string>;
}

/** CopyError is a COPY that conflicts with what the destination holds. */
export class CopyError extends TsbuildError {
  constructor(message: string) {
    super('E_COPY', message);
  }
}

/** copyOne is fsutil's prepareTargetDir + copy for one source (CopyDirContents on). */
async function copyOne(ctx: Ctx, node: SelNode, srcRel: string, dest: string, perm: number, contentsOnly: boolean): Promise<void> {
  const isDir = node.st.isDirectory();
  let target = resolveIn(ctx, dest);
  const existing = statFollow(target);
  if (!isDir && existing?.isDirectory()) target = join(target, basenameOf(srcRel, node.name));
  if (isDir && !existing) mkdirAll(ctx, dest, perm);
  else mkdirAllHost(ctx, parentOf(target), perm);
  if (isDir || contentsOnly) await copyDirectory(ctx, node, target, false);
  else await copyEntry(ctx, node, target, false);
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
    lchownSafe(dir, owner.uid, owner.gid);
    if (ctx.mtime !== undefined) lutimesSync(dir, ctx.mtime, ctx.mtime);
  }
}

function displayPath(ctx: Ctx, host: string): string {
  const r = relative(ctx.root, host);
  return `/${r.split(sep).join('/')}`;
}

async function copyDirectory(ctx: Ctx, node: SelNode, target: string, overwrite: boolean): Promise<void> {
  const st = lstatSync(target, { throwIfNoEntry: false });
  let created = false;
  if (!st) {
    mkdirSync(target, 0o700);
    created = true;
  } else if (!st.isDirectory()) {
    throw new CopyError(`cannot copy to non-directory: ${displayPath(ctx, target)}`);
  }
  for (const child of node.children ?? []) {
    await copyEntry(ctx, child, join(target, child.name), true);
  }
  if (created || overwrite) setInfo(ctx, node, target);
}

async function copyEntry(ctx: Ctx, node: SelNode, target: string, overwrite: boolean): Promise<void> {
  const st = node.st;
  if (st.isDirectory()) return copyDirectory(ctx, node, target, overwrite);
  if (st.isSocket()) return; // sockets cannot be copied (nor stored in a layer)
  // ensureEmptyFileTarget: a file never replaces a directory
  const existing = lstatSync(target, { throwIfNoEntry: false });
  if (existing?.isDirectory()) throw new CopyError(`cannot replace directory ${displayPath(ctx, target)} with a file`);
  if (existing) unlinkSync(target);
  if (st.isFile()) {
    const key = `${st.dev}:${st.ino}`;
    const first = st.nlink > 1 ? ctx.inodes.get(key) : undefined;
    if (first !== undefined) {
      linkSync(first, target);
      return;
    }
    await copyFile(node.abs, target, fsc.COPYFILE_FICLONE);
    if (st.nlink > 1) ctx.inodes.set(key, target);
  } else if (st.isSymbolicLink()) {
    symlinkSync(readlinkSync(node.abs), target);
  } else if (st.isCharacterDevice() || st.isBlockDevice() || st.isFIFO()) {
    const { major, minor } = majorMinor(st.rdev);
    const type = st.isFIFO() ? fsc.S_IFIFO : st.isBlockDevice() ? fsc.S_IFBLK : fsc.S_IFCHR;
    mknod(target, type | (st.mode & 0o777), major, minor);
  } else return;
  setInfo(ctx, node, target);
}

/** setInfo is fsutil's copyFileInfo: owner, mode, xattrs, times. */
function setInfo(ctx: Ctx, node: SelNode, target: string): void {
  const st = node.st;
  const owner = ctx.chown ?? (ctx.resetOwner ? { uid: 0, gid: 0 } : { uid: st.uid, gid: st.gid });
  lchownSafe(target, owner.uid, owner.gid);
  if (!st.isSymbolicLink()) {
    const mode = ctx.chmod ? ctx.chmod.apply(st.mode & 0o7777, st.isDirectory()) : st.mode & 0o7777;
    chmodSync(target, mode);
  }
  const x = safeXattrs(node.abs);
  for (const [name, value] of Object.entries(x)) {
    if (name === 'security.selinux' || name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) continue;
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

function lchownSafe(path: string, uid: number, gid: number): void {
  try {
    lchownSync(path, uid, gid);
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
  const [{ autoDecompress }, { applyLayer }] = await Promise.all([import('../../layers/compress/compress.js'), import('../../layers/tar/apply.js')]);
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
    const sub: Ctx = { ...ctx, resetOwner: false, inodes: new Map() };
    await copyDirectory(sub, tree, resolveIn(ctx, dest), false);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** treeOf lists a whole directory as a SelNode tree. */
export function treeOf(abs: string, name: string): SelNode {
  const st = lstatSync(abs);
  if (!st.isDirectory()) return { abs, name, st };
  return { abs, name, st, children: sortedNames(abs).map((n) => treeOf(join(abs, n), n)) };
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
export async function writeStagedFile(dir: string, name: string, content: Uint8Array | string, mode: number, mtime?: number): Promise<string> {
  if (name === '' || name.includes('/') || name === '.' || name === '..') throw new InvalidInputError(`invalid file name ${JSON.stringify(name)}`);
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


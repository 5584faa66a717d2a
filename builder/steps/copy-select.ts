// COPY and ADD sources: choosing the files (wildcards, symlinks, .dockerignore, --exclude, --parents) and hashing
// them for the cache key, with BuildKit's rules (fsutil copy): a source is cleaned and clamped to its root; a
// top-level symlink is followed (inside the root), symlinks below it are kept as symlinks; a directory source
// stands for its contents; wildcards match per path component (Go filepath.Match), an empty match is allowed, a
// missing literal path is an error. The content hash covers path, type, mode, owner, size, link target, device
// numbers, xattrs and data, never times. Writing the selection into a root is builder/steps/copy-write.ts.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { basename, join, posix, relative, sep } from 'node:path';
import ignore from '@balena/dockerignore';
import { InvalidInputError, TsbuildError } from '../../sys/errors.js';
import { liteLstat, type FileStat } from '../../sys/lite-stat.js';
import { secureJoin } from '../../sys/secure-path.js';
import { getXattrs, majorMinor } from '../../sys/libc.js';
import type { ContextFilter } from '../context.js';
import { type FileDigests, hashFile, xattrsLine } from '../context-digests.js';

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
  /** the build context's memo of file digests (builder/context-digests.ts) */
  digests?: FileDigests;
}

/** Owner is a numeric uid/gid. */
export interface Owner {
  uid: number;
  gid: number;
}

/**
 * SelNode is one selected source entry; a directory's `children` are its selected children, sorted by name. For
 * a source directory, `children` is a getter that lists the directory again at each read (buildTree): a source of
 * a million files is never held as a tree, only the directories on the path of a walk are (issue 14: bounded
 * memory). Read it once per visit (childrenOf).
 */
export interface SelNode {
  abs: string;
  name: string;
  st: FileStat;
  readonly children?: SelNode[];
}

/** childrenOf lists a directory node's selected children, sorted by name ([] for anything else). */
export function childrenOf(node: SelNode): SelNode[] {
  return node.children ?? [];
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
  constructor(
    readonly source: string,
    where: string,
  ) {
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
      out.push(...selectParents(from, given, excluded));
      continue;
    }
    const clean = cleanSource(given);
    if (containsWildcards(clean)) {
      const { base, pattern } = splitWildcards(clean);
      // --exclude applies below each match (fsutil's copy never excludes a source root, so `ADD --exclude=* dir* /6`
      // makes an empty /6); a matched file is left out when it matches, as BuildKit's reference.md states
      // (`COPY --exclude=*.txt hom* /mydir/` copies no .txt file)
      for (const rel of resolveWildcards(from, base, pattern)) {
        const node = followTop(from, rel, given);
        if (node && !node.st.isDirectory() && excluded(base === '' ? rel : rel.slice(base.length + 1))) continue;
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

/**
 * buildTree makes a directory node list its selected descendants (context filter and --exclude applied, sorted by
 * name) when a walk reaches it; the listing is not kept.
 */
function buildTree(
  from: CopyFrom,
  node: SelNode,
  ctxRel: string,
  srcRel: string,
  excluded: (rel: string) => boolean,
): SelNode {
  if (!node.st.isDirectory()) return node;
  const list = (): SelNode[] => {
    const children: SelNode[] = [];
    for (const name of sortedNames(node.abs)) {
      const abs = childAbs(node.abs, name);
      const st = liteLstat(abs);
      const cRel = ctxRel === '' ? name : `${ctxRel}/${name}`;
      const sRel = srcRel === '' ? name : `${srcRel}/${name}`;
      if (from.filter?.excluded(cRel, st.isDirectory())) continue;
      if (excluded(sRel)) continue;
      children.push(buildTree(from, { abs, name, st }, cRel, sRel, excluded));
    }
    return children;
  };
  return {
    abs: node.abs,
    name: node.name,
    st: node.st,
    get children() {
      return list();
    },
  };
}

/** sortedNames lists a directory sorted bytewise (by the names' UTF-8 bytes, as BuildKit's walk orders them). */
export function sortedNames(dir: string): string[] {
  const names = readdirSync(dir);
  // ASCII names (the common case) sort bytewise as strings; others by their UTF-8 bytes, each encoded once
  // (UTF-16 order differs from UTF-8 order above U+D7FF)
  if (names.every((n) => ASCII.test(n))) return names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return names
    .map((n) => ({ n, b: Buffer.from(n) }))
    .sort((x, y) => Buffer.compare(x.b, y.b))
    .map((x) => x.n);
}

const ASCII = /^[\x00-\x7f]*$/;

/** childAbs is `join(dir, name)` for a name from a listing of the absolute, normalized `dir`. */
function childAbs(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
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
      const cst = liteLstat(abs);
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

/**
 * selectParents handles `COPY --parents`: `pivot/./pattern`, or the whole path below the root. A pivot with
 * wildcards stands for every directory it matches (each copied as its own pivot, so their trees merge in the
 * destination, as BuildKit's copy of a wildcard source with include patterns does).
 */
function selectParents(from: CopyFrom, given: string, excluded: (rel: string) => boolean): Selected[] {
  const cut = given.indexOf('/./');
  const pivotRaw = cut < 0 ? '/' : given.slice(0, cut);
  const patternRaw = cut < 0 ? given : given.slice(cut + 3);
  const pivot = cleanSource(pivotRaw);
  const pattern = cleanSource(patternRaw);
  if (containsWildcards(pivot)) {
    const { base, pattern: pivotPattern } = splitWildcards(pivot);
    const out: Selected[] = [];
    for (const rel of resolveWildcards(from, base, pivotPattern)) {
      const abs = secureJoin(from.root, rel);
      if (!lstatSync(abs, { throwIfNoEntry: false })?.isDirectory()) continue;
      out.push(parentsUnder(from, rel, pattern, false, given, excluded));
    }
    return out;
  }
  return [parentsUnder(from, pivot, pattern, !containsWildcards(pattern), given, excluded)];
}

/** parentsUnder selects the paths below the directory `pivot` that match `pattern` (all of it when empty). */
function parentsUnder(
  from: CopyFrom,
  pivot: string,
  pattern: string,
  required: boolean,
  given: string,
  excluded: (rel: string) => boolean,
): Selected {
  const pivotAbs = pivot === '' ? from.root : secureJoin(from.root, pivot);
  const st = lstatSync(pivotAbs, { throwIfNoEntry: false });
  if (!st?.isDirectory()) throw new SourceNotFoundError(given, from.label);
  const pivotReal = relOf(from, pivotAbs);
  let found = false;
  const walk = (abs: string, rel: string): SelNode[] => {
    const out: SelNode[] = [];
    for (const name of sortedNames(abs)) {
      const cAbs = join(abs, name);
      const cst = liteLstat(cAbs);
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
  const children =
    pattern === ''
      ? childrenOf(buildTree(from, { abs: pivotAbs, name: '', st }, pivotReal, '', excluded))
      : walk(pivotAbs, '');
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
      if (i >= pattern.length)
        throw new InvalidInputError(`bad pattern ${JSON.stringify(pattern)}: trailing backslash`);
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

/**
 * hashSelection is the content checksum of what a COPY/ADD selected: per entry its path, type, mode, owner, size,
 * link target, device numbers, xattrs and data; never its times. Hard links inside a source count as links.
 */
export async function hashSelection(
  sel: readonly Selected[],
  resetOwner: boolean,
  digests?: FileDigests,
): Promise<string> {
  const h = createHash('sha256');
  for (const s of sel) {
    h.update(`source ${JSON.stringify(s.rel)} ${s.parents ? 'parents' : ''}\n`);
    const inodes = new Map<string, string>();
    const visit = async (n: SelNode, rel: string): Promise<void> => {
      const st = n.st;
      const owner = resetOwner ? '0:0' : `${st.uid}:${st.gid}`;
      let line = `${JSON.stringify(rel)} ${st.mode.toString(8)} ${owner}`;
      const key = `${st.dev}:${st.ino}`;
      let x: string | undefined;
      if (st.isFile() && st.nlink > 1 && inodes.has(key)) line += ` link=${JSON.stringify(inodes.get(key))}`;
      else if (st.isFile()) {
        if (st.nlink > 1) inodes.set(key, rel);
        let hex: string;
        if (digests) [hex, x] = await digests.digestAndXattrs(n.abs, st, () => xattrsLine(n.abs));
        else hex = await hashFile(n.abs, st.size);
        line += ` ${st.size} ${hex}`;
      } else if (st.isSymbolicLink()) line += ` -> ${JSON.stringify(readlinkSync(n.abs))}`;
      else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const { major, minor } = majorMinor(st.rdev);
        line += ` dev=${major},${minor}`;
      }
      h.update(`${line}${x ?? xattrsLine(n.abs)}\n`);
      for (const c of childrenOf(n)) await visit(c, rel === '' ? c.name : `${rel}/${c.name}`);
    };
    await visit(s.node, '');
  }
  return h.digest('hex');
}

export function safeXattrs(path: string): Record<string, Buffer> {
  try {
    return getXattrs(path);
  } catch {
    return {};
  }
}

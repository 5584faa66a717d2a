// A memo of the build context's file digests, kept in the store between builds, so that a rebuild stats the
// context's files instead of reading them (BuildKit's contenthash keeps such a cache per context; the legacy
// builder rehashed everything). COPY/ADD/RUN --mount=type=bind from the context ask it for a file's sha256.
//
// Trust rule: a digest is reused only for the same path whose lstat still shows the same device, inode, size,
// mtime and ctime. ctime cannot be set by a user: any write, chmod, rename into place or utimes moves it to the
// current time. The one gap is a file changed again within the same timestamp tick as the read that hashed it
// ("racily clean", as git calls it); so a digest is recorded only for a file whose ctime lies more than RACY_MS
// before the hashing began. Such a file is hashed again next time, and recorded then.
//
// Bounds: at most MAX_ENTRIES files are recorded per context (a larger context hashes the rest every time, and the
// memo stays small in memory); the file is rewritten only when something was added or went stale; an unreadable or
// malformed memo is ignored (rebuilt), never an error. Lives in `<store>/context-digests/<sha256 of the context's
// path>.json` (the absolute path the build was given), inside the store's 0700 root; `prune --all` removes them.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, lstatSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { contextDigestsDir } from '../layers/store/store.js';
import { isOverlayXattr } from '../layers/tar/whiteout.js';
import { getXattr, XattrNames } from '../sys/libc.js';
import type { FileStat } from '../sys/lite-stat.js';

/** RACY_MS: a file whose ctime is this close to the start of hashing (or later) is not recorded. */
export const RACY_MS = 2000;
/** MAX_ENTRIES: files recorded per context at most. */
export const MAX_ENTRIES = 200_000;
const VERSION = 1;

/**
 * [dev, ino, size, mtimeMs, ctimeMs, hex sha256, hashed xattrs?]: the last element, when present, is what the file's
 * extended attributes add to a COPY's checksum (usually ''); setting or removing an xattr moves the ctime too.
 */
type Entry = [number, number, number, number, number, string, string?];

/** Early is a file hashed ahead of its COPY: the lstat it was read under, its digest, what its xattrs add. */
interface Early {
  st: FileStat;
  hex: Promise<string>;
  x?: string;
}

/** FileDigests gives the sha256 of a context file's data, from the memo when the file has not changed. */
export class FileDigests {
  private readonly entries: Map<string, Entry>;
  private dirty = false;
  /** files hashed (memo misses) and files answered from the memo, for tests and benchmarks */
  readonly counts = { hashed: 0, reused: 0 };
  /** files read ahead by prefetch, and how many of those a COPY then took instead of reading them again */
  readonly early = { read: 0, used: 0 };
  /**
   * digests hashed ahead of their COPY (prefetch), by path, with the lstat they were read under and what the file's
   * xattrs add to the checksum (read after that lstat: a later change of them moves the ctime)
   */
  private readonly ahead = new Map<string, Early>();
  /** paths a COPY has asked for: a prefetch no longer needs to read them */
  private readonly asked = new Set<string>();

  private constructor(
    private readonly file: string,
    entries: Map<string, Entry>,
    /** when hashing began (ms since the epoch): the racy-clean rule compares ctimes with it */
    private readonly started: number,
  ) {
    this.entries = entries;
  }

  /**
   * open loads the memo of the context directory `root` from `storeRoot` (an empty one when there is none).
   * `now` is when hashing begins (tests move it to make files older than the racy window).
   */
  static async open(storeRoot: string, root: string, now = Date.now()): Promise<FileDigests> {
    const file = join(contextDigestsDir(storeRoot), `${createHash('sha256').update(root).digest('hex')}.json`);
    return new FileDigests(file, parseMemo(await readFile(file, 'utf8').catch(() => ''), root), now);
  }

  /** digest is the hex sha256 of the regular file `abs`, whose lstat is `st`. */
  async digest(abs: string, st: FileStat): Promise<string> {
    return (await this.lookup(abs, st))[0];
  }

  /**
   * digestAndXattrs is digest() plus the file's part of the checksum from its extended attributes, `xattrs()`
   * computed only when the memo does not hold it (a no-op rebuild then lists no xattrs).
   */
  async digestAndXattrs(abs: string, st: FileStat, xattrs: () => string): Promise<[string, string]> {
    const [hex, e, early] = await this.lookup(abs, st);
    if (e?.[6] !== undefined) return [hex, e[6]];
    const x = early ?? xattrs();
    if (e) {
      e[6] = x;
      this.dirty = true;
    }
    return [hex, x];
  }

  /** size is the number of files the memo holds. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * prefetch hashes the regular file `abs` (lstat `st`) ahead of the COPY that will ask for it, so that reading the
   * context overlaps the steps before that COPY (as BuildKit transfers the context while they run). The COPY uses
   * the digest only for the same lstat (device, inode, size, mtime, ctime), and only when the ctime was older than
   * RACY_MS when the file was read: a later write, even one in the same timestamp tick as an earlier write, then
   * shows in the ctime. A file already recorded, asked for, or too recent is not read. Returns whether it read the
   * file; a file that cannot be read is left to the COPY, which reports it.
   */
  async prefetch(abs: string, st: FileStat, now = Date.now()): Promise<boolean> {
    if (this.asked.has(abs) || this.ahead.has(abs) || !st.isFile()) return false;
    if (st.ctimeMs >= now - RACY_MS) return false;
    const e = this.entries.get(abs);
    if (e && sameFile(e, st)) return false;
    const hex = hashFile(abs, st.size);
    hex.catch(() => {}); // the COPY reads the file itself then, and reports what went wrong
    const early: Early = { st, hex };
    this.ahead.set(abs, early);
    try {
      await hex;
      early.x = xattrsLine(abs);
      this.early.read++;
      return true;
    } catch {
      this.ahead.delete(abs);
      return false;
    }
  }

  /**
   * lookup gives the file's digest, its memo entry (when it is recorded, now or before) and, when a prefetch of the
   * same lstat read them, what its xattrs add to the checksum.
   */
  private async lookup(abs: string, st: FileStat): Promise<[string, Entry | undefined, string | undefined]> {
    this.asked.add(abs);
    const e = this.entries.get(abs);
    if (e && sameFile(e, st)) {
      this.counts.reused++;
      return [e[5], e, undefined];
    }
    const early = this.ahead.get(abs);
    const reuse = early !== undefined && sameStat(early.st, st);
    let hex: string;
    let x: string | undefined;
    if (reuse) {
      hex = await early.hex.catch(() => hashFile(abs, st.size));
      x = early.x;
      this.early.used++;
    } else hex = await hashFile(abs, st.size);
    this.counts.hashed++;
    if (st.ctimeMs < this.started - RACY_MS && (e || this.entries.size < MAX_ENTRIES)) {
      const entry: Entry = [st.dev, st.ino, st.size, st.mtimeMs, st.ctimeMs, hex];
      if (x !== undefined) entry.push(x);
      this.entries.set(abs, entry);
      this.dirty = true;
      return [hex, entry, x];
    }
    if (e) {
      this.entries.delete(abs);
      this.dirty = true;
    }
    return [hex, undefined, x];
  }

  /** save writes the memo back when it changed (temp file and rename: a reader sees the old or the new one). */
  async save(): Promise<void> {
    if (!this.dirty) return;
    const dir = join(this.file, '..');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
    const body = JSON.stringify({ version: VERSION, entries: Object.fromEntries(this.entries) });
    try {
      await writeFile(tmp, body, { mode: 0o600 });
      await rename(tmp, this.file);
      this.dirty = false;
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}

function sameFile(e: Entry, st: FileStat): boolean {
  return e[0] === st.dev && e[1] === st.ino && e[2] === st.size && e[3] === st.mtimeMs && e[4] === st.ctimeMs;
}

function sameStat(a: FileStat, b: FileStat): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

/** parseMemo reads a memo file; anything unexpected gives an empty memo (the digests are then computed again). */
function parseMemo(text: string, root: string): Map<string, Entry> {
  const under = root.endsWith('/') ? root : `${root}/`;
  const out = new Map<string, Entry>();
  if (!text) return out;
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return out;
  }
  if (typeof doc !== 'object' || doc === null || (doc as { version?: unknown }).version !== VERSION) return out;
  const entries = (doc as { entries?: unknown }).entries;
  if (typeof entries !== 'object' || entries === null) return out;
  for (const [path, e] of Object.entries(entries as Record<string, unknown>)) {
    if (out.size >= MAX_ENTRIES) break;
    // only files under this context, in the entry's exact shape
    if (!path.startsWith(under) || !Array.isArray(e) || (e.length !== 6 && e.length !== 7)) continue;
    if (!e.slice(0, 5).every((n) => typeof n === 'number' && Number.isFinite(n))) continue;
    if (typeof e[5] !== 'string' || !/^[0-9a-f]{64}$/.test(e[5])) continue;
    if (e.length === 7 && typeof e[6] !== 'string') continue;
    out.set(path, e as Entry);
  }
  return out;
}

/** hashFile reads a file and gives its hex sha256 (small files in one read). */
export async function hashFile(path: string, size = lstatSync(path).size): Promise<string> {
  const h = createHash('sha256');
  if (size < 1 << 20) return h.update(readFileSync(path)).digest('hex');
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), h);
  return h.digest('hex');
}

/** hashedXattr: the xattrs that count for a COPY's checksum (BuildKit: not security.* except capability, not system.*). */
function hashedXattr(name: string): boolean {
  if (name === 'security.capability') return true;
  return !name.startsWith('security.') && !name.startsWith('system.') && !isOverlayXattr(name);
}

const xattrNames = new XattrNames();

/**
 * xattrsLine is what a file's extended attributes add to a COPY's checksum line for it (builder/steps/copy-select.ts's
 * hashSelection): '' without any (most files: one llistxattr into a reused buffer says so), and '' when they cannot
 * be read.
 */
export function xattrsLine(abs: string): string {
  let line = '';
  try {
    for (const name of xattrNames.list(abs).filter(hashedXattr).sort()) {
      const v = getXattr(abs, name);
      if (v !== undefined) line += ` x:${name}=${v.toString('base64')}`;
    }
  } catch {
    return '';
  }
  return line;
}

// Reading ahead for layer tars (layers/tar/create.ts): the metadata of the next entries (lstat, readlink, xattrs)
// looked up in batches with blocking calls, and the plain file reads (whole, or a chunk at a given offset) that
// refuse a file whose size changed.
import { closeSync, constants as fsc, openSync, readlinkSync, readSync } from 'node:fs';
import { TsbuildError, wrap } from '../../sys/errors.js';
import { getXattr, Lstat, lstatInto, readlinkInto, XattrNames } from '../../sys/libc.js';
import {
  lstatPath,
  pathPrefix,
  utf8Name,
  WARN,
  type FsStat,
  type Plan,
  type PlanItem,
  type TarWriteOptions,
} from './create-plan.js';
import { kindOf } from './entry.js';
import { keepXattr } from './whiteout.js';

/** FileChangedError: a file's size changed between lstat and the end of reading it; the tar stream fails. */
export class FileChangedError extends TsbuildError {
  constructor(
    readonly path: string,
    expected: number,
    how: string,
  ) {
    super('E_FILE_CHANGED', `${path} changed while it was being archived (lstat said ${expected} bytes, ${how})`, {
      hint: 'stop whatever writes to the tree (a process still running in the container?) and commit again',
    });
  }
}

/**
 * Files up to this size are read whole with blocking calls when their turn comes, straight into the output. (In the
 * thread pool, a read into a fresh Buffer cost the main thread some 45 µs of its own, about what a blocking read of
 * a mid-sized file from the page cache costs in all.)
 */
export const SMALL_FILE = 1 << 20;
/** Bigger files are streamed in chunks of this size. */
export const CHUNK = 1 << 20;
/** How many entries ahead metadata is looked up. */
const WINDOW = 64;

/** O_NOFOLLOW: a path swapped for a symlink after lstat is not followed; O_NONBLOCK: nor does a fifo hang us. */
export const OPEN_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK;

// ─── reading ahead ──────────────────────────────────────────────────────────────────────────────────────────────

/** Prepared is an entry with everything but the hardlink decision looked up. */
export interface Prepared {
  item: PlanItem;
  /** the path (join(root, rel)); unset for a marker */
  abs?: string;
  st?: FsStat;
  linkname?: string;
  xattrs?: Record<string, Buffer>;
  /** set when the entry is left out (a socket) */
  skip?: boolean;
}

/**
 * ReadAhead looks entries up in batches ahead of the writer. Metadata (lstat, readlink, xattrs) is read with
 * blocking calls, a batch at a time: on a warm page cache a libuv round trip costs several times the syscall, and
 * a layer has mostly small files. The calls are sys/libc.ts's (statx and llistxattr into reused buffers: no BigInt
 * stats, no Buffer per call); one that fails is made again with Node's, whose error is the one reported. Contents
 * are not read here: only when their entry's turn comes.
 */
export class ReadAhead {
  /** entries looked up and not yet taken, by index modulo WINDOW */
  private readonly ready: Array<Prepared | Error | undefined> = new Array(WINDOW);
  private looked = 0;
  /** what paths start with: join(root, rel) is prefix + rel */
  private readonly prefix: string;
  private readonly lst = new Lstat();
  private readonly linkBuf = Buffer.allocUnsafe(4096);
  private readonly xattrNames = new XattrNames();

  constructor(
    private readonly plan: Plan,
    private readonly opts: TarWriteOptions,
  ) {
    this.prefix = pathPrefix(plan.root);
  }

  /** take returns entry i (in order: i = 0, 1, 2, …); an error found while looking it up is thrown now. */
  take(i: number): Prepared {
    if (this.looked - i < WINDOW / 2) {
      const end = Math.min(this.plan.count, i + WINDOW);
      for (; this.looked < end; this.looked++) {
        let got: Prepared | Error;
        try {
          got = this.lookup(this.plan.next() as PlanItem);
        } catch (err) {
          got = err as Error;
        }
        this.ready[this.looked % WINDOW] = got;
      }
    }
    const got = this.ready[i % WINDOW] as Prepared | Error;
    this.ready[i % WINDOW] = undefined;
    if (got instanceof Error) throw got;
    return got;
  }

  private lookup(item: PlanItem): Prepared {
    if (item.rel === undefined) return { item };
    const abs = this.prefix + item.rel;
    const st = this.lstat(abs);
    const kind = kindOf(st.mode);
    if (kind === undefined || kind === 'socket') {
      this.opts.onWarn?.(
        WARN.SKIPPED,
        `${abs}: ${kind ?? `unknown file type ${(st.mode >>> 12).toString(8)}`} left out of the layer`,
      );
      return { item, skip: true };
    }
    if ((kind === 'directory') !== item.isDir) {
      throw new TsbuildError('E_FILE_CHANGED', `${abs} changed type while it was being archived`);
    }
    const out: Prepared = { item, abs, st };
    const xattrs = this.readXattrs(abs);
    if (xattrs) out.xattrs = xattrs;
    if (kind === 'symlink') out.linkname = this.readlink(abs);
    return out;
  }

  /** lstat with statx into the reused buffer; when that fails, Node's lstat (its error, or its result). */
  private lstat(abs: string): FsStat {
    const l = this.lst;
    if (lstatInto(abs, l) !== 0) return lstatPath(abs);
    return {
      mode: l.mode,
      uid: l.uid,
      gid: l.gid,
      size: l.size,
      mtime: l.mtimeSeconds,
      nlink: l.nlink,
      devMajor: l.devMajor,
      devMinor: l.devMinor,
      inoHigh: l.inoHigh,
      inoLow: l.inoLow,
      rdevMajor: l.rdevMajor,
      rdevMinor: l.rdevMinor,
    };
  }

  /** readlink into the reused buffer; a failure or a target that may not fit there goes to Node's readlink. */
  private readlink(abs: string): string {
    const n = readlinkInto(abs, this.linkBuf);
    let target: Buffer;
    if (n >= 0 && n < this.linkBuf.length) target = this.linkBuf.subarray(0, n);
    else {
      try {
        target = readlinkSync(abs, { encoding: 'buffer' });
      } catch (err) {
        throw wrap(`reading symlink ${abs}`, err);
      }
    }
    return utf8Name(target, `symlink ${abs}`);
  }

  /**
   * readXattrs returns the xattrs to record, if any (most paths have none: one llistxattr says so); one that cannot be
   * read is reported and left out.
   */
  private readXattrs(abs: string): Record<string, Buffer> | undefined {
    let names: readonly string[];
    try {
      names = this.xattrNames.list(abs);
    } catch (err) {
      this.opts.onWarn?.(WARN.XATTR, `${abs}: cannot list xattrs: ${(err as Error).message}`);
      return undefined;
    }
    if (names.length === 0) return undefined;
    const out: Record<string, Buffer> = {};
    for (const name of names.filter(keepXattr).sort()) {
      try {
        const v = getXattr(abs, name);
        if (v !== undefined) out[name] = v;
      } catch (err) {
        this.opts.onWarn?.(WARN.XATTR, `${abs}: cannot read xattr ${name}: ${(err as Error).message}`);
      }
    }
    return Object.keys(out).length > 0 ? out : undefined;
  }
}

/**
 * readWholeSync reads a small file with Node's blocking calls into `buf` (at least size + 1 bytes), returning the
 * content's view; a size other than lstat's is a FileChangedError.
 */
export function readWholeSync(abs: string, size: number, buf: Buffer): Buffer {
  let fd: number;
  try {
    fd = openSync(abs, OPEN_FLAGS);
  } catch (err) {
    throw wrap(`reading ${abs}`, err);
  }
  try {
    let got = 0;
    try {
      for (let n = 1; n > 0 && got <= size; got += n) n = readSync(fd, buf, got, size + 1 - got, got);
    } catch (err) {
      throw wrap(`reading ${abs}`, err);
    }
    if (got !== size) throw new FileChangedError(abs, size, got > size ? 'it grew while read' : `read ${got}`);
    return buf.subarray(0, size);
  } finally {
    closeSync(fd);
  }
}

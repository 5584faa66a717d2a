// Reading ahead for layer tars (layers/tar/create.ts): the metadata of the next entries (lstat, readlink, xattrs)
// looked up in batches with blocking calls, mid-sized files read whole in the thread pool within a byte budget, and
// the plain file reads (whole, or a chunk at a given offset) that refuse a file whose size changed.
import { closeSync, constants as fsc, openSync, readlinkSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError, wrap } from '../../sys/errors.js';
import { getXattr, listXattrs } from '../../sys/libc.js';
import {
  lstatPath,
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

/** Files up to this size are read whole with blocking calls when their turn comes. */
export const SYNC_FILE = 64 << 10;
/** Files up to this size are read whole in the thread pool, ahead of writing, within PREFETCH_BUDGET bytes in total. */
export const SMALL_FILE = 1 << 20;
const PREFETCH_BUDGET = 16 << 20;
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
  abs?: string;
  st?: FsStat;
  linkname?: string;
  xattrs?: Record<string, Buffer>;
  /** the whole content, being read ahead (mid-sized files only) */
  content?: Promise<Buffer>;
  /** set when the entry is left out (a socket) */
  skip?: boolean;
}

/**
 * ReadAhead looks entries up in batches ahead of the writer. Metadata (lstat, readlink, xattrs) is read with
 * blocking calls, a batch at a time: on a warm page cache a libuv round trip costs several times the syscall, and
 * a layer has mostly small files. Mid-sized files are read whole in the thread pool, ahead, within a byte budget.
 */
export class ReadAhead {
  private readonly ready = new Map<number, Prepared | Error>();
  private looked = 0;
  /** bytes read ahead and not yet written */
  private budgetUsed = 0;

  constructor(
    private readonly plan: Plan,
    private readonly opts: TarWriteOptions,
  ) {}

  /**
   * take returns entry i (in order: i = 0, 1, 2, …), at once unless its content is being read ahead (then a promise
   * that waits for it); an error found while looking it up is thrown now.
   */
  take(i: number): Prepared | Promise<Prepared> {
    if (this.looked - i < WINDOW / 2) {
      const end = Math.min(this.plan.count, i + WINDOW);
      for (; this.looked < end; this.looked++) {
        let got: Prepared | Error;
        try {
          got = this.lookup(this.plan.next() as PlanItem);
        } catch (err) {
          got = err as Error;
        }
        this.ready.set(this.looked, got);
      }
    }
    const got = this.ready.get(i) as Prepared | Error;
    this.ready.delete(i);
    if (got instanceof Error) throw got;
    return got.content ? this.settled(got, got.content) : got;
  }

  private async settled(got: Prepared, content: Promise<Buffer>): Promise<Prepared> {
    try {
      await content;
    } finally {
      this.budgetUsed -= got.st?.size ?? 0;
    }
    return got;
  }

  private lookup(item: PlanItem): Prepared {
    if (item.rel === undefined) return { item };
    const abs = join(this.plan.root, item.rel);
    const st = lstatPath(abs);
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
    if (kind === 'symlink') {
      let target: Buffer;
      try {
        target = readlinkSync(abs, { encoding: 'buffer' });
      } catch (err) {
        throw wrap(`reading symlink ${abs}`, err);
      }
      out.linkname = utf8Name(target, `symlink ${abs}`);
    }
    if (
      kind === 'file' &&
      st.size > SYNC_FILE &&
      st.size <= SMALL_FILE &&
      st.nlink === 1 &&
      this.budgetUsed + st.size <= PREFETCH_BUDGET
    ) {
      this.budgetUsed += st.size;
      out.content = readWhole(abs, st.size);
      out.content.catch(() => {}); // reported when taken; one never taken (the stream stopped) must not be unhandled
    }
    return out;
  }

  /** readXattrs returns the xattrs to record; one that cannot be read is reported and left out. */
  private readXattrs(abs: string): Record<string, Buffer> | undefined {
    let names: string[];
    try {
      names = listXattrs(abs);
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
 * Slab hands out pieces of 1 MiB buffers, so that thousands of small files do not each cost an ArrayBuffer (the
 * garbage collector's work grows with their number). A piece is never handed out twice; a slab is freed when the
 * last piece of it has been written and dropped.
 */
export class Slab {
  private buf = Buffer.alloc(0);
  private used = 0;
  take(n: number): Buffer {
    if (n > SLAB_SIZE / 4) return Buffer.allocUnsafe(n);
    if (this.used + n > this.buf.length) {
      this.buf = Buffer.allocUnsafe(SLAB_SIZE);
      this.used = 0;
    }
    const out = this.buf.subarray(this.used, this.used + n);
    this.used += (n + 7) & ~7;
    return out;
  }
}
const SLAB_SIZE = 1 << 20;

/** readWholeSync reads a small file with blocking calls; a size other than lstat's is a FileChangedError. */
export function readWholeSync(abs: string, size: number, slab: Slab): Buffer {
  let fd: number;
  try {
    fd = openSync(abs, OPEN_FLAGS);
  } catch (err) {
    throw wrap(`reading ${abs}`, err);
  }
  try {
    const buf = slab.take(size + 1);
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

export async function openFile(abs: string): Promise<FileHandle> {
  try {
    return await open(abs, OPEN_FLAGS);
  } catch (err) {
    throw wrap(`reading ${abs}`, err);
  }
}

/** readFull reads up to `len` bytes at `pos`, fewer only at end of file. */
export async function readFull(fh: FileHandle, abs: string, buf: Buffer, len: number, pos: number): Promise<number> {
  let got = 0;
  try {
    while (got < len) {
      const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
  } catch (err) {
    throw wrap(`reading ${abs}`, err);
  }
  return got;
}

/** readWhole reads a file that lstat said has `size` bytes; a different size is a FileChangedError. */
export async function readWhole(abs: string, size: number): Promise<Buffer> {
  const fh = await openFile(abs);
  try {
    const buf = Buffer.allocUnsafe(size + 1);
    const got = await readFull(fh, abs, buf, size + 1, 0);
    if (got !== size) throw new FileChangedError(abs, size, got > size ? 'it grew while read' : `read ${got}`);
    return buf.subarray(0, size);
  } finally {
    await fh.close().catch(() => {});
  }
}

// The store: an OCI image layout on disk (oci-layout, index.json, blobs/sha256/<hex>), no daemon, no database.
//
// Contract:
// - Blob writes are idempotent and atomic: bytes go to blobs/sha256/.tmp-* , are hashed and counted while
//   streaming, fsynced, and renamed to their digest. Any read error, or a digest/size that differs from the
//   expected one, fails the write and deletes the temp file. A nil error means "the content is stored at
//   DIGEST", not necessarily because of this call.
// - Blob reads verify the digest at EOF and fail with DigestMismatchError naming the blob.
// - index.json is only replaced whole (temp + fsync + rename) while holding an inter-process lock, so two
//   processes updating it lose nothing, and a crash at any point leaves the previous index readable.
// - The root is the owner's only (0700, created so; an existing looser root and private directories are tightened
//   on open): extracted image content lives below it (store/private-dirs.ts).
import { createHash, randomBytes } from 'node:crypto';
import { constants, createReadStream, createWriteStream, writeSync } from 'node:fs';
import { access, mkdir, open, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import lockfile from 'proper-lockfile';
import { hexOf, parseDigest } from '../model/digest.js';
import {
  DigestMismatchError,
  InvalidInputError,
  NotFoundError,
  SizeMismatchError,
  TsbuildError,
  wrap,
} from '../../sys/errors.js';
import { type Descriptor, type Digest, type Index, MediaType } from '../model/types.js';
import { startWriteback } from '../../sys/libc.js';
import { isAlive } from '../../sys/pid.js';
import { ensurePrivateDir, type PrivateDirName, privateDir, tightenStore } from './private-dirs.js';
import { makeParents, storeAccessError } from './store-root.js';

const LAYOUT = { imageLayoutVersion: '1.0.0' };
const TMP_PREFIX = '.tmp-';
/** putBlobWith starts the writeback of every this many bytes written */
const WRITEBACK_STEP = 4 << 20;
const LAYOUT_HINT = 'the store is damaged or not a tsbuild store; point --root at another directory';

/** oneLine puts a message that quotes a file's text (JSON.parse quotes it, newlines included) on one line. */
export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ');
}

/** contextDigestsDir holds the builds' memos of context file digests (builder/context-digests.ts); prune --all clears it. */
export function contextDigestsDir(storeRoot: string): string {
  return join(storeRoot, 'context-digests');
}

/** defaultStoreRoot: --root, else $TSBUILD_ROOT, else $XDG_DATA_HOME/tsbuild, else ~/.local/share/tsbuild. */
export function defaultStoreRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TSBUILD_ROOT) return env.TSBUILD_ROOT;
  const data = env.XDG_DATA_HOME || join(env.HOME || '/root', '.local', 'share');
  return join(data, 'tsbuild');
}

export interface PutResult {
  digest: Digest;
  size: number;
  /** false when the blob was already stored */
  written: boolean;
}

export class Store {
  readonly root: string;
  readonly blobDir: string;
  private constructor(root: string) {
    // absolute: overlay mounts, bundles and child processes that run elsewhere get paths under it
    this.root = resolve(root);
    this.blobDir = join(this.root, 'blobs', 'sha256');
  }

  /**
   * open makes sure the layout exists (creating an empty one, its root 0700) and returns a handle. A root or a
   * private directory that an older version left readable by others is tightened first.
   */
  static async open(root: string): Promise<Store> {
    const s = new Store(root);
    try {
      await makeParents(root);
      await ensurePrivateDir(root);
      await tightenStore(root);
      await mkdir(s.blobDir, { recursive: true });
      await s.ensureFile('oci-layout', `${JSON.stringify(LAYOUT)}\n`);
      await s.ensureFile(
        'index.json',
        `${JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] })}\n`,
      );
    } catch (err) {
      throw storeAccessError(root, err) ?? wrap(`opening store ${root}`, err);
    }
    const layoutPath = join(root, 'oci-layout');
    let layout: unknown;
    try {
      layout = JSON.parse(await readFile(layoutPath, 'utf8'));
    } catch (err) {
      throw (
        storeAccessError(root, err) ??
        new InvalidInputError(`${layoutPath} is not valid JSON: ${oneLine((err as Error).message)}`, LAYOUT_HINT)
      );
    }
    const version =
      layout && typeof layout === 'object'
        ? (layout as { imageLayoutVersion?: unknown }).imageLayoutVersion
        : undefined;
    if (version !== '1.0.0') {
      throw new InvalidInputError(
        `${layoutPath}: unsupported imageLayoutVersion ${JSON.stringify(version)}`,
        LAYOUT_HINT,
      );
    }
    return s;
  }

  /**
   * checkWritable fails at once with "permission denied: ROOT" when this process may not write the store (another
   * user's store, a read-only file system), instead of a lock that would be retried until it times out.
   */
  async checkWritable(): Promise<void> {
    try {
      await access(this.root, constants.W_OK);
    } catch (err) {
      throw storeAccessError(this.root, err) ?? wrap(`opening store ${this.root}`, err);
    }
  }

  private async ensureFile(name: string, content: string): Promise<void> {
    const p = join(this.root, name);
    try {
      await stat(p);
    } catch {
      await atomicWrite(p, content);
    }
  }

  /** privateDir makes sure a directory for extracted content (snapshots, containers, tmp, cache-mounts) exists 0700. */
  privateDir(name: PrivateDirName): Promise<string> {
    return privateDir(this.root, name);
  }

  blobPath(d: Digest): string {
    return join(this.blobDir, hexOf(parseDigest(d)));
  }

  /** hasBlob tells whether a blob is stored (by name and, when given, size). */
  async hasBlob(d: Digest, size?: number): Promise<boolean> {
    try {
      const st = await stat(this.blobPath(d));
      return size === undefined || st.size === size;
    } catch {
      return false;
    }
  }

  async blobSize(d: Digest): Promise<number> {
    try {
      return (await stat(this.blobPath(d))).size;
    } catch {
      throw new NotFoundError(`blob ${d}`);
    }
  }

  /**
   * putBlob stores a stream. With `expected`, the digest and size are verified while streaming and an
   * existing blob short-circuits (the stream is then destroyed unread). The caller gives up the stream.
   */
  async putBlob(source: Readable, expected?: { digest: Digest; size?: number }): Promise<PutResult> {
    if (expected && (await this.hasBlob(expected.digest, expected.size))) {
      source.destroy();
      await this.touch(expected.digest);
      return { digest: expected.digest, size: await this.blobSize(expected.digest), written: false };
    }
    const tmp = this.tempBlobPath();
    const hash = createHash('sha256');
    let size = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb: TransformCallback) {
        hash.update(chunk);
        size += chunk.length;
        if (expected?.size !== undefined && size > expected.size) {
          cb(new SizeMismatchError(expected.digest, expected.size, size));
          return;
        }
        cb(null, chunk);
      },
    });
    try {
      await pipeline(source, counter, createWriteStream(tmp, { flags: 'wx', mode: 0o644, highWaterMark: 1 << 20 }));
      await fsyncFile(tmp);
      const digest: Digest = `sha256:${hash.digest('hex')}`;
      if (expected) {
        if (expected.size !== undefined && size !== expected.size)
          throw new SizeMismatchError(expected.digest, expected.size, size);
        if (digest !== expected.digest) throw new DigestMismatchError(expected.digest, digest);
      }
      return await this.adopt(tmp, digest, size);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * putBlobWith stores the bytes `fill` hands its `write`, which hashes them and writes them with blocking calls before
   * it returns (the caller may reuse a chunk's memory at once: no stream, no copy held). The blob is atomic as
   * putBlob's; `fill`'s rejection, or the write's exception, fails it and leaves nothing.
   */
  async putBlobWith(fill: (write: (chunk: Uint8Array) => void) => Promise<void>): Promise<PutResult> {
    const tmp = this.tempBlobPath();
    const hash = createHash('sha256');
    let size = 0;
    try {
      const fh = await open(tmp, 'wx', 0o644);
      try {
        let flushed = 0;
        await fill((chunk) => {
          hash.update(chunk);
          for (let at = 0; at < chunk.length;) at += writeSync(fh.fd, chunk, at);
          size += chunk.length;
          // the disk writes while the rest is made: the fsync below waits only for the tail
          if (size - flushed >= WRITEBACK_STEP) {
            startWriteback(fh.fd, flushed, size - flushed);
            flushed = size;
          }
        });
        await fh.sync();
      } finally {
        await fh.close();
      }
      return await this.adopt(tmp, `sha256:${hash.digest('hex')}`, size);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /** tempBlobPath is a new temp file name beside the blobs (removeTempFiles clears those a killed writer left). */
  private tempBlobPath(): string {
    return join(this.blobDir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
  }

  /** adopt renames a complete, fsynced temp blob to its digest, or drops it when that blob is stored already. */
  private async adopt(tmp: string, digest: Digest, size: number): Promise<PutResult> {
    const written = !(await this.hasBlob(digest, size));
    if (written) await rename(tmp, this.blobPath(digest));
    else {
      await rm(tmp, { force: true });
      await this.touch(digest);
    }
    return { digest, size, written };
  }

  /** touch marks a reused blob as fresh, so that a concurrent prune (which spares blobs newer than a live writer) keeps it. */
  private async touch(d: Digest): Promise<void> {
    const now = new Date();
    await utimes(this.blobPath(d), now, now).catch(() => {});
  }

  /**
   * beginWrite registers a writer (import, build, load, pull) until end() is called. While it is live, prune
   * keeps every blob written or reused since it began, even before an image references them.
   * A writer killed with -9 leaves a lease that prune recognizes as dead by its pid.
   */
  async beginWrite(): Promise<{ end(): Promise<void> }> {
    await this.checkWritable();
    const dir = join(this.root, 'ingest');
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${process.pid}-${Date.now()}-${randomBytes(4).toString('hex')}`);
    await writeFile(path, '');
    return { end: () => rm(path, { force: true }) };
  }

  /** oldestLiveWriter returns the start time (ms) of the oldest writer still running, removing dead leases. */
  async oldestLiveWriter(): Promise<number | undefined> {
    const dir = join(this.root, 'ingest');
    let oldest: number | undefined;
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const [pidText, startText] = name.split('-');
      const pid = Number(pidText);
      const start = Number(startText);
      if (!Number.isSafeInteger(pid) || !Number.isFinite(start) || !isAlive(pid)) {
        await rm(join(dir, name), { force: true });
        continue;
      }
      // a little slack for coarse file-system timestamps
      oldest = Math.min(oldest ?? Infinity, start - 2_000);
    }
    return oldest;
  }

  /** putBlobBytes stores a small blob (a manifest, a config) held in memory. */
  async putBlobBytes(data: Uint8Array | string, mediaType: string): Promise<Descriptor> {
    const buf = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
    const digest: Digest = `sha256:${createHash('sha256').update(buf).digest('hex')}`;
    await this.putBlob(Readable.from([buf]), { digest, size: buf.length });
    return { mediaType, digest, size: buf.length };
  }

  /** putJson serializes a document once (the stored bytes are what the digest covers) and stores it. */
  async putJson(doc: unknown, mediaType: string): Promise<Descriptor> {
    return this.putBlobBytes(JSON.stringify(doc), mediaType);
  }

  /**
   * openBlob returns a stream of a blob that fails with DigestMismatchError (or SizeMismatchError) at EOF
   * when the stored bytes do not hash to their name. The caller must consume or destroy it.
   */
  openBlob(d: Digest, opts: { expectedSize?: number } = {}): Readable {
    const path = this.blobPath(d);
    const hash = createHash('sha256');
    let size = 0;
    const verify = new Transform({
      highWaterMark: 1 << 20,
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
      flush(cb) {
        const actual = `sha256:${hash.digest('hex')}`;
        if (opts.expectedSize !== undefined && size !== opts.expectedSize)
          cb(new SizeMismatchError(d, opts.expectedSize, size));
        else if (actual !== d) cb(new DigestMismatchError(d, actual));
        else cb();
      },
    });
    const file = createReadStream(path, { highWaterMark: 1 << 20 });
    file.on('error', (err: NodeJS.ErrnoException) => {
      verify.destroy(
        err.code === 'ENOENT'
          ? new NotFoundError(`blob ${d}`, 'the store is missing a blob; pull or build the image again')
          : wrap(`reading blob ${d}`, err),
      );
    });
    file.pipe(verify);
    verify.on('close', () => file.destroy());
    return verify;
  }

  /** readBlob reads a whole (small) blob and verifies it. */
  async readBlob(d: Digest, maxSize = 64 << 20): Promise<Buffer> {
    let buf: Buffer;
    try {
      buf = await readFile(this.blobPath(d));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`blob ${d}`);
      throw wrap(`reading blob ${d}`, err);
    }
    if (buf.length > maxSize)
      throw new InvalidInputError(`blob ${d} is ${buf.length} bytes, too large for a JSON document`);
    const actual = `sha256:${createHash('sha256').update(buf).digest('hex')}`;
    if (actual !== d) throw new DigestMismatchError(d, actual);
    return buf;
  }

  /** readJson reads, verifies and parses a JSON blob. */
  async readJson<T>(d: Digest): Promise<T> {
    const buf = await this.readBlob(d);
    try {
      return JSON.parse(buf.toString('utf8')) as T;
    } catch (err) {
      throw new InvalidInputError(`blob ${d} is not valid JSON: ${oneLine((err as Error).message)}`);
    }
  }

  /** listBlobs returns every stored blob digest (temp files excluded). */
  async listBlobs(): Promise<Digest[]> {
    const names = await readdir(this.blobDir);
    return names.filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}` as Digest);
  }

  /** readIndex reads index.json; tolerates `manifests: null` (docker save writes it). */
  async readIndex(): Promise<Index> {
    return (await this.readIndexText()).index;
  }

  /** readIndexText is readIndex plus the file's text. */
  private async readIndexText(): Promise<{ index: Index; text: string }> {
    const path = join(this.root, 'index.json');
    let text: string;
    let doc: Index;
    try {
      text = await readFile(path, 'utf8');
      doc = JSON.parse(text) as Index;
    } catch (err) {
      throw wrap(`reading ${path}`, err);
    }
    if (!doc || typeof doc !== 'object' || doc.schemaVersion !== 2)
      throw new InvalidInputError(`${path}: not an OCI image index`);
    if (!Array.isArray(doc.manifests)) doc.manifests = [];
    return { index: doc, text };
  }

  /**
   * updateIndex runs `mutate` on the current index under the store lock and writes the result atomically, unless
   * it is the text already there (a rebuild that tags the same image again writes nothing). `mutate` may be async;
   * its return value is passed through.
   */
  async updateIndex<T>(mutate: (index: Index) => T | Promise<T>): Promise<T> {
    return this.withLock(async () => {
      const { index, text } = await this.readIndexText();
      const result = await mutate(index);
      index.mediaType = MediaType.OciIndex;
      const next = `${JSON.stringify(index, null, 2)}\n`;
      if (next !== text) await atomicWrite(join(this.root, 'index.json'), next);
      return result;
    });
  }

  /** withLock runs fn while holding the store's inter-process lock (stale locks of killed processes are broken). */
  async withLock<T>(fn: () => Promise<T>): Promise<T> {
    let release: () => Promise<void>;
    await this.checkWritable();
    try {
      release = await lockfile.lock(this.root, {
        lockfilePath: join(this.root, '.tsbuild.lock'),
        realpath: false,
        stale: 10_000,
        update: 2_000,
        retries: { retries: 600, factor: 1, minTimeout: 50, maxTimeout: 100 },
      });
    } catch (err) {
      throw new TsbuildError('E_LOCKED', `store ${this.root} is locked by another tsbuild process`, {
        cause: err,
        hint: 'wait for it to finish',
      });
    }
    try {
      return await fn();
    } finally {
      await release().catch(() => {});
    }
  }

  /** removeTempFiles deletes temp blobs left by killed writers (older than `olderThanMs`); returns bytes freed. */
  async removeTempFiles(olderThanMs = 60_000): Promise<number> {
    let freed = 0;
    for (const name of await readdir(this.blobDir)) {
      if (!name.startsWith(TMP_PREFIX)) continue;
      const p = join(this.blobDir, name);
      const st = await stat(p).catch(() => undefined);
      if (!st || Date.now() - st.mtimeMs < olderThanMs) continue;
      await rm(p, { force: true });
      freed += st.size;
    }
    return freed;
  }
}

async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** atomicWrite replaces a file: temp in the same directory, fsync, rename, fsync of the directory. */
export async function atomicWrite(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}${TMP_PREFIX}${randomBytes(6).toString('hex')}`;
  try {
    await writeFile(tmp, data, { flag: 'wx', mode: 0o644 });
    await fsyncFile(tmp);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  const dir = await open(join(path, '..'), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

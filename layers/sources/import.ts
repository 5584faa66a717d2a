// `tsbuild import`: a rootfs tarball (or a directory) becomes a one-layer image, like `docker import`.
import { createReadStream } from 'node:fs';
import { availableParallelism } from 'node:os';
import { stat } from 'node:fs/promises';
import { PassThrough, Transform, type Readable, type Writable } from 'node:stream';
import { autoDecompress } from '../compress/compress.js';
import { commitLayer } from '../store/commit.js';
import { InvalidInputError, wrap } from '../../sys/errors.js';
import { keepUntagged, tagImage, writeImage } from '../store/image.js';
import type { Store } from '../store/store.js';
import { tarFromDirectory } from '../tar/create.js';
import { TarCheck } from '../tar/check.js';
import type { Compression, ContainerConfig, Descriptor, Digest } from '../model/types.js';

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ImportOptions {
  /** a tar file (plain, gzip, zstd, bzip2 or xz), '-' for `stdin`, or a directory */
  source: string;
  stdin?: Readable;
  /** name to tag the image with (optional, as with docker import) */
  name?: string;
  /** the container config to start from (e.g. after --change instructions) */
  config?: ContainerConfig;
  /** the history comment */
  message?: string;
  compression?: Compression;
  /** SOURCE_DATE_EPOCH: the created time, and the clamp for mtimes of a directory source */
  sourceDateEpoch?: number;
  onEvent?: (e: { type: 'layer'; digest: Digest; size: number }) => void;
  /**
   * a second reader of the layer tar: it gets the same uncompressed bytes as the blob while they are committed (the
   * CLI extracts the image's snapshot from them, unionfs/snapshot.ts baseSnapshotFromTar). When it fails or stops
   * reading, the commit goes on without it; its rejection is its own to report (importImage ignores it). The tar
   * stream fails when the import fails. importImage resolves or rejects only once it has settled.
   */
  alsoRead?: (tar: Readable) => Promise<unknown>;
}

export interface ImportResult {
  descriptor: Descriptor;
  configDigest: Digest;
  diffId: Digest;
}

/** createdTime is SOURCE_DATE_EPOCH when given, else now, as RFC 3339. */
export function createdTime(sourceDateEpoch?: number): string {
  return new Date(sourceDateEpoch === undefined ? Date.now() : sourceDateEpoch * 1000)
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z');
}

/** importImage stores the source as a single layer and writes (and, with a name, tags) an image. */
export async function importImage(store: Store, opts: ImportOptions): Promise<ImportResult> {
  const lease = await store.beginWrite();
  const side = opts.alsoRead ? new PassThrough({ highWaterMark: 1 << 20 }) : undefined;
  side?.on('error', () => {}); // the reader has its own listener; this one keeps a late error from being unhandled
  const reading =
    side &&
    opts.alsoRead?.(side).then(
      () => side.destroy(), // it stopped reading: the commit goes on alone
      () => side.destroy(),
    );
  try {
    let tar = await openSource(opts);
    if (side) tar = tee(tar, side);
    const label = opts.source === '-' ? 'standard input' : opts.source;
    const layer = await commitLayer(store, tar, {
      compression: opts.compression ?? 'gzip',
      what: `the layer of ${label}`,
      // the second reader (the snapshot's extraction) works on this thread and waits in the kernel for its files:
      // one compressor thread more than the CPUs keeps them busy meanwhile
      ...(side ? { threads: availableParallelism() + 1 } : {}),
    }).catch((err) => {
      throw wrap(`importing ${label}`, err);
    });
    await reading;
    opts.onEvent?.({ type: 'layer', digest: layer.descriptor.digest, size: layer.descriptor.size });
    const created = createdTime(opts.sourceDateEpoch);
    const config: ContainerConfig = { ...(opts.config ?? {}) };
    if (!config.Env?.some((e) => e.startsWith('PATH='))) config.Env = [DEFAULT_PATH, ...(config.Env ?? [])];
    const { descriptor } = await writeImage(store, {
      config: {
        created,
        architecture: 'amd64',
        os: 'linux',
        config,
        history: [
          {
            created,
            created_by: `tsbuild import ${opts.source === '-' ? '-' : opts.source}`,
            ...(opts.message ? { comment: opts.message } : {}),
          },
        ],
      },
      layers: [layer],
    });
    // without a name the image is kept untagged, as `docker import` keeps it: its digest is what the user gets
    if (opts.name) await tagImage(store, descriptor, opts.name);
    else await keepUntagged(store, descriptor);
    const manifest = await store.readJson<{ config: Descriptor }>(descriptor.digest);
    return { descriptor, configDigest: manifest.config.digest, diffId: layer.diffId };
  } catch (err) {
    side?.destroy(err as Error);
    await reading;
    throw err;
  } finally {
    await lease.end();
  }
}

/**
 * tee passes `source` through and writes every chunk to `side` too, going on when both want more. Once `side` is
 * destroyed (its reader failed or stopped), the bytes go on to the main reader alone; `side` ends with the source.
 */
function tee(source: Readable, side: Writable): Readable {
  const through = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc, cb) {
      if (side.destroyed || side.write(chunk)) return cb(null, chunk);
      const go = (): void => {
        side.off('drain', go);
        side.off('close', go);
        cb(null, chunk);
      };
      side.on('drain', go);
      side.on('close', go);
    },
    flush(cb) {
      if (!side.destroyed) side.end();
      cb();
    },
  });
  source.on('error', (err: Error) => through.destroy(err));
  return source.pipe(through);
}

async function openSource(opts: ImportOptions): Promise<Readable> {
  if (opts.source === '-') {
    const input = opts.stdin ?? process.stdin;
    return checked(input, 'standard input');
  }
  let st;
  try {
    st = await stat(opts.source);
  } catch (err) {
    throw wrap(`reading ${opts.source}`, err);
  }
  if (st.isDirectory()) {
    return tarFromDirectory(
      opts.source,
      opts.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: opts.sourceDateEpoch },
    );
  }
  if (!st.isFile()) throw new InvalidInputError(`${opts.source} is neither a tar file nor a directory`);
  return checked(createReadStream(opts.source, { highWaterMark: 1 << 20 }), opts.source, st.size);
}

/** checked decompresses whatever the input is and checks every tar entry as it streams by. */
function checked(input: Readable, label: string, compressedSize?: number): Readable {
  const plain = autoDecompress({ what: label, ...(compressedSize === undefined ? {} : { compressedSize }) });
  const check = new TarCheck(label);
  input.on('error', (err: Error) => plain.destroy(err));
  plain.on('error', (err: Error) => check.destroy(err));
  return input.pipe(plain).pipe(check);
}

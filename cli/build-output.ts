// `tsbuild build --output`: where the built image also goes, in buildx's spelling. The image is always stored (and
// named by -t); --output writes one more copy of it through the functions behind `unpack` and `save`:
//   -o DIR, type=local,dest=DIR      the flattened root filesystem in DIR; into a DIR with files it is merged, as
//                                    BuildKit's client receives it (fsutil Merge): the image's paths replace
//                                    what is there, other files stay
//   -o -, type=tar,dest=FILE|-       the flattened root filesystem as one tar
//   type=oci|docker,dest=FILE|-      the image as an archive that `tsbuild load`, `docker load` and skopeo read (both
//   [,compression=gzip|zstd|         types write the same archive: an OCI layout with docker's manifest.json); its
//    uncompressed]                   layers gzip-compressed by default, as BuildKit's exporters write them (a build
//                                    stores them uncompressed; `push` makes and remembers the same copies)
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { splitCsv } from '../builder/plan.js';
import { imageLayers } from '../layers/model/layer.js';
import { MediaType } from '../layers/model/types.js';
import { saveImages } from '../layers/sources/archive-save.js';
import { compressImageLayers } from '../layers/store/compress-layers.js';
import { type Image, loadImage } from '../layers/store/image.js';
import type { Store } from '../layers/store/store.js';
import { tarFromDirectory } from '../layers/tar/create.js';
import { InvalidInputError, wrap } from '../sys/errors.js';
import { flatten } from '../unionfs/flatten.js';

export type OutputType = 'local' | 'tar' | 'oci' | 'docker';

/** BuildOutput is one --output: its type and its destination ('-' is standard output). */
export interface BuildOutput {
  type: OutputType;
  dest: string;
  /** oci/docker: the layers' compression in the archive (BuildKit's exporter attribute; default gzip) */
  compression?: 'gzip' | 'zstd' | 'uncompressed';
}

const COMPRESSIONS = ['gzip', 'zstd', 'uncompressed'] as const;

const TYPES: readonly OutputType[] = ['local', 'tar', 'oci', 'docker'];

/** parseOutput reads one --output value: `DIR`, `-`, or `type=T,dest=PATH`. Throws InvalidInputError. */
export function parseOutput(value: string): BuildOutput {
  if (value === '') throw new InvalidInputError('--output needs a value: DIR, - or type=TYPE,dest=PATH');
  if (!value.includes('=')) return value === '-' ? { type: 'tar', dest: '-' } : { type: 'local', dest: value };
  const f: Record<string, string> = {};
  for (const field of splitCsv(value)) {
    const eq = field.indexOf('=');
    if (eq < 0)
      throw new InvalidInputError(
        `invalid --output ${JSON.stringify(value)}: ${JSON.stringify(field)} is not key=value`,
      );
    f[field.slice(0, eq).trim().toLowerCase()] = field.slice(eq + 1);
  }
  const type = f.type;
  if (type === undefined) throw new InvalidInputError(`invalid --output ${JSON.stringify(value)}: type= is required`);
  if (!isOutputType(type)) {
    throw new InvalidInputError(
      `--output type=${type} is not supported (local, tar, oci or docker)`,
      type === 'image' || type === 'registry' ? 'every build is stored; push it with `tsbuild push NAME`' : undefined,
    );
  }
  const archive = type === 'oci' || type === 'docker';
  const other = Object.keys(f).find((k) => k !== 'type' && k !== 'dest' && !(archive && k === 'compression'));
  if (other)
    throw new InvalidInputError(
      `--output: the key ${other} is not supported (only type=, dest=${archive ? ' and compression=' : ''})`,
    );
  const compression = f.compression;
  if (compression !== undefined && !(COMPRESSIONS as readonly string[]).includes(compression))
    throw new InvalidInputError(`--output compression=${compression}: use gzip, zstd or uncompressed`);
  const dest = f.dest;
  if (dest === undefined || dest === '')
    throw new InvalidInputError(`--output type=${type} needs dest=${type === 'local' ? 'DIR' : 'FILE or dest=-'}`);
  if (type === 'local' && dest === '-') throw new InvalidInputError('--output type=local needs a directory, not -');
  return archive ? { type, dest, compression: (compression as BuildOutput['compression']) ?? 'gzip' } : { type, dest };
}

function isOutputType(t: string): t is OutputType {
  return (TYPES as readonly string[]).includes(t);
}

export interface WriteOutputOptions {
  store: Store;
  image: Image;
  /** the names the build gave (recorded in oci/docker archives) */
  names: string[];
  /** SOURCE_DATE_EPOCH: archive and tar entry times */
  sourceDateEpoch?: number;
  /** what '-' writes to (default process.stdout) */
  stdout?: Writable;
  cwd?: string;
}

/** writeOutput writes the image to one --output. A file appears only once complete. */
export async function writeOutput(out: BuildOutput, o: WriteOutputOptions): Promise<void> {
  const stdout = o.stdout ?? process.stdout;
  if (out.dest === '-' && (stdout as { isTTY?: boolean }).isTTY)
    throw new InvalidInputError('refusing to write an archive to a terminal', 'redirect standard output, or dest=FILE');
  const dest = out.dest === '-' ? '-' : resolve(o.cwd ?? process.cwd(), out.dest);
  if (out.type === 'local') {
    // 'apply': the directory is the user's to change, so it must not share files with the store's snapshots
    const full = (await readdir(dest).catch(() => [])).length > 0;
    const into = full ? `${dest}.tmp-${process.pid}-${randomBytes(6).toString('hex')}` : dest;
    try {
      await flatten({ store: o.store, layers: imageLayers(o.image), dir: into, method: 'apply' });
      if (full) await mergeInto(into, dest);
    } catch (err) {
      throw wrap(`--output ${dest}`, err);
    } finally {
      if (full) await rm(into, { recursive: true, force: true });
    }
    return;
  }
  if (out.type === 'oci' || out.type === 'docker') {
    let image = o.image;
    const c = out.compression ?? 'gzip';
    if (c === 'zstd' && image.descriptor.mediaType === MediaType.DockerManifest)
      throw new InvalidInputError(
        `--output compression=zstd: ${o.names[0] ?? 'the image'} has Docker media types, which have no zstd layers`,
        'use compression=gzip',
      );
    if (c !== 'uncompressed') {
      const { descriptor } = await compressImageLayers(o.store, image.descriptor, c);
      if (descriptor.digest !== image.descriptor.digest) image = await loadImage(o.store, descriptor);
    }
    await saveImages(o.store, {
      images: [{ image, names: o.names }],
      output: dest === '-' ? stdout : dest,
      mtime: o.sourceDateEpoch ?? 0,
    });
    return;
  }
  // tar: the root filesystem, flattened into the store's scratch (hard links from its snapshots as root), as a tar
  const scratch = join(await o.store.privateDir('tmp'), `output-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    await flatten({ store: o.store, layers: imageLayers(o.image), dir: join(scratch, 'rootfs') });
    const tar = tarFromDirectory(join(scratch, 'rootfs'), {
      ...(o.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: o.sourceDateEpoch }),
    });
    if (dest === '-') {
      await pipeline(tar, stdout, { end: false });
      return;
    }
    await mkdir(dirname(dest), { recursive: true });
    const tmp = `${dest}.tmp-${process.pid}`;
    try {
      await pipeline(tar, createWriteStream(tmp, { mode: 0o644 }));
      await rename(tmp, dest);
    } catch (err) {
      await rm(tmp, { force: true });
      throw wrap(`writing ${dest}`, err);
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * mergeInto moves the entries of `from` into `to`: a directory that is a directory on both sides (never through a
 * symlink) is merged, anything else of `to` with the same name is replaced.
 */
async function mergeInto(from: string, to: string): Promise<void> {
  for (const name of await readdir(from)) {
    const src = join(from, name);
    const dst = join(to, name);
    const [a, b] = await Promise.all([lstat(src), lstat(dst).catch(() => undefined)]);
    if (a.isDirectory() && b?.isDirectory()) {
      await mergeInto(src, dst);
      await chmod(dst, a.mode & 0o7777);
      continue;
    }
    if (b) await rm(dst, { recursive: true, force: true });
    await rename(src, dst);
  }
}

// Output formats: the raw disk (sparse), QCOW2 from our own writer, VMDK and VHDX through `qemu-img convert`, or
// the prepared rootfs as a tar. Every output is made in the export's work directory (in the store's tmp) and moved
// over the destination at the end, so that an interrupted export never leaves a partial file at the destination.
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { extract, pack, type Header } from 'tar-stream';
import { InvalidInputError, wrap } from '../sys/errors.js';
import { tarFromDirectory } from '../layers/tar/create.js';
import { run } from '../sys/exec.js';
import type { OwnerMap } from './owners.js';
import { fileRanges } from './boot-extents.js';
import { writeQcow2 } from './qcow2.js';
import { patchVmdkCid } from './reproducible.js';
import { dataRanges } from './sparse-file.js';
import { isAlive as alive } from '../sys/pid.js';

export type OutputFormat = 'qcow2' | 'raw' | 'vmdk' | 'vhdx' | 'tar';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['qcow2', 'raw', 'vmdk', 'vhdx', 'tar'];

const EXTENSIONS: Record<string, OutputFormat> = {
  '.qcow2': 'qcow2',
  '.qcow': 'qcow2',
  '.raw': 'raw',
  '.img': 'raw',
  '.vmdk': 'vmdk',
  '.vhdx': 'vhdx',
  '.tar': 'tar',
};

/** outputFormat is --format, else the output file's extension (.qcow2, .raw/.img, .vmdk, .vhdx, .tar). */
export function outputFormat(output: string, explicit?: string): OutputFormat {
  if (explicit !== undefined && explicit !== '') {
    if (!(OUTPUT_FORMATS as readonly string[]).includes(explicit))
      throw new InvalidInputError(
        `--format must be one of ${OUTPUT_FORMATS.join(', ')} (got ${JSON.stringify(explicit)})`,
      );
    return explicit as OutputFormat;
  }
  const f = EXTENSIONS[extname(output).toLowerCase()];
  if (!f)
    throw new InvalidInputError(
      `cannot tell the format of ${JSON.stringify(output)} from its extension`,
      `name it .qcow2, .raw, .img, .vmdk, .vhdx or .tar, or pass --format`,
    );
  return f;
}

/** formatTools: host tools a format needs beyond ours. */
export function formatTools(format: OutputFormat): Record<string, string> {
  return format === 'vmdk' || format === 'vhdx' ? { 'qemu-img': 'qemu-utils' } : {};
}

/**
 * convertDisk turns the raw disk `raw` into `format` as a new file in `workDir` and returns its path (raw: `raw`
 * itself). qcow2: zero clusters are left out, clusters are compressed with zstd unless `compress` says otherwise
 * (`true`/'deflate': deflate, `false`/'none': plain); vmdk: `compress: true` makes a streamOptimized (compressed)
 * VMDK, else monolithicSparse; vhdx: dynamic.
 */
export async function convertDisk(opts: {
  raw: string;
  format: Exclude<OutputFormat, 'tar'>;
  workDir: string;
  compress?: boolean | 'zstd' | 'deflate' | 'none';
  /** qcow2: the kernel and initrd in the root filesystem at `offset`, whose clusters stay uncompressed (boot-extents.ts) */
  bootFiles?: { offset: number; paths: string[] };
  /** vmdk: the descriptor's CID (qemu-img picks a random one) */
  vmdkCid?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}): Promise<string> {
  const { raw, format, workDir } = opts;
  if (
    format !== 'qcow2' &&
    format !== 'vmdk' &&
    opts.compress !== undefined &&
    opts.compress !== false &&
    opts.compress !== 'none'
  )
    throw new InvalidInputError(`--compress applies to qcow2 and vmdk disks, not ${format}`);
  if (format === 'raw') return raw;
  const out = join(workDir, `disk.${format}`);
  if (format === 'qcow2') {
    const compress = qcow2Compression(opts.compress);
    const plainRanges =
      compress && opts.bootFiles
        ? await fileRanges({
            image: raw,
            ...opts.bootFiles,
            workDir,
            ...(opts.signal ? { signal: opts.signal } : {}),
          })
        : [];
    await writeQcow2({
      input: raw,
      output: out,
      compress,
      plainRanges,
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    });
    return out;
  }
  const o =
    format === 'vmdk'
      ? ['-o', `subformat=${vmdkCompressed(opts.compress) ? 'streamOptimized' : 'monolithicSparse'}`]
      : ['-o', 'subformat=dynamic'];
  await run(
    ['qemu-img', 'convert', '-f', 'raw', '-O', format, ...o, raw, out],
    opts.signal ? { signal: opts.signal } : {},
  );
  if (format === 'vmdk' && opts.vmdkCid !== undefined) await patchVmdkCid(out, opts.vmdkCid);
  return out;
}

/** vmdkCompressed: a compressed VMDK is streamOptimized (deflate), written only when asked for. */
function vmdkCompressed(c: boolean | 'zstd' | 'deflate' | 'none' | undefined): boolean {
  return c === true || c === 'deflate' || c === 'zstd';
}

/** qcow2Compression maps the export's `compress` option to the qcow2 writer's: zstd unless told otherwise. */
export function qcow2Compression(c: boolean | 'zstd' | 'deflate' | 'none' | undefined): 'zstd' | 'deflate' | false {
  if (c === undefined || c === 'zstd') return 'zstd';
  if (c === true || c === 'deflate') return 'deflate';
  return false;
}

/**
 * writeRootfsTar writes the rootfs as a tar into `file`. With `owners` (an unprivileged export, whose files all
 * belong to the calling user), uid/gid/mode of each entry are rewritten to what the image layers say (paths the
 * export added belong to root).
 */
export async function writeRootfsTar(opts: {
  rootfs: string;
  file: string;
  owners?: OwnerMap;
  signal?: AbortSignal;
}): Promise<void> {
  const sig = opts.signal ? { signal: opts.signal } : {};
  const tar = tarFromDirectory(opts.rootfs);
  const file = createWriteStream(opts.file, { flags: 'wx' });
  const owners = opts.owners;
  if (!owners) {
    await pipeline(tar, file, sig);
    return;
  }
  const ex = extract();
  const pk = pack();
  ex.on('entry', (header: Header, stream, next) => {
    const key = header.name.replace(/^\.?\//, '').replace(/\/$/, '');
    const want = owners.get(key);
    const h: Header = { ...header, uid: want?.uid ?? 0, gid: want?.gid ?? 0, uname: '', gname: '' };
    if (want && header.type !== 'symlink') h.mode = want.mode;
    stream.pipe(pk.entry(h, (err) => (err ? ex.destroy(err) : next())));
  });
  ex.on('finish', () => pk.finalize());
  const reading = pipeline(tar, ex, sig).catch((e: unknown) => {
    pk.destroy(e as Error);
    throw e;
  });
  const writing = pipeline(pk, file, sig).catch((e: unknown) => {
    ex.destroy(e as Error);
    throw e;
  });
  await Promise.all([reading, writing]);
}

/**
 * checkOutputDir fails at once (before any work) when the directory `output` goes into does not exist or is not a
 * directory.
 */
export async function checkOutputDir(output: string): Promise<void> {
  const dir = dirname(output);
  const st = await stat(dir).catch(() => undefined);
  if (!st) throw new InvalidInputError(`cannot write ${output}: the directory ${dir} does not exist`);
  if (!st.isDirectory()) throw new InvalidInputError(`cannot write ${output}: ${dir} is not a directory`);
}

/** TMP_TAG marks the temp file made beside the output when it must be copied across filesystems. */
const TMP_TAG = '.tsbuild-export-';

/**
 * placeOutput moves `file` to `output`: a rename when both are on one filesystem, else a sparse copy to a temp file
 * beside `output` (named `.NAME.tsbuild-export-PID-RAND`) and a rename. Temp files of dead exports to the same
 * directory are removed first. Returns the size of the output in bytes.
 */
export async function placeOutput(file: string, output: string): Promise<number> {
  await removeStaleTemps(output);
  try {
    await rename(file, output);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw wrap(`writing ${output}`, err);
    const tmp = join(dirname(output), `.${basename(output)}${TMP_TAG}${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await copySparse(file, tmp);
      await rename(tmp, output);
    } catch (e) {
      await rm(tmp, { force: true });
      throw wrap(`writing ${output}`, e);
    }
  }
  return (await stat(output)).size;
}

async function removeStaleTemps(output: string): Promise<void> {
  const dir = dirname(output);
  const prefix = `.${basename(output)}${TMP_TAG}`;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split('-')[0]);
    if (Number.isSafeInteger(pid) && !alive(pid)) await rm(join(dir, name), { force: true });
  }
}

/** copySparse copies a file, leaving its holes (and all-zero 64 KiB blocks) as holes. */
export async function copySparse(src: string, dst: string): Promise<void> {
  const input = await open(src, 'r');
  const out = await open(dst, 'wx');
  try {
    const size = (await input.stat()).size;
    const buf = Buffer.allocUnsafe(1 << 20);
    const zero = Buffer.alloc(64 << 10);
    for (const r of dataRanges(input.fd, size, 64 << 10)) {
      for (let pos = r.start; pos < r.end; pos += buf.length) {
        const len = Math.min(buf.length, r.end - pos);
        const { bytesRead } = await input.read(buf, 0, len, pos);
        for (let o = 0; o < bytesRead; o += zero.length) {
          const piece = buf.subarray(o, Math.min(o + zero.length, bytesRead));
          if (!piece.equals(zero.subarray(0, piece.length))) await out.write(piece, 0, piece.length, pos + o);
        }
      }
    }
    await out.truncate(size);
    await out.sync();
  } finally {
    await input.close();
    await out.close();
  }
}

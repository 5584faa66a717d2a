// The root filesystem: `mkfs.ext4 -d` writes a populated ext4 straight into the partition of the disk image file
// (`-E offset=`), with no loop device and no mount. Also: how big a filesystem a tree needs.
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { TsbuildError } from '../sys/errors.js';
import { run } from '../sys/exec.js';

/** BLOCK is the ext4 block size used (4 KiB: what GRUB, extlinux and the kernel all read). */
export const BLOCK = 4096;
export const INODE_SIZE = 256;

/**
 * EXT4_FEATURES turns off what the bootloaders here cannot read: `64bit` (syslinux 6.0x), `metadata_csum_seed`
 * (GRUB < 2.12) and `orphan_file` (GRUB < 2.12, kernels < 5.15); all three are defaults of e2fsprogs 1.47.
 */
export const EXT4_FEATURES = ['^64bit', '^metadata_csum_seed', '^orphan_file'];

export const EXT4_TOOLS = { 'mkfs.ext4': 'e2fsprogs' };

/** TreeUsage is what a tree takes on ext4: bytes in 4 KiB blocks (data and directories) and inodes. */
export interface TreeUsage {
  bytes: number;
  inodes: number;
}

/**
 * measureTree adds up what `dir` needs on ext4: each regular file rounded up to whole blocks (plus one extent block
 * per 128 MiB), each directory one block per ~100 entries, symlinks longer than 59 bytes one block; one inode per
 * path (hard links share theirs).
 */
export async function measureTree(dir: string): Promise<TreeUsage> {
  let bytes = 0;
  let inodes = 1;
  // dev → inode numbers of the multiply linked files counted: numbers, not a string per file (a flattened tree
  // links every file from the snapshots, so all of a million files are here; issue 14)
  const seen = new Map<number, Set<number>>();
  // synchronous calls: one syscall each, no thread-pool round trip (a rootfs is mostly small files)
  const walk = (d: string): void => {
    const names = readdirSync(d);
    bytes += Math.max(1, Math.ceil(names.length / 100)) * BLOCK;
    for (const name of names) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) {
        inodes++;
        walk(p);
        continue;
      }
      if (st.nlink > 1) {
        let inodes = seen.get(st.dev);
        if (!inodes) seen.set(st.dev, (inodes = new Set()));
        if (inodes.has(st.ino)) continue;
        inodes.add(st.ino);
      }
      inodes++;
      if (st.isFile()) bytes += Math.ceil(st.size / BLOCK) * BLOCK + Math.floor(st.size / (128 << 20)) * BLOCK;
      else if (st.isSymbolicLink() && st.size > 59) bytes += BLOCK;
    }
  };
  walk(dir);
  return { bytes, inodes };
}

/** journalBlocks is e2fsprogs' default journal size (ext2fs_default_journal_size) for a filesystem of `blocks`. */
export function journalBlocks(blocks: number): number {
  if (blocks < 2048) return 0;
  if (blocks < 32768) return 1024;
  if (blocks < 256 * 1024) return 4096;
  if (blocks < 512 * 1024) return 8192;
  if (blocks < 4096 * 1024) return 16384;
  if (blocks < 8192 * 1024) return 32768;
  if (blocks < 16384 * 1024) return 65536;
  if (blocks < 32768 * 1024) return 131072;
  return 262144;
}

/** inodesFor is the inode count mkfs gets: the default (one per 16 KiB) but at least the files plus a margin. */
export function inodesFor(fsBytes: number, usage: TreeUsage): number {
  return Math.max(Math.floor(fsBytes / 16384), Math.ceil(usage.inodes * 1.25) + 2048);
}

/**
 * minFsBytes is the smallest filesystem (a whole number of MiB) that holds the tree: data, inode tables, journal,
 * group metadata, the 1 % reserve, and a small margin for allocation slack. mkfs still has the last word: a tree
 * that does not fit makes it fail, and the recipe reports the size needed.
 */
export function minFsBytes(usage: TreeUsage): number {
  let fs = 16 << 20;
  for (let i = 0; i < 8; i++) {
    const blocks = Math.floor(fs / BLOCK);
    const inodeTables = inodesFor(fs, usage) * INODE_SIZE;
    const groups = Math.ceil(blocks / 32768);
    const groupMeta = groups * 2 * BLOCK + Math.ceil((groups * 32) / BLOCK) * BLOCK * 2 + 256 * BLOCK; // bitmaps, descriptors, resize reserve
    const need = usage.bytes * 1.03 + inodeTables + journalBlocks(blocks) * BLOCK + groupMeta + (8 << 20);
    const next = alignMiB(need / 0.99);
    if (next <= fs) return fs;
    fs = next;
  }
  return fs;
}

/**
 * autoFsBytes is --size auto: the smallest filesystem plus headroom for the running system (logs, package
 * caches, the app's own files): a fifth of the data, at least 256 MiB.
 */
export function autoFsBytes(usage: TreeUsage): number {
  return alignMiB(minFsBytes(usage) + Math.max(256 << 20, usage.bytes * 0.2));
}

function alignMiB(n: number): number {
  return Math.ceil(n / (1 << 20)) * (1 << 20);
}

/** FilesystemFullError: mkfs ran out of space or inodes while copying the tree in. */
export class FilesystemFullError extends TsbuildError {
  constructor(
    readonly fsBytes: number,
    cause: unknown,
  ) {
    super('E_FS_FULL', `the files do not fit in a ${Math.round(fsBytes / (1 << 20))} MiB filesystem`, {
      cause,
      hint: 'use a bigger --size',
    });
  }
}

export interface MakeExt4Options {
  /** the disk image file (already at its final size) */
  image: string;
  /** byte offset of the partition in the image */
  offset: number;
  /** filesystem size in bytes (rounded down to whole blocks) */
  bytes: number;
  /** the tree to copy in */
  dir: string;
  uuid: string;
  /** the directory hash seed (a UUID); default: `uuid` */
  hashSeed?: string;
  /** SOURCE_DATE_EPOCH: E2FSPROGS_FAKE_TIME for the superblock, root and lost+found times */
  time?: number;
  label?: string;
  usage: TreeUsage;
  signal?: AbortSignal;
}

/**
 * makeExt4 creates the filesystem inside the image file at `offset` and fills it from `dir` in one pass (`mkfs.ext4
 * -d`): 4 KiB blocks, the given UUID and directory hash seed (identity.ts), bootloader-safe
 * features, a 1 % root reserve, the root directory owned by 0:0. Owners, modes, xattrs and hard links are copied
 * as the calling user can read them (see owners.ts for the unprivileged case). Throws FilesystemFullError when the
 * tree does not fit.
 */
export async function makeExt4(opts: MakeExt4Options): Promise<void> {
  const blocks = Math.floor(opts.bytes / BLOCK);
  const argv = [
    'mkfs.ext4',
    '-F',
    '-q',
    '-b',
    String(BLOCK),
    '-I',
    String(INODE_SIZE),
    '-m',
    '1',
    '-N',
    String(inodesFor(opts.bytes, opts.usage)),
    '-U',
    opts.uuid,
    '-L',
    (opts.label ?? 'root').slice(0, 16),
    '-O',
    EXT4_FEATURES.join(','),
    '-E',
    `offset=${opts.offset},root_owner=0:0,hash_seed=${opts.hashSeed ?? opts.uuid}`,
    '-d',
    opts.dir,
    opts.image,
    String(blocks),
  ];
  // LC_ALL=C: -d sorts each directory's names with strcoll, so the C locale makes the inode order bytewise
  const env: NodeJS.ProcessEnv = { ...process.env, MKE2FS_CONFIG: '/etc/mke2fs.conf', LC_ALL: 'C' };
  if (opts.time !== undefined) env.E2FSPROGS_FAKE_TIME = String(opts.time);
  try {
    await run(argv, { env, ...(opts.signal ? { signal: opts.signal } : {}) });
  } catch (err) {
    const text = (err as { stderr?: string }).stderr ?? (err as Error).message;
    if (/Could not allocate|No free space|No space left|inodes? (count|table)|too many inodes|Ran out of/i.test(text)) {
      throw new FilesystemFullError(opts.bytes, err);
    }
    throw err;
  }
}

// The time-dependent bytes of a disk, made reproducible when SOURCE_DATE_EPOCH is set (identity.ts has the ids):
//
// - clampTree: before mkfs, every path of the staging tree gets mtime = min(mtime, T) and atime = that mtime
//   (`mkfs.ext4 -d` copies both). A regular file or symlink shared with a layer snapshot (hard link) whose mtime
//   must change is first replaced by a private copy, so the snapshot keeps its times.
// - ext4: `E2FSPROGS_FAKE_TIME=T` gives the superblock, the root, lost+found and the journal T; `mkfs.ext4 -d` sorts
//   names itself (LC_ALL=C makes that order bytewise). It still copies each file's ctime, which no system call can
//   set, so fixExt4Ctimes sets the ctime of every used inode to T afterwards (debugfs, inode numbers from
//   dumpe2fs's free-inode ranges).
// - vmdk: qemu-img writes a random CID into the descriptor; patchVmdkCid replaces it (same length) with a derived
//   one.
import { copyFile, link, lstat, lutimes, open, readdir, readlink, rename, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidInputError } from '../sys/errors.js';
import { run } from '../sys/exec.js';

/** clampTree clamps the times of every path under `root` (root included) to `time`; returns the paths changed. */
export async function clampTree(root: string, time: number): Promise<number> {
  let changed = 0;
  const copies = new Map<string, string>(); // dev:ino of a shared file → its private copy
  const fix = async (p: string): Promise<void> => {
    const st = await lstat(p, { bigint: true });
    const mtime = Number(st.mtimeNs / 1_000_000_000n);
    const exact = st.mtimeNs % 1_000_000_000n === 0n;
    const m = mtime >= time ? time : mtime;
    if (exact && mtime <= time && st.atimeNs === st.mtimeNs) return;
    changed++;
    if (st.nlink > 1n && !st.isDirectory() && (mtime > time || !exact)) {
      // shared with a snapshot (or another name in the tree): repoint this name at one private copy
      const key = `${st.dev}:${st.ino}`;
      const copy = copies.get(key);
      const tmp = `${p}.tsbuild-clamp`;
      if (copy === undefined) {
        if (st.isSymbolicLink()) await symlink(await readlink(p), tmp);
        else await copyFile(p, tmp);
        await lutimes(tmp, m, m);
        await rename(tmp, p);
        copies.set(key, p);
        return;
      }
      await link(copy, tmp);
      await rename(tmp, p);
      return;
    }
    await lutimes(p, m, m);
  };
  const walk = async (dir: string): Promise<void> => {
    for (const ent of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, ent.name);
      if (ent.isDirectory()) await walk(p);
      await fix(p); // after its contents: the copies above change a directory's mtime
    }
  };
  await walk(root);
  await fix(root);
  return changed;
}

/** usedInodes reads dumpe2fs's per-group "Free inodes: a-b, c" lists and returns every inode in use, from 2 up. */
export function usedInodes(dumpe2fs: string): number[] {
  const total = Number(/^Inode count:\s+(\d+)/m.exec(dumpe2fs)?.[1]);
  if (!Number.isSafeInteger(total) || total <= 0) throw new InvalidInputError('dumpe2fs printed no inode count');
  const free = new Uint8Array(total + 1);
  for (const m of dumpe2fs.matchAll(/^\s+Free inodes: (.*)$/gm)) {
    for (const r of (m[1] as string).split(',')) {
      const [a, b] = r.trim().split('-').map(Number);
      if (a === undefined || !Number.isSafeInteger(a)) continue;
      for (let i = a; i <= (b ?? a); i++) free[i] = 1;
    }
  }
  const used: number[] = [];
  for (let i = 2; i <= total; i++) if (!free[i] && (i === 2 || i >= 11)) used.push(i);
  return used;
}

/**
 * fixExt4Ctimes sets ctime (and its nanoseconds) of every used inode of the ext4 at `offset` in `image` to `time`,
 * through one debugfs script in `workDir`. Returns the number of inodes.
 */
export async function fixExt4Ctimes(opts: {
  image: string;
  offset: number;
  time: number;
  workDir: string;
  signal?: AbortSignal;
}): Promise<number> {
  const dev = `${opts.image}?offset=${opts.offset}`;
  const sig = opts.signal ? { signal: opts.signal } : {};
  const env = { ...process.env, E2FSPROGS_FAKE_TIME: String(opts.time), LC_ALL: 'C' };
  const dump = await run(['dumpe2fs', dev], { ...sig, env });
  const inodes = usedInodes(dump.stdout);
  const script = join(opts.workDir, 'ctimes.debugfs');
  await writeFile(script, inodes.map((i) => `sif <${i}> ctime @${opts.time}\nsif <${i}> ctime_extra 0\n`).join(''));
  const r = await run(['debugfs', '-w', '-f', script, dev], { ...sig, env });
  const bad = r.stderr.split('\n').find((l) => /: .*(Invalid|error|cannot)/i.test(l) && !l.startsWith('debugfs '));
  if (bad) throw new Error(`debugfs could not set the inode change times: ${bad.trim()}`);
  return inodes.length;
}

/**
 * patchVmdkCid replaces the `CID=…` line of a VMDK's embedded descriptor with `cid` (8 hex digits). qemu-img writes
 * the CID unpadded (`%x`: 1 to 8 digits), so the descriptor text is rewritten whole inside its reserved sectors, the
 * rest of which stays zero.
 */
export async function patchVmdkCid(file: string, cid: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const head = Buffer.alloc(512);
    await fh.read(head, 0, 512, 0);
    if (head.toString('latin1', 0, 4) !== 'KDMV') throw new InvalidInputError(`${file} is not a sparse VMDK`);
    const at = Number(head.readBigUInt64LE(28)) * 512;
    const len = Math.min(Number(head.readBigUInt64LE(36)) * 512, 1 << 20);
    const desc = Buffer.alloc(len);
    await fh.read(desc, 0, len, at);
    const end = desc.indexOf(0);
    const text = desc.toString('latin1', 0, end < 0 ? len : end);
    if (!/\nCID=[0-9a-f]{1,8}\n/.test(text)) throw new InvalidInputError(`${file}: no CID in the VMDK descriptor`);
    const patched = Buffer.from(
      text.replace(/\nCID=[0-9a-f]{1,8}\n/, `\nCID=${cid.toString(16).padStart(8, '0')}\n`),
      'latin1',
    );
    if (patched.length > len) throw new InvalidInputError(`${file}: the VMDK descriptor has no room for the CID`);
    const out = Buffer.alloc(len);
    patched.copy(out);
    await fh.write(out, 0, len, at);
  } finally {
    await fh.close();
  }
}

/** S_LAST_MOUNTED is where the ext4 superblock (at byte 1024) keeps the last mount point: 64 bytes. */
const S_LAST_MOUNTED = 1024 + 0x88;

/**
 * unmountedAgain undoes what a kernel mount (extlinux's install) left that depends on the clock, the mount point or
 * chance, for a reproducible export: the times, generation and change counter (i_version) of the `paths` it created
 * or changed become `time`, 0 and 0; the superblock's last mount point is zeroed, its mount time and mount count reset (as mkfs left them) and
 * its lifetime-writes counter set to 0. The mount must have been `noload,noinit_itable,noatime` (no journal
 * transactions, no background inode-table zeroing, no access times). debugfs rewrites the superblock checksum.
 */
export async function unmountedAgain(opts: {
  image: string;
  offset: number;
  time: number;
  paths: string[];
  workDir: string;
}): Promise<void> {
  const fh = await open(opts.image, 'r+');
  try {
    await fh.write(Buffer.alloc(64), 0, 64, opts.offset + S_LAST_MOUNTED);
  } finally {
    await fh.close();
  }
  const t = `@${opts.time}`;
  const lines: string[] = [];
  for (const p of opts.paths) {
    for (const f of ['atime', 'mtime', 'ctime', 'crtime'])
      lines.push(`sif "${p}" ${f} ${t}`, `sif "${p}" ${f}_extra 0`);
    lines.push(`sif "${p}" generation 0`, `sif "${p}" version 0`);
  }
  lines.push('ssv mtime 0', 'ssv mnt_count 0', 'ssv kbytes_written 0');
  const script = join(opts.workDir, 'unmounted.debugfs');
  await writeFile(script, `${lines.join('\n')}\n`);
  // -n: the superblock checksum is stale (the bytes zeroed above) until debugfs writes it back
  const env = { ...process.env, E2FSPROGS_FAKE_TIME: String(opts.time) };
  const r = await run(['debugfs', '-n', '-w', '-f', script, `${opts.image}?offset=${opts.offset}`], { env });
  const bad = r.stderr
    .split('\n')
    .find((l) => /: .*(not found|Invalid|error|cannot)/i.test(l) && !l.startsWith('debugfs '));
  if (bad) throw new Error(`debugfs could not reset the mount's traces: ${bad.trim()}`);
}

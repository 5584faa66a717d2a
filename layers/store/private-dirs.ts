// The store's private directories: where image content is extracted or staged (snapshots, container roots, build
// and export scratch, cache mounts). An extracted layer keeps what the image carried: setuid-root binaries, 0666
// device nodes, world-writable directories. Reachable by another local user, those are a local root (issue 14), so
// these directories, and the store root above them, are for the store's owner only.
//
// Contract:
// - PRIVATE_DIRS are created with PRIVATE_MODE (0700) by the mkdir that makes them (no window with a looser mode,
//   whatever the umask), through privateDir / ensurePrivateDir only.
// - An existing directory that is looser (an older tsbuild made it 0755) loses its group and other bits; bits are
//   only ever taken away (a 0500 directory stays 0500). A directory this process may not chmod (another user's,
//   a read-only file system) is left as it is: it cannot write there either.
// - tightenStore applies the same rule to the store root and to those of PRIVATE_DIRS that exist; Store.open calls
//   it, so the next command of a new version fixes a store an older one left open.
// - What is inside a private directory keeps its own mode: a snapshot's root is a container's `/`.
import { chmod, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { spreadSubdirectories } from '../../sys/libc.js';

/** PRIVATE_MODE is the mode of the store root and of its private directories: the owner only. */
export const PRIVATE_MODE = 0o700;

/** PRIVATE_DIRS are the store's directories that hold extracted or staged image content. */
export const PRIVATE_DIRS = ['snapshots', 'containers', 'tmp', 'cache-mounts'] as const;
export type PrivateDirName = (typeof PRIVATE_DIRS)[number];

/** privateDirPath is where a private directory of a store lives (not created). */
export function privateDirPath(storeRoot: string, name: PrivateDirName): string {
  return join(storeRoot, name);
}

/** SPREAD are the private directories whose entries are trees made and removed all the time (snapshots, scratch). */
const SPREAD: ReadonlySet<PrivateDirName> = new Set(['snapshots', 'containers', 'tmp']);
const spread = new Set<string>();

/**
 * privateDir makes sure a private directory of a store exists, 0700 (or tighter), and returns its path. The first
 * time in a process, one of SPREAD also gets the attribute that spreads its subdirectories over the filesystem
 * (sys/libc.ts spreadSubdirectories, `chattr +T`).
 */
export async function privateDir(storeRoot: string, name: PrivateDirName): Promise<string> {
  const dir = privateDirPath(storeRoot, name);
  await ensurePrivateDir(dir);
  if (SPREAD.has(name) && !spread.has(dir)) {
    spread.add(dir);
    spreadSubdirectories(dir);
  }
  return dir;
}

/**
 * ensurePrivateDir creates `dir` and its missing parents with mode 0700 (mkdir's own mode argument, and a chmod
 * when the umask took owner bits away), or takes the group and other bits away from an existing one.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  const made = await mkdir(dir, { recursive: true, mode: PRIVATE_MODE });
  if (made === undefined) await tighten(dir);
  else if (((await stat(dir)).mode & 0o777) !== PRIVATE_MODE) await chmod(dir, PRIVATE_MODE); // an odd umask (0277)
}

/** tightenStore takes group and other bits away from the store root and from its private directories that exist. */
export async function tightenStore(root: string): Promise<void> {
  await tighten(root);
  for (const name of PRIVATE_DIRS) await tighten(privateDirPath(root, name), true);
}

async function tighten(dir: string, mayBeMissing = false): Promise<void> {
  let mode: number;
  try {
    mode = (await stat(dir)).mode & 0o7777;
  } catch (err) {
    if (mayBeMissing && (err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!(mode & 0o077)) return;
  try {
    await chmod(dir, mode & ~0o077 & 0o7777);
  } catch (err) {
    // Not ours (another user reading an older store) or read-only: nothing can be written here either; the owner's
    // next command tightens it.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'EROFS') throw err;
  }
}

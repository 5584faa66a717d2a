// Removing a directory tree: `rm -rf --one-file-system` in a child process, for every tree tsbuild removes whose
// size it does not control (snapshots, step upper directories, userspace rootfs copies, export staging trees,
// the leftovers of dead processes). Node's recursive rm starts an unlink for every entry of a directory at once:
// 1.7 GB of heap for a tree of a million files (issue 14). rm(1) walks it in constant memory and never crosses into
// another filesystem: a mount left below the tree (an overlay, a bind of the host's files) makes the removal fail
// with rm's message instead of emptying what is mounted there. A tree of a few entries on one filesystem (what a step
// or container directory holds once its upperdir has moved out) is removed in this process: starting rm(1) from Node
// costs tens of milliseconds, on the way from one build step to the next.
import { lstatSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MissingToolsError } from './errors.js';
import { run } from './exec.js';

/** removeTree removes `dir` and everything below it (nothing when it is missing). */
export async function removeTree(dir: string): Promise<void> {
  // an empty or missing directory (a no-op build's work directory) needs no child process
  const code = await rmdir(dir).then(
    () => 'gone',
    (err: NodeJS.ErrnoException) => err.code,
  );
  if (code === 'gone' || code === 'ENOENT') return;
  if (code === 'ENOTEMPTY' && removeSmallTree(dir)) return;
  try {
    await run(['rm', '-rf', '--one-file-system', '--', dir]);
  } catch (err) {
    if (!(err instanceof MissingToolsError)) throw err;
    // no rm(1) on the PATH (it is in every Debian and Alpine base): Node's removal, which does cross mounts
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

/** SMALL_TREE_MAX: the most entries removeSmallTree removes itself; a bigger tree goes to rm(1). */
const SMALL_TREE_MAX = 64;

/**
 * removeSmallTree removes `dir` in this process when it holds only a few entries (a container or step directory
 * once its upper directory has moved out or stayed nearly empty and its mount point is unmounted: overlayfs's work
 * directory, stub files), with a few synchronous calls instead of starting rm(1). It lstats every entry and removes
 * only entries of dir's own filesystem, with unlink and rmdir, which never follow a link and fail on a mount point,
 * so it can never empty a mount. Anything else (another device, more than SMALL_TREE_MAX entries, an error) returns
 * false, for rm(1) to remove what is left and say what is wrong.
 */
function removeSmallTree(dir: string): boolean {
  try {
    const top = lstatSync(dir);
    if (!top.isDirectory()) return false;
    const entries: { path: string; dir: boolean }[] = []; // children before their parent
    const visit = (d: string): boolean => {
      for (const name of readdirSync(d)) {
        if (entries.length >= SMALL_TREE_MAX) return false;
        const path = join(d, name);
        const st = lstatSync(path);
        if (st.dev !== top.dev) return false;
        if (st.isDirectory() && !visit(path)) return false;
        entries.push({ path, dir: st.isDirectory() });
      }
      return true;
    };
    if (!visit(dir)) return false;
    for (const e of entries) (e.dir ? rmdirSync : unlinkSync)(e.path);
    rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

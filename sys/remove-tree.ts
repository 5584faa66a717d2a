// Removing a directory tree: `rm -rf --one-file-system` in a child process, for every tree tsbuild removes whose
// size it does not control (snapshots, step upper directories, userspace rootfs copies, export staging trees,
// the leftovers of dead processes). Node's recursive rm starts an unlink for every entry of a directory at once:
// 1.7 GB of heap for a tree of a million files (issue 14). rm(1) walks it in constant memory and never crosses into
// another filesystem: a mount left below the tree (an overlay, a bind of the host's files) makes the removal fail
// with rm's message instead of emptying what is mounted there.
import { rm, rmdir } from 'node:fs/promises';
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
  try {
    await run(['rm', '-rf', '--one-file-system', '--', dir]);
  } catch (err) {
    if (!(err instanceof MissingToolsError)) throw err;
    // no rm(1) on the PATH (it is in every Debian and Alpine base): Node's removal, which does cross mounts
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

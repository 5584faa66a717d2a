// Small files in this user's cache directory ($XDG_CACHE_HOME/tsbuild, else ~/.cache/tsbuild), where the C helper
// and the CLI's code caches also live. What is read from there is trusted as much as the helper binary next to it,
// so a file is read only when this user owns it and nobody else can write it; writes are atomic and best-effort.
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** userCacheDir is $XDG_CACHE_HOME/tsbuild, else ~/.cache/tsbuild. */
export function userCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tsbuild');
}

/** readUserCache returns the text of a cache file (latin1), or undefined when it is missing or not safely ours. */
export function readUserCache(name: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(join(userCacheDir(), name), 'r');
    const st = fstatSync(fd);
    if (st.uid !== process.geteuid?.() || (st.mode & 0o022) !== 0) return undefined;
    return readFileSync(fd, 'latin1');
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** writeUserCache replaces a cache file atomically (mode 0600); a cache that cannot be written is skipped. */
export function writeUserCache(name: string, text: string): void {
  const file = join(userCacheDir(), name);
  try {
    mkdirSync(userCacheDir(), { recursive: true, mode: 0o700 });
    writeFileSync(`${file}.${process.pid}.tmp`, text, { encoding: 'latin1', mode: 0o600 });
    renameSync(`${file}.${process.pid}.tmp`, file);
  } catch {
    // a read-only home: computed again next time
  }
}

// Helpers for the unionfs tests: shell scripts as fixtures, overlay mounts torn down with the test, mount checks.
import type { ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Change } from '../../layers/model/changeset.js';
import { promisify } from 'node:util';
import { mountOverlay, type MountedOverlay, type OverlayPlan } from '../../unionfs/overlay.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const execFileP = promisify(execFile);

/** sh runs a bash script (errexit, nounset, pipefail) with `cwd` as its working directory; returns stdout. */
export async function sh(script: string, cwd: string): Promise<string> {
  try {
    const { stdout } = await execFileP('bash', ['-euo', 'pipefail', '-c', script], { cwd, maxBuffer: 64 << 20 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`script failed in ${cwd}: ${script}\n${err.stderr ?? err.message}`, { cause: e });
  }
}

/** tempDir makes a temp dir that the test removes at teardown (after its mounts: teardowns run last-in first-out). */
export async function tempDir(t: ExecutionContext, prefix: string): Promise<string> {
  const dir = await makeTempDir(prefix);
  t.teardown(() => removeDir(dir));
  return dir;
}

/** mountForTest mounts an overlay and unmounts it at teardown, even when the test fails. */
export async function mountForTest(t: ExecutionContext, plan: OverlayPlan): Promise<MountedOverlay> {
  const m = await mountOverlay(plan);
  t.teardown(() => m.unmount());
  return m;
}

/** mountsUnder lists the mount points in /proc/self/mountinfo whose path contains `fragment`. */
export function mountsUnder(fragment: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((mp) => mp.includes(fragment));
}

/**
 * LOWER_FIXTURE builds two layers in the cwd, `bottom/` and `top/`, as overlay snapshots: `top` whites out
 * `hidden` (char 0/0) and makes `opq` opaque. Every mtime is 2020-01-01 so that the trees are reproducible.
 */
export const LOWER_FIXTURE = `
mkdir -p bottom/etc/conf.d bottom/usr/bin bottom/usr/lib bottom/var/log bottom/data/sub bottom/opq
printf 'root:x:0:0\\n' > bottom/etc/passwd
printf '127.0.0.1 localhost\\n' > bottom/etc/hosts
printf 'a=1\\n' > bottom/etc/conf.d/a.conf
printf 'b=2\\n' > bottom/etc/conf.d/b.conf
printf '#!/bin/sh\\necho tool\\n' > bottom/usr/bin/tool && chmod 755 bottom/usr/bin/tool
head -c 3000 /dev/zero > bottom/usr/lib/libx.so
printf 1 > bottom/data/one && printf 2 > bottom/data/two && printf 3 > bottom/data/sub/three
printf 'gone\\n' > bottom/hidden
printf 'old\\n' > bottom/opq/old
ln -s etc/hosts bottom/link
mkdir -p top/etc top/opq
mknod top/hidden c 0 0
setfattr -n trusted.overlay.opaque -v y top/opq
printf 'new\\n' > top/opq/new
printf 'hello\\n' > top/etc/motd
find bottom top -exec touch -h -d @1577836800 {} +
`;

/**
 * typed checks the `dir` hint of each change against the tree at `root` (every change but a delete has one, and it
 * says whether the path is a directory there) and returns the changes without it, to compare with plain expectations.
 */
export function typed(t: ExecutionContext, root: string, changes: Change[]): Change[] {
  return changes.map(({ dir, ...c }) => {
    if (c.kind === 'delete') t.is(dir, undefined, `${c.path}: a delete has no type`);
    else t.is(dir, lstatSync(join(root, c.path)).isDirectory(), `${c.path}: dir hint`);
    return c;
  });
}

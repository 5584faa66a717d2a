// Test images: a busybox rootfs directory, fresh store roots, and a Debian base bootstrapped once per machine.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import lockfile from 'proper-lockfile';
import { ensurePrivateDir } from '../../layers/store/private-dirs.js';
import { busyboxAvailable, makeBusyboxRootfs } from '../../fixtures/busybox.js';
import { makeTempDir, removeDir, tsbuild } from './index.js';

type Teardown = { teardown(fn: () => unknown): void };

/** newStoreRoot makes an empty directory for a store, removed after the test. */
export async function newStoreRoot(t: Teardown): Promise<string> {
  const dir = await makeTempDir('tsbuild-store-');
  t.teardown(() => removeDir(dir));
  return dir;
}

/** busyboxTree makes a busybox rootfs directory, removed after the test. */
export async function busyboxTree(t: Teardown): Promise<string> {
  if (!busyboxAvailable()) throw new Error('busybox-static is not installed (apt-get install busybox-static)');
  const dir = await makeTempDir('tsbuild-bb-');
  t.teardown(() => removeDir(dir));
  await makeBusyboxRootfs(dir);
  return dir;
}

/**
 * CACHE holds what is expensive to make and safe to share between test runs on one machine. It holds stores with
 * extracted layers (setuid binaries, device nodes), so it is private to its owner like a store: make it (and what
 * goes in it) through cacheDir.
 */
export const CACHE = process.env.TSBUILD_TEST_CACHE ?? '/var/tmp/tsbuild-test-cache';

/** ensureTestCache creates CACHE 0700 (parents as usual), or tightens one a looser version of the suite made. */
export async function ensureTestCache(): Promise<string> {
  await mkdir(dirname(CACHE), { recursive: true });
  await ensurePrivateDir(CACHE);
  return CACHE;
}

/** cacheDir makes (if missing) a directory in CACHE and returns its path. */
export async function cacheDir(name: string): Promise<string> {
  const dir = join(await ensureTestCache(), name);
  await mkdir(dir, { recursive: true });
  return dir;
}

/**
 * debianStore returns a store root that holds `debian:bookworm` (minbase), bootstrapping it on first use
 * (about a minute, from the Debian archive). Tests must not remove images from it: they copy what they
 * change into a store of their own (see copyImage).
 */
export async function debianStore(): Promise<string> {
  const root = await cacheDir('debian-store');
  const release = await lockfile.lock(root, {
    lockfilePath: join(CACHE, 'debian-store.lock'),
    realpath: false,
    stale: 600_000,
    update: 10_000,
    retries: { retries: 2000, minTimeout: 200, maxTimeout: 500 },
  });
  try {
    const have = await tsbuild(['--root', root, 'inspect', 'debian:bookworm']);
    if (have.code !== 0) {
      const r = await tsbuild(['--root', root, 'bootstrap', 'debian:bookworm'], {
        env: { SOURCE_DATE_EPOCH: '1700000000' },
      });
      if (r.code !== 0) throw new Error(`bootstrap failed: ${r.stderr}`);
    }
  } finally {
    await release();
  }
  return root;
}

/** copyImage copies an image between stores through `tsbuild save | tsbuild load`. */
export async function copyImage(fromRoot: string, toRoot: string, name: string): Promise<void> {
  const dir = await makeTempDir('tsbuild-copy-');
  try {
    const archive = join(dir, 'image.tar');
    const s = await tsbuild(['--root', fromRoot, 'save', name, '-o', archive]);
    if (s.code !== 0) throw new Error(`save failed: ${s.stderr}`);
    const l = await tsbuild(['--root', toRoot, 'load', '-i', archive]);
    if (l.code !== 0) throw new Error(`load failed: ${l.stderr}`);
  } finally {
    await removeDir(dir);
  }
}

export function haveTool(path: string): boolean {
  return existsSync(path);
}

// Images for the export tests: an app on top of the bootstrapped Debian base (made with library calls until the
// Dockerfile builder lands), the Alpine-shaped fixture as an image, and a store shared by the export tests so that
// the kernel layer is installed once per machine (it is cached in that store).
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { commitLayer } from '../../layers/commit.js';
import { getImage, tagImage, writeImage } from '../../layers/image.js';
import { Store } from '../../layers/store.js';
import { tarFromDirectory } from '../../layers/tar-create.js';
import type { ContainerConfig, Digest } from '../../layers/types.js';
import { exportImage } from '../../convert/recipe.js';
import { CACHE, copyImage, debianStore } from '../helpers/images.js';
import { makeTempDir, removeDir, tsbuild } from '../helpers/index.js';

/** APP_MARKER is printed by the app at boot, with its environment, working directory and user. */
export const APP_MARKER = 'TSBUILD-APP-MARKER';
/** APP_EXPECT matches the app's line on the serial console: marker, Env, WorkingDir and User all applied. */
export const APP_EXPECT = `${APP_MARKER} greeting=hello-from-env cwd=/srv/app user=appuser`;

/** appScript is the app: one line on stdout, then it exits. */
export function appScript(marker = APP_MARKER): string {
  return `#!/bin/sh\necho "${marker} greeting=$GREETING cwd=$(pwd) user=$(id -un)"\n`;
}

/**
 * addAppLayer makes `name` = `base` + one layer with /usr/local/bin/app, a user `appuser` and /srv/app, with CMD,
 * ENV, WORKDIR and USER set as a Dockerfile would. `extra` files go into the layer too (path → content).
 */
export async function addAppLayer(storeRoot: string, opts: { base: string; name: string; marker?: string; extra?: Record<string, string>; config?: ContainerConfig }): Promise<void> {
  const store = await Store.open(storeRoot);
  const base = await getImage(store, opts.base);
  const dir = await makeTempDir('tsbuild-app-');
  try {
    await mkdir(join(dir, 'usr/local/bin'), { recursive: true });
    await writeFile(join(dir, 'usr/local/bin/app'), appScript(opts.marker));
    await chmod(join(dir, 'usr/local/bin/app'), 0o755);
    await mkdir(join(dir, 'srv/app'), { recursive: true });
    for (const [p, content] of Object.entries(opts.extra ?? {})) {
      await mkdir(join(dir, p, '..'), { recursive: true });
      await writeFile(join(dir, p), content);
    }
    const layer = await commitLayer(store, tarFromDirectory(dir, { sourceDateEpoch: 1700000000 }));
    const baseLayers = base.manifest.layers.map((descriptor, i) => ({ descriptor, diffId: base.config.rootfs.diff_ids[i] as Digest }));
    const config: ContainerConfig = {
      ...(base.config.config ?? {}),
      Cmd: ['app'],
      Env: [...(base.config.config?.Env ?? []), 'GREETING=hello-from-env'],
      WorkingDir: '/srv/app',
      User: 'appuser',
      ...opts.config,
    };
    const desc = await writeImage(store, {
      config: { created: '2023-11-14T22:13:20Z', architecture: 'amd64', os: 'linux', config, history: [...(base.config.history ?? []), { created: '2023-11-14T22:13:20Z', created_by: 'test: add app' }] },
      layers: [...baseLayers, layer],
    });
    await tagImage(store, desc, opts.name);
  } finally {
    await removeDir(dir);
  }
}

/** appUserFiles returns /etc/passwd and /etc/group of the base with `appuser` (uid 1000) added. */
export async function appUserFiles(storeRoot: string, base: string): Promise<Record<string, string>> {
  const dir = await makeTempDir('tsbuild-base-');
  try {
    const r = await tsbuild(['--root', storeRoot, 'unpack', base, join(dir, 'rootfs')]);
    if (r.code !== 0) throw new Error(`unpack failed: ${r.stderr}`);
    const passwd = await readFile(join(dir, 'rootfs/etc/passwd'), 'utf8');
    const group = await readFile(join(dir, 'rootfs/etc/group'), 'utf8');
    return { 'etc/passwd': `${passwd}appuser:x:1000:1000::/srv/app:/bin/sh\n`, 'etc/group': `${group}appuser:x:1000:\n` };
  } finally {
    await removeDir(dir);
  }
}

/**
 * withKernelLayer tags `name` = `image` + the kernel layer a root export of `image` installed (or found in the
 * store's cache): an image that already holds its kernel, for unprivileged exports.
 */
export async function withKernelLayer(storeRoot: string, image: string, name: string): Promise<void> {
  const store = await Store.open(storeRoot);
  const out = await makeTempDir('tsbuild-kernel-');
  try {
    const r = await exportImage({ store, image, output: join(out, 'rootfs.tar') });
    if (!r.kernel.layer) throw new Error(`the export of ${image} used no kernel layer (kernel from ${r.kernel.source})`);
    const img = await getImage(store, image);
    const layers = img.manifest.layers.map((descriptor, i) => ({ descriptor, diffId: img.config.rootfs.diff_ids[i] as Digest }));
    const { rootfs: _unused, ...config } = img.config;
    const desc = await writeImage(store, { config, layers: [...layers, r.kernel.layer] });
    await tagImage(store, desc, name);
  } finally {
    await removeDir(out);
  }
}

/**
 * exportStore returns a store shared by the export tests on this machine, holding `debian:bookworm` and
 * `app:0.1` (the app above). Exports from it cache the kernel layer there, so only the first one installs it.
 * Tests must not remove images from it.
 */
export async function exportStore(): Promise<string> {
  const root = join(CACHE, 'export-store');
  await mkdir(root, { recursive: true });
  // proper-lockfile keys its locks by the first argument: not `root`, which the Store locks itself in this process
  const release = await lockfile.lock(`${root}.setup`, { lockfilePath: join(CACHE, 'export-store.lock'), realpath: false, stale: 600_000, update: 10_000, retries: { retries: 2000, minTimeout: 200, maxTimeout: 500 } });
  try {
    if ((await tsbuild(['--root', root, 'inspect', 'debian:bookworm'])).code !== 0) await copyImage(await debianStore(), root, 'debian:bookworm');
    if ((await tsbuild(['--root', root, 'inspect', 'app:0.1'])).code !== 0) {
      await addAppLayer(root, { base: 'debian:bookworm', name: 'app:0.1', extra: await appUserFiles(root, 'debian:bookworm') });
    }
  } finally {
    await release();
  }
  return root;
}

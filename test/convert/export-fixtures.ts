// Images for the export tests, made with real Dockerfile builds through the CLI (`tsbuild build`) from
// fixtures/export/: the app on the bootstrapped Debian base (debian.Dockerfile), the same app on Alpine
// (alpine.Dockerfile), and an app image that already holds its kernel (kernel.Dockerfile). A store shared by the
// export tests keeps the kernel layer an export installs in its cache, so the kernel is installed once per machine.
import { copyFile, cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { getImage } from '../../layers/store/image.js';
import { Store } from '../../layers/store/store.js';
import { verifyImage } from '../../layers/store/verify.js';
import { exportImage } from '../../convert/recipe.js';
import { CACHE, cacheDir, copyImage, debianStore } from '../helpers/images.js';
import { type CliResult, makeTempDir, removeDir, repoRoot, tsbuild } from '../helpers/index.js';

/** APP_MARKER is printed by the app at boot, with its environment, working directory and user. */
export const APP_MARKER = 'TSBUILD-APP-MARKER';
/** APP_EXPECT matches the app's line on the serial console: marker, Env, WorkingDir and User all applied. */
export const APP_EXPECT = `${APP_MARKER} greeting=hello-from-env cwd=/srv/app user=appuser`;

/** The Dockerfiles and the build context (the app script) of the export tests. */
export const EXPORT_FIXTURES = join(repoRoot, 'fixtures', 'export');
export const APP_CONTEXT = join(EXPORT_FIXTURES, 'app');
export const DEBIAN_APP = join(EXPORT_FIXTURES, 'debian.Dockerfile');
export const ALPINE_APP = join(EXPORT_FIXTURES, 'alpine.Dockerfile');
export const KERNEL_APP = join(EXPORT_FIXTURES, 'kernel.Dockerfile');

/** The fixed build time: the same Dockerfile and context give the same image digest on every run. */
const SOURCE_DATE_EPOCH = '1700000000';

/**
 * buildImage runs `tsbuild --root STORE build -t TAG --progress plain -f DOCKERFILE CONTEXT` and returns its result
 * (the digest on stdout, the plain progress on stderr: see buildOutput for failure messages).
 */
export function buildImage(
  storeRoot: string,
  opts: { dockerfile: string; context: string; tag: string; buildArgs?: Record<string, string> },
): Promise<CliResult> {
  const args = ['--root', storeRoot, 'build', '-t', opts.tag, '--progress', 'plain', '-f', opts.dockerfile];
  for (const [k, v] of Object.entries(opts.buildArgs ?? {})) args.push('--build-arg', `${k}=${v}`);
  return tsbuild([...args, opts.context], { env: { SOURCE_DATE_EPOCH } });
}

/** buildOutput is what a failed build said, for assertion and error messages: its progress and errors. */
export function buildOutput(r: CliResult, max = 6000): string {
  const text = `${r.stderr}${r.stdout}`.trim();
  return `build exited ${r.code}:\n${text.length > max ? `…${text.slice(-max)}` : text}`;
}

/** imageProblems is verifyImage (layers/store/verify.ts) on `ref` in the store: [] for a sound image. */
export async function imageProblems(storeRoot: string, ref: string): Promise<string[]> {
  const store = await Store.open(storeRoot);
  return verifyImage(store, await getImage(store, ref));
}

/** mustBuild is buildImage that throws (with the build's output) when the build fails or the image does not verify. */
export async function mustBuild(storeRoot: string, opts: Parameters<typeof buildImage>[1]): Promise<CliResult> {
  const r = await buildImage(storeRoot, opts);
  if (r.code !== 0) throw new Error(`tsbuild build -t ${opts.tag} -f ${opts.dockerfile} failed: ${buildOutput(r)}`);
  const problems = await imageProblems(storeRoot, opts.tag);
  if (problems.length)
    throw new Error(`${opts.tag} built from ${opts.dockerfile} does not verify: ${problems.join('; ')}`);
  return r;
}

/**
 * appContext copies the app's build context (fixtures/export/app) into a temp dir with the app's marker replaced
 * by `marker`: a second version of the app, as a developer edits it and builds again. The caller removes the dir.
 */
export async function appContext(marker: string): Promise<string> {
  const dir = await makeTempDir('tsbuild-app-ctx-');
  await cp(APP_CONTEXT, dir, { recursive: true });
  const script = join(dir, 'app');
  const text = await readFile(script, 'utf8');
  if (!text.includes(APP_MARKER)) throw new Error(`${join(APP_CONTEXT, 'app')} does not print ${APP_MARKER}`);
  await writeFile(script, text.replaceAll(APP_MARKER, marker));
  return dir;
}

/**
 * withKernelLayer builds `name` from kernel.Dockerfile: `image` + ADD of the kernel layer that a root export of
 * `image` installed (or found in the store's cache), an image that already holds its kernel for unprivileged
 * exports. Returns the build's result; a build that succeeded but made an image that does not verify throws.
 */
export async function withKernelLayer(storeRoot: string, image: string, name: string): Promise<CliResult> {
  const store = await Store.open(storeRoot);
  const ctx = await makeTempDir('tsbuild-kernel-');
  try {
    // the export finds (or installs and caches) the kernel layer of `image`; its rootfs tar is not needed
    const r = await exportImage({ store, image, output: join(ctx, 'rootfs.tar') });
    if (!r.kernel.layer)
      throw new Error(`the export of ${image} used no kernel layer (kernel from ${r.kernel.source})`);
    await removeDir(join(ctx, 'rootfs.tar'));
    await copyFile(store.blobPath(r.kernel.layer.descriptor.digest), join(ctx, 'kernel-layer.tar.gz'));
    const b = await buildImage(storeRoot, {
      dockerfile: KERNEL_APP,
      context: ctx,
      tag: name,
      buildArgs: { APP: image },
    });
    const problems = b.code === 0 ? await imageProblems(storeRoot, name) : [];
    if (problems.length)
      throw new Error(`${name} (${image} + its kernel layer) does not verify: ${problems.join('; ')}`);
    return b;
  } finally {
    await removeDir(ctx);
  }
}

/**
 * exportStore returns a store shared by the export tests on this machine, holding `debian:bookworm` and
 * `app:0.1` (built from debian.Dockerfile; the build runs every time, from its cache once made, so the image always
 * follows the fixture). Exports from it cache the kernel layer there, so only the first one installs it.
 * Tests must not remove images from it.
 */
export async function exportStore(): Promise<string> {
  const root = await cacheDir('export-store');
  // proper-lockfile keys its locks by the first argument: not `root`, which the Store locks itself in this process
  const release = await lockfile.lock(`${root}.setup`, {
    lockfilePath: join(CACHE, 'export-store.lock'),
    realpath: false,
    stale: 600_000,
    update: 10_000,
    retries: { retries: 2000, minTimeout: 200, maxTimeout: 500 },
  });
  try {
    if ((await tsbuild(['--root', root, 'inspect', 'debian:bookworm'])).code !== 0)
      await copyImage(await debianStore(), root, 'debian:bookworm');
    await mustBuild(root, { dockerfile: DEBIAN_APP, context: APP_CONTEXT, tag: 'app:0.1' });
  } finally {
    await release();
  }
  return root;
}

// runImage on the recording FakeHost: which overlay it mounts (volatile with `remove`), the fallback when the kernel
// refuses `volatile`, and what is left in the store. Nothing is mounted, so these run without root (and as root).
import test from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chainIds } from '../../layers/model/digest.js';
import { imageLayers } from '../../layers/model/layer.js';
import { importImage } from '../../layers/sources/import.js';
import { getImage } from '../../layers/store/image.js';
import { Store } from '../../layers/store/store.js';
import { runImage, type RunImageOptions } from '../../runtime/run-image.js';
import { FakeHost, type FakeHostOptions } from '../../sys/fake-host.js';
import { overlayData, volatileKnown } from '../../unionfs/overlay.js';
import { containersRoot } from '../../unionfs/rootfs.js';
import { snapshotDir } from '../../unionfs/snapshot.js';
import { tempDir } from '../unionfs/helpers.js';

async function setUp(t: Parameters<typeof tempDir>[0], opts: FakeHostOptions = {}) {
  const dir = await tempDir(t, 'tsbuild-run-image-fake-');
  const src = join(dir, 'src');
  await mkdir(join(src, 'etc'), { recursive: true });
  await writeFile(join(src, 'etc/motd'), 'hello\n');
  const store = await Store.open(join(dir, 'store'));
  await importImage(store, { source: src, name: 'img' });
  const image = await getImage(store, 'img');
  const host = new FakeHost({ caps: { uid: 0, gid: 0, root: true, mount: true, mknod: true, chown: true }, ...opts });
  const warnings: string[] = [];
  const run = (o: Partial<RunImageOptions> = {}) =>
    runImage({ store, image, host, cmd: ['true'], onWarn: (code) => warnings.push(code), ...o });
  const snapshot = snapshotDir(store.root, chainIds(imageLayers(image).map((l) => l.diffId))[0]!);
  return { store, host, run, warnings, snapshot };
}

const overlayMounts = (host: FakeHost) => host.callsOf('mount').filter((c) => c.fstype === 'overlay');

test('run --rm mounts the volatile overlay of the snapshots (Linux 5.10 and later); its directory goes', async (t) => {
  const { store, host, run, snapshot } = await setUp(t);
  const r = await run({ remove: true });
  t.is(r.exitCode, 0);
  const [overlay] = overlayMounts(host);
  const dir = overlay!.target.replace(/\/merged$/, '');
  t.is(
    overlay!.data,
    overlayData({ lowers: [snapshot], upper: join(dir, 'upper'), work: join(dir, 'work'), volatile: volatileKnown() }),
  );
  t.true(
    host.callsOf('start')[0]!.ops.some((o) => o.op === 'pivot' && o.root === overlay!.target),
    'the container pivots into the merged tree',
  );
  t.deepEqual(readdirSync(containersRoot(store.root)), [], 'the container directory is gone');
});

test('a run that keeps its writable layer mounts no volatile overlay', async (t) => {
  const { host, run } = await setUp(t);
  const kept = await run({ remove: false });
  t.false(overlayMounts(host)[0]!.data!.includes('volatile'));
  t.true(existsSync(join(kept.containerDir!, 'upper')), 'the writable layer stays');
});

test('a kernel that refuses volatile (EINVAL): a plain overlay, with no warning', async (t) => {
  if (!volatileKnown()) return t.pass('this kernel is older than 5.10: volatile is never asked for');
  const refuse = Object.assign(new Error('mount: EINVAL'), { code: 'EINVAL' });
  const { store, host, run, warnings } = await setUp(t, {
    mountError: (_target, fstype, data) => (fstype === 'overlay' && data?.includes('volatile') ? refuse : undefined),
  });
  const r = await run({ remove: true });
  t.is(r.exitCode, 0);
  const [overlay] = overlayMounts(host);
  t.false(overlay!.data!.includes('volatile'));
  t.true(host.callsOf('start')[0]!.ops.some((o) => o.op === 'pivot' && o.root === overlay!.target));
  t.deepEqual(warnings, []);
  t.deepEqual(readdirSync(containersRoot(store.root)), []);
});

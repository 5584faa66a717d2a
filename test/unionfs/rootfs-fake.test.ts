// openRootfs, RootfsSession and flatten on the recording FakeHost: which mounts, unmounts and chowns they ask for,
// and which driver they pick from the host's caps. Nothing is mounted, so these run without root (and as root).
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chainId } from '../../layers/model/digest.js';
import { Store } from '../../layers/store/store.js';
import { FakeHost } from '../../sys/fake-host.js';
import { flatten } from '../../unionfs/flatten.js';
import { overlayData } from '../../unionfs/overlay.js';
import { openRootfs, RootfsSession } from '../../unionfs/rootfs.js';
import { snapshotDir } from '../../unionfs/snapshot.js';
import { tempDir } from './helpers.js';
import { storeLayer } from './layer-fixtures.js';

const PREFIX = 'tsbuild-unionfs-rootfs-fake-';

async function twoLayers(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t, PREFIX);
  const store = await Store.open(join(dir, 'store'));
  const base = await storeLayer(store, { 'etc/motd': 'base', 'etc/keep': 'keep' });
  const top = await storeLayer(store, { 'etc/motd': 'top', 'app/x': 'x' });
  const snaps = [
    snapshotDir(store.root, chainId([base.diffId])),
    snapshotDir(store.root, chainId([base.diffId, top.diffId])),
  ];
  return { dir, store, layers: [base, top], snaps };
}

test('overlay: one overlay mount naming the snapshots as lowerdirs (top first) with upperdir and workdir; release unmounts it', async (t) => {
  const { store, layers, snaps } = await twoLayers(t);
  const host = new FakeHost({ caps: { mount: true } });
  const rootfs = await openRootfs({ store, host, layers });
  t.is(rootfs.driver, 'overlay');
  t.is(rootfs.path, join(rootfs.dir, 'merged'));
  const mounts = host.callsOf('mount');
  t.is(mounts.length, 1);
  t.like(mounts[0], { source: 'overlay', target: rootfs.path, fstype: 'overlay' });
  t.is(
    mounts[0]!.data,
    overlayData({ lowers: [snaps[1]!, snaps[0]!], upper: join(rootfs.dir, 'upper'), work: join(rootfs.dir, 'work') }),
  );
  t.true(existsSync(join(snaps[0]!, 'etc/keep')), 'the snapshots were made');
  t.deepEqual(await rootfs.changes(), []);
  t.deepEqual(host.callsOf('umount'), []);
  await rootfs.release();
  t.deepEqual(
    host.callsOf('umount').map((c) => c.target),
    [rootfs.path],
  );
  t.false(existsSync(rootfs.dir));
  await rootfs.release();
  t.is(host.callsOf('umount').length, 1, 'release is idempotent');
});

test('caps without mount: the vfs driver, and no mount call', async (t) => {
  const { store, layers } = await twoLayers(t);
  const host = new FakeHost({ caps: { mount: false } });
  const rootfs = await openRootfs({ store, host, layers });
  t.teardown(() => rootfs.release());
  t.is(rootfs.driver, 'vfs');
  t.is(rootfs.path, join(rootfs.dir, 'rootfs'));
  t.is(readFileSync(join(rootfs.path, 'etc/motd'), 'utf8'), 'top');
  t.deepEqual(
    host.calls.filter((c) => c.op === 'mount' || c.op === 'umount'),
    [],
  );
});

test('a mount refused with EPERM falls back to vfs with W_NO_OVERLAY', async (t) => {
  const { store, layers } = await twoLayers(t);
  const host = new FakeHost({
    caps: { mount: true },
    mountError: () => Object.assign(new Error('mount: EPERM'), { code: 'EPERM' }),
  });
  const warnings: string[] = [];
  const rootfs = await openRootfs({ store, host, layers, onWarn: (code) => warnings.push(code) });
  t.teardown(() => rootfs.release());
  t.is(rootfs.driver, 'vfs');
  t.deepEqual(warnings, ['W_NO_OVERLAY']);
  t.is(readFileSync(join(rootfs.path, 'app/x'), 'utf8'), 'x');
  t.deepEqual(host.callsOf('mount'), []);
});

test('an explicit overlay driver does not fall back', async (t) => {
  const { store, layers } = await twoLayers(t);
  const host = new FakeHost({
    caps: { mount: true },
    mountError: () => Object.assign(new Error('mount: EPERM'), { code: 'EPERM' }),
  });
  await t.throwsAsync(openRootfs({ store, host, layers, driver: 'overlay' }), { code: 'E_OVERLAY_MOUNT' });
});

test('stubs the layers lack are one more read-only lowerdir, on top', async (t) => {
  const { store, layers, snaps } = await twoLayers(t);
  const host = new FakeHost({ caps: { mount: true } });
  const stubs = [
    { path: '/proc', dir: true },
    { path: '/etc/hosts', dir: false },
    { path: '/etc/motd', dir: false },
  ];
  const rootfs = await openRootfs({ store, host, layers, stubs });
  t.teardown(() => rootfs.release());
  const stubDir = join(rootfs.dir, 'stubs');
  const [mount] = host.callsOf('mount');
  t.is(
    mount!.data,
    overlayData({
      lowers: [stubDir, snaps[1]!, snaps[0]!],
      upper: join(rootfs.dir, 'upper'),
      work: join(rootfs.dir, 'work'),
    }),
  );
  t.true(existsSync(join(stubDir, 'proc')));
  t.true(existsSync(join(stubDir, 'etc/hosts')));
  t.false(existsSync(join(stubDir, 'etc/motd')), 'a mount point the image has needs no stub');
  t.deepEqual(
    host.callsOf('lchown').map((c) => c.path),
    [join(stubDir, 'etc')],
    "the image's directory above a stub is copied with its owner, through the host",
  );
});

test('a session on a host that may mount probes overlay, mounts each step and unmounts it on discard', async (t) => {
  const { store, layers, snaps } = await twoLayers(t);
  const host = new FakeHost({ caps: { mount: true } });
  const session = new RootfsSession({ store, host });
  t.teardown(() => session.close());
  t.is(await session.driver(), 'overlay');
  t.is(host.callsOf('mount').length, 1, 'the probe');
  const step = await session.openStep(layers);
  const mount = host.callsOf('mount')[1]!;
  t.is(mount.target, step.dir);
  t.true(mount.data!.startsWith(`lowerdir=${snaps[1]}:${snaps[0]},upperdir=`));
  await step.discard();
  t.true(host.callsOf('umount').some((c) => c.target === step.dir));
});

test('a session on a host that may not mount uses vfs, with no mount call', async (t) => {
  const { store, layers } = await twoLayers(t);
  const host = new FakeHost({ caps: { mount: false } });
  const session = new RootfsSession({ store, host, driver: 'auto' });
  t.teardown(() => session.close());
  t.is(await session.driver(), 'vfs');
  const step = await session.openStep(layers, [{ path: '/proc', dir: true }]);
  t.is(readFileSync(join(step.dir, 'etc/motd'), 'utf8'), 'top');
  t.is(await step.commit({ compression: 'gzip' }), null, 'the stub is no change');
  t.deepEqual(host.callsOf('mount'), []);
});

test("flatten's snapshots method chowns directories through the host when it is root, apply otherwise", async (t) => {
  const { dir, store, layers } = await twoLayers(t);
  const root = new FakeHost({ caps: { root: true, mount: true, chown: true, mknod: true, uid: 0, gid: 0 } });
  const a = join(dir, 'a');
  t.is(await flatten({ store, host: root, layers, dir: a }), 'snapshots');
  t.is(readFileSync(join(a, 'etc/motd'), 'utf8'), 'top');
  const chowned = root.callsOf('lchown').map((c) => c.path);
  for (const p of [a, join(a, 'etc'), join(a, 'app')]) t.true(chowned.includes(p), p);
  t.false(chowned.includes(join(a, 'etc/motd')), 'files are hard links, not chowned');

  const user = new FakeHost();
  const b = join(dir, 'b');
  t.is(await flatten({ store, host: user, layers, dir: b }), 'apply');
  t.is(readFileSync(join(b, 'etc/motd'), 'utf8'), 'top');
  t.deepEqual(user.callsOf('lchown'), []);
});

// The export's privileged decisions, taken from the Host's caps() and made through the Host, tested on the recording
// FakeHost: no root needed (these run as any user, and as root they still see the fake's answers). Root's SSH files
// and the rewritten password file get owners only when the host may chown; extlinux and the kernel install refuse
// without root with their clear errors; a cached kernel layer is used without root.
import test from 'ava';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { extlinux } from '../../convert/bootloader/extlinux.js';
import type { BootloaderContext } from '../../convert/bootloader/types.js';
import type { Distro } from '../../convert/distro.js';
import {
  installPlan,
  kernelCacheKey,
  kernelRecords,
  KernelNeedsRootError,
  provideKernel,
} from '../../convert/kernel/index.js';
import { exportImage } from '../../convert/recipe.js';
import { writeSystemFiles } from '../../convert/system-files.js';
import { commitLayer } from '../../layers/store/commit.js';
import { Store } from '../../layers/store/store.js';
import { tarFromDirectory } from '../../layers/tar/create.js';
import { FakeHost } from '../../sys/fake-host.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const debian: Distro = { id: 'debian', family: 'debian', versionId: '12', prettyName: 'Debian 12' };
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly test@host';
const HASH = '$6$salt$hash';

async function tree(t: { teardown(f: () => unknown): void }, files: Record<string, string>): Promise<string> {
  const root = await makeTempDir('tsbuild-fake-');
  t.teardown(() => removeDir(root));
  for (const [p, content] of Object.entries(files)) {
    await mkdir(join(root, p, '..'), { recursive: true });
    await writeFile(join(root, p), content);
  }
  return root;
}

const machine = {
  'etc/os-release': 'ID=debian\n',
  'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\n',
  'etc/shadow': 'root:*:19000:0:99999:7:::\n',
};

async function systemFiles(t: { teardown(f: () => unknown): void }, host: FakeHost): Promise<string> {
  const rootfs = await tree(t, machine);
  await writeSystemFiles({
    rootfs,
    host,
    rootUuid: 'U',
    hostname: 'vm',
    network: 'none',
    sshKeys: [KEY],
    rootPasswordHash: HASH,
  });
  return rootfs;
}

test("without chown, root's SSH files and the password file are written and given no owner", async (t) => {
  const host = new FakeHost({ caps: { root: false } });
  const rootfs = await systemFiles(t, host);
  t.is(readFileSync(join(rootfs, 'root/.ssh/authorized_keys'), 'utf8'), `${KEY}\n`);
  t.is(statSync(join(rootfs, 'root/.ssh')).mode & 0o777, 0o700);
  t.is(statSync(join(rootfs, 'root/.ssh/authorized_keys')).mode & 0o777, 0o600);
  t.regex(readFileSync(join(rootfs, 'etc/shadow'), 'utf8'), /^root:\$6\$salt\$hash:/);
  t.deepEqual(host.calls, []);
});

test("with root and chown, root's SSH files go to root and the password file keeps its owner, through the host", async (t) => {
  const host = new FakeHost({ caps: { root: true, chown: true, uid: 0, gid: 0 } });
  const rootfs = await systemFiles(t, host);
  const shadow = statSync(join(rootfs, 'etc/shadow'));
  t.deepEqual(
    host.callsOf('lchown').map((c) => [c.path.slice(rootfs.length), c.uid, c.gid]),
    [
      ['/etc/shadow', shadow.uid, shadow.gid],
      ['/root/.ssh', 0, 0],
      ['/root/.ssh/authorized_keys', 0, 0],
    ],
  );
  t.deepEqual(
    host.calls.filter((c) => c.op !== 'lchown'),
    [],
  );
});

test('extlinux refuses to install without root, before touching the disk', async (t) => {
  const host = new FakeHost({ caps: { root: false } });
  const ctx = {
    host,
    image: '/nonexistent/disk.raw',
    workDir: '/nonexistent',
    plan: { layout: { table: 'mbr' } },
  } as unknown as BootloaderContext;
  const err = await t.throwsAsync(extlinux.install(ctx), {
    message: /extlinux needs root: it installs through a mounted filesystem/,
  });
  t.is((err as { code?: string } | undefined)?.code, 'E_NEEDS_ROOT');
  t.deepEqual(host.calls, []);
});

test('an export with --bootloader extlinux fails its first step on a host without root', async (t) => {
  const dir = await makeTempDir('tsbuild-fake-store-');
  t.teardown(() => removeDir(dir));
  const store = await Store.open(join(dir, 'store'));
  const host = new FakeHost({ caps: { root: false } });
  const steps: string[] = [];
  const err = await t.throwsAsync(
    exportImage({
      store,
      host,
      image: 'any:1',
      output: join(dir, 'out.raw'),
      bootloader: 'extlinux',
      onEvent: (e) => e.type === 'step' && steps.push(e.step),
    }),
    { message: /--bootloader extlinux needs root/ },
  );
  t.is((err as { code?: string } | undefined)?.code, 'E_NEEDS_ROOT');
  t.regex((err as { hint?: string } | undefined)?.hint ?? '', /--bootloader grub/);
  t.deepEqual(steps, []);
  t.false(existsSync(join(dir, 'out.raw')));
});

test('a kernel that must be installed needs root: KernelNeedsRootError, and the host is not asked for anything', async (t) => {
  const dir = await makeTempDir('tsbuild-fake-store-');
  t.teardown(() => removeDir(dir));
  const store = await Store.open(join(dir, 'store'));
  const rootfs = await tree(t, machine);
  const host = new FakeHost({ caps: { root: false } });
  await t.throwsAsync(
    provideKernel({ store, host, rootfs, layers: [], distro: debian, mode: 'auto', network: 'dhcp' }),
    { instanceOf: KernelNeedsRootError },
  );
  t.deepEqual(host.calls, []);
});

test('a cached kernel layer is laid over the tree without root', async (t) => {
  const dir = await makeTempDir('tsbuild-fake-store-');
  t.teardown(() => removeDir(dir));
  const store = await Store.open(join(dir, 'store'));
  const rootfs = await tree(t, machine);
  const content = await tree(t, {
    'boot/vmlinuz-6.1.0-9-cloud-amd64': 'kernel',
    'boot/initrd.img-6.1.0-9-cloud-amd64': 'initrd',
  });
  const l = await commitLayer(store, tarFromDirectory(content), { compression: 'gzip' });
  const plan = installPlan(debian, rootfs, { network: 'dhcp' });
  const key = kernelCacheKey(rootfs, debian, plan);
  const kernel = {
    kernel: '/boot/vmlinuz-6.1.0-9-cloud-amd64',
    initrd: '/boot/initrd.img-6.1.0-9-cloud-amd64',
    version: '6.1.0-9-cloud-amd64',
  };
  await kernelRecords(store).put(key, {
    version: 1,
    key,
    layer: { descriptor: l.descriptor, diffId: l.diffId },
    kernel,
    depends: { 'boot/vmlinuz-6.1.0-9-cloud-amd64': '', 'boot/initrd.img-6.1.0-9-cloud-amd64': '' },
    created: new Date(0).toISOString(),
    packages: plan.packages,
  });
  const host = new FakeHost({ caps: { root: false } });
  const r = await provideKernel({ store, host, rootfs, layers: [], distro: debian, mode: 'auto', network: 'dhcp' });
  t.is(r.source, 'cache');
  t.deepEqual(r.files, kernel);
  t.is(r.layer?.descriptor.digest, l.descriptor.digest);
  t.is(readFileSync(join(rootfs, 'boot/vmlinuz-6.1.0-9-cloud-amd64'), 'utf8'), 'kernel');
  t.deepEqual(host.callsOf('mount'), []);
});

import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, statSync } from 'node:fs';
import { mkdir, readFile, readlink, symlink, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import type { Distro } from '../../convert/distro.js';
import {
  NETWORKD_ETH0,
  RESOLV_PATH,
  RESOLV_SCRIPT,
  RESOLV_SCRIPT_TEXT,
  RESOLV_SERVICE,
  RESOLVED_STUB,
  WAIT_ONLINE_DROPIN,
} from '../../convert/networkd.js';
import { ETC_UPDATED, sysusersPending } from '../../convert/sysusers.js';
import {
  checkHostname,
  hashPassword,
  CPU_MODALIAS_RULE,
  IFUP_RESOLVED_HOOK,
  IFUPDOWN_PRE_DROPIN,
  MASKED_GENERATORS,
  MASKED_UNITS,
  readSshKeys,
  withSerialGetty,
  writeSystemFiles,
  SERIAL_GETTY_ALPINE,
} from '../../convert/system-files.js';
import { ALPINE_INITTAB, makeAlpineShapedRootfs } from '../../fixtures/alpine-shaped.js';
import { busyboxAvailable } from '../../fixtures/busybox.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const debian: Distro = { id: 'debian', family: 'debian', versionId: '12', prettyName: 'Debian GNU/Linux 12' };
const alpine: Distro = { id: 'alpine', family: 'alpine', versionId: '3.20.3', prettyName: 'Alpine Linux v3.20' };
const UUID = '0b0e8a43-6a59-4cbb-9d0b-3b1b8c1d2f10';

/** A Debian-shaped tree: systemd's serial-getty template, ifupdown, a shadow file, container leftovers. */
async function debianTree(t: { teardown(f: () => unknown): void }): Promise<string> {
  const root = await makeTempDir();
  t.teardown(() => removeDir(root));
  const file = async (p: string, content = '', mode = 0o644): Promise<void> => {
    await mkdir(join(root, p, '..'), { recursive: true });
    await writeFile(join(root, p), content);
    await chmod(join(root, p), mode);
  };
  await file('lib/systemd/systemd', '', 0o755);
  await file('lib/systemd/system/serial-getty@.service', '[Unit]\n');
  await file('sbin/ifup', '', 0o755);
  await file('etc/shadow', 'root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n', 0o640);
  await file('etc/passwd', 'root:x:0:0:root:/root:/bin/bash\n');
  await file('etc/resolv.conf', 'nameserver 192.168.1.1\n'); // the build host's, copied by a bootstrap
  await file('.dockerenv');
  await file('usr/sbin/policy-rc.d', '#!/bin/sh\nexit 101\n', 0o755);
  return root;
}

test('a Debian tree gets fstab by UUID, hostname, hosts, DHCP on eth0 and a serial getty', async (t) => {
  const root = await debianTree(t);
  await writeSystemFiles({
    rootfs: root,
    distro: debian,
    init: 'systemd',
    rootUuid: UUID,
    hostname: 'web-1',
    network: 'dhcp',
  });
  const read = (p: string): Promise<string> => readFile(join(root, p), 'utf8');
  t.regex(await read('etc/fstab'), new RegExp(`^UUID=${UUID}\\t/\\text4\\terrors=remount-ro\\t0\\t1$`, 'm'));
  t.is(await read('etc/hostname'), 'web-1\n');
  t.regex(await read('etc/hosts'), /^127\.0\.1\.1\tweb-1$/m);
  t.notRegex(await read('etc/resolv.conf'), /192\.168\.1\.1/);
  t.regex(await read('etc/network/interfaces'), /^iface eth0 inet dhcp$/m);
  t.is(
    await readlink(join(root, 'etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service')),
    '/lib/systemd/system/serial-getty@.service',
  );
  t.is(await read('etc/machine-id'), '');
  t.false(existsSync(join(root, '.dockerenv')));
  t.false(existsSync(join(root, 'usr/sbin/policy-rc.d')));
});

/** networkdTree: debianTree without ifupdown, with systemd-networkd and its wait-online (as Debian 12's systemd). */
async function networkdTree(t: { teardown(f: () => unknown): void }): Promise<string> {
  const root = await debianTree(t);
  await removeDir(join(root, 'sbin/ifup'));
  await mkdir(join(root, 'lib/systemd/system'), { recursive: true });
  for (const f of ['systemd-networkd', 'systemd-networkd-wait-online'])
    await writeFile(join(root, 'lib/systemd', f), '', { mode: 0o755 });
  for (const u of ['systemd-networkd.service', 'systemd-networkd.socket', 'systemd-networkd-wait-online.service'])
    await writeFile(join(root, 'lib/systemd/system', u), '[Unit]\n');
  return root;
}

const dhcpOn = (root: string): Promise<string[]> =>
  writeSystemFiles({ rootfs: root, distro: debian, init: 'systemd', rootUuid: UUID, hostname: 'h', network: 'dhcp' });

test('without ifupdown, eth0 is configured for systemd-networkd and the daemon is enabled', async (t) => {
  const root = await networkdTree(t);
  await dhcpOn(root);
  t.regex(await readFile(join(root, NETWORKD_ETH0), 'utf8'), /Name=eth0[\s\S]*DHCP=yes/);
  t.is(
    await readlink(join(root, 'etc/systemd/system/multi-user.target.wants/systemd-networkd.service')),
    '/lib/systemd/system/systemd-networkd.service',
  );
  t.is(
    await readlink(join(root, 'etc/systemd/system/sockets.target.wants/systemd-networkd.socket')),
    '/lib/systemd/system/systemd-networkd.socket',
  );
  t.false(existsSync(join(root, 'etc/network/interfaces')), 'no ifupdown configuration');
});

test('with systemd-networkd, network-online.target waits for eth0 alone (wait-online enabled, --interface=eth0)', async (t) => {
  const root = await networkdTree(t);
  await dhcpOn(root);
  t.is(
    await readlink(join(root, 'etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service')),
    '/lib/systemd/system/systemd-networkd-wait-online.service',
  );
  const dropin = await readFile(join(root, WAIT_ONLINE_DROPIN), 'utf8');
  t.regex(dropin, /^ExecStart=$/m, 'the packaged command is reset');
  t.regex(dropin, /^ExecStart=\/lib\/systemd\/systemd-networkd-wait-online --interface=eth0 --timeout=60$/m);
});

test("with systemd-networkd and no systemd-resolved, resolv.conf is written at boot from networkd's links", async (t) => {
  const root = await networkdTree(t);
  await dhcpOn(root);
  const script = join(root, RESOLV_SCRIPT);
  t.is(statSync(script).mode & 0o777, 0o755);
  const unit = await readFile(join(root, 'etc/systemd/system', RESOLV_SERVICE), 'utf8');
  t.regex(unit, /^After=systemd-networkd-wait-online\.service$/m);
  t.regex(unit, /^Before=network-online\.target$/m, 'DNS is set before the app (After=network-online.target) starts');
  t.is(
    await readlink(join(root, 'etc/systemd/system/network-online.target.wants', RESOLV_SERVICE)),
    `/etc/systemd/system/${RESOLV_SERVICE}`,
  );
  t.regex(
    await readFile(join(root, 'etc/systemd/system', RESOLV_PATH), 'utf8'),
    /^PathChanged=\/run\/systemd\/netif\/links$/m,
  );
  t.is(
    await readlink(join(root, 'etc/systemd/system/paths.target.wants', RESOLV_PATH)),
    `/etc/systemd/system/${RESOLV_PATH}`,
  );
  t.false(lstatSync(join(root, 'etc/resolv.conf')).isSymbolicLink(), 'a file until the first lease');
});

test("the resolv.conf writer turns networkd's DNS= and DOMAINS= into nameserver and search lines", async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await mkdir(join(dir, 'links'));
  await mkdir(join(dir, 'etc'));
  await writeFile(join(dir, 'etc/resolv.conf'), 'nameserver 1.1.1.1\n');
  const script = join(dir, 'resolv');
  // the script with its two paths moved into the temp dir
  await writeFile(
    script,
    RESOLV_SCRIPT_TEXT.replaceAll('/run/systemd/netif/links', `${dir}/links`).replaceAll('/etc/', `${dir}/etc/`),
  );
  execFileSync('sh', [script]);
  t.is(await readFile(join(dir, 'etc/resolv.conf'), 'utf8'), 'nameserver 1.1.1.1\n', 'no server yet: left alone');
  await writeFile(join(dir, 'links/1'), 'ADMIN_STATE=unmanaged\nOPER_STATE=carrier\nDNS=\nDOMAINS=\n');
  await writeFile(
    join(dir, 'links/2'),
    'ADMIN_STATE=configured\nDNS=10.0.2.3 9.9.9.9#dns.quad9.net [fe80::1%2]:53\nNTP=\nDOMAINS=example.com lan\n',
  );
  execFileSync('sh', [script]);
  const lines = (await readFile(join(dir, 'etc/resolv.conf'), 'utf8')).split('\n').filter((l) => !l.startsWith('#'));
  t.deepEqual(lines, [
    'search example.com lan',
    'nameserver 10.0.2.3',
    'nameserver 9.9.9.9',
    'nameserver fe80::1%2',
    '',
  ]);
  await writeFile(join(dir, 'links/2'), 'ADMIN_STATE=configured\nDNS=10.0.2.3\nDOMAINS=\n');
  execFileSync('sh', [script]);
  const single = await readFile(join(dir, 'etc/resolv.conf'), 'utf8');
  t.regex(single, /^nameserver 10\.0\.2\.3$/m);
  t.notRegex(single, /^search/m, 'no empty search line');
});

test('with systemd-networkd and systemd-resolved, resolved gets the DNS servers and resolv.conf points at its stub', async (t) => {
  const root = await networkdTree(t);
  await writeFile(join(root, 'lib/systemd/system/systemd-resolved.service'), '[Unit]\n');
  await dhcpOn(root);
  t.is(await readlink(join(root, 'etc/resolv.conf')), RESOLVED_STUB);
  t.is(
    await readlink(join(root, 'etc/systemd/system/multi-user.target.wants/systemd-resolved.service')),
    '/lib/systemd/system/systemd-resolved.service',
  );
  t.false(existsSync(join(root, RESOLV_SCRIPT)), 'no resolv.conf writer of our own');
  await dhcpOn(root); // a second run (idempotent) keeps the stub and resolved
  t.is(await readlink(join(root, 'etc/resolv.conf')), RESOLVED_STUB);
  t.is(
    await readlink(join(root, 'etc/systemd/system/multi-user.target.wants/systemd-resolved.service')),
    '/lib/systemd/system/systemd-resolved.service',
  );
});

test("with systemd-networkd, a resolv.conf that is the image's own symlink is kept, with no writer", async (t) => {
  const root = await networkdTree(t);
  await removeDir(join(root, 'etc/resolv.conf'));
  await symlink('/run/resolvconf/resolv.conf', join(root, 'etc/resolv.conf'));
  await dhcpOn(root);
  t.is(await readlink(join(root, 'etc/resolv.conf')), '/run/resolvconf/resolv.conf');
  t.false(existsSync(join(root, RESOLV_SCRIPT)));
});

test('an image with ifupdown keeps it: no systemd-networkd configuration', async (t) => {
  const root = await networkdTree(t);
  await writeFile(join(root, 'sbin/ifup'), '', { mode: 0o755 });
  await dhcpOn(root);
  t.regex(await readFile(join(root, 'etc/network/interfaces'), 'utf8'), /^iface eth0 inet dhcp$/m);
  t.false(existsSync(join(root, NETWORKD_ETH0)));
  t.false(existsSync(join(root, 'etc/systemd/system/network-online.target.wants')));
});

test('--network none leaves eth0 unconfigured', async (t) => {
  const root = await debianTree(t);
  await writeSystemFiles({
    rootfs: root,
    distro: debian,
    init: 'systemd',
    rootUuid: UUID,
    hostname: 'h',
    network: 'none',
  });
  t.notRegex(await readFile(join(root, 'etc/network/interfaces'), 'utf8'), /eth0/);
});

test('the root password is stored hashed in /etc/shadow and verifies with openssl', async (t) => {
  const root = await debianTree(t);
  const hash = await hashPassword('s3cret pass\n');
  t.regex(hash, /^\$6\$/);
  await writeSystemFiles({
    rootfs: root,
    distro: debian,
    init: 'systemd',
    rootUuid: UUID,
    hostname: 'h',
    network: 'dhcp',
    rootPasswordHash: hash,
  });
  const shadow = await readFile(join(root, 'etc/shadow'), 'utf8');
  const field = shadow.split('\n')[0]?.split(':')[1] ?? '';
  t.is(field, hash);
  t.notRegex(shadow, /s3cret/);
  const salt = field.split('$')[2] ?? '';
  t.is(execFileSync('openssl', ['passwd', '-6', '-salt', salt, 's3cret pass']).toString().trim(), field);
  t.regex(shadow, /^daemon:\*:/m);
});

test('SSH keys go to /root/.ssh/authorized_keys with private modes', async (t) => {
  const root = await debianTree(t);
  await writeSystemFiles({
    rootfs: root,
    distro: debian,
    init: 'systemd',
    rootUuid: UUID,
    hostname: 'h',
    network: 'dhcp',
    sshKeys: ['ssh-ed25519 AAAAC3Nza test@host'],
  });
  t.is(await readFile(join(root, 'root/.ssh/authorized_keys'), 'utf8'), 'ssh-ed25519 AAAAC3Nza test@host\n');
  const { statSync } = await import('node:fs');
  t.is(statSync(join(root, 'root/.ssh')).mode & 0o777, 0o700);
  t.is(statSync(join(root, 'root/.ssh/authorized_keys')).mode & 0o777, 0o600);
});

test('readSshKeys refuses a private key', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'id'), '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n');
  t.throws(() => readSshKeys([join(dir, 'id')]), { message: /not an OpenSSH public key/ });
});

test('a symlinked resolv.conf (systemd-resolved) is left alone', async (t) => {
  const root = await debianTree(t);
  await removeDir(join(root, 'etc/resolv.conf'));
  await symlink('../run/systemd/resolve/stub-resolv.conf', join(root, 'etc/resolv.conf'));
  await writeSystemFiles({
    rootfs: root,
    distro: debian,
    init: 'systemd',
    rootUuid: UUID,
    hostname: 'h',
    network: 'dhcp',
  });
  t.is(await readlink(join(root, 'etc/resolv.conf')), '../run/systemd/resolve/stub-resolv.conf');
});

test("the serial getty replaces Alpine's commented ttyS0 line, once", (t) => {
  const once = withSerialGetty(ALPINE_INITTAB);
  t.true(once.split('\n').includes(SERIAL_GETTY_ALPINE));
  t.false(once.includes('#ttyS0'));
  t.is(withSerialGetty(once), once);
  t.is(withSerialGetty('::sysinit:/sbin/openrc sysinit\n'), `::sysinit:/sbin/openrc sysinit\n${SERIAL_GETTY_ALPINE}\n`);
});

const alpineTest = busyboxAvailable() ? test : test.skip;

alpineTest(
  'an Alpine tree gets inittab on ttyS0, securetty, /etc/network/interfaces and OpenRC runlevels',
  async (t) => {
    const root = await makeTempDir();
    t.teardown(() => removeDir(root));
    await makeAlpineShapedRootfs(root);
    await writeSystemFiles({
      rootfs: root,
      distro: alpine,
      init: 'openrc',
      rootUuid: UUID,
      hostname: 'alp',
      network: 'dhcp',
    });
    const read = (p: string): Promise<string> => readFile(join(root, p), 'utf8');
    t.true((await read('etc/inittab')).split('\n').includes(SERIAL_GETTY_ALPINE));
    t.true((await read('etc/securetty')).split('\n').includes('ttyS0'));
    t.regex(await read('etc/network/interfaces'), /auto eth0\n.*\niface eth0 inet dhcp/);
    t.regex(await read('etc/fstab'), new RegExp(`^UUID=${UUID}\\t/\\text4\\trw,relatime`, 'm'));
    for (const [level, svc] of [
      ['sysinit', 'devfs'],
      ['sysinit', 'mdev'],
      ['boot', 'hostname'],
      ['boot', 'networking'],
      ['shutdown', 'mount-ro'],
    ]) {
      t.is(await readlink(join(root, `etc/runlevels/${level}/${svc}`)), `/etc/init.d/${svc}`, `${level}/${svc}`);
    }
    t.false(existsSync(join(root, 'etc/runlevels/boot/seedrng')), 'services the image lacks are not linked');
  },
);

test('a hostname must be one', (t) => {
  t.notThrows(() => checkHostname('web-1.example.com'));
  t.throws(() => checkHostname('bad_name'), { message: /not a valid hostname/ });
  t.throws(() => checkHostname('-x'));
});

/** dpkgStatus: a dpkg status file that says udev `version` is installed. */
const dpkgStatus = (version: string): string =>
  `Package: ifupdown\nStatus: install ok installed\nVersion: 0.8.41\n\nPackage: udev\nStatus: install ok installed\nVersion: ${version}\n`;

test('with ifupdown and udev ≥ 251, networking waits for eth0 alone instead of every udev event', async (t) => {
  const root = await debianTree(t);
  await mkdir(join(root, 'var/lib/dpkg'), { recursive: true });
  await writeFile(join(root, 'var/lib/dpkg/status'), dpkgStatus('252.39-1~deb12u2'));
  await mkdir(join(root, 'lib/systemd/system'), { recursive: true });
  await writeFile(join(root, 'lib/systemd/system/ifupdown-pre.service'), '[Service]\nExecStart=udevadm settle\n');
  const opts = { rootfs: root, distro: debian, init: 'systemd' as const, rootUuid: UUID, hostname: 'h' };
  const touched = await writeSystemFiles({ ...opts, network: 'dhcp' });
  t.true(touched.includes(IFUPDOWN_PRE_DROPIN));
  const dropin = await readFile(join(root, IFUPDOWN_PRE_DROPIN), 'utf8');
  t.regex(dropin, /^ExecStart=$/m, 'the settle is replaced');
  t.regex(dropin, /^ExecStart=-\/bin\/udevadm wait --timeout=30 \/sys\/class\/net\/eth0$/m);

  // udev 247 (bullseye) has no `udevadm wait`: the settle stays
  const old = await debianTree(t);
  await mkdir(join(old, 'var/lib/dpkg'), { recursive: true });
  await writeFile(join(old, 'var/lib/dpkg/status'), dpkgStatus('247.3-7+deb11u4'));
  await mkdir(join(old, 'lib/systemd/system'), { recursive: true });
  await writeFile(join(old, 'lib/systemd/system/ifupdown-pre.service'), '[Service]\n');
  await writeSystemFiles({ ...opts, rootfs: old, network: 'dhcp' });
  t.false(existsSync(join(old, IFUPDOWN_PRE_DROPIN)));
});

test('getty-static, e2scrub_reap and systemd-repart are masked when the image has them, unless it configures them itself', async (t) => {
  const root = await debianTree(t);
  for (const unit of MASKED_UNITS) {
    await mkdir(join(root, 'lib/systemd/system'), { recursive: true });
    await writeFile(join(root, 'lib/systemd/system', unit), '[Unit]\n');
  }
  await mkdir(join(root, 'etc/systemd/system'), { recursive: true });
  await writeFile(join(root, 'etc/systemd/system/e2scrub_reap.service'), '[Unit]\n# the image its own\n');
  const touched = await writeSystemFiles({
    rootfs: root,
    distro: debian,
    init: 'systemd',
    rootUuid: UUID,
    hostname: 'h',
    network: 'dhcp',
  });
  t.deepEqual(MASKED_UNITS, ['getty-static.service', 'e2scrub_reap.service', 'systemd-repart.service']);
  t.is(await readlink(join(root, 'etc/systemd/system/systemd-repart.service')), '/dev/null');
  t.is(await readlink(join(root, 'etc/systemd/system/getty-static.service')), '/dev/null');
  t.true(touched.includes('/etc/systemd/system/getty-static.service'));
  t.regex(await readFile(join(root, 'etc/systemd/system/e2scrub_reap.service'), 'utf8'), /the image its own/);
  t.false(touched.includes('/etc/systemd/system/e2scrub_reap.service'));
});

test('a systemd image gets a udev rule that keeps coldplug from loading the modules the CPU features match', async (t) => {
  const root = await debianTree(t);
  const opts = { rootfs: root, distro: debian, rootUuid: UUID, hostname: 'h', network: 'dhcp' as const };
  const touched = await writeSystemFiles({ ...opts, init: 'systemd' });
  t.is(CPU_MODALIAS_RULE, '/etc/udev/rules.d/70-tsbuild-cpu-modalias.rules', 'ordered before 80-drivers.rules');
  t.true(touched.includes(CPU_MODALIAS_RULE));
  const rules = (await readFile(join(root, CPU_MODALIAS_RULE), 'utf8'))
    .split('\n')
    .filter((l) => l && !l.startsWith('#'));
  t.deepEqual(rules, ['SUBSYSTEM=="cpu", ENV{MODALIAS}=""']);
  const again = await writeSystemFiles({ ...opts, init: 'systemd' });
  t.true(again.includes(CPU_MODALIAS_RULE), 'idempotent');

  const sysv = await debianTree(t);
  await writeSystemFiles({ ...opts, rootfs: sysv, init: 'openrc' });
  t.false(existsSync(join(sysv, CPU_MODALIAS_RULE.slice(1))), 'only with systemd');
});

test('generators with nothing to find on an exported disk are masked when the image ships them', async (t) => {
  const root = await debianTree(t);
  const gens = 'lib/systemd/system-generators';
  await mkdir(join(root, gens), { recursive: true });
  for (const g of ['systemd-gpt-auto-generator', 'systemd-fstab-generator', 'systemd-veritysetup-generator'])
    await writeFile(join(root, gens, g), '');
  await mkdir(join(root, 'etc/systemd/system-generators'), { recursive: true });
  await symlink('/bin/true', join(root, 'etc/systemd/system-generators/systemd-veritysetup-generator'));
  const touched = await writeSystemFiles({
    rootfs: root,
    distro: debian,
    init: 'systemd',
    rootUuid: UUID,
    hostname: 'h',
    network: 'dhcp',
  });
  t.true(MASKED_GENERATORS.includes('systemd-gpt-auto-generator'));
  t.false(MASKED_GENERATORS.includes('systemd-fstab-generator'));
  t.is(await readlink(join(root, 'etc/systemd/system-generators/systemd-gpt-auto-generator')), '/dev/null');
  t.true(touched.includes('/etc/systemd/system-generators/systemd-gpt-auto-generator'));
  t.false(existsSync(join(root, 'etc/systemd/system-generators/systemd-fstab-generator')), 'fstab keeps its own');
  t.is(
    await readlink(join(root, 'etc/systemd/system-generators/systemd-veritysetup-generator')),
    '/bin/true',
    "the image's own override is kept",
  );
  t.false(
    existsSync(join(root, 'etc/systemd/system-generators/systemd-hibernate-resume-generator')),
    'not shipped: not masked',
  );
});

test("ifupdown's systemd-resolved hook is removed when the image has no systemd-resolved, kept when it has", async (t) => {
  const opts = { distro: debian, init: 'systemd' as const, rootUuid: UUID, hostname: 'h', network: 'dhcp' as const };
  const root = await debianTree(t);
  await mkdir(join(root, 'etc/network/if-up.d'), { recursive: true });
  await writeFile(join(root, IFUP_RESOLVED_HOOK), '#!/bin/sh\nsystemctl is-enabled systemd-resolved\n');
  const touched = await writeSystemFiles({ ...opts, rootfs: root });
  t.false(existsSync(join(root, IFUP_RESOLVED_HOOK)));
  t.true(touched.includes(IFUP_RESOLVED_HOOK));

  const resolved = await debianTree(t);
  await mkdir(join(resolved, 'etc/network/if-up.d'), { recursive: true });
  await writeFile(join(resolved, IFUP_RESOLVED_HOOK), '#!/bin/sh\n');
  await mkdir(join(resolved, 'lib/systemd/system'), { recursive: true });
  await writeFile(join(resolved, 'lib/systemd/system/systemd-resolved.service'), '[Unit]\n');
  await writeSystemFiles({ ...opts, rootfs: resolved });
  t.true(existsSync(join(resolved, IFUP_RESOLVED_HOOK)));
});

/** sysusersTree: a systemd tree whose sysusers.d names users, groups and a membership. */
async function sysusersTree(t: { teardown(f: () => unknown): void }): Promise<string> {
  const root = await networkdTree(t);
  await mkdir(join(root, 'usr/lib/sysusers.d'), { recursive: true });
  await writeFile(
    join(root, 'usr/lib/sysusers.d/basic.conf'),
    '# comment\nu root 0:0 "Super User" /root\ng adm 4 -\nr - 100-999\n',
  );
  await writeFile(
    join(root, 'usr/lib/sysusers.d/systemd-network.conf'),
    'u systemd-network - "systemd Network Management"\n',
  );
  await writeFile(join(root, 'usr/lib/sysusers.d/extra.conf'), 'm systemd-network adm\n');
  await writeFile(
    join(root, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/bash\nsystemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\n',
  );
  await writeFile(join(root, 'etc/group'), 'root:x:0:\nadm:x:4:systemd-network\nsystemd-network:x:998:\n');
  return root;
}

test('when sysusers.d has nothing left to create, /etc/.updated (newer than /usr) skips systemd-sysusers at boot', async (t) => {
  const root = await sysusersTree(t);
  t.deepEqual(sysusersPending(root), []);
  await dhcpOn(root);
  const usr = statSync(join(root, 'usr'), { bigint: true });
  const updated = statSync(join(root, ETC_UPDATED), { bigint: true });
  t.is(updated.mtimeNs, (usr.mtimeNs / 1_000_000_000n + 1n) * 1_000_000_000n, "a whole second after /usr's mtime");
});

test('a user, group or membership that sysusers.d names and the image lacks keeps systemd-sysusers at boot', async (t) => {
  const root = await sysusersTree(t);
  await writeFile(join(root, 'usr/lib/sysusers.d/more.conf'), 'u messagebus - "System Message Bus"\nm root adm\n');
  t.deepEqual(sysusersPending(root), ['user messagebus', 'group messagebus', 'member root adm']);
  await dhcpOn(root);
  t.false(existsSync(join(root, ETC_UPDATED)));
  await writeFile(join(root, 'usr/lib/sysusers.d/more.conf'), 'u %H-user -\n');
  t.deepEqual(sysusersPending(root), ['unknown u %H-user -'], 'specifiers are not expanded: never "nothing to do"');
});

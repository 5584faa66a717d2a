// The files that make a container rootfs a machine: fstab (root by UUID), hostname, hosts, resolv.conf, DHCP on
// eth0, a serial getty on ttyS0, the root password and SSH keys; and what containers leave behind is removed
// (/.dockerenv, policy-rc.d). Debian/Ubuntu get ifupdown when the image has it, else systemd-networkd (networkd.ts),
// and systemd units; Alpine gets /etc/network/interfaces, inittab and OpenRC runlevels. Owners (root's SSH files,
// the rewritten password file) are given through the Host (host.lchown) when its caps() say it may chown; otherwise
// the owners step sets them later.
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, rm } from 'node:fs/promises';
import { posix } from 'node:path';
import { sourceDateEpoch } from './identity.js';
import { InvalidInputError } from '../sys/errors.js';
import { defaultHost, type Host } from '../sys/host.js';
import { secureJoin } from '../sys/secure-path.js';
import { run } from '../sys/exec.js';
import type { Distro } from './distro.js';
import { networkdBinary, writeNetworkd } from './networkd.js';
import { linkIn, writeIn, type InitSystem } from './service.js';
import { markSysusersDone } from './sysusers.js';

export interface SystemFilesOptions {
  rootfs: string;
  /** default: defaultHost(); when it may chown (`caps().chown`), root's SSH files and the rewritten password file get their owners */
  host?: Host;
  /** undefined for an unsupported distribution booted with --kernel PATH: only the generic files are written */
  distro?: Distro;
  init?: InitSystem;
  rootUuid: string;
  hostname: string;
  network: 'dhcp' | 'none';
  /** a crypt(3) hash (see hashPassword); the root account stays as the image has it when absent */
  rootPasswordHash?: string;
  /** OpenSSH public key lines for /root/.ssh/authorized_keys */
  sshKeys?: string[];
  onWarn?: (code: string, message: string) => void;
}

/** ALPINE_RUNLEVELS: the OpenRC services an Alpine VM needs (each added only when its script exists). */
export const ALPINE_RUNLEVELS: Record<string, string[]> = {
  sysinit: ['devfs', 'dmesg', 'mdev', 'hwdrivers'],
  boot: ['modules', 'hwclock', 'hostname', 'sysctl', 'bootmisc', 'syslog', 'seedrng', 'urandom'],
  shutdown: ['killprocs', 'savecache', 'mount-ro'],
};

export const SERIAL_GETTY_ALPINE = 'ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100';

/**
 * writeSystemFiles writes the machine configuration into the rootfs and returns the rootfs paths it wrote or
 * removed. Idempotent: running it twice gives the same tree.
 */
export async function writeSystemFiles(opts: SystemFilesOptions): Promise<string[]> {
  const { rootfs } = opts;
  const host = opts.host ?? defaultHost();
  const chown = host.caps().chown;
  const touched: string[] = [];
  const write = async (path: string, content: string, mode = 0o644): Promise<void> => {
    await writeIn(rootfs, path, content, mode);
    touched.push(path);
  };
  const has = (path: string): boolean => existsSync(secureJoin(rootfs, path));
  const alpine = opts.distro?.family === 'alpine';

  checkHostname(opts.hostname);
  await write('/etc/fstab', fstab(opts.rootUuid, alpine));
  await write('/etc/hostname', `${opts.hostname}\n`);
  await write('/etc/hosts', hosts(opts.hostname));
  if (!isSymlinkIn(rootfs, '/etc/resolv.conf')) {
    await write(
      '/etc/resolv.conf',
      '# Written by tsbuild export; the DHCP client replaces it at boot.\nnameserver 1.1.1.1\n',
    );
  }
  for (const junk of ['/.dockerenv', '/usr/sbin/policy-rc.d']) {
    const host = secureJoin(rootfs, junk);
    if (existsSync(host) || isSymlinkIn(rootfs, junk)) {
      await rm(host, { force: true });
      touched.push(junk);
    }
  }

  // networking: DHCP on eth0 (the cmdline has net.ifnames=0)
  if (opts.network === 'dhcp') {
    if (alpine || has('/sbin/ifup') || has('/usr/sbin/ifup')) {
      await write('/etc/network/interfaces', INTERFACES);
      if (opts.init === 'systemd' && hasUnit(rootfs, 'ifupdown-pre.service') && udevadmWaits(rootfs))
        await write(IFUPDOWN_PRE_DROPIN, IFUPDOWN_PRE_WAIT);
      if (opts.init === 'systemd' && has(IFUP_RESOLVED_HOOK) && !hasUnit(rootfs, 'systemd-resolved.service')) {
        await rm(secureJoin(rootfs, IFUP_RESOLVED_HOOK), { force: true });
        touched.push(IFUP_RESOLVED_HOOK);
      }
    } else if (opts.init === 'systemd' && networkdBinary(rootfs)) {
      touched.push(...(await writeNetworkd(rootfs)));
    } else {
      opts.onWarn?.('W_NO_DHCP_CLIENT', 'the image has neither ifupdown nor systemd-networkd: eth0 is not configured');
    }
  } else if (alpine || has('/sbin/ifup')) {
    await write('/etc/network/interfaces', 'auto lo\niface lo inet loopback\n');
  }

  // consoles: a login prompt on the serial port
  if (opts.init === 'systemd') {
    await enableUnit(rootfs, 'serial-getty@ttyS0.service', 'getty.target', touched, 'serial-getty@.service');
    if (!has('/etc/machine-id')) await write('/etc/machine-id', ''); // empty: systemd makes one at first boot
    // what a VM that runs one app does not need at boot (each masked only when the image has it and does not
    // configure it itself)
    for (const unit of MASKED_UNITS) {
      if (!hasUnit(rootfs, unit) || existsSync(secureJoin(rootfs, `/etc/systemd/system/${unit}`))) continue;
      await linkIn(rootfs, `/etc/systemd/system/${unit}`, '/dev/null');
      touched.push(`/etc/systemd/system/${unit}`);
    }
    for (const gen of MASKED_GENERATORS) {
      const path = `/etc/systemd/system-generators/${gen}`;
      const ships = ['/lib', '/usr/lib'].some((d) => has(`${d}/systemd/system-generators/${gen}`));
      if (!ships || existsSync(secureJoin(rootfs, path)) || isSymlinkIn(rootfs, path)) continue;
      await linkIn(rootfs, path, '/dev/null');
      touched.push(path);
    }
    // udev loads every module that matches the CPU's features at coldplug (kvm, crypto accelerators); skip that
    await write(CPU_MODALIAS_RULE, CPU_MODALIAS_RULES);
  }
  if (alpine || has('/etc/inittab')) {
    const inittab = await readText(rootfs, '/etc/inittab');
    if (inittab !== undefined || alpine) await write('/etc/inittab', withSerialGetty(inittab ?? ''));
    const securetty = await readText(rootfs, '/etc/securetty');
    if (securetty !== undefined && !securetty.split('\n').includes('ttyS0'))
      await write('/etc/securetty', `${securetty.replace(/\n?$/, '\n')}ttyS0\n`);
  }
  if (alpine && opts.init === 'openrc') {
    for (const [level, services] of Object.entries(ALPINE_RUNLEVELS)) {
      for (const s of services) if (has(`/etc/init.d/${s}`)) await addRunlevel(rootfs, s, level, touched);
    }
    if (opts.network === 'dhcp' && has('/etc/init.d/networking'))
      await addRunlevel(rootfs, 'networking', 'boot', touched);
  }

  if (opts.rootPasswordHash !== undefined)
    touched.push(...(await setRootPassword(rootfs, opts.rootPasswordHash, chown ? host : undefined)));
  // systemd-sysusers at boot (before udevd and networking) when it has nothing to create: skipped (sysusers.ts)
  if (opts.init === 'systemd') touched.push(...(await markSysusersDone(rootfs)));
  if (opts.sshKeys?.length) {
    const dir = secureJoin(rootfs, '/root/.ssh');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    await write('/root/.ssh/authorized_keys', `${opts.sshKeys.map((k) => k.trim()).join('\n')}\n`, 0o600);
    if (chown) {
      host.lchown(dir, 0, 0);
      host.lchown(secureJoin(rootfs, '/root/.ssh/authorized_keys'), 0, 0);
    }
  }
  return touched;
}

export const INTERFACES = [
  '# Written by tsbuild export',
  'auto lo',
  'iface lo inet loopback',
  '',
  'auto eth0',
  'allow-hotplug eth0',
  'iface eth0 inet dhcp',
  '',
].join('\n');

/**
 * ifupdown-pre.service runs `udevadm settle` before networking.service raises eth0: it waits for every coldplug
 * event (under TCG, seconds of module loading: kvm, crypto, sensors) when only eth0 matters. The drop-in waits for
 * eth0 alone (udevadm wait, systemd ≥ 251), at most 30 s (a VM without a NIC boots on).
 */
export const IFUPDOWN_PRE_DROPIN = '/etc/systemd/system/ifupdown-pre.service.d/tsbuild-eth0.conf';
export const IFUPDOWN_PRE_WAIT = [
  '# Written by tsbuild export: wait for eth0 only, not for every udev event (udevadm settle)',
  '[Service]',
  'ExecStart=',
  'ExecStart=-/bin/udevadm wait --timeout=30 /sys/class/net/eth0',
  '',
].join('\n');

/**
 * IFUP_RESOLVED_HOOK: ifupdown's hook that hands an interface's static DNS settings to systemd-resolved. It first
 * asks `systemctl is-enabled systemd-resolved`, for lo and again for eth0, and during the boot PID 1 answers only
 * once it has caught up with the coldplug's device events: 2–3 s before dhclient starts, under TCG. Without
 * systemd-resolved in the image it has nothing to do (dhclient writes resolv.conf itself), so it is removed; a
 * deleted conffile stays deleted on upgrades, and `apt-get install --reinstall -o Dpkg::Options::=--force-confmiss
 * ifupdown` brings it back.
 */
export const IFUP_RESOLVED_HOOK = '/etc/network/if-up.d/resolved';

/**
 * MASKED_UNITS: Debian units a one-app VM does not need, masked to shorten the boot on one vCPU: getty-static starts
 * gettys on tty2–tty6 when dbus is missing (tty1 and the serial console keep theirs), e2scrub_reap looks for
 * leftover LVM snapshots (the disk has no LVM), systemd-repart never runs (Debian ships no repart.d definitions:
 * its condition fails) but its Wants= still load dm_mod and loop at every boot (both load on demand when used).
 */
export const MASKED_UNITS = ['getty-static.service', 'e2scrub_reap.service', 'systemd-repart.service'];

/**
 * MASKED_GENERATORS: systemd generators that have nothing to find on an exported disk (root is in fstab, no swap to
 * resume from, no dm-verity or dm-integrity tables, no offline-update symlink), each an extra program run before
 * systemd can start a unit, ~0.1 s each on one TCG vCPU. Masked with a /dev/null link in
 * /etc/systemd/system-generators (systemd's own way to disable one); crypttab, fstab, getty, sysv, rc.local and the
 * kernel command line's `systemd.*` options keep their generators.
 */
export const MASKED_GENERATORS = [
  'systemd-gpt-auto-generator',
  'systemd-hibernate-resume-generator',
  'systemd-integritysetup-generator',
  'systemd-veritysetup-generator',
  'systemd-system-update-generator',
];

/**
 * The CPU device's modalias lists its features, and udev's 80-drivers.rules loads every module that matches one at
 * coldplug: kvm_amd/kvm_intel and a dozen crypto and checksum accelerators, seconds of work on one TCG vCPU that
 * delay eth0 and DHCP. This rule (before 80-drivers.rules) drops the modalias of CPU devices only. Nothing is
 * blacklisted: the kernel's crypto API still loads an accelerated module by its alias when something uses it, and
 * `modprobe kvm_amd` still works by name.
 */
export const CPU_MODALIAS_RULE = '/etc/udev/rules.d/70-tsbuild-cpu-modalias.rules';
export const CPU_MODALIAS_RULES = [
  '# Written by tsbuild export: do not load every module the CPU features match at boot (kvm, crypto',
  '# accelerators); they still load on demand. Remove this file to get the default back.',
  'SUBSYSTEM=="cpu", ENV{MODALIAS}=""',
  '',
].join('\n');

function hasUnit(rootfs: string, unit: string): boolean {
  return ['/etc/systemd/system', '/lib/systemd/system', '/usr/lib/systemd/system'].some((d) =>
    existsSync(secureJoin(rootfs, `${d}/${unit}`)),
  );
}

/** udevadmWaits tells whether the image's systemd (from the dpkg status) has `udevadm wait` (systemd ≥ 251). */
function udevadmWaits(rootfs: string): boolean {
  let status: string;
  try {
    status = readFileSync(secureJoin(rootfs, '/var/lib/dpkg/status'), 'utf8');
  } catch {
    return false;
  }
  for (const stanza of status.split(/\n\n+/)) {
    if (!/^Package: udev$/m.test(stanza) || !/^Status: install ok installed$/m.test(stanza)) continue;
    const major = Number(/^Version: (?:\d+:)?(\d+)/m.exec(stanza)?.[1]);
    return major >= 251;
  }
  return false;
}

/** fstab mounts the root filesystem by UUID (errors remount it read-only on Debian, as its installer does). */
export function fstab(uuid: string, alpine: boolean): string {
  const opts = alpine ? 'rw,relatime' : 'errors=remount-ro';
  return `# Written by tsbuild export\nUUID=${uuid}\t/\text4\t${opts}\t0\t1\n`;
}

export function hosts(hostname: string): string {
  return `127.0.0.1\tlocalhost\n127.0.1.1\t${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n`;
}

/** hostnameFor makes a hostname from an image name: `registry/team/my_app:1.0` → `my-app`. */
export function hostnameFor(name: string): string {
  const repo = name.split('@')[0]?.split('/').pop()?.split(':')[0] ?? '';
  const h = repo
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return h || 'tsbuild';
}

/** checkHostname refuses what cannot be a hostname (RFC 1123 labels, at most 253 characters). */
export function checkHostname(name: string): void {
  const ok =
    name.length <= 253 && name.split('.').every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l));
  if (!ok) throw new InvalidInputError(`--hostname ${JSON.stringify(name)} is not a valid hostname`);
}

/** withSerialGetty returns inittab text with a getty on ttyS0: an existing commented ttyS0 line is enabled, else one is added. */
export function withSerialGetty(inittab: string): string {
  const lines = inittab.split('\n');
  if (lines.some((l) => /^ttyS0:/.test(l))) return inittab;
  const i = lines.findIndex((l) => /^#\s*ttyS0:/.test(l));
  if (i >= 0) {
    lines[i] = SERIAL_GETTY_ALPINE;
    return lines.join('\n');
  }
  return `${inittab.replace(/\n*$/, inittab ? '\n' : '')}${SERIAL_GETTY_ALPINE}\n`;
}

/**
 * setRootPassword puts a crypt hash into root's /etc/shadow entry (or /etc/passwd when there is no shadow file)
 * and returns the paths changed. With `owner`, the rewritten file gets its old owner back.
 */
async function setRootPassword(rootfs: string, hash: string, owner: Host | undefined): Promise<string[]> {
  if (/[:\n]/.test(hash)) throw new InvalidInputError('the root password hash contains ":" or a newline');
  for (const path of ['/etc/shadow', '/etc/passwd']) {
    const text = await readText(rootfs, path);
    if (text === undefined) continue;
    const lines = text.split('\n');
    const i = lines.findIndex((l) => l.startsWith('root:'));
    if (i < 0) continue;
    const fields = (lines[i] as string).split(':');
    if (path === '/etc/passwd' && fields[1] !== 'x' && fields[1] !== '*' && fields[1] !== '') continue;
    fields[1] = hash;
    // the day of the last change: SOURCE_DATE_EPOCH's (a reproducible export), else today
    const now = sourceDateEpoch() ?? Date.now() / 1000;
    if (path === '/etc/shadow' && fields.length > 2) fields[2] = String(Math.floor(now / 86_400));
    lines[i] = fields.join(':');
    const host = secureJoin(rootfs, path);
    const st = lstatSync(host);
    await writeIn(rootfs, path, lines.join('\n'), st.mode & 0o7777);
    owner?.lchown(host, st.uid, st.gid);
    return [path];
  }
  throw new InvalidInputError(
    'cannot set the root password: the image has no root entry in /etc/shadow or /etc/passwd',
  );
}

/** hashPassword makes a SHA-512 crypt hash ($6$) with `openssl passwd -6`, reading the password on stdin. */
export async function hashPassword(password: string, salt?: string): Promise<string> {
  const clean = password.replace(/\r?\n$/, '');
  if (clean === '') throw new InvalidInputError('the root password file is empty');
  if (clean.includes('\n')) throw new InvalidInputError('the root password file has more than one line');
  const saltArgs = salt === undefined ? [] : ['-salt', salt];
  const r = await run(['openssl', 'passwd', '-6', ...saltArgs, '-stdin'], { input: `${clean}\n` });
  return r.stdout.trim();
}

/** enableUnit links a systemd unit into TARGET.wants when the unit exists in the image (a template via `from`). */
async function enableUnit(rootfs: string, unit: string, target: string, touched: string[], from = unit): Promise<void> {
  const source = ['/etc/systemd/system', '/lib/systemd/system', '/usr/lib/systemd/system']
    .map((d) => `${d}/${from}`)
    .find((p) => existsSync(secureJoin(rootfs, p)));
  if (!source) return;
  const link = `/etc/systemd/system/${target}.wants/${unit}`;
  await linkIn(rootfs, link, source);
  touched.push(link);
}

async function addRunlevel(rootfs: string, service: string, level: string, touched: string[]): Promise<void> {
  const link = `/etc/runlevels/${level}/${service}`;
  await linkIn(rootfs, link, `/etc/init.d/${service}`);
  touched.push(link);
}

async function readText(rootfs: string, path: string): Promise<string | undefined> {
  try {
    return await readFile(secureJoin(rootfs, path), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

function isSymlinkIn(rootfs: string, path: string): boolean {
  try {
    return lstatSync(`${secureJoin(rootfs, posix.dirname(path))}/${posix.basename(path)}`).isSymbolicLink();
  } catch {
    return false;
  }
}

/** readSshKeys reads public key files (one or more keys each; comments and blank lines dropped). */
export function readSshKeys(files: string[]): string[] {
  const keys: string[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (err) {
      throw new InvalidInputError(`--ssh-key ${f}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const lines = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    if (lines.length === 0) throw new InvalidInputError(`--ssh-key ${f} holds no key`);
    for (const l of lines) {
      if (!/^(ssh-|ecdsa-|sk-)/.test(l))
        throw new InvalidInputError(`--ssh-key ${f} is not an OpenSSH public key (a private key?)`);
      keys.push(l);
    }
  }
  return keys;
}

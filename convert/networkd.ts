// DHCP on eth0 with systemd-networkd, for a systemd image that has no ifupdown (the kernel install adds none to a
// systemd image: networkd ships in the systemd package). What is written: a .network file for eth0, networkd and its
// socket enabled, systemd-networkd-wait-online enabled for eth0 alone (so network-online.target, which the app's
// unit waits for, means "eth0 has its DHCP lease"), and DNS: with systemd-resolved in the image, resolved is enabled
// and /etc/resolv.conf points at its stub; without it (Debian 12 ships it as a package of its own), a small oneshot
// writes /etc/resolv.conf from networkd's link state files (DNS=, DOMAINS=) before network-online.target and again
// when a link's state changes, which is what networkd's DHCP lease hands to resolved otherwise.
import { existsSync, lstatSync, readlinkSync } from 'node:fs';
import { secureJoin } from '../sys/secure-path.js';
import { linkIn, writeIn } from './service.js';

export const NETWORKD_ETH0 = '/etc/systemd/network/20-tsbuild-eth0.network';
export const NETWORKD_ETH0_CONFIG = [
  '# Written by tsbuild export: DHCP on eth0 (the kernel command line has net.ifnames=0)',
  '[Match]',
  'Name=eth0',
  '',
  '[Network]',
  'DHCP=yes',
  '',
  '[DHCPv4]',
  'UseDomains=yes',
  '',
].join('\n');

/**
 * WAIT_ONLINE_DROPIN: systemd-networkd-wait-online waits for every link networkd manages, at most 120 s; the drop-in
 * makes it wait for eth0 alone and at most 60 s (what dhclient gives up after under ifupdown), so a VM without a
 * DHCP server still starts its app.
 */
export const WAIT_ONLINE_DROPIN = '/etc/systemd/system/systemd-networkd-wait-online.service.d/tsbuild-eth0.conf';
export function waitOnlineDropin(binary: string): string {
  return [
    '# Written by tsbuild export: network-online.target means eth0 is configured (its DHCP lease)',
    '[Service]',
    'ExecStart=',
    `ExecStart=${binary} --interface=eth0 --timeout=60`,
    '',
  ].join('\n');
}

/** The resolv.conf writer used when the image has no systemd-resolved: a script, its service and its path unit. */
export const RESOLV_SCRIPT = '/usr/lib/tsbuild/resolv-conf-from-networkd';
export const RESOLV_SERVICE = 'tsbuild-resolv-conf.service';
export const RESOLV_PATH = 'tsbuild-resolv-conf.path';

export const RESOLV_SCRIPT_TEXT = [
  '#!/bin/sh',
  '# Written by tsbuild export: /etc/resolv.conf from the DNS servers and search domains systemd-networkd holds for',
  '# its links (/run/systemd/netif/links/*: DNS=, DOMAINS=; for eth0 those of its DHCP lease). Without',
  '# systemd-resolved nothing else hands them to the resolver. Leaves resolv.conf as it is when no link has a server.',
  'set -eu',
  "servers='' domains=''",
  'for f in /run/systemd/netif/links/*; do',
  '\t[ -f "$f" ] || continue',
  "\twhile IFS='=' read -r key value; do",
  '\t\tcase $key in',
  '\t\tDNS) [ -z "$value" ] || servers="$servers $value" ;;',
  '\t\tDOMAINS) [ -z "$value" ] || domains="$domains $value" ;;',
  '\t\tesac',
  '\tdone <"$f"',
  'done',
  '[ -n "$servers" ] || exit 0',
  'tmp=/etc/.resolv.conf.tsbuild',
  '{',
  '\techo "# Written by $0 (tsbuild-resolv-conf.service) from systemd-networkd\'s links"',
  '\t[ -z "$domains" ] || echo "search$domains"',
  '\tfor s in $servers; do',
  '\t\ts=${s%%#*}',
  '\t\tcase $s in \\[*) s=${s#\\[} s=${s%%]*} ;; esac',
  '\t\techo "nameserver $s"',
  '\tdone',
  '} >"$tmp"',
  'mv -f "$tmp" /etc/resolv.conf',
  '',
].join('\n');

export const RESOLV_SERVICE_TEXT = [
  '# Written by tsbuild export',
  '[Unit]',
  "Description=resolv.conf from systemd-networkd's DNS servers",
  'After=systemd-networkd-wait-online.service',
  'Before=network-online.target',
  '',
  '[Service]',
  'Type=oneshot',
  `ExecStart=${RESOLV_SCRIPT}`,
  '',
  '[Install]',
  'WantedBy=network-online.target',
  '',
].join('\n');

export const RESOLV_PATH_TEXT = [
  '# Written by tsbuild export: rewrite resolv.conf when a link state of systemd-networkd changes (a new lease)',
  '[Unit]',
  "Description=systemd-networkd's link states, for resolv.conf",
  '',
  '[Path]',
  'PathChanged=/run/systemd/netif/links',
  `Unit=${RESOLV_SERVICE}`,
  '',
  '[Install]',
  'WantedBy=paths.target',
  '',
].join('\n');

/** RESOLVED_STUB: where /etc/resolv.conf points when systemd-resolved resolves (its stub listener, 127.0.0.53). */
export const RESOLVED_STUB = '../run/systemd/resolve/stub-resolv.conf';

const UNIT_DIRS = ['/etc/systemd/system', '/lib/systemd/system', '/usr/lib/systemd/system'];
const LIB_DIRS = ['/lib/systemd', '/usr/lib/systemd'];

/** networkdBinary: the path of systemd-networkd (or another program of its family) in the image, if it has one. */
export function networkdBinary(rootfs: string, name = 'systemd-networkd'): string | undefined {
  return LIB_DIRS.map((d) => `${d}/${name}`).find((p) => existsSync(secureJoin(rootfs, p)));
}

function unitSource(rootfs: string, unit: string): string | undefined {
  return UNIT_DIRS.map((d) => `${d}/${unit}`).find((p) => existsSync(secureJoin(rootfs, p)));
}

/**
 * writeNetworkd configures DHCP on eth0 for systemd-networkd (the image has it: see networkdBinary) and returns the
 * rootfs paths written. An /etc/resolv.conf that is a symlink elsewhere than resolved's stub (the image's own
 * resolver setup) is left alone; otherwise it becomes systemd-resolved's stub (when the image has resolved) or is
 * written at boot from networkd's state (when it has not). Idempotent.
 */
export async function writeNetworkd(rootfs: string): Promise<string[]> {
  const touched: string[] = [];
  const write = async (path: string, text: string, mode = 0o644): Promise<void> => {
    await writeIn(rootfs, path, text, mode);
    touched.push(path);
  };
  const enable = async (unit: string, target: string): Promise<void> => {
    const source = unitSource(rootfs, unit);
    if (!source) return;
    const link = `/etc/systemd/system/${target}.wants/${unit}`;
    await linkIn(rootfs, link, source);
    touched.push(link);
  };
  await write(NETWORKD_ETH0, NETWORKD_ETH0_CONFIG);
  await enable('systemd-networkd.service', 'multi-user.target');
  await enable('systemd-networkd.socket', 'sockets.target');
  const waitOnline = networkdBinary(rootfs, 'systemd-networkd-wait-online');
  if (waitOnline && unitSource(rootfs, 'systemd-networkd-wait-online.service')) {
    await write(WAIT_ONLINE_DROPIN, waitOnlineDropin(waitOnline));
    await enable('systemd-networkd-wait-online.service', 'network-online.target');
  }
  if (resolvConfIsLink(rootfs)) return touched;
  if (unitSource(rootfs, 'systemd-resolved.service')) {
    await enable('systemd-resolved.service', 'multi-user.target');
    await linkIn(rootfs, '/etc/resolv.conf', RESOLVED_STUB);
    touched.push('/etc/resolv.conf');
    return touched;
  }
  await write(RESOLV_SCRIPT, RESOLV_SCRIPT_TEXT, 0o755);
  await write(`/etc/systemd/system/${RESOLV_SERVICE}`, RESOLV_SERVICE_TEXT);
  await write(`/etc/systemd/system/${RESOLV_PATH}`, RESOLV_PATH_TEXT);
  await enable(RESOLV_SERVICE, 'network-online.target');
  await enable(RESOLV_PATH, 'paths.target');
  return touched;
}

/** resolvConfIsLink: /etc/resolv.conf is a symlink that this module did not make. */
function resolvConfIsLink(rootfs: string): boolean {
  const path = `${secureJoin(rootfs, '/etc')}/resolv.conf`;
  try {
    return lstatSync(path).isSymbolicLink() && readlinkSync(path) !== RESOLVED_STUB;
  } catch {
    return false;
  }
}

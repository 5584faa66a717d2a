// systemd-sysusers at boot: it creates the users and groups that sysusers.d declares, and on Debian it runs at every
// boot of a fresh disk (ConditionNeedsUpdate=/etc: /etc/.updated is missing), on the boot's critical path before
// udevd (and so before systemd-networkd). Debian's packages already ran it when they were installed (their postinst
// calls systemd-sysusers), so on an exported disk it usually has nothing to do. When every user, group and membership
// that sysusers.d names is already in /etc/passwd and /etc/group, the export writes /etc/.updated (what
// systemd-update-done writes after a boot) so that the condition is false until /usr changes (an upgrade), and
// sysusers then runs again. With anything missing, nothing is written and sysusers runs as usual.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { utimes } from 'node:fs/promises';
import { posix } from 'node:path';
import { secureJoin } from '../sys/secure-path.js';
import { writeIn } from './service.js';

export const ETC_UPDATED = '/etc/.updated';
const SYSUSERS_DIRS = ['/etc/sysusers.d', '/run/sysusers.d', '/usr/lib/sysusers.d', '/lib/sysusers.d'];

/**
 * sysusersPending lists what systemd-sysusers would still have to create in the rootfs: `user NAME`, `group NAME`,
 * `member USER GROUP`, or `unknown LINE` for a line this check does not understand (so it never claims "nothing to
 * do" wrongly). [] means sysusers has nothing to do.
 */
export function sysusersPending(rootfs: string): string[] {
  const passwd = namesIn(readText(rootfs, '/etc/passwd'));
  const groupText = readText(rootfs, '/etc/group');
  const groups = namesIn(groupText);
  const members = new Map<string, Set<string>>();
  for (const line of groupText.split('\n')) {
    const f = line.split(':');
    if (f.length >= 4) members.set(f[0] as string, new Set((f[3] as string).split(',').filter(Boolean)));
  }
  const pending: string[] = [];
  for (const line of sysusersLines(rootfs)) {
    const [type, name = '', id = '-'] = splitWords(line);
    if (name.includes('%')) pending.push(`unknown ${line}`);
    else if (type === 'u' || type === 'u!') {
      if (!passwd.has(name)) pending.push(`user ${name}`);
      const group = id.includes(':') ? id.slice(id.indexOf(':') + 1) : name;
      if (!/^\d+$/.test(group) && !groups.has(group)) pending.push(`group ${group}`);
    } else if (type === 'g') {
      if (!groups.has(name)) pending.push(`group ${name}`);
    } else if (type === 'm') {
      if (!members.get(id)?.has(name)) pending.push(`member ${name} ${id}`);
    } else if (type !== 'r') pending.push(`unknown ${line}`);
  }
  return pending;
}

/**
 * markSysusersDone writes /etc/.updated when sysusers has nothing to do (sysusersPending is empty) and returns the
 * paths written. ConditionNeedsUpdate=/etc is false while /usr's mtime is not newer than the file's, so the file gets
 * /usr's mtime plus one second, in whole seconds (no nanoseconds to compare: the same bytes for a reproducible
 * export, whose clamp to SOURCE_DATE_EPOCH keeps that order). Once /usr changes (an upgrade), sysusers runs again.
 */
export async function markSysusersDone(rootfs: string): Promise<string[]> {
  if (sysusersPending(rootfs).length > 0) return [];
  const usr = statSync(secureJoin(rootfs, '/usr'), { bigint: true });
  const after = Number(usr.mtimeNs / 1_000_000_000n) + 1;
  const text = [
    '# Written by tsbuild export: every user and group of sysusers.d exists, so systemd-sysusers (and any other',
    '# ConditionNeedsUpdate=/etc unit) is skipped until /usr is newer than this file, as after systemd-update-done.',
    '',
  ].join('\n');
  await writeIn(rootfs, ETC_UPDATED, text, 0o644);
  await utimes(secureJoin(rootfs, ETC_UPDATED), after, after);
  return [ETC_UPDATED];
}

function sysusersLines(rootfs: string): string[] {
  const lines: string[] = [];
  for (const dir of SYSUSERS_DIRS) {
    let names: string[];
    try {
      names = readdirSync(secureJoin(rootfs, dir)).filter((n) => n.endsWith('.conf'));
    } catch {
      continue;
    }
    for (const n of names.sort()) {
      for (const l of readText(rootfs, posix.join(dir, n)).split('\n')) {
        const t = l.trim();
        if (t && !t.startsWith('#')) lines.push(t);
      }
    }
  }
  return lines;
}

/** splitWords splits a sysusers.d line on blanks, keeping a double-quoted word (the GECOS field) whole. */
function splitWords(line: string): string[] {
  return (line.match(/"[^"]*"|\S+/g) ?? []).map((w) => w.replace(/^"|"$/g, ''));
}

function namesIn(text: string): Set<string> {
  return new Set(
    text
      .split('\n')
      .map((l) => l.split(':')[0] as string)
      .filter(Boolean),
  );
}

function readText(rootfs: string, path: string): string {
  try {
    return readFileSync(secureJoin(rootfs, path), 'utf8');
  } catch {
    return '';
  }
}

// The real host: privileged operations as Linux system calls (through koffi, sys/libc.ts), namespaces through the
// executors of sys/namespaces.ts, cgroups through sys/cgroups.ts. What the process may do is probed once.
import { lchownSync, readFileSync } from 'node:fs';
import { createCgroup } from './cgroups.js';
import { FileBatcher } from './file-writer.js';
import type { Host, HostCaps } from './host.js';
import { mknod, mount, umount } from './libc.js';
import { startInNamespaces } from './namespaces.js';
import { inUserNamespace, mappedIds } from './userns.js';

let caps: HostCaps | undefined;

/** effectiveCaps reads the effective capability set of this process from /proc/self/status. */
function effectiveCaps(): bigint {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? BigInt(`0x${m[1]}`) : 0n;
  } catch {
    return 0n;
  }
}

const CAP_CHOWN = 0n;
const CAP_MKNOD = 27n;
const CAP_SYS_ADMIN = 21n;

function probe(): HostCaps {
  const uid = process.geteuid?.() ?? -1;
  const gid = process.getegid?.() ?? -1;
  const eff = effectiveCaps();
  const has = (c: bigint): boolean => (eff & (1n << c)) !== 0n;
  // In a user namespace of our own (rootless mode) uid 0 holds every capability of the namespace, but device
  // nodes stay forbidden and nothing is root on the host.
  const userns = inUserNamespace();
  const root = uid === 0 && has(CAP_SYS_ADMIN) && !userns;
  return {
    uid,
    gid,
    root,
    mount: has(CAP_SYS_ADMIN),
    mknod: has(CAP_MKNOD) && !userns,
    // with only the user's own id mapped (no /etc/subuid range) there is no other owner to give files to
    chown: has(CAP_CHOWN) && (!userns || mappedIds() > 1),
    userns,
  };
}

/** linuxHost is the real host. */
export function linuxHost(): Host {
  return {
    kind: 'linux',
    caps: () => (caps ??= probe()),
    mount,
    umount: (target, flags = 0) => umount(target, flags),
    mknod: (path, mode, major = 0, minor = 0) => mknod(path, mode, major, minor),
    lchown: (path, uid, gid) => lchownSync(path, uid, gid),
    mountinfo: () => {
      try {
        return readFileSync('/proc/self/mountinfo', 'utf8');
      } catch {
        return '';
      }
    },
    startInNamespaces,
    fileWriter: () => new FileBatcher(),
    createCgroup: (opts) => createCgroup((caps ??= probe()).userns ? { rootless: true, ...opts } : opts),
  };
}

// What the container sees as its filesystem, as executor operations, in runc's order: the rootfs bound onto
// itself, /proc, a tmpfs /dev with device nodes, devpts, shm and mqueue, a read-only /sys, the bind mounts, then
// pivot_root, masked paths, read-only paths and the read-only root.
// The device allow-list: every mount is `nodev` except the device nodes of the list (and `--device` ones), each
// bound onto itself. A node made with mknod anywhere (rootfs, /dev, a volume) or carried by an image cannot be
// opened, as docker's device cgroup does it; mknod itself still works, so RUN steps can record nodes in layers.
import { statSync } from 'node:fs';
import { posix } from 'node:path';
import { InvalidInputError } from '../../sys/errors.js';
import type { Op } from '../../sys/namespaces.js';
import { MS } from '../../sys/libc.js';
import { secureJoin } from '../../sys/secure-path.js';
import type { RunSpec } from '../spec.js';

/** MASKED_PATHS are hidden from the container (runc's defaults). */
export const MASKED_PATHS: readonly string[] = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/interrupts',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/sys/devices/virtual/powercap',
  '/sys/firmware',
];

/** READONLY_PATHS are visible but read-only (runc's defaults). */
export const READONLY_PATHS: readonly string[] = [
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
];

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
/** mount_setattr attributes (linux/mount.h) */
export const MOUNT_ATTR = { RDONLY: 0x1, NOSUID: 0x2, NODEV: 0x4, NOEXEC: 0x8 } as const;

/** DEVICES are the character devices made in the container's /dev: name, major, minor (all mode 0666). */
export const DEVICES: ReadonlyArray<readonly [string, number, number]> = [
  ['null', 1, 3],
  ['zero', 1, 5],
  ['full', 1, 7],
  ['random', 1, 8],
  ['urandom', 1, 9],
  ['tty', 5, 0],
];

function mountOp(source: string, target: string, fstype: string, flags: number, data = ''): Op {
  return { op: 'mount', source, target, fstype, flags, data };
}

function depth(p: string): number {
  return posix.normalize(p).split('/').filter(Boolean).length;
}

interface BindMount {
  source: string;
  destination: string;
  readonly: boolean;
  /** a tmpfs instead of a bind (source unused) */
  tmpfs?: { size?: number };
}

/** shmKib is the size of /dev/shm in KiB: docker's 64 MiB by default, else the asked bytes rounded up. */
function shmKib(bytes: number | undefined): number {
  if (bytes === undefined) return 65536;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new InvalidInputError(`invalid /dev/shm size ${bytes}`);
  return Math.ceil(bytes / 1024);
}

/**
 * rootfsOps returns the operations that build the container's mount tree and pivot into it. Destinations are
 * resolved inside the rootfs (symlinks cannot point a mount outside it); missing mount points are created.
 * `console` is the host path of a terminal to bind onto /dev/console.
 */
export function rootfsOps(
  spec: RunSpec,
  opts: { console?: string; bindDevices?: boolean; hostSysfs?: boolean } = {},
): Op[] {
  const root = spec.rootfs;
  const ops: Op[] = [
    mountOp('', '/', '', MS.REC | MS.PRIVATE),
    mountOp(root, root, '', MS.BIND | MS.REC),
    // privileged (RUN --security=insecure): device nodes made in the rootfs work, as in BuildKit's insecure mode
    ...(spec.privileged ? [] : [{ op: 'mountattr', path: root, set: MOUNT_ATTR.NODEV } as const]),
  ];

  const proc = secureJoin(root, '/proc');
  ops.push({ op: 'mkdir', path: proc, mode: 0o555 }, mountOp('proc', proc, 'proc', MS.NOSUID | MS.NOEXEC | MS.NODEV));

  const dev = secureJoin(root, '/dev');
  ops.push(
    { op: 'mkdir', path: dev, mode: 0o755 },
    mountOp('tmpfs', dev, 'tmpfs', MS.NOSUID | MS.STRICTATIME, 'mode=755,size=65536k'),
  );
  const nodes: string[] = [];
  for (const [name, major, minor] of DEVICES) {
    // Without CAP_MKNOD (rootless): the host's node bound onto an empty file, as runc does it.
    if (opts.bindDevices)
      ops.push({ op: 'touch', path: `${dev}/${name}` }, mountOp(`/dev/${name}`, `${dev}/${name}`, '', MS.BIND));
    else ops.push({ op: 'mknod', path: `${dev}/${name}`, mode: S_IFCHR | 0o666, major, minor });
    nodes.push(`${dev}/${name}`);
  }
  for (const d of spec.devices ?? []) {
    const path = secureJoin(root, d.path);
    if (!path.startsWith(`${dev}/`))
      throw new InvalidInputError(`device ${d.path}: the container path must be under /dev`);
    ops.push({ op: 'mkdir', path: posix.dirname(path), mode: 0o755 });
    if (opts.bindDevices) {
      if (!d.hostPath) throw new InvalidInputError(`device ${d.path}: no host node to bind (rootless cannot make one)`);
      ops.push({ op: 'touch', path }, mountOp(d.hostPath, path, '', MS.BIND));
      continue; // the bind is its own mount already, kept dev below
    }
    ops.push({
      op: 'mknod',
      path,
      mode: (d.type === 'b' ? S_IFBLK : S_IFCHR) | d.mode,
      major: d.major,
      minor: d.minor,
    });
    nodes.push(path);
  }
  // Each allowed node becomes its own mount (keeping dev), then /dev itself goes nodev.
  for (const node of nodes)
    if (!opts.bindDevices || !DEVICES.some(([n]) => node === `${dev}/${n}`)) ops.push(mountOp(node, node, '', MS.BIND));
  ops.push(mountOp('', dev, '', MS.BIND | MS.REMOUNT | MS.NOSUID | MS.NODEV | MS.STRICTATIME));
  ops.push(
    { op: 'mkdir', path: `${dev}/pts`, mode: 0o755 },
    mountOp('devpts', `${dev}/pts`, 'devpts', MS.NOSUID | MS.NOEXEC, 'newinstance,ptmxmode=0666,mode=0620,gid=5'),
    { op: 'symlink', target: 'pts/ptmx', path: `${dev}/ptmx` },
    { op: 'mkdir', path: `${dev}/shm`, mode: 0o1777 },
    mountOp('shm', `${dev}/shm`, 'tmpfs', MS.NOSUID | MS.NOEXEC | MS.NODEV, `mode=1777,size=${shmKib(spec.shmSize)}k`),
    { op: 'mkdir', path: `${dev}/mqueue`, mode: 0o755 },
    mountOp('mqueue', `${dev}/mqueue`, 'mqueue', MS.NOSUID | MS.NOEXEC | MS.NODEV),
    { op: 'symlink', target: '/proc/self/fd', path: `${dev}/fd` },
    { op: 'symlink', target: '/proc/self/fd/0', path: `${dev}/stdin` },
    { op: 'symlink', target: '/proc/self/fd/1', path: `${dev}/stdout` },
    { op: 'symlink', target: '/proc/self/fd/2', path: `${dev}/stderr` },
  );
  if (opts.console) {
    ops.push({ op: 'touch', path: `${dev}/console` }, mountOp(opts.console, `${dev}/console`, '', MS.BIND));
  }

  // A fresh sysfs shows the network devices of the mounting process's network namespace.
  const sys = secureJoin(root, '/sys');
  ops.push({ op: 'mkdir', path: sys, mode: 0o555 });
  if (opts.hostSysfs) {
    // a user namespace may not mount sysfs for a network namespace it does not own (rootless with the host's
    // network): the host's /sys, bound read-only, as runc does it
    ops.push(mountOp('/sys', sys, '', MS.BIND | MS.REC), {
      op: 'mountattr',
      path: sys,
      set: MOUNT_ATTR.RDONLY | MOUNT_ATTR.NOSUID | MOUNT_ATTR.NOEXEC | MOUNT_ATTR.NODEV,
    });
  } else {
    const ro = spec.privileged ? 0 : MS.RDONLY; // privileged: a writable /sys, as docker --privileged gives
    ops.push(mountOp('sysfs', sys, 'sysfs', MS.NOSUID | MS.NOEXEC | MS.NODEV | ro));
  }

  const binds: BindMount[] = [
    ...spec.mounts,
    ...Object.entries(spec.extraFiles ?? {}).map(([destination, source]) => ({ source, destination, readonly: false })),
    ...(spec.tmpfs ?? []).map((t) => ({
      source: 'tmpfs',
      destination: t.destination,
      readonly: false,
      tmpfs: t.size === undefined ? {} : { size: t.size },
    })),
  ];
  // Parents before children, so that a mount on /a/b is not hidden by a later mount on /a.
  binds.sort((a, b) => depth(a.destination) - depth(b.destination));
  for (const m of binds) {
    if (m.tmpfs) {
      // BuildKit's RUN --mount=type=tmpfs: nosuid,nodev, mode 1777 like a fresh /tmp, size when asked
      const dest = secureJoin(root, m.destination);
      const size = m.tmpfs.size === undefined ? '' : `,size=${m.tmpfs.size}`;
      ops.push({ op: 'mkdir', path: dest, mode: 0o755 });
      ops.push(mountOp('tmpfs', dest, 'tmpfs', MS.NOSUID | MS.NODEV, `mode=1777${size}`));
      continue;
    }
    let isDir: boolean;
    try {
      isDir = statSync(m.source).isDirectory();
    } catch (e) {
      throw new InvalidInputError(
        `bind mount source ${m.source}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    const dest = secureJoin(root, m.destination);
    ops.push(isDir ? { op: 'mkdir', path: dest, mode: 0o755 } : { op: 'touch', path: dest });
    ops.push(mountOp(m.source, dest, '', MS.BIND | MS.REC));
    ops.push({ op: 'mountattr', path: dest, set: MOUNT_ATTR.NODEV | (m.readonly ? MOUNT_ATTR.RDONLY : 0) });
  }

  ops.push({ op: 'pivot', root });
  if (!spec.privileged) {
    // privileged: no masked or read-only paths (/proc/sys writable), as docker --privileged and BuildKit's insecure
    for (const p of MASKED_PATHS) ops.push({ op: 'mask', path: p });
    for (const p of READONLY_PATHS) ops.push({ op: 'ro', path: p });
  }
  if (spec.readonlyRootfs) ops.push(mountOp('', '/', '', MS.BIND | MS.REMOUNT | MS.RDONLY | MS.NODEV));
  return ops;
}

// RunSpec → OCI runtime-spec config.json, so the same container can run under runc or crun.
import { DEVICES, MASKED_PATHS, READONLY_PATHS } from './exec/mounts.js';
import { InvalidInputError } from '../sys/errors.js';
import type { RunSpec } from './spec.js';

export const OCI_RUNTIME_VERSION = '1.0.2';

/** RLIM_INFINITY, a uint64 that a JS number cannot hold: configs carry bigints, see runtimeConfigJson. */
const RLIM_INFINITY = 0xffffffffffffffffn;

/** runtimeConfigJson writes a runtimeConfig as config.json text (bigints as exact JSON integers). */
export function runtimeConfigJson(config: object): string {
  const text = JSON.stringify(config, (_k, v: unknown) => (typeof v === 'bigint' ? `\u0000u64:${v}` : v), 2);
  return `${text.replace(/"\\u0000u64:(\d+)"/g, '$1')}\n`;
}

interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

/**
 * runtimeConfig describes `spec` as an OCI runtime config (valid against the runtime-spec schema), with the mounts,
 * namespaces, devices, masked and read-only paths that runContainer sets up itself. `root.path` is the absolute
 * rootfs; the cgroup path is left to the runtime.
 */
export function runtimeConfig(spec: RunSpec): object {
  if (spec.network === 'default') {
    // runc has no user-mode stack to attach; a bundle's network is its own namespace (none) or the host's.
    throw new InvalidInputError(
      'a bundle\'s --network must be none or host (the sandboxed "default" needs tsbuild run)',
    );
  }
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/sys',
      type: 'sysfs',
      source: 'sysfs',
      options: ['nosuid', 'noexec', 'nodev', spec.privileged ? 'rw' : 'ro'],
    },
  ];
  for (const m of spec.mounts) {
    mounts.push({
      destination: m.destination,
      type: 'bind',
      source: m.source,
      options: ['rbind', 'rprivate', m.readonly ? 'ro' : 'rw'],
    });
  }
  for (const [destination, source] of Object.entries(spec.extraFiles ?? {})) {
    mounts.push({ destination, type: 'bind', source, options: ['bind', 'rprivate', 'rw'] });
  }

  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (spec.network !== 'host') namespaces.push({ type: 'network' });

  const resources: Record<string, unknown> = {
    devices: [
      // BuildKit's insecure spec allows every character and block device
      ...(spec.privileged
        ? [
            { allow: true, type: 'c', access: 'rwm' },
            { allow: true, type: 'b', access: 'rwm' },
          ]
        : [{ allow: false, access: 'rwm' }]),
      ...DEVICES.map(([, major, minor]) => ({ allow: true, type: 'c', major, minor, access: 'rwm' })),
      ...(spec.devices ?? []).map((d) => ({
        allow: true,
        type: d.type,
        major: d.major,
        minor: d.minor,
        access: 'rwm',
      })),
    ],
  };
  const { memory, pids, cpus } = spec.limits;
  if (memory !== undefined) resources.memory = { limit: memory, swap: memory };
  if (pids !== undefined) resources.pids = { limit: pids };
  if (cpus !== undefined) resources.cpu = { quota: Math.max(1000, Math.round(cpus * 100_000)), period: 100_000 };

  const user: Record<string, unknown> = { uid: spec.user.uid, gid: spec.user.gid, umask: 0o022 };
  if (spec.user.additionalGids.length > 0) user.additionalGids = spec.user.additionalGids;
  const caps = [...spec.capabilities];
  return {
    ociVersion: OCI_RUNTIME_VERSION,
    process: {
      terminal: spec.tty,
      user,
      args: spec.args,
      env: spec.env,
      cwd: spec.cwd,
      capabilities: {
        bounding: caps,
        effective: spec.user.uid === 0 ? caps : [],
        permitted: spec.user.uid === 0 ? caps : [],
      },
      noNewPrivileges: spec.noNewPrivileges,
      ...(spec.rlimits?.length
        ? {
            rlimits: spec.rlimits.map((r) => ({
              type: `RLIMIT_${r.name.toUpperCase()}`,
              soft: r.soft === 'inf' ? RLIM_INFINITY : r.soft,
              hard: r.hard === 'inf' ? RLIM_INFINITY : r.hard,
            })),
          }
        : {}),
    },
    root: { path: spec.rootfs, readonly: spec.readonlyRootfs ?? false },
    hostname: spec.hostname,
    mounts,
    linux: {
      namespaces,
      resources,
      devices: [
        ...DEVICES.map(([name, major, minor]) => ({
          path: `/dev/${name}`,
          type: 'c',
          major,
          minor,
          fileMode: 0o666,
          uid: 0,
          gid: 0,
        })),
        ...(spec.devices ?? []).map((d) => ({
          path: d.path,
          type: d.type,
          major: d.major,
          minor: d.minor,
          fileMode: d.mode,
          uid: 0,
          gid: 0,
        })),
      ],
      ...(spec.seccomp === 'unconfined' ? {} : { seccomp: spec.seccomp }),
      maskedPaths: spec.privileged ? [] : [...MASKED_PATHS],
      readonlyPaths: spec.privileged ? [] : [...READONLY_PATHS],
      rootfsPropagation: 'private',
    },
  };
}

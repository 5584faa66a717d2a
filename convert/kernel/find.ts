// The kernel the VM boots when nothing is installed: one the image already has in /boot (the newest with an
// initramfs), or a file from the host (--kernel PATH, --initrd PATH) copied into /boot. No privilege involved.
import { existsSync, lstatSync, readdirSync } from 'node:fs';
import { chmod, copyFile, mkdir, rm } from 'node:fs/promises';
import { basename, join, posix } from 'node:path';
import { InvalidInputError } from '../../sys/errors.js';
import { secureJoin } from '../../sys/secure-path.js';

/** KernelFiles names the kernel and initramfs inside the rootfs (absolute rootfs paths, versioned names kept). */
export interface KernelFiles {
  kernel: string;
  initrd?: string;
  /** the kernel release (`uname -r`), or the flavor name when only that is known (Alpine: `virt`) */
  version: string;
}

export type KernelMode = 'auto' | 'image' | 'install' | { path: string; initrd?: string };

/** parseKernelFlag reads --kernel (auto, image, install, or a host path) and --initrd. */
export function parseKernelFlag(kernel: string | undefined, initrd: string | undefined): KernelMode {
  const k = kernel ?? 'auto';
  if (k === 'auto' || k === 'image' || k === 'install') {
    if (initrd !== undefined)
      throw new InvalidInputError(
        '--initrd goes with --kernel PATH',
        'pass the kernel file too: --kernel /path/to/vmlinuz --initrd /path/to/initrd',
      );
    return k;
  }
  return initrd === undefined ? { path: k } : { path: k, initrd };
}

/** compareVersions orders kernel versions the way people read them: numeric runs as numbers (6.1.0-10 < 6.1.0-9 is false). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/(\d+)/).filter(Boolean);
  const pb = b.split(/(\d+)/).filter(Boolean);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d+$/.test(x);
    const ny = /^\d+$/.test(y);
    if (nx && ny && Number(x) !== Number(y)) return Number(x) - Number(y);
    if (!(nx && ny) && x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/**
 * findKernel looks for the newest kernel in /boot (`vmlinuz-VERSION`, Alpine's `vmlinuz-FLAVOR`) that has a
 * matching initramfs (`initrd.img-V`, `initramfs-V`, `initramfs-V.img`, `initrd-V`). A kernel without any initramfs
 * is returned without one only when there is no better candidate. Undefined when /boot has no kernel.
 */
export function findKernel(rootfs: string): KernelFiles | undefined {
  const boot = secureJoin(rootfs, '/boot');
  let names: string[];
  try {
    names = readdirSync(boot);
  } catch {
    return undefined;
  }
  const regular = (n: string): boolean => {
    try {
      return lstatSync(join(boot, n)).isFile();
    } catch {
      return false;
    }
  };
  const candidates = names
    .filter((n) => /^vmlinuz-./.test(n) && !/\.(old|bak|dpkg-\w+)$/.test(n) && regular(n))
    .map((n) => n.slice('vmlinuz-'.length))
    .sort((a, b) => compareVersions(b, a));
  let withoutInitrd: KernelFiles | undefined;
  for (const v of candidates) {
    const initrd = [`initrd.img-${v}`, `initramfs-${v}`, `initramfs-${v}.img`, `initrd-${v}`].find(regular);
    const version = alpineRelease(rootfs, v) ?? v;
    if (initrd) return { kernel: `/boot/vmlinuz-${v}`, initrd: `/boot/${initrd}`, version };
    withoutInitrd ??= { kernel: `/boot/vmlinuz-${v}`, version };
  }
  return withoutInitrd;
}

/** alpineRelease maps an Alpine flavor (`virt`) to the module directory's release (`6.6.58-0-virt`). */
function alpineRelease(rootfs: string, flavor: string): string | undefined {
  if (/\d/.test(flavor)) return undefined;
  try {
    const dirs = readdirSync(secureJoin(rootfs, '/lib/modules')).filter((d) => d.endsWith(`-${flavor}`));
    return dirs.sort(compareVersions).pop();
  } catch {
    return undefined;
  }
}

/** copyHostKernel copies --kernel PATH (and --initrd PATH) into /boot, keeping their file names. */
export async function copyHostKernel(
  rootfs: string,
  mode: { path: string; initrd?: string },
  dryRun: boolean,
): Promise<KernelFiles> {
  const check = (p: string, flag: string): void => {
    let ok: boolean;
    try {
      ok = lstatSync(p).isFile() || existsSync(p);
    } catch {
      ok = false;
    }
    if (!ok) throw new InvalidInputError(`${flag} ${p}: no such file`);
  };
  check(mode.path, '--kernel');
  if (mode.initrd) check(mode.initrd, '--initrd');
  const name = (p: string, prefix: string): string => {
    const b = basename(p);
    return b.startsWith(prefix) ? b : `${prefix}${b}`;
  };
  const kernel = posix.join('/boot', name(mode.path, 'vmlinuz-'));
  const initrd = mode.initrd ? posix.join('/boot', name(mode.initrd, 'initrd.img-')) : undefined;
  if (!dryRun) {
    await mkdir(secureJoin(rootfs, '/boot'), { recursive: true });
    await rm(secureJoin(rootfs, kernel), { force: true });
    await copyFile(mode.path, secureJoin(rootfs, kernel));
    await chmod(secureJoin(rootfs, kernel), 0o644);
    if (initrd && mode.initrd) {
      await rm(secureJoin(rootfs, initrd), { force: true });
      await copyFile(mode.initrd, secureJoin(rootfs, initrd));
      await chmod(secureJoin(rootfs, initrd), 0o644);
    }
  }
  return { kernel, ...(initrd ? { initrd } : {}), version: kernel.slice('/boot/vmlinuz-'.length) };
}

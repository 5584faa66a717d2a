// extlinux (syslinux for ext4), the classic alternative to GRUB for BIOS. `extlinux --install` asks the kernel for
// the block list of ldlinux.sys, so it needs the filesystem mounted: root, a loop device over the partition, a
// mount; the MBR code is syslinux's mbr.bin (gptmbr.bin on GPT, which boots the legacy-BIOS-bootable partition).
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../../sys/errors.js';
import { run } from '../../sys/exec.js';
import { defaultHost } from '../../sys/host.js';
import { unmountedAgain } from '../reproducible.js';
import { writeIn } from '../service.js';
import type { Bootloader, BootloaderContext } from './types.js';

/** Where Debian (and others) keep syslinux's MBR code. */
export const MBR_DIRS = ['/usr/lib/syslinux/mbr', '/usr/lib/EXTLINUX', '/usr/share/syslinux', '/usr/lib/syslinux/bios'];

export const EXTLINUX_DIR = '/boot/syslinux';

/** mbrCode finds syslinux's mbr.bin or gptmbr.bin on the host. */
export function mbrCodePath(table: 'mbr' | 'gpt'): string | undefined {
  const name = table === 'gpt' ? 'gptmbr.bin' : 'mbr.bin';
  return MBR_DIRS.map((d) => join(d, name)).find((p) => existsSync(p));
}

/** extlinuxConfig boots the kernel at once; syslinux itself talks on the serial port too. */
export function extlinuxConfig(ctx: Pick<BootloaderContext, 'kernel' | 'cmdline' | 'title'>): string {
  return [
    '# Written by tsbuild export',
    'SERIAL 0 115200',
    'DEFAULT linux',
    'PROMPT 0',
    'TIMEOUT 0',
    'LABEL linux',
    `  MENU LABEL ${ctx.title}`,
    `  LINUX ${ctx.kernel.kernel}`,
    ...(ctx.kernel.initrd ? [`  INITRD ${ctx.kernel.initrd}`] : []),
    `  APPEND ${ctx.cmdline}`,
    '',
  ].join('\n');
}

export const extlinux: Bootloader = {
  id: 'extlinux',
  firmware: 'bios',
  tools: { extlinux: 'extlinux', losetup: 'mount', mount: 'mount', umount: 'mount' },
  files: { '/usr/lib/syslinux/mbr/mbr.bin': 'syslinux-common' },
  needsRoot: true,

  async prepare(ctx) {
    await writeIn(ctx.rootfs, `${EXTLINUX_DIR}/extlinux.conf`, extlinuxConfig(ctx), 0o644);
  },

  async install(ctx) {
    if (!(ctx.host ?? defaultHost()).caps().root) {
      throw new TsbuildError(
        'E_NEEDS_ROOT',
        'extlinux needs root: it installs through a mounted filesystem (loop device)',
        { hint: 'use --bootloader grub, which needs no root' },
      );
    }
    const mbr = mbrCodePath(ctx.plan.layout.table);
    if (!mbr)
      throw new TsbuildError('E_MISSING_TOOLS', 'syslinux MBR code (mbr.bin) not found', {
        hint: 'apt-get install -y syslinux-common',
      });
    const opt = ctx.signal ? { signal: ctx.signal } : {};
    const root = ctx.plan.root;
    const mnt = join(ctx.workDir, 'extlinux-mnt');
    await mkdir(mnt, { recursive: true });
    const loop = (
      await run(
        ['losetup', '--find', '--show', '--offset', String(root.start), '--sizelimit', String(root.size), ctx.image],
        opt,
      )
    ).stdout.trim();
    let mounted = false;
    try {
      // reproducible: no journal transactions, no background inode-table zeroing, no access times (reproducible.ts)
      const o = ctx.time === undefined ? 'nodev,nosuid,noexec' : 'nodev,nosuid,noexec,noatime,noload,noinit_itable';
      await run(['mount', '-t', 'ext4', '-o', o, loop, mnt]);
      mounted = true;
      await run(['extlinux', '--install', join(mnt, EXTLINUX_DIR)]);
    } finally {
      // always undo, even when aborted: these must not outlive the export
      if (mounted) await run(['umount', mnt]).catch(() => run(['umount', '-l', mnt]));
      await run(['losetup', '-d', loop]).catch(() => {});
      await rm(mnt, { recursive: true, force: true });
    }
    if (ctx.time !== undefined) {
      const paths = [EXTLINUX_DIR, `${EXTLINUX_DIR}/ldlinux.sys`, `${EXTLINUX_DIR}/ldlinux.c32`];
      await unmountedAgain({ image: ctx.image, offset: root.start, time: ctx.time, paths, workDir: ctx.workDir });
    }
    const code = await readFile(mbr);
    return { bootCode: code.subarray(0, 440) };
  },
};

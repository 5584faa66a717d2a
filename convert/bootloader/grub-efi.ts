// GRUB for UEFI: a FAT EFI system partition made inside the image file (`mkfs.fat --offset`) holding GRUB's
// x86_64-efi image at the removable-media path \EFI\BOOT\BOOTX64.EFI, copied in with mtools (`mcopy -i
// file@@offset`). No mount, no root, no NVRAM entry: firmware boots the removable path of any disk.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidInputError } from '../../sys/errors.js';
import { run } from '../../sys/exec.js';
import { SECTOR } from '../partition.js';
import { earlyConfig, GRUB_COMMON_MODULES, writeGrubConfig } from './grub-config.js';
import type { Bootloader } from './types.js';

export const GRUB_EFI_DIR = '/usr/lib/grub/x86_64-efi';

/** EFI_MODULES: GRUB_COMMON_MODULES plus what the EFI platform needs to read the ESP and hand over a framebuffer. */
export const EFI_MODULES = [...GRUB_COMMON_MODULES, 'fat', 'efi_gop', 'efi_uga', 'all_video'];

export const grubEfi: Bootloader = {
  id: 'grub-efi',
  firmware: 'uefi',
  tools: { 'grub-mkimage': 'grub-common', 'mkfs.fat': 'dosfstools', mcopy: 'mtools', mmd: 'mtools', mlabel: 'mtools' },
  files: { [`${GRUB_EFI_DIR}/kernel.img`]: 'grub-efi-amd64-bin' },
  needsRoot: false,

  async prepare(ctx) {
    // every module the config uses is embedded in BOOTX64.EFI: the 19 MB module directory is not copied
    await writeGrubConfig(ctx);
  },

  async install(ctx) {
    const esp = ctx.plan.esp;
    if (!esp) throw new InvalidInputError('UEFI boot needs an EFI system partition');
    const opt = ctx.signal ? { signal: ctx.signal } : {};
    const early = join(ctx.workDir, 'grub-efi-early.cfg');
    const efi = join(ctx.workDir, 'BOOTX64.EFI');
    await writeFile(early, earlyConfig(ctx.rootUuid));
    await run(
      [
        'grub-mkimage',
        '-O',
        'x86_64-efi',
        '-d',
        GRUB_EFI_DIR,
        '-o',
        efi,
        '-c',
        early,
        '-p',
        '/boot/grub',
        ...EFI_MODULES,
      ],
      opt,
    );
    // FAT16 (FAT32 needs more clusters than a small ESP has); the volume id is derived (identity.ts: esp-serial), and
    // mkfs.fat and mtools take their times from SOURCE_DATE_EPOCH in a reproducible export
    const volumeId = (ctx.espSerial ?? parseInt(ctx.rootUuid.slice(0, 8), 16)).toString(16).padStart(8, '0');
    const env = {
      ...process.env,
      MTOOLS_SKIP_CHECK: '1',
      ...(ctx.time === undefined ? {} : { SOURCE_DATE_EPOCH: String(ctx.time) }),
    };
    await run(
      [
        'mkfs.fat',
        '-F',
        '16',
        '-n',
        'ESP',
        '-i',
        volumeId,
        '--offset',
        String(esp.start / SECTOR),
        ctx.image,
        String(esp.size / 1024),
      ],
      { ...opt, env },
    );
    const target = `${ctx.image}@@${esp.start}`;
    // mkfs.fat stamps the volume label's directory entry with the clock; mlabel rewrites it (same label and serial)
    // with SOURCE_DATE_EPOCH, which mtools honours
    if (ctx.time !== undefined) await run(['mlabel', '-i', target, '::ESP'], { ...opt, env });
    await run(['mmd', '-i', target, '::/EFI', '::/EFI/BOOT'], { ...opt, env });
    await run(['mcopy', '-i', target, efi, '::/EFI/BOOT/BOOTX64.EFI'], { ...opt, env });
    return {};
  },
};

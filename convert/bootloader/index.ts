// The bootloaders by name, and which ones a --boot/--bootloader pair installs.
import { InvalidInputError } from '../../sys/errors.js';
import type { BootMode } from '../disk-layout.js';
import { extlinux } from './extlinux.js';
import { grubBios } from './grub-bios.js';
import { grubEfi } from './grub-efi.js';
import type { Bootloader, BootloaderId } from './types.js';

export type { Bootloader, BootloaderContext, BootloaderId } from './types.js';

export const BOOTLOADERS: Record<BootloaderId, Bootloader> = {
  'grub-bios': grubBios,
  'grub-efi': grubEfi,
  extlinux,
};

export type BootloaderChoice = 'grub' | 'extlinux' | 'auto';

/**
 * resolveBootloader turns `auto` (the default) into a loader: extlinux for a BIOS disk with an MBR table when the
 * export runs as root and the host has extlinux and syslinux's MBR code, GRUB otherwise (UEFI, hybrid and GPT disks
 * keep GRUB's tested layouts; rootless; no syslinux). extlinux
 * reads the kernel and initrd through the BIOS in big requests, GRUB i386-pc in one or two per 32 KiB (its disk
 * cache unit, cut again at every 63-sector "track"); under QEMU's TCG that is 2.5–4 s more before the kernel starts
 * (bench/README.md). But extlinux installs through a loop mount (root), so rootless exports keep GRUB.
 */
export function resolveBootloader(
  choice: BootloaderChoice,
  disk: { boot: BootMode; table: 'mbr' | 'gpt' },
  host: { root: boolean; hasExtlinux: boolean },
): 'grub' | 'extlinux' {
  if (choice !== 'auto') return choice;
  return disk.boot === 'bios' && disk.table === 'mbr' && host.root && host.hasExtlinux ? 'extlinux' : 'grub';
}

/**
 * bootloadersFor returns the loaders to install, BIOS first: bios → GRUB or extlinux; uefi → GRUB's EFI image;
 * hybrid → both firmwares (extlinux only does BIOS, so hybrid with extlinux pairs it with GRUB for UEFI).
 */
export function bootloadersFor(boot: BootMode, choice: BootloaderChoice): Bootloader[] {
  // `auto` is resolved by resolveBootloader first
  if (choice !== 'grub' && choice !== 'extlinux')
    throw new InvalidInputError(`--bootloader must be grub or extlinux, or auto (got ${JSON.stringify(choice)})`);
  const bios = choice === 'extlinux' ? extlinux : grubBios;
  switch (boot) {
    case 'bios':
      return [bios];
    case 'uefi':
      if (choice === 'extlinux')
        throw new InvalidInputError(
          'extlinux boots BIOS machines only',
          'use --bootloader grub with --boot uefi, or --boot bios|hybrid',
        );
      return [grubEfi];
    case 'hybrid':
      return [bios, grubEfi];
    default:
      throw new InvalidInputError(`--boot must be bios, uefi or hybrid (got ${JSON.stringify(boot)})`);
  }
}

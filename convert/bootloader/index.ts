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

export type BootloaderChoice = 'grub' | 'extlinux';

/**
 * bootloadersFor returns the loaders to install, BIOS first: bios → GRUB or extlinux; uefi → GRUB's EFI image;
 * hybrid → both firmwares (extlinux only does BIOS, so hybrid with extlinux pairs it with GRUB for UEFI).
 */
export function bootloadersFor(boot: BootMode, choice: BootloaderChoice): Bootloader[] {
  if (choice !== 'grub' && choice !== 'extlinux')
    throw new InvalidInputError(`--bootloader must be grub or extlinux (got ${JSON.stringify(choice)})`);
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

// What every bootloader gets and does: files into the rootfs before mkfs (prepare), then bytes into the disk
// image after it (install), returning the MBR boot code for BIOS loaders.
import type { DiskPlan } from '../disk-layout.js';
import type { Host } from '../../sys/host.js';
import type { KernelFiles } from '../kernel/find.js';

export type BootloaderId = 'grub-bios' | 'grub-efi' | 'extlinux';

export interface BootloaderContext {
  /** the staging tree that becomes the root filesystem */
  rootfs: string;
  /** default: defaultHost(); a loader that mounts (extlinux) refuses unless `caps().root` */
  host?: Host;
  /** the raw disk image file, at its final size */
  image: string;
  plan: DiskPlan;
  rootUuid: string;
  kernel: KernelFiles;
  /** the whole kernel command line */
  cmdline: string;
  /** a private scratch directory */
  workDir: string;
  /** shown in menus */
  title: string;
  /** the FAT volume serial of the ESP */
  espSerial?: number;
  /** SOURCE_DATE_EPOCH of a reproducible export: file times on the ESP */
  time?: number;
  signal?: AbortSignal;
}

export interface Bootloader {
  id: BootloaderId;
  firmware: 'bios' | 'uefi';
  /** host tool → Debian package, checked up front */
  tools: Record<string, string>;
  /** host files it needs (checked up front), each with the package that has it */
  files: Record<string, string>;
  /** it mounts the filesystem (loop device): root only */
  needsRoot: boolean;
  /** writes the loader's configuration and modules into the rootfs (before mkfs) */
  prepare(ctx: BootloaderContext): Promise<void>;
  /** writes the loader into the image (after mkfs and before the partition table); BIOS loaders return the MBR code */
  install(ctx: BootloaderContext): Promise<{ bootCode?: Buffer }>;
}

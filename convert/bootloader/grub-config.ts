// GRUB's configuration, shared by the BIOS and the UEFI image: the early config embedded in core.img/BOOTX64.EFI
// finds the root filesystem by UUID and sets the prefix; /boot/grub/grub.cfg on it boots the kernel at once.
import { writeIn } from '../service.js';
import type { BootloaderContext } from './types.js';

/** GRUB_MODULES are embedded in every GRUB image, so that grub.cfg needs no module from the disk. */
export const GRUB_COMMON_MODULES = [
  'part_msdos',
  'part_gpt',
  'ext2',
  'search',
  'search_fs_uuid',
  'normal',
  'linux',
  'echo',
  'test',
  'serial',
  'terminal',
  'configfile',
  'boot',
  'sleep',
];

/** earlyConfig is embedded in the GRUB image: it runs before normal mode and points the prefix at the root fs. */
export function earlyConfig(rootUuid: string): string {
  return `search.fs_uuid ${rootUuid} root\nset prefix=($root)/boot/grub\n`;
}

/** grubConfig boots the kernel without a menu; GRUB's own output also goes to the serial port. */
export function grubConfig(ctx: Pick<BootloaderContext, 'rootUuid' | 'kernel' | 'cmdline' | 'title'>): string {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    '# Written by tsbuild export',
    'set timeout=0',
    'set default=0',
    // UEFI firmware already mirrors its console to the serial port; on BIOS GRUB talks to it itself
    'if [ "$grub_platform" = pc ] && serial --unit=0 --speed=115200; then',
    '  terminal_input --append serial',
    '  terminal_output --append serial',
    'fi',
    `search --no-floppy --fs-uuid --set=root ${ctx.rootUuid}`,
    `menuentry ${q(ctx.title)} {`,
    `  echo ${q(`Loading ${ctx.kernel.kernel} ...`)}`,
    `  linux ${ctx.kernel.kernel} ${ctx.cmdline}`,
    ...(ctx.kernel.initrd ? [`  initrd ${ctx.kernel.initrd}`] : []),
    '}',
    '',
  ].join('\n');
}

/** writeGrubConfig writes /boot/grub/grub.cfg into the rootfs. */
export async function writeGrubConfig(ctx: BootloaderContext): Promise<void> {
  await writeIn(ctx.rootfs, '/boot/grub/grub.cfg', grubConfig(ctx), 0o644);
}

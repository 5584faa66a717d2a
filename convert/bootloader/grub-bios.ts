// GRUB for BIOS, installed with plain file writes (no mount, no root, no grub-install): core.img from
// `grub-mkimage -O i386-pc` goes into the gap after the MBR (or into the GPT BIOS boot partition), and boot.img's
// first 440 bytes, patched with core.img's location, become the MBR boot code. Layout: reference/converters.md §5.5
// (GRUB's include/grub/i386/pc/boot.h and util/setup.c).
import { copyFile, mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidInputError, TsbuildError } from '../../sys/errors.js';
import { secureJoin } from '../../sys/secure-path.js';
import { run } from '../../sys/exec.js';
import { SECTOR } from '../partition.js';
import { earlyConfig, GRUB_COMMON_MODULES, writeGrubConfig } from './grub-config.js';
import type { Bootloader, BootloaderContext } from './types.js';

export const GRUB_PC_DIR = '/usr/lib/grub/i386-pc';

/** boot.img offsets (boot.h): where core.img starts (u64 LBA), the boot drive byte, the drive-check jump. */
export const KERNEL_SECTOR = 0x5c;
export const BOOT_DRIVE = 0x64;
export const DRIVE_CHECK = 0x66;
/** core.img's first sector (diskboot.img) ends with a 12-byte blocklist: u64 start, u16 sectors, u16 segment. */
export const BLOCKLIST = SECTOR - 12;
/** where diskboot loads the rest of core.img: segment 0x800 + one sector */
export const LOAD_SEGMENT = 0x820;

/**
 * patchBootImg returns the 440 bytes of MBR boot code: boot.img with the LBA of core.img's first sector, boot drive
 * 0xFF (use the drive the BIOS passes in DL), and the drive-check jump replaced by NOPs (what grub-bios-setup does
 * for hard disks, for BIOSes that pass a bad DL).
 */
export function patchBootImg(bootImg: Uint8Array, coreLba: number): Buffer {
  if (bootImg.length !== SECTOR || bootImg[510] !== 0x55 || bootImg[511] !== 0xaa)
    throw new InvalidInputError('boot.img is not a 512-byte boot sector');
  const b = Buffer.from(bootImg.subarray(0, 440));
  b.writeBigUInt64LE(BigInt(coreLba), KERNEL_SECTOR);
  b[BOOT_DRIVE] = 0xff;
  b[DRIVE_CHECK] = 0x90;
  b[DRIVE_CHECK + 1] = 0x90;
  return b;
}

/**
 * patchCoreImg fills core.img's blocklist for an image written contiguously at `coreLba`: the rest of it starts at
 * coreLba + 1 and is (sectors − 1) long, loaded at segment 0x820; the entry below it stays zero (the terminator).
 * Returns a copy padded to whole sectors.
 */
export function patchCoreImg(core: Uint8Array, coreLba: number): Buffer {
  const sectors = Math.ceil(core.length / SECTOR);
  if (sectors < 2) throw new InvalidInputError('core.img is smaller than two sectors');
  if (sectors - 1 > 0xffff) throw new InvalidInputError('core.img is too big for one blocklist entry');
  const b = Buffer.alloc(sectors * SECTOR);
  b.set(core);
  b.writeBigUInt64LE(BigInt(coreLba + 1), BLOCKLIST);
  b.writeUInt16LE(sectors - 1, BLOCKLIST + 8);
  b.writeUInt16LE(LOAD_SEGMENT, BLOCKLIST + 10);
  b.fill(0, BLOCKLIST - 12, BLOCKLIST);
  return b;
}

/** embedArea is where core.img goes: the BIOS boot partition on GPT, else the gap between the MBR and partition 1. */
export function embedArea(ctx: Pick<BootloaderContext, 'plan'>): { lba: number; bytes: number } {
  const { plan } = ctx;
  if (plan.layout.table === 'gpt') {
    if (!plan.biosBoot) throw new InvalidInputError('GRUB for BIOS on a GPT disk needs a BIOS boot partition');
    return { lba: plan.biosBoot.start / SECTOR, bytes: plan.biosBoot.size };
  }
  const first = Math.min(...plan.layout.partitions.map((p) => p.start));
  return { lba: 1, bytes: first - SECTOR };
}

export const grubBios: Bootloader = {
  id: 'grub-bios',
  firmware: 'bios',
  tools: { 'grub-mkimage': 'grub-common' },
  files: { [`${GRUB_PC_DIR}/boot.img`]: 'grub-pc-bin', [`${GRUB_PC_DIR}/diskboot.img`]: 'grub-pc-bin' },
  needsRoot: false,

  async prepare(ctx) {
    await writeGrubConfig(ctx);
    // the module directory, as grub-install lays it out, so that an admin can `insmod` more later
    const dest = secureJoin(ctx.rootfs, '/boot/grub/i386-pc');
    await mkdir(dest, { recursive: true });
    for (const name of await readdir(GRUB_PC_DIR)) {
      if (!/\.(mod|lst)$/.test(name)) continue;
      await rm(join(dest, name), { force: true }); // replace, never write into a file of the staging tree
      await copyFile(join(GRUB_PC_DIR, name), join(dest, name));
    }
  },

  async install(ctx) {
    const area = embedArea(ctx);
    const early = join(ctx.workDir, 'grub-early.cfg');
    const coreFile = join(ctx.workDir, 'core.img');
    await writeFile(early, earlyConfig(ctx.rootUuid));
    const modules = ['biosdisk', ...GRUB_COMMON_MODULES];
    await run(
      ['grub-mkimage', '-O', 'i386-pc', '-d', GRUB_PC_DIR, '-o', coreFile, '-c', early, '-p', '/boot/grub', ...modules],
      ctx.signal ? { signal: ctx.signal } : {},
    );
    const core = patchCoreImg(await readFile(coreFile), area.lba);
    if (core.length > area.bytes) {
      throw new TsbuildError(
        'E_GRUB_TOO_BIG',
        `GRUB's core.img (${core.length} bytes) does not fit in the ${area.bytes}-byte embedding area`,
      );
    }
    const fh = await open(ctx.image, 'r+');
    try {
      await fh.write(core, 0, core.length, area.lba * SECTOR);
    } finally {
      await fh.close();
    }
    return { bootCode: patchBootImg(await readFile(join(GRUB_PC_DIR, 'boot.img')), area.lba) };
  },
};

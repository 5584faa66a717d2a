import test from 'ava';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { bootloadersFor, resolveBootloader } from '../../convert/bootloader/index.js';
import { extlinuxConfig, mbrCodePath } from '../../convert/bootloader/extlinux.js';
import {
  BLOCKLIST,
  BOOT_DRIVE,
  DRIVE_CHECK,
  embedArea,
  GRUB_PC_DIR,
  KERNEL_SECTOR,
  LOAD_SEGMENT,
  patchBootImg,
  patchCoreImg,
} from '../../convert/bootloader/grub-bios.js';
import { earlyConfig, grubConfig } from '../../convert/bootloader/grub-config.js';
import { planDisk } from '../../convert/disk-layout.js';

const MiB = 1 << 20;
const kernel = {
  kernel: '/boot/vmlinuz-6.1.0-10-cloud-amd64',
  initrd: '/boot/initrd.img-6.1.0-10-cloud-amd64',
  version: '6.1.0-10-cloud-amd64',
};
const UUID = '0b0e8a43-6a59-4cbb-9d0b-3b1b8c1d2f10';
const grubTest = existsSync(`${GRUB_PC_DIR}/boot.img`) ? test : test.skip;

grubTest(
  'boot.img gets the core.img sector, the boot drive from DL and no drive check (as grub-bios-setup)',
  async (t) => {
    const img = await readFile(`${GRUB_PC_DIR}/boot.img`);
    t.is(img[DRIVE_CHECK], 0xeb, 'the drive check is a jmp in the stock boot.img');
    const code = patchBootImg(img, 2048);
    t.is(code.length, 440);
    t.is(code.readBigUInt64LE(KERNEL_SECTOR), 2048n);
    t.is(code[BOOT_DRIVE], 0xff);
    t.deepEqual([...code.subarray(DRIVE_CHECK, DRIVE_CHECK + 2)], [0x90, 0x90]);
    t.deepEqual(code.subarray(0, KERNEL_SECTOR), img.subarray(0, KERNEL_SECTOR), 'the rest is boot.img');
  },
);

test("core.img's blocklist points at the sectors after its first one, loaded at 0x820", (t) => {
  const core = Buffer.alloc(512 * 10 + 100, 0xaa);
  core.fill(0, 0x1e0, 0x200);
  const out = patchCoreImg(core, 1);
  t.is(out.length, 512 * 11, 'padded to whole sectors');
  t.is(out.readBigUInt64LE(BLOCKLIST), 2n);
  t.is(out.readUInt16LE(BLOCKLIST + 8), 10);
  t.is(out.readUInt16LE(BLOCKLIST + 10), LOAD_SEGMENT);
  t.true(
    out.subarray(BLOCKLIST - 12, BLOCKLIST).every((b) => b === 0),
    'the next entry terminates the list',
  );
  t.is(out[600], 0xaa);
});

test('GRUB goes into the MBR gap on MBR and into the BIOS boot partition on GPT', (t) => {
  const size = { kind: 'auto' as const };
  const mbr = planDisk({
    boot: 'bios',
    table: 'mbr',
    grubBios: true,
    size,
    minRootBytes: 64 * MiB,
    autoRootBytes: 64 * MiB,
  });
  t.deepEqual(embedArea({ plan: mbr }), { lba: 1, bytes: MiB - 512 });
  const gpt = planDisk({
    boot: 'hybrid',
    table: 'gpt',
    grubBios: true,
    size,
    minRootBytes: 64 * MiB,
    autoRootBytes: 64 * MiB,
  });
  t.deepEqual(embedArea({ plan: gpt }), { lba: 2048, bytes: MiB });
});

test('the GRUB config finds the root by UUID and boots the versioned kernel with the command line', (t) => {
  const cfg = grubConfig({
    rootUuid: UUID,
    kernel,
    cmdline: `root=UUID=${UUID} ro console=ttyS0`,
    title: "app's image",
  });
  t.regex(cfg, /^set timeout=0$/m);
  t.regex(cfg, new RegExp(`search --no-floppy --fs-uuid --set=root ${UUID}`));
  t.regex(cfg, /^ {2}linux \/boot\/vmlinuz-6\.1\.0-10-cloud-amd64 root=UUID=\S+ ro console=ttyS0$/m);
  t.regex(cfg, /^ {2}initrd \/boot\/initrd\.img-6\.1\.0-10-cloud-amd64$/m);
  t.regex(cfg, /menuentry 'app'\\''s image'/);
  t.is(earlyConfig(UUID), `search.fs_uuid ${UUID} root\nset prefix=($root)/boot/grub\n`);
});

test('the extlinux config boots the kernel at once, on the serial port too', (t) => {
  const cfg = extlinuxConfig({ kernel, cmdline: 'root=UUID=x ro', title: 'app' });
  for (const line of [
    'SERIAL 0 115200',
    'DEFAULT linux',
    'TIMEOUT 0',
    `  LINUX ${kernel.kernel}`,
    `  INITRD ${kernel.initrd}`,
    '  APPEND root=UUID=x ro',
  ]) {
    t.true(cfg.split('\n').includes(line), line);
  }
});

test('syslinux MBR code is found for both tables', (t) => {
  if (!existsSync('/usr/lib/syslinux/mbr/mbr.bin')) return t.pass('syslinux-common is not installed');
  t.regex(mbrCodePath('mbr') ?? '', /\/mbr\.bin$/);
  t.regex(mbrCodePath('gpt') ?? '', /\/gptmbr\.bin$/);
});

test('--boot and --bootloader choose the loaders, BIOS first', (t) => {
  t.deepEqual(
    bootloadersFor('bios', 'grub').map((l) => l.id),
    ['grub-bios'],
  );
  t.deepEqual(
    bootloadersFor('bios', 'extlinux').map((l) => l.id),
    ['extlinux'],
  );
  t.deepEqual(
    bootloadersFor('uefi', 'grub').map((l) => l.id),
    ['grub-efi'],
  );
  t.deepEqual(
    bootloadersFor('hybrid', 'grub').map((l) => l.id),
    ['grub-bios', 'grub-efi'],
  );
  t.throws(() => bootloadersFor('uefi', 'extlinux'), { message: /BIOS machines only/ });
  t.throws(() => bootloadersFor('bios', 'lilo' as 'grub'), { message: /grub or extlinux/ });
});

test('the default bootloader is extlinux for BIOS + MBR when the export runs as root with syslinux, GRUB otherwise', (t) => {
  const root = { root: true, hasExtlinux: true };
  const mbr = { boot: 'bios', table: 'mbr' } as const;
  t.is(resolveBootloader('auto', mbr, root), 'extlinux');
  t.is(resolveBootloader('auto', { boot: 'bios', table: 'gpt' }, root), 'grub', 'GPT keeps the BIOS boot partition');
  t.is(resolveBootloader('auto', { boot: 'hybrid', table: 'gpt' }, root), 'grub');
  t.is(resolveBootloader('auto', { boot: 'uefi', table: 'gpt' }, root), 'grub');
  t.is(resolveBootloader('auto', mbr, { root: false, hasExtlinux: true }), 'grub', 'rootless: no loop mount');
  t.is(resolveBootloader('auto', mbr, { root: true, hasExtlinux: false }), 'grub', 'no syslinux on the host');
  t.is(resolveBootloader('grub', mbr, root), 'grub', '--bootloader grub stays GRUB');
  t.is(
    resolveBootloader('extlinux', mbr, { root: false, hasExtlinux: false }),
    'extlinux',
    'an explicit choice is kept',
  );
});

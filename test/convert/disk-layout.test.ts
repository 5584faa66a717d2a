import test from 'ava';
import { DiskSizeError, formatBytes, parseSize, planDisk, type SizeOption } from '../../convert/disk-layout.js';

const MiB = 1 << 20;
const GiB = 1 << 30;

const sizes = test.macro({
  exec(t, text: string, want: SizeOption) {
    t.deepEqual(parseSize(text), want);
  },
  title: (given, text: string) => given ?? `--size ${JSON.stringify(text)} is understood`,
});
test(sizes, 'auto', { kind: 'auto' });
test(sizes, '10G', { kind: 'exact', bytes: 10 * GiB });
test(sizes, '512M', { kind: 'exact', bytes: 512 * MiB });
test(sizes, '1.5GiB', { kind: 'exact', bytes: 1.5 * GiB });
test(sizes, '+1G', { kind: 'plus', bytes: GiB });
test(sizes, '1048576', { kind: 'exact', bytes: MiB });

test('a size that is not one is refused with the forms that work', (t) => {
  const err = t.throws(() => parseSize('ten gigs'));
  t.regex(err?.message ?? '', /not a size/);
});

test('formatBytes prints what --size accepts', (t) => {
  t.is(formatBytes(10 * GiB), '10G');
  t.is(formatBytes(1.25 * GiB + 1), '1.3G');
  t.is(formatBytes(700 * MiB), '700M');
});

const base = { minRootBytes: 300 * MiB, autoRootBytes: 600 * MiB, size: { kind: 'auto' } as SizeOption };

test('BIOS on MBR is one bootable root partition after a 1 MiB gap', (t) => {
  const p = planDisk({ ...base, boot: 'bios', table: 'mbr', grubBios: true });
  t.is(p.layout.partitions.length, 1);
  t.like(p.root, { start: MiB, bootable: true, type: 'linux' });
  t.true(p.root.size >= 600 * MiB);
  t.is(p.layout.diskSize, p.root.start + p.root.size);
});

test('GRUB for BIOS on GPT gets a BIOS boot partition before the root', (t) => {
  const p = planDisk({ ...base, boot: 'bios', table: 'gpt', grubBios: true });
  t.deepEqual(
    p.layout.partitions.map((x) => x.type),
    ['bios-boot', 'linux'],
  );
  t.is(p.biosBoot?.size, MiB);
});

test('extlinux on GPT needs no BIOS boot partition', (t) => {
  const p = planDisk({ ...base, boot: 'bios', table: 'gpt', grubBios: false });
  t.deepEqual(
    p.layout.partitions.map((x) => x.type),
    ['linux'],
  );
});

test('UEFI gets an ESP; hybrid gets the BIOS boot partition and the ESP', (t) => {
  t.deepEqual(
    planDisk({ ...base, boot: 'uefi', table: 'gpt', grubBios: false }).layout.partitions.map((x) => x.type),
    ['esp', 'linux'],
  );
  const h = planDisk({ ...base, boot: 'hybrid', table: 'gpt', grubBios: true });
  t.deepEqual(
    h.layout.partitions.map((x) => x.type),
    ['bios-boot', 'esp', 'linux'],
  );
  t.true(h.root.bootable);
});

test('an exact --size is the disk size', (t) => {
  const p = planDisk({ ...base, size: { kind: 'exact', bytes: 2 * GiB }, boot: 'bios', table: 'mbr', grubBios: true });
  t.is(p.layout.diskSize, 2 * GiB);
});

test('+N adds N to the automatic size', (t) => {
  const auto = planDisk({ ...base, boot: 'bios', table: 'mbr', grubBios: true });
  const plus = planDisk({ ...base, size: { kind: 'plus', bytes: GiB }, boot: 'bios', table: 'mbr', grubBios: true });
  t.is(plus.layout.diskSize - auto.layout.diskSize, GiB);
});

test('a --size too small is an error that names the size needed', (t) => {
  const err = t.throws(
    () => planDisk({ ...base, size: { kind: 'exact', bytes: 100 * MiB }, boot: 'uefi', table: 'gpt', grubBios: false }),
    { instanceOf: DiskSizeError },
  );
  // 1 MiB gap + 32 MiB ESP + 300 MiB root + 1 MiB GPT tail
  t.is(err?.needed, 334 * MiB);
  t.regex(err?.message ?? '', /needs at least 334M/);
  t.regex(err?.hint ?? '', /--size 334M/);
});

import test, { type ExecutionContext } from 'ava';
import { open, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import {
  encodeGpt,
  encodeMbr,
  guidBytes,
  guidString,
  planPartitions,
  writePartitionTable,
  type PartitionSpec,
} from '../../convert/partition.js';
import { InvalidInputError } from '../../sys/errors.js';
import { run } from '../../sys/exec.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const MiB = 1 << 20;
const GiB = 1 << 30;

/** emptyDisk makes a sparse file of `size` bytes in a temp dir removed after the test. */
async function emptyDisk(t: ExecutionContext, size: number, name = 'disk.img'): Promise<string> {
  const dir = await makeTempDir('tsbuild-partition-');
  t.teardown(() => removeDir(dir));
  const path = join(dir, name);
  await writeFile(path, '');
  await truncate(path, size);
  return path;
}

async function sector(path: string, lba: number, count = 1): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(512 * count);
    await fh.read(buf, 0, buf.length, lba * 512);
    return buf;
  } finally {
    await fh.close();
  }
}

interface SfdiskJson {
  partitiontable: {
    label: string;
    id: string;
    partitions: { start: number; size: number; type: string; bootable?: boolean; uuid?: string; name?: string }[];
  };
}

async function sfdiskJson(path: string): Promise<SfdiskJson['partitiontable']> {
  return (JSON.parse((await run(['sfdisk', '--json', path])).stdout) as SfdiskJson).partitiontable;
}

test('an MBR table passes sfdisk --verify and lists the planned partitions in sfdisk, fdisk and partx', async (t) => {
  const disk = await emptyDisk(t, 64 * MiB);
  const layout = planPartitions({
    table: 'mbr',
    diskSize: 64 * MiB,
    diskSignature: 0x1234abcd,
    partitions: [
      { type: 'esp', size: 16 * MiB },
      { type: 'linux', size: 'rest', bootable: true },
    ],
  });
  await writePartitionTable(disk, layout);

  const verify = await run(['sfdisk', '--verify', disk]);
  t.regex(verify.stdout, /No errors detected/);
  t.notRegex(verify.stdout + verify.stderr, /warning|differ|overlap/i);

  const table = await sfdiskJson(disk);
  t.is(table.label, 'dos');
  t.is(table.id, '0x1234abcd');
  t.deepEqual(
    table.partitions.map((p) => ({ start: p.start, size: p.size, type: p.type, bootable: p.bootable ?? false })),
    [
      { start: 2048, size: 32768, type: 'ef', bootable: false },
      { start: 34816, size: 131072 - 34816, type: '83', bootable: true },
    ],
  );
  const fdisk = await run(['fdisk', '-l', disk]);
  t.regex(fdisk.stdout, /Disklabel type: dos/);
  t.regex(fdisk.stdout, /disk\.img2 +\* +34816 +131071 +96256 +47M 83 Linux/);
  const partx = await run(['partx', '--show', '--output', 'NR,START,SECTORS', '--noheadings', disk]);
  t.deepEqual(
    partx.stdout
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/).map(Number)),
    [
      [1, 2048, 32768],
      [2, 34816, 96256],
    ],
  );
});

test('an MBR sector is byte-identical to the one sfdisk writes for the same layout', async (t) => {
  for (const size of [64 * MiB, 20 * GiB]) {
    const ours = await emptyDisk(t, size, 'ours.img');
    const theirs = await emptyDisk(t, size, 'theirs.img');
    const layout = planPartitions({
      table: 'mbr',
      diskSize: size,
      diskSignature: 0xdeadbeef,
      partitions: [
        { type: 'linux', size: 32 * MiB, bootable: true },
        { type: 'esp', size: 'rest' },
      ],
    });
    await writePartitionTable(ours, layout);
    const end = size / 512;
    const script = `label: dos\nlabel-id: 0xdeadbeef\nstart=2048, size=65536, type=83, bootable\nstart=67584, size=${end - 67584}, type=ef\n`;
    await run(['sfdisk', '--quiet', theirs], { input: script });
    t.deepEqual(await sector(ours, 0), await sector(theirs, 0), `disk of ${size} bytes`);
  }
});

test('a GPT table passes sgdisk -v and sgdisk shows the types, GUIDs, names and BIOS-bootable attribute', async (t) => {
  const disk = await emptyDisk(t, 20 * GiB);
  const layout = planPartitions({
    table: 'gpt',
    diskSize: 20 * GiB,
    diskGuid: '5A1D0D6E-3F7B-4C52-9C8E-2F1A3B4C5D6E',
    partitions: [
      { type: 'bios-boot', size: MiB, name: 'bios' },
      { type: 'esp', size: 100 * MiB, name: 'EFI System', uuid: '11111111-2222-4333-8444-555555555555' },
      { type: 'linux', size: 'rest', name: 'root', bootable: true, uuid: '0b3c7f52-4e7e-4b8a-9d35-7f3a5b2c1d00' },
    ],
  });
  await writePartitionTable(disk, layout);

  const verify = await run(['sgdisk', '-v', disk]);
  t.regex(verify.stdout, /No problems found/);
  t.notRegex(verify.stdout, /Caution|Warning|Problem/);
  const print = await run(['sgdisk', '-p', disk]);
  t.regex(print.stdout, /Disk identifier \(GUID\): 5A1D0D6E-3F7B-4C52-9C8E-2F1A3B4C5D6E/);
  t.regex(print.stdout, /First usable sector is 34, last usable sector is 41943006/);
  t.regex(print.stdout, /1 +2048 +4095 +1024\.0 KiB +EF02 +bios/);
  t.regex(print.stdout, /2 +4096 +208895 +100\.0 MiB +EF00 +EFI System/);
  t.regex(print.stdout, /3 +208896 +41940991 +19\.9 GiB +8300 +root/);
  const info = await run(['sgdisk', '-i', '3', disk]);
  t.regex(info.stdout, /Partition GUID code: 0FC63DAF-8483-4772-8E79-3D69D8477DE4 \(Linux filesystem\)/);
  t.regex(info.stdout, /Partition unique GUID: 0B3C7F52-4E7E-4B8A-9D35-7F3A5B2C1D00/);
  t.regex(info.stdout, /Attribute flags: 0000000000000004/);
  const esp = await run(['sgdisk', '-i', '2', disk]);
  t.regex(esp.stdout, /C12A7328-F81F-11D2-BA4B-00A0C93EC93B \(EFI system partition\)/);
  t.regex(esp.stdout, /Attribute flags: 0000000000000000/);
  const bios = await run(['sgdisk', '-i', '1', disk]);
  t.regex(bios.stdout, /21686148-6449-6E6F-744E-656564454649 \(BIOS boot partition\)/);

  const sf = await run(['sfdisk', '--verify', disk]);
  t.regex(sf.stdout, /No errors detected/);
  const table = await sfdiskJson(disk);
  t.is(table.label, 'gpt');
  t.deepEqual(
    table.partitions.map((p) => [p.start, p.size, p.uuid, p.name]),
    [
      [2048, 2048, layout.partitions[0]!.uuid!.toUpperCase(), 'bios'],
      [4096, 204800, '11111111-2222-4333-8444-555555555555', 'EFI System'],
      [208896, 41940991 - 208896 + 1, '0B3C7F52-4E7E-4B8A-9D35-7F3A5B2C1D00', 'root'],
    ],
  );
  const partx = await run(['partx', '--show', '--output', 'NR,START,END,NAME', '--noheadings', disk]);
  t.regex(partx.stdout, /3 +208896 +41940991 +root/);
});

test('a GPT image is byte-identical to the one sgdisk writes for the same layout', async (t) => {
  const size = 2 * GiB;
  const ours = await emptyDisk(t, size, 'ours.img');
  const theirs = await emptyDisk(t, size, 'theirs.img');
  const disk = '9d0e4c1a-6b7f-4e23-8a5d-0c1b2a3f4e5d';
  const uuids = [
    '3b1f6a2c-1d4e-4f50-8a6b-7c8d9e0f1a2b',
    'a0b1c2d3-e4f5-4a6b-8c7d-8e9f0a1b2c3d',
    'f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9',
  ];
  const layout = planPartitions({
    table: 'gpt',
    diskSize: size,
    diskGuid: disk,
    partitions: [
      { type: 'bios-boot', size: MiB, uuid: uuids[0]! },
      { type: 'esp', size: 64 * MiB, name: 'ESP', uuid: uuids[1]! },
      { type: 'linux', size: 'rest', name: 'rööt ✓', uuid: uuids[2]!, bootable: true },
    ],
  });
  await writePartitionTable(ours, layout);
  const last = layout.partitions[2]!;
  await run([
    'sgdisk',
    '-o',
    '-U',
    disk,
    '-n',
    '1:2048:4095',
    '-t',
    '1:EF02',
    '-u',
    `1:${uuids[0]}`,
    '-n',
    '2:4096:135167',
    '-t',
    '2:EF00',
    '-c',
    '2:ESP',
    '-u',
    `2:${uuids[1]}`,
    '-n',
    `3:${last.start / 512}:${(last.start + last.size) / 512 - 1}`,
    '-t',
    '3:8300',
    '-c',
    '3:rööt ✓',
    '-u',
    `3:${uuids[2]}`,
    '-A',
    '3:set:2',
    theirs,
  ]);
  t.deepEqual(await sector(ours, 0, 34), await sector(theirs, 0, 34), 'protective MBR and primary table');
  const n = size / 512;
  t.deepEqual(await sector(ours, n - 33, 33), await sector(theirs, n - 33, 33), 'backup table');
});

test('encodeGpt fills in the header and entry-array CRC32s and mirrors the header at the end of the disk', (t) => {
  const layout = planPartitions({ table: 'gpt', diskSize: 64 * MiB, partitions: [{ type: 'linux', size: 'rest' }] });
  const { primary, backup, protectiveMbr } = encodeGpt(layout);
  const n = BigInt((64 * MiB) / 512);
  t.is(primary.length, 33 * 512);
  t.is(backup.length, 33 * 512);
  const header = primary.subarray(0, 512);
  const entries = primary.subarray(512);
  const backupHeader = backup.subarray(32 * 512);
  t.deepEqual(backup.subarray(0, 32 * 512), entries);
  for (const [h, my, alt, array] of [
    [header, 1n, n - 1n, 2n],
    [backupHeader, n - 1n, 1n, n - 33n],
  ] as const) {
    t.is(h.toString('latin1', 0, 8), 'EFI PART');
    t.is(h.readBigUInt64LE(0x18), my);
    t.is(h.readBigUInt64LE(0x20), alt);
    t.is(h.readBigUInt64LE(0x28), 34n);
    t.is(h.readBigUInt64LE(0x30), n - 34n);
    t.is(h.readBigUInt64LE(0x48), array);
    t.is(h.readUInt32LE(0x58), crc32(entries));
    const copy = Buffer.from(h.subarray(0, 92));
    copy.writeUInt32LE(0, 0x10);
    t.is(h.readUInt32LE(0x10), crc32(copy));
    t.true(h.subarray(92).every((b) => b === 0));
  }
  t.is(guidString(header.subarray(0x38, 0x48)), layout.diskGuid ?? 'missing disk GUID');
  t.is(protectiveMbr[0x1be + 4], 0xee);
  t.is(protectiveMbr.readUInt32LE(0x1be + 8), 1);
  t.is(protectiveMbr.readUInt32LE(0x1be + 12), Number(n) - 1);
  t.is(protectiveMbr.readUInt16BE(0x1fe), 0x55aa);
});

test('GUIDs are stored mixed-endian: the first three fields little-endian, the rest as written', (t) => {
  t.is(guidBytes('0FC63DAF-8483-4772-8E79-3D69D8477DE4').toString('hex'), 'af3dc60f838472478e793d69d8477de4');
  t.is(guidString(guidBytes('C12A7328-F81F-11D2-BA4B-00A0C93EC93B')), 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b');
});

test('encodeMbr keeps bytes 0–439 for boot code and puts the given boot code there', (t) => {
  const layout = planPartitions({
    table: 'mbr',
    diskSize: 16 * MiB,
    diskSignature: 7,
    partitions: [{ type: 'linux', size: 'rest' }],
  });
  t.true(
    encodeMbr(layout)
      .subarray(0, 440)
      .every((b) => b === 0),
  );
  const code = Buffer.alloc(440, 0xcc);
  const mbr = encodeMbr(layout, { bootCode: code });
  t.deepEqual(mbr.subarray(0, 440), code);
  t.is(mbr.readUInt32LE(0x1b8), 7);
  t.throws(() => encodeMbr(layout, { bootCode: Buffer.alloc(441) }), { instanceOf: InvalidInputError });
});

test('writePartitionTable leaves boot code, the embedding gap and partition contents alone unless given boot code', async (t) => {
  const disk = await emptyDisk(t, 32 * MiB);
  const fh = await open(disk, 'r+');
  t.teardown(() => fh.close().catch(() => {}));
  const bootImg = Buffer.alloc(512, 0xab);
  const gap = Buffer.alloc(2047 * 512, 0x5c);
  const contents = Buffer.alloc(MiB, 0x42);
  await fh.write(bootImg, 0, 512, 0);
  await fh.write(gap, 0, gap.length, 512);
  await fh.write(contents, 0, contents.length, MiB);
  const layout = planPartitions({
    table: 'mbr',
    diskSize: 32 * MiB,
    partitions: [{ type: 'linux', size: 'rest', bootable: true }],
  });
  await writePartitionTable(fh.fd, layout);
  const after = await readFile(disk);
  t.deepEqual(after.subarray(0, 440), bootImg.subarray(0, 440), 'boot code kept');
  t.deepEqual(after.subarray(512, MiB), gap, 'embedding gap kept');
  t.deepEqual(after.subarray(MiB, 2 * MiB), contents, 'partition contents kept');
  t.is(after.readUInt16BE(510), 0x55aa);

  await writePartitionTable(fh.fd, layout, { bootCode: Buffer.alloc(440, 0x11) });
  t.true((await sector(disk, 0)).subarray(0, 440).every((b) => b === 0x11));
  await fh.close();
  t.regex((await run(['sfdisk', '--verify', disk])).stdout, /No errors detected/);
});

test('writePartitionTable refuses a file whose size differs from the planned disk', async (t) => {
  const disk = await emptyDisk(t, 32 * MiB);
  const layout = planPartitions({ table: 'gpt', diskSize: 64 * MiB, partitions: [{ type: 'linux', size: 'rest' }] });
  await t.throwsAsync(writePartitionTable(disk, layout), {
    instanceOf: InvalidInputError,
    message: /has 33554432 bytes/,
  });
  const after = await readFile(disk);
  t.true(after.equals(Buffer.alloc(after.length)), 'nothing written');
});

test('planPartitions aligns starts to 1 MiB, rounds sizes up to sectors and ends a rest partition on a MiB boundary', (t) => {
  const layout = planPartitions({
    table: 'gpt',
    diskSize: 100 * MiB,
    partitions: [
      { type: 'esp', size: 1000 },
      { type: 'linux', size: 3 * MiB + 1 },
      { type: 'linux', size: 'rest' },
    ],
  });
  t.deepEqual(
    layout.partitions.map((p) => [p.index, p.start, p.size]),
    [
      [1, MiB, 1024],
      [2, 2 * MiB, 3 * MiB + 512],
      [3, 6 * MiB, 93 * MiB],
    ],
  );
  t.regex(layout.diskGuid ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.not(layout.partitions[0]!.uuid, layout.partitions[1]!.uuid);
});

test('planPartitions honours an explicit start', (t) => {
  const layout = planPartitions({
    table: 'mbr',
    diskSize: 8 * MiB,
    partitions: [{ type: 'linux', start: 63 * 512, size: 'rest' }],
  });
  t.is(layout.partitions[0]!.start, 63 * 512);
  t.is(layout.partitions[0]!.size, 8 * MiB - 63 * 512);
  t.is(typeof layout.diskSignature, 'number');
});

const rejects = test.macro({
  exec(t, opts: { table: 'mbr' | 'gpt'; diskSize: number; partitions: PartitionSpec[] }, message: RegExp) {
    t.throws(() => planPartitions(opts), { instanceOf: InvalidInputError, message });
  },
  title: (what = '') => `planPartitions rejects ${what}`,
});

test(
  'partitions that do not fit, naming the disk size they need',
  rejects,
  {
    table: 'gpt',
    diskSize: 64 * MiB,
    partitions: [
      { type: 'esp', size: 32 * MiB },
      { type: 'linux', size: 32 * MiB },
    ],
  },
  new RegExp(`at least ${65 * MiB + 33 * 512} bytes`),
);
test(
  'a rest partition with no room left',
  rejects,
  {
    table: 'mbr',
    diskSize: 4 * MiB,
    partitions: [
      { type: 'linux', size: 3 * MiB },
      { type: 'linux', size: 'rest' },
    ],
  },
  new RegExp(`at least ${4 * MiB + 512} bytes`),
);
test(
  'a BIOS boot partition in an MBR',
  rejects,
  { table: 'mbr', diskSize: 64 * MiB, partitions: [{ type: 'bios-boot', size: MiB }] },
  /needs a GPT/,
);
test(
  'five partitions in an MBR',
  rejects,
  {
    table: 'mbr',
    diskSize: 64 * MiB,
    partitions: Array.from({ length: 5 }, () => ({ type: 'linux' as const, size: MiB })),
  },
  /at most 4/,
);
test(
  'overlapping partitions',
  rejects,
  {
    table: 'gpt',
    diskSize: 64 * MiB,
    partitions: [
      { type: 'linux', size: 4 * MiB },
      { type: 'linux', start: 2 * MiB, size: MiB },
    ],
  },
  /overlaps partition 1/,
);
test(
  'a start inside the GPT',
  rejects,
  { table: 'gpt', diskSize: 64 * MiB, partitions: [{ type: 'linux', start: 16 * 512, size: MiB }] },
  /inside the partition table/,
);
test(
  'a rest partition that is not the last',
  rejects,
  {
    table: 'gpt',
    diskSize: 64 * MiB,
    partitions: [
      { type: 'linux', size: 'rest' },
      { type: 'linux', size: MiB },
    ],
  },
  /only the last/,
);
test(
  'a GPT name longer than 36 UTF-16 units',
  rejects,
  { table: 'gpt', diskSize: 64 * MiB, partitions: [{ type: 'linux', size: MiB, name: 'x'.repeat(37) }] },
  /36 UTF-16/,
);
test(
  'a malformed partition GUID',
  rejects,
  { table: 'gpt', diskSize: 64 * MiB, partitions: [{ type: 'linux', size: MiB, uuid: 'not-a-guid' }] },
  /not a GUID/,
);
test(
  'a disk size that is not whole sectors',
  rejects,
  { table: 'mbr', diskSize: 64 * MiB + 1, partitions: [] },
  /multiple of 512/,
);
test(
  'an MBR partition beyond 2 TiB',
  rejects,
  { table: 'mbr', diskSize: 4 * 1024 * GiB, partitions: [{ type: 'linux', size: 'rest' }] },
  /2 TiB/,
);

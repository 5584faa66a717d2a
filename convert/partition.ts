// MBR and GPT partition tables as bytes: plan aligned partitions, encode the tables, write them into a disk image.
// Byte layouts: reference/converters.md §5.2 (MBR) and §5.3 (GPT). Pure byte work: no root, no loop devices.
import { randomBytes, randomUUID } from 'node:crypto';
import { fstat, write } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { InvalidInputError, wrap } from '../sys/errors.js';

export type PartitionType = 'linux' | 'esp' | 'bios-boot';

export interface PartitionSpec {
  name?: string;
  type: PartitionType;
  /** bytes from the start of the disk; default: the end of the previous partition rounded up to 1 MiB */
  start?: number;
  /** bytes (rounded up to whole 512-byte sectors), or 'rest' for everything up to the end (last partition only) */
  size: number | 'rest';
  /** MBR: active flag 0x80; GPT: attribute bit 2 (legacy BIOS bootable) */
  bootable?: boolean;
  /** GPT partition GUID; random if absent */
  uuid?: string;
}

export interface PlannedPartition {
  /** 1-based partition number (sda1 = 1) */
  index: number;
  type: PartitionType;
  /** bytes from the start of the disk, a multiple of 512 */
  start: number;
  /** bytes, a multiple of 512 */
  size: number;
  bootable: boolean;
  /** GPT partition GUID (lower case); absent for MBR */
  uuid?: string;
  name?: string;
}

export interface PartitionLayout {
  table: 'mbr' | 'gpt';
  /** bytes, a multiple of 512; the table (the GPT backup in particular) is only valid for exactly this size */
  diskSize: number;
  /** GPT disk GUID (lower case) */
  diskGuid?: string;
  /** MBR disk signature (Linux PTUUID, PARTUUID=<sig>-0N) */
  diskSignature?: number;
  partitions: PlannedPartition[];
}

export const SECTOR = 512;
export const ALIGNMENT = 1 << 20;
/** GPT_ENTRIES × GPT_ENTRY_SIZE = 16 KiB = 32 sectors of partition entries, after the header sector */
const GPT_ENTRIES = 128;
const GPT_ENTRY_SIZE = 128;
const GPT_ARRAY_SECTORS = (GPT_ENTRIES * GPT_ENTRY_SIZE) / SECTOR;
/** sectors a GPT reserves at each end beyond LBA 0: header + entry array (33) */
const GPT_TABLE_SECTORS = 1 + GPT_ARRAY_SECTORS;
const MBR_MAX_SECTORS = 0xffffffff;

const MBR_TYPE: Record<PartitionType, number | undefined> = { linux: 0x83, esp: 0xef, 'bios-boot': undefined };

/** GPT partition type GUIDs (UEFI spec, Discoverable Partitions Specification). */
export const GPT_TYPE: Record<PartitionType, string> = {
  linux: '0fc63daf-8483-4772-8e79-3d69d8477de4',
  esp: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b',
  'bios-boot': '21686148-6449-6e6f-744e-656564454649',
};

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * planPartitions places partitions on a disk of `diskSize` bytes: each starts at its given `start` or at the end of
 * the previous one rounded up to 1 MiB, sizes are rounded up to whole sectors, and 'rest' takes everything up to the
 * last 1 MiB boundary before the end of the usable space (the last usable sector when that boundary is too early).
 * Missing GPT GUIDs and the MBR disk signature are made up at random. Throws InvalidInputError (naming the disk size
 * needed) when the partitions do not fit, overlap, or do not suit the table type.
 */
export function planPartitions(opts: {
  table: 'mbr' | 'gpt';
  diskSize: number;
  partitions: PartitionSpec[];
  diskGuid?: string;
  diskSignature?: number;
}): PartitionLayout {
  const { table, diskSize } = opts;
  if (table !== 'mbr' && table !== 'gpt')
    throw new InvalidInputError(`unknown partition table type ${JSON.stringify(table)}: use mbr or gpt`);
  if (!Number.isSafeInteger(diskSize) || diskSize <= 0 || diskSize % SECTOR !== 0) {
    throw new InvalidInputError(`disk size ${diskSize} is not a positive multiple of ${SECTOR} bytes`);
  }
  const maxEntries = table === 'mbr' ? 4 : GPT_ENTRIES;
  if (opts.partitions.length > maxEntries) {
    throw new InvalidInputError(
      `${opts.partitions.length} partitions do not fit in a ${table.toUpperCase()} table (at most ${maxEntries})`,
    );
  }
  const sectors = diskSize / SECTOR;
  // first and last usable sectors (inclusive), and what the table keeps at the end of the disk
  const firstUsable = table === 'gpt' ? 1 + GPT_TABLE_SECTORS : 1;
  const tailSectors = table === 'gpt' ? GPT_TABLE_SECTORS : 0;
  const lastUsable = sectors - 1 - tailSectors;

  const planned: PlannedPartition[] = [];
  let cursor = ALIGNMENT / SECTOR; // next free sector, before alignment
  let restIndex = -1;
  opts.partitions.forEach((spec, i) => {
    const index = i + 1;
    const what = `partition ${index}${spec.name ? ` (${spec.name})` : ''}`;
    if (!(spec.type in GPT_TYPE)) throw new InvalidInputError(`${what}: unknown type ${JSON.stringify(spec.type)}`);
    if (table === 'mbr' && MBR_TYPE[spec.type] === undefined) {
      throw new InvalidInputError(
        `${what}: a ${spec.type} partition needs a GPT table`,
        'use table gpt, or drop the partition',
      );
    }
    let startSector: number;
    if (spec.start === undefined) {
      startSector = alignUp(cursor, ALIGNMENT / SECTOR);
    } else {
      if (!Number.isSafeInteger(spec.start) || spec.start % SECTOR !== 0) {
        throw new InvalidInputError(`${what}: start ${spec.start} is not a multiple of ${SECTOR} bytes`);
      }
      startSector = spec.start / SECTOR;
      if (startSector < firstUsable) {
        throw new InvalidInputError(
          `${what}: start ${spec.start} is inside the partition table (the first usable byte is ${firstUsable * SECTOR})`,
        );
      }
      if (startSector < cursor && planned.length > 0) {
        throw new InvalidInputError(
          `${what}: start ${spec.start} overlaps partition ${index - 1}, which ends at byte ${cursor * SECTOR}`,
        );
      }
    }
    let sizeSectors: number;
    if (spec.size === 'rest') {
      if (i !== opts.partitions.length - 1)
        throw new InvalidInputError(`${what}: only the last partition can have size 'rest'`);
      restIndex = i;
      // end on a 1 MiB boundary too when that leaves something (partitioning tools warn about unaligned ends)
      const alignedEnd = Math.floor((lastUsable + 1) / (ALIGNMENT / SECTOR)) * (ALIGNMENT / SECTOR);
      sizeSectors = (alignedEnd > startSector ? alignedEnd : lastUsable + 1) - startSector;
    } else {
      if (!Number.isSafeInteger(spec.size) || spec.size <= 0)
        throw new InvalidInputError(`${what}: size ${spec.size} is not a positive number of bytes`);
      sizeSectors = Math.ceil(spec.size / SECTOR);
    }
    if (spec.name !== undefined && table === 'gpt' && utf16Units(spec.name) > 36) {
      throw new InvalidInputError(`${what}: GPT names hold at most 36 UTF-16 code units`);
    }
    if (spec.uuid !== undefined && !GUID_RE.test(spec.uuid))
      throw new InvalidInputError(`${what}: ${JSON.stringify(spec.uuid)} is not a GUID`);
    const p: PlannedPartition = {
      index,
      type: spec.type,
      start: startSector * SECTOR,
      size: sizeSectors * SECTOR,
      bootable: spec.bootable === true,
    };
    if (table === 'gpt') p.uuid = (spec.uuid ?? randomUUID()).toLowerCase();
    if (spec.name !== undefined) p.name = spec.name;
    planned.push(p);
    cursor = startSector + Math.max(sizeSectors, 0);
  });

  // the disk this plan needs: the end of the last partition (a 'rest' partition: at least one sector) plus the tail
  const needSectors = (restIndex >= 0 ? planned[restIndex]!.start / SECTOR + 1 : cursor) + tailSectors;
  if (needSectors > sectors) {
    throw new InvalidInputError(
      `the partitions need a disk of at least ${needSectors * SECTOR} bytes (${humanSize(needSectors * SECTOR)}); the disk has ${diskSize}`,
    );
  }
  if (table === 'mbr') {
    for (const p of planned) {
      if (p.start / SECTOR > MBR_MAX_SECTORS || p.size / SECTOR > MBR_MAX_SECTORS) {
        throw new InvalidInputError(`partition ${p.index} lies beyond the 2 TiB an MBR can address`, 'use table gpt');
      }
    }
  }

  const layout: PartitionLayout = { table, diskSize, partitions: planned };
  if (table === 'gpt') {
    if (opts.diskGuid !== undefined && !GUID_RE.test(opts.diskGuid))
      throw new InvalidInputError(`disk GUID ${JSON.stringify(opts.diskGuid)} is not a GUID`);
    layout.diskGuid = (opts.diskGuid ?? randomUUID()).toLowerCase();
  } else {
    if (
      opts.diskSignature !== undefined &&
      !(Number.isInteger(opts.diskSignature) && opts.diskSignature >= 0 && opts.diskSignature <= 0xffffffff)
    ) {
      throw new InvalidInputError(`disk signature ${opts.diskSignature} is not a 32-bit unsigned number`);
    }
    layout.diskSignature = opts.diskSignature ?? randomSignature();
  }
  return layout;
}

/**
 * encodeMbr returns the 512-byte sector 0: boot code (bytes 0–439, zero unless given), disk signature, four primary
 * entries and 0x55AA. For a GPT layout it is the protective MBR (one 0xEE entry covering the disk).
 */
export function encodeMbr(layout: PartitionLayout, opts: { bootCode?: Uint8Array } = {}): Buffer {
  const buf = Buffer.alloc(SECTOR);
  if (opts.bootCode) {
    if (opts.bootCode.length > 440)
      throw new InvalidInputError(`boot code has ${opts.bootCode.length} bytes; the MBR has room for 440`);
    buf.set(opts.bootCode, 0);
  }
  buf.writeUInt32LE(layout.table === 'mbr' ? (layout.diskSignature ?? 0) >>> 0 : 0, 0x1b8);
  const sectors = layout.diskSize / SECTOR;
  if (layout.table === 'gpt') {
    const size = Math.min(sectors - 1, MBR_MAX_SECTORS);
    const e = 0x1be;
    buf[e] = 0x00;
    chs(1).copy(buf, e + 1);
    buf[e + 4] = 0xee;
    (size >= CHS_MAX_SECTORS ? Buffer.from([0xff, 0xff, 0xff]) : chs(size)).copy(buf, e + 5);
    buf.writeUInt32LE(1, e + 8);
    buf.writeUInt32LE(size, e + 12);
  } else {
    if (layout.partitions.length > 4)
      throw new InvalidInputError(`${layout.partitions.length} partitions do not fit in an MBR (at most 4)`);
    layout.partitions.forEach((p, i) => {
      const type = MBR_TYPE[p.type];
      if (type === undefined)
        throw new InvalidInputError(`partition ${p.index}: a ${p.type} partition needs a GPT table`);
      const first = p.start / SECTOR;
      const count = p.size / SECTOR;
      const e = 0x1be + 16 * i;
      buf[e] = p.bootable ? 0x80 : 0x00;
      chs(first).copy(buf, e + 1);
      buf[e + 4] = type;
      chs(first + count - 1).copy(buf, e + 5);
      buf.writeUInt32LE(first, e + 8);
      buf.writeUInt32LE(count, e + 12);
    });
  }
  buf[0x1fe] = 0x55;
  buf[0x1ff] = 0xaa;
  return buf;
}

/**
 * encodeGpt returns the primary table (header + entry array: LBA 1–33), the backup table (entry array + header: the
 * last 33 LBAs) and the protective MBR (LBA 0, no boot code), with the CRC32s of headers and entry arrays filled in.
 */
export function encodeGpt(layout: PartitionLayout): { primary: Buffer; backup: Buffer; protectiveMbr: Buffer } {
  if (layout.table !== 'gpt') throw new InvalidInputError('encodeGpt needs a gpt layout');
  const sectors = layout.diskSize / SECTOR;
  if (sectors < 1 + 2 * GPT_TABLE_SECTORS + 1)
    throw new InvalidInputError(`a GPT disk needs at least ${(2 + 2 * GPT_TABLE_SECTORS) * SECTOR} bytes`);
  if (layout.partitions.length > GPT_ENTRIES)
    throw new InvalidInputError(`${layout.partitions.length} partitions do not fit in a GPT (at most ${GPT_ENTRIES})`);
  const entries = Buffer.alloc(GPT_ENTRIES * GPT_ENTRY_SIZE);
  for (const p of layout.partitions) {
    const e = (p.index - 1) * GPT_ENTRY_SIZE;
    if (p.index < 1 || p.index > GPT_ENTRIES) throw new InvalidInputError(`partition index ${p.index} is out of range`);
    guidBytes(GPT_TYPE[p.type]).copy(entries, e);
    guidBytes(p.uuid ?? randomUUID()).copy(entries, e + 0x10);
    entries.writeBigUInt64LE(BigInt(p.start / SECTOR), e + 0x20);
    entries.writeBigUInt64LE(BigInt((p.start + p.size) / SECTOR - 1), e + 0x28);
    entries.writeBigUInt64LE(p.bootable ? 1n << 2n : 0n, e + 0x30);
    if (p.name) {
      const name = Buffer.from(p.name, 'utf16le');
      if (name.length > 72)
        throw new InvalidInputError(`partition ${p.index}: GPT names hold at most 36 UTF-16 code units`);
      name.copy(entries, e + 0x38);
    }
  }
  const entriesCrc = crc32(entries);
  const diskGuid = guidBytes(layout.diskGuid ?? randomUUID());
  const header = (myLba: number, altLba: number, entriesLba: number): Buffer => {
    const h = Buffer.alloc(SECTOR);
    h.write('EFI PART', 0, 'latin1');
    h.writeUInt32LE(0x00010000, 0x08);
    h.writeUInt32LE(92, 0x0c);
    h.writeBigUInt64LE(BigInt(myLba), 0x18);
    h.writeBigUInt64LE(BigInt(altLba), 0x20);
    h.writeBigUInt64LE(BigInt(1 + GPT_TABLE_SECTORS), 0x28);
    h.writeBigUInt64LE(BigInt(sectors - 1 - GPT_TABLE_SECTORS), 0x30);
    diskGuid.copy(h, 0x38);
    h.writeBigUInt64LE(BigInt(entriesLba), 0x48);
    h.writeUInt32LE(GPT_ENTRIES, 0x50);
    h.writeUInt32LE(GPT_ENTRY_SIZE, 0x54);
    h.writeUInt32LE(entriesCrc, 0x58);
    h.writeUInt32LE(crc32(h.subarray(0, 92)), 0x10);
    return h;
  };
  const last = sectors - 1;
  const primary = Buffer.concat([header(1, last, 2), entries]);
  const backup = Buffer.concat([entries, header(last, 1, last - GPT_ARRAY_SECTORS)]);
  return { primary, backup, protectiveMbr: encodeMbr(layout) };
}

/**
 * writePartitionTable writes `layout`'s table into an existing disk image of exactly `layout.diskSize` bytes (a path
 * or an open fd, which stays open) with positioned writes: bytes 440–511 of sector 0 (all of 0–511 when `bootCode`
 * is given, so boot code written earlier survives), and for GPT the primary and backup tables. Partition contents,
 * the gap after sector 0 (GRUB's embedding area) and any older table of the other kind are left untouched. Throws
 * InvalidInputError when the file has another size; a failed write can leave a partly written table.
 */
export async function writePartitionTable(
  file: string | number,
  layout: PartitionLayout,
  opts: { bootCode?: Uint8Array } = {},
): Promise<void> {
  const label = typeof file === 'number' ? `fd ${file}` : file;
  const mbr = encodeMbr(layout, opts);
  const gpt = layout.table === 'gpt' ? encodeGpt(layout) : undefined;
  let fh: FileHandle | undefined;
  try {
    const fd = typeof file === 'number' ? file : (fh = await open(file, 'r+')).fd;
    const st = await promisify(fstat)(fd);
    if (st.isFile() && st.size !== layout.diskSize) {
      throw new InvalidInputError(
        `${label} has ${st.size} bytes but the partition table is for a disk of ${layout.diskSize}`,
        'create the image at its final size first (truncate) and plan for that size',
      );
    }
    const pwrite = async (buf: Buffer, pos: number): Promise<void> => {
      const { bytesWritten } = await promisify(write)(fd, buf, 0, buf.length, pos);
      if (bytesWritten !== buf.length) throw new Error(`short write at byte ${pos}`);
    };
    if (opts.bootCode) await pwrite(mbr, 0);
    else await pwrite(mbr.subarray(440), 440);
    if (gpt) {
      await pwrite(gpt.primary, SECTOR);
      await pwrite(gpt.backup, layout.diskSize - gpt.backup.length);
    }
  } catch (err) {
    if (err instanceof InvalidInputError) throw err;
    throw wrap(`writing the ${layout.table.toUpperCase()} partition table to ${label}`, err);
  } finally {
    await fh?.close();
  }
}

/** guidBytes encodes a textual GUID the GPT way: the first three fields little-endian, the last two as written. */
export function guidBytes(guid: string): Buffer {
  if (!GUID_RE.test(guid)) throw new InvalidInputError(`${JSON.stringify(guid)} is not a GUID`);
  const hex = guid.replace(/-/g, '');
  const b = Buffer.from(hex, 'hex');
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  return b;
}

/** guidString decodes 16 GPT-encoded bytes back to the lower-case textual GUID. */
export function guidString(bytes: Uint8Array): string {
  const b = Buffer.from(bytes.subarray(0, 16));
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// CHS with the geometry every modern tool assumes (255 heads, 63 sectors per track); past cylinder 1023 the
// conventional "too big" value 1023/254/63 (FE FF FF) is stored and loaders use the LBA fields.
const HEADS = 255;
const SECTORS_PER_TRACK = 63;
const CHS_MAX_SECTORS = 1024 * HEADS * SECTORS_PER_TRACK;
function chs(lba: number): Buffer {
  if (lba >= CHS_MAX_SECTORS) return Buffer.from([0xfe, 0xff, 0xff]);
  const cyl = Math.floor(lba / (HEADS * SECTORS_PER_TRACK));
  const head = Math.floor(lba / SECTORS_PER_TRACK) % HEADS;
  const sector = (lba % SECTORS_PER_TRACK) + 1;
  return Buffer.from([head, ((cyl >> 2) & 0xc0) | sector, cyl & 0xff]);
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

function utf16Units(s: string): number {
  return s.length; // JS strings are UTF-16: surrogate pairs count as two units, as on disk
}

function randomSignature(): number {
  for (;;) {
    const n = randomBytes(4).readUInt32LE(0);
    if (n !== 0) return n;
  }
}

function humanSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

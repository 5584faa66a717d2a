// How big the disk is and which partitions it has, from --size, --partition and --boot. Pure arithmetic over
// convert/partition.ts: no files are touched here.
import { InvalidInputError, TsbuildError } from '../sys/errors.js';
import {
  ALIGNMENT,
  planPartitions,
  type PartitionLayout,
  type PartitionSpec,
  type PlannedPartition,
} from './partition.js';

export type BootMode = 'bios' | 'uefi' | 'hybrid';
export type TableType = 'mbr' | 'gpt';

/** SizeOption is --size: `auto`, an exact disk size, or auto plus some bytes. */
export type SizeOption = { kind: 'auto' } | { kind: 'exact'; bytes: number } | { kind: 'plus'; bytes: number };

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** parseSize reads --size: `auto`, `10G`, `512M`, `1.5G`, a byte count, or `+1G` (auto plus 1 GiB); binary units. */
export function parseSize(text: string): SizeOption {
  const s = text.trim();
  if (s === '' || s === 'auto') return { kind: 'auto' };
  const m = /^(\+)?(\d+(?:\.\d+)?)\s*([kmgtb]?)(?:i?b)?$/i.exec(s);
  const unit = UNITS[(m?.[3] ?? '').toUpperCase()];
  if (!m || unit === undefined)
    throw new InvalidInputError(
      `--size ${JSON.stringify(text)} is not a size`,
      'use auto, a size such as 10G or 512M, or +1G for auto plus 1 GiB',
    );
  const bytes = Math.ceil(Number(m[2]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes <= 0)
    throw new InvalidInputError(`--size ${JSON.stringify(text)} is out of range`);
  return m[1] ? { kind: 'plus', bytes } : { kind: 'exact', bytes };
}

/** formatBytes prints a size the way --size accepts it (binary units, one decimal at most). */
export function formatBytes(n: number): string {
  const units = ['B', 'K', 'M', 'G', 'T'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const text = Number.isInteger(v) ? String(v) : (Math.ceil(v * 10) / 10).toFixed(1);
  return `${text}${units[i]}`;
}

/** DiskSizeError: --size is smaller than what the files need. */
export class DiskSizeError extends TsbuildError {
  constructor(
    readonly requested: number,
    readonly needed: number,
  ) {
    super(
      'E_SIZE_TOO_SMALL',
      `--size ${formatBytes(requested)} is too small: the disk needs at least ${formatBytes(needed)} (${needed} bytes)`,
      {
        hint: `use --size ${formatBytes(needed)} or more, or --size auto`,
      },
    );
  }
}

/** ESP_BYTES is the size of the EFI system partition: it holds only GRUB's BOOTX64.EFI (a few MiB). */
export const ESP_BYTES = 32 << 20;
/** BIOS_BOOT_BYTES is the GPT BIOS boot partition that holds GRUB's core.img. */
export const BIOS_BOOT_BYTES = 1 << 20;

/** DiskPlan is the partition layout plus the partitions the later steps write into. */
export interface DiskPlan {
  layout: PartitionLayout;
  root: PlannedPartition;
  esp?: PlannedPartition;
  biosBoot?: PlannedPartition;
}

/** defaultTable is the partition table a boot mode gets without --partition: MBR for BIOS, GPT otherwise. */
export function defaultTable(boot: BootMode): TableType {
  return boot === 'bios' ? 'mbr' : 'gpt';
}

/**
 * partitionSpecs lists the partitions for a boot mode and table, root last (size 'rest'). BIOS on GPT gets a BIOS
 * boot partition when GRUB embeds its core.img there; UEFI gets an ESP; the root partition carries the bootable
 * flag (MBR active / GPT legacy-BIOS-bootable) for BIOS loaders that look for it.
 */
export function partitionSpecs(opts: { boot: BootMode; table: TableType; grubBios: boolean }): PartitionSpec[] {
  const { boot, table } = opts;
  const specs: PartitionSpec[] = [];
  const bios = boot === 'bios' || boot === 'hybrid';
  const uefi = boot === 'uefi' || boot === 'hybrid';
  if (bios && table === 'gpt' && opts.grubBios)
    specs.push({ name: 'bios-boot', type: 'bios-boot', size: BIOS_BOOT_BYTES });
  if (uefi) specs.push({ name: 'esp', type: 'esp', size: ESP_BYTES });
  specs.push({ name: 'root', type: 'linux', size: 'rest', bootable: bios });
  return specs;
}

/**
 * planDisk lays out a disk whose root partition holds at least `minRootBytes` (the smallest filesystem that fits
 * the files) — or `autoRootBytes` with --size auto (+N adds N to that). An exact --size that leaves the root
 * partition smaller than `minRootBytes` throws DiskSizeError naming the disk size needed.
 */
export function planDisk(opts: {
  boot: BootMode;
  table: TableType;
  grubBios: boolean;
  size: SizeOption;
  minRootBytes: number;
  autoRootBytes: number;
  diskSignature?: number;
  diskGuid?: string;
}): DiskPlan {
  const specs = partitionSpecs(opts);
  const diskFor = (rootBytes: number): number => {
    // every partition starts on a MiB boundary; GPT keeps 33 sectors at the end, which costs one more MiB
    let bytes = ALIGNMENT;
    for (const s of specs)
      bytes += typeof s.size === 'number' ? alignUp(s.size, ALIGNMENT) : alignUp(rootBytes, ALIGNMENT);
    return bytes + (opts.table === 'gpt' ? ALIGNMENT : 0);
  };
  const needed = diskFor(opts.minRootBytes);
  let diskSize: number;
  switch (opts.size.kind) {
    case 'auto':
      diskSize = diskFor(Math.max(opts.autoRootBytes, opts.minRootBytes));
      break;
    case 'plus':
      diskSize = diskFor(Math.max(opts.autoRootBytes, opts.minRootBytes)) + alignUp(opts.size.bytes, ALIGNMENT);
      break;
    case 'exact':
      diskSize = Math.floor(opts.size.bytes / 512) * 512;
      if (diskSize < needed) throw new DiskSizeError(opts.size.bytes, needed);
      break;
  }
  const layout = planPartitions({
    table: opts.table,
    diskSize,
    partitions: specs,
    ...(opts.diskSignature === undefined ? {} : { diskSignature: opts.diskSignature }),
    ...(opts.diskGuid === undefined ? {} : { diskGuid: opts.diskGuid }),
  });
  const byType = (t: string): PlannedPartition | undefined => layout.partitions.find((p) => p.type === t);
  const root = byType('linux') as PlannedPartition;
  if (root.size < opts.minRootBytes) throw new DiskSizeError(diskSize, needed);
  const plan: DiskPlan = { layout, root };
  const esp = byType('esp');
  const biosBoot = byType('bios-boot');
  if (esp) plan.esp = esp;
  if (biosBoot) plan.biosBoot = biosBoot;
  return plan;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

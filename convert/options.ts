// What `tsbuild export` takes and gives: the options of exportImage (convert/recipe.ts), the names of its steps,
// the progress events it emits and the result it returns. Types only.
import type { Store } from '../layers/store/store.js';
import type { Host } from '../sys/host.js';
import type { BootloaderChoice } from './bootloader/index.js';
import type { BootMode, DiskPlan, TableType } from './disk-layout.js';
import type { Distro } from './distro.js';
import type { OutputFormat } from './formats.js';
import type { KernelMode, KernelResult } from './kernel/index.js';
import type { InitSystem, ServiceSpec } from './service.js';

export interface ExportOptions {
  store: Store;
  /** default: defaultHost(); what it may do (caps) decides the strategies: snapshots, owners, extlinux, installs */
  host?: Host;
  /** an image name, digest or ID prefix in the store */
  image: string;
  output: string;
  /** default: from the output's extension */
  format?: OutputFormat;
  /** auto (default), 10G, +1G */
  size?: string;
  /** default: mbr for bios, gpt for uefi and hybrid */
  partition?: TableType;
  boot?: BootMode;
  bootloader?: BootloaderChoice;
  kernel?: KernelMode;
  /** appended to the kernel command line */
  cmdline?: string;
  /** default: the image's repository name */
  hostname?: string;
  /** plain text; stored hashed (SHA-512 crypt) */
  rootPassword?: string;
  /** OpenSSH public key lines for root */
  sshKeys?: string[];
  network?: 'dhcp' | 'none';
  service?: 'auto' | 'none';
  /** the root filesystem's UUID (validated: 8-4-4-4-12 hex digits); default: derived with SOURCE_DATE_EPOCH, else random */
  uuid?: string;
  /**
   * qcow2: clusters compressed with zstd (the default: QEMU ≥ 5.1 reads them), deflate (`true` or 'deflate': what
   * `qemu-img convert -c` writes, for older readers) or not at all (`false` or 'none'). vmdk: `true` makes a
   * streamOptimized (compressed) VMDK. The other formats ignore it.
   */
  compress?: boolean | 'zstd' | 'deflate' | 'none';
  /** plan only: flatten, detect the distribution and the kernel, report the commands, write nothing */
  dryRun?: boolean;
  onEvent?: (e: ExportEvent) => void;
  signal?: AbortSignal;
}

export type StepName =
  | 'check'
  | 'flatten'
  | 'distro'
  | 'kernel'
  | 'system-files'
  | 'service'
  | 'bootloader-config'
  | 'layout'
  | 'filesystem'
  | 'owners'
  | 'bootloader'
  | 'partition-table'
  | 'output';

export type ExportEvent =
  | { type: 'step'; step: StepName; message: string }
  | { type: 'log'; step: StepName; line: string }
  | { type: 'warn'; code: string; message: string };

export interface ExportResult {
  output: string;
  format: OutputFormat;
  /** bytes of the output file */
  bytes: number;
  /** the disk's size as the VM sees it (0 for tar) */
  diskSize: number;
  rootUuid: string;
  distro?: Distro;
  init?: InitSystem;
  kernel: KernelResult;
  cmdline: string;
  layout?: DiskPlan;
  service?: ServiceSpec;
  /** why no service was made (--service none, or nothing to run) */
  serviceSkipped?: string;
  /** seconds per step */
  timings: Partial<Record<StepName, number>>;
  dryRun?: { steps: StepName[]; commands: string[][] };
}

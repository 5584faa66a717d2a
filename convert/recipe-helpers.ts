// Small pieces of the export recipe (convert/recipe.ts): the kernel command line, the up-front check that every
// host tool and bootloader file the options need is there (all missing ones reported together), and the error of an
// interrupted export.
import { existsSync } from 'node:fs';
import { MissingToolsError, TsbuildError } from '../sys/errors.js';
import { which } from '../sys/exec.js';
import type { Bootloader } from './bootloader/index.js';
import type { Distro } from './distro.js';
import { EXT4_TOOLS, minFsBytes, type FilesystemFullError, type TreeUsage } from './ext4.js';
import { formatTools, type OutputFormat } from './formats.js';
import { OWNERS_TOOLS } from './owners.js';

/** kernelCmdline: root by UUID, eth0 naming, the serial console last (so /dev/console is ttyS0), then the user's extras. */
export function kernelCmdline(rootUuid: string, distro: Distro | undefined, extra?: string): string {
  const words = [`root=UUID=${rootUuid}`];
  if (distro?.family === 'alpine') words.push('rootfstype=ext4', 'modules=ext4,virtio_blk,virtio_pci,sd-mod');
  else words.push('ro', 'rootfstype=ext4');
  words.push('net.ifnames=0', 'console=tty0', 'console=ttyS0,115200n8');
  if (extra?.trim()) words.push(extra.trim());
  return words.join(' ');
}

/** checkTools reports every missing host tool (and bootloader file) at once, before any work. */
export function checkTools(c: {
  format: OutputFormat;
  loaders: Bootloader[];
  root: boolean;
  password: boolean;
  dryRun: boolean;
}): void {
  const tools: Record<string, string> = {};
  const files: Record<string, string> = {};
  if (c.format !== 'tar') Object.assign(tools, EXT4_TOOLS);
  if (c.format !== 'tar' && !c.root) Object.assign(tools, OWNERS_TOOLS);
  if (c.password) tools.openssl = 'openssl';
  Object.assign(tools, formatTools(c.format));
  for (const l of c.loaders) {
    Object.assign(tools, l.tools);
    Object.assign(files, l.files);
    if (l.needsRoot && !c.root && !c.dryRun) {
      throw new TsbuildError('E_NEEDS_ROOT', `--bootloader ${l.id} needs root (it mounts the filesystem to install)`, {
        hint: 'use --bootloader grub, which installs without root',
      });
    }
  }
  const missing = Object.keys(tools).filter((t) => which(t) === undefined);
  const missingFiles = Object.keys(files).filter((f) => !existsSync(f));
  if (missing.length || missingFiles.length) {
    const pkgs = [
      ...new Set([...missing.map((t) => tools[t] as string), ...missingFiles.map((f) => files[f] as string)]),
    ];
    throw new MissingToolsError([...missing, ...missingFiles], pkgs);
  }
}

/** ExportInterruptedError: SIGINT/SIGTERM (or an abort) stopped the export; nothing was written at the output. */
export class ExportInterruptedError extends TsbuildError {
  constructor(output: string, cause: unknown) {
    super('E_INTERRUPTED', `export interrupted; ${output} was not written`, { cause });
  }
}

/** sizeTooSmall is the error of a tree that did not fit in the root partition of `rootBytes`. */
export function sizeTooSmall(err: FilesystemFullError, rootBytes: number, usage: TreeUsage): TsbuildError {
  return new TsbuildError(
    'E_SIZE_TOO_SMALL',
    `the files do not fit in the ${Math.round(rootBytes / (1 << 20))} MiB root partition`,
    {
      cause: err,
      hint: `use a bigger --size (the estimate was ${Math.round(minFsBytes(usage) / (1 << 20))} MiB of filesystem), or --size auto`,
    },
  );
}

import { readFileSync } from 'node:fs';
import { InvalidInputError } from '../../sys/errors.js';
import { parseKernelFlag } from '../../convert/kernel/index.js';
import { parseUuid } from '../../convert/identity.js';
import { exportImage, type ExportOptions } from '../../convert/recipe.js';
import { readSshKeys } from '../../convert/system-files.js';
import { type GlobalFlags, list, openStore, out } from '../common.js';
import { humanSize, stderrProgress } from '../progress.js';

interface ExportFlags extends GlobalFlags {
  output?: string;
  o?: string;
  format?: string;
  size?: string;
  partition?: string;
  boot?: string;
  bootloader?: string;
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  hostname?: string;
  'root-password-file'?: string;
  'ssh-key'?: unknown;
  network?: string;
  service?: string;
  compress?: string;
  uuid?: unknown;
}

const SIGNALS: Array<[NodeJS.Signals, number]> = [
  ['SIGINT', 130],
  ['SIGTERM', 143],
];

export default async function exportCmd(name: string, flags: ExportFlags): Promise<void> {
  const output = flags.output ?? flags.o;
  if (!output || typeof output !== 'string')
    throw new InvalidInputError('export needs an output file: -o FILE', 'e.g. tsbuild export app:0.1 -o app.qcow2');
  let rootPassword: string | undefined;
  if (flags['root-password-file'] !== undefined) {
    try {
      rootPassword = readFileSync(String(flags['root-password-file']), 'utf8');
    } catch (err) {
      throw new InvalidInputError(
        `--root-password-file ${flags['root-password-file']}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  }
  const uuid = flags.uuid === undefined ? undefined : parseUuid(String(flags.uuid));
  const store = await openStore(flags);
  const p = stderrProgress();
  const abort = new AbortController();
  let exitCode = 0;
  const handlers = SIGNALS.map(([sig, code]) => {
    const h = (): void => {
      exitCode = code;
      abort.abort();
    };
    process.once(sig, h); // a second signal gets the default action
    return [sig, h] as const;
  });
  const opts: ExportOptions = {
    store,
    image: name,
    output,
    ...(flags.format ? { format: flags.format as NonNullable<ExportOptions['format']> } : {}),
    size: String(flags.size ?? 'auto'),
    ...(flags.partition ? { partition: flags.partition as NonNullable<ExportOptions['partition']> } : {}),
    boot: (flags.boot ?? 'bios') as ExportOptions['boot'] & string,
    bootloader: (flags.bootloader ?? 'auto') as ExportOptions['bootloader'] & string,
    kernel: parseKernelFlag(
      flags.kernel === undefined ? undefined : String(flags.kernel),
      flags.initrd === undefined ? undefined : String(flags.initrd),
    ),
    ...(flags.cmdline ? { cmdline: String(flags.cmdline) } : {}),
    ...(flags.hostname ? { hostname: String(flags.hostname) } : {}),
    ...(rootPassword !== undefined ? { rootPassword } : {}),
    sshKeys: readSshKeys(list(flags['ssh-key'])),
    network: (flags.network ?? 'dhcp') as 'dhcp' | 'none',
    service: (flags.service ?? 'auto') as 'auto' | 'none',
    ...(flags.compress === undefined ? {} : { compress: compressFlag(flags.compress) }),
    ...(uuid ? { uuid } : {}),
    signal: abort.signal,
    onEvent: (e) => {
      if (e.type === 'step') p.step(`${e.step}: ${e.message}`);
      else if (e.type === 'log') p.step(`  | ${e.line}`);
      else p.warn(e.code, e.message);
    },
  };
  try {
    const r = await exportImage(opts);
    out(`${r.output} ${humanSize(r.bytes)}`);
  } catch (err) {
    if (exitCode !== 0) {
      process.stderr.write(`error: ${(err as Error).message}\n`);
      process.exitCode = exitCode;
      return;
    }
    throw err;
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
  }
}

/** compressFlag reads `--compress zstd|deflate|none` (qcow2 clusters; a streamOptimized vmdk unless none). */
function compressFlag(v: unknown): 'zstd' | 'deflate' | 'none' {
  const c = String(v);
  if (c !== 'zstd' && c !== 'deflate' && c !== 'none')
    throw new InvalidInputError(`--compress must be zstd, deflate or none (got ${JSON.stringify(c)})`);
  return c;
}

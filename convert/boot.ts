// The QEMU runner behind `tsbuild boot` and the boot tests: boot a disk image with its serial console captured,
// stop when a pattern shows up (a login prompt by default), a kernel panic, or a timeout. KVM when it really works
// (kvm-probe.ts: a probe guest on the same machine, CPU and SMP count first), TCG otherwise; with `--kvm auto` a
// boot that dies under KVM or prints nothing for a while is restarted under TCG, so auto never fails where TCG works.
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NotFoundError, ToolError, TsbuildError } from '../sys/errors.js';
import { requireTools, run } from '../sys/exec.js';
import { accelArgs, chooseAccel, markKvmBroken, qemuFailure, type Accel, type KvmMode } from './kvm-probe.js';

export {
  chooseAccel,
  kvmCacheFile,
  kvmDeviceUsable,
  kvmRunsGuests,
  PROBE_MARKER,
  probeSector,
  type Accel,
  type KvmMode,
} from './kvm-probe.js';

/** DEFAULT_EXPECT: a getty's login prompt (`debian login:`, `localhost login:`). */
export const DEFAULT_EXPECT = /\blogin: ?$/m;
/** PANIC: the kernel gave up; the boot cannot succeed any more. */
export const PANIC = /Kernel panic - not syncing|end Kernel panic/;
/** With `--kvm auto`, a KVM boot with no serial output for this long is restarted under TCG. */
export const DEFAULT_KVM_WATCHDOG_MS = 20_000;

/** BootEvent: progress for the caller to print (cli/commands/boot.ts writes them on stderr). */
export type BootEvent =
  | { type: 'start'; accel: Accel }
  /** `--kvm auto` uses TCG although /dev/kvm opens: the probe failed, or a boot under KVM died or stayed silent */
  | { type: 'kvm-fallback'; message: string };

export interface BootOptions {
  /** the disk image: qcow2, raw, vmdk or vhdx (found from its first bytes) */
  disk: string;
  /** default DEFAULT_EXPECT */
  expect?: RegExp;
  /** default 300 s; a boot restarted under TCG gets the whole timeout again */
  timeoutMs?: number;
  /** QEMU -m: 1G, 512M… (default 1G) */
  memory?: string;
  kvm?: KvmMode;
  /** `--kvm auto`: restart under TCG when KVM prints nothing for this long (default DEFAULT_KVM_WATCHDOG_MS; 0: never) */
  kvmWatchdogMs?: number;
  /** where the per-host-boot KVM verdict is kept (default kvmCacheFile(): $TSBUILD_KVM_CACHE or ~/.cache/tsbuild) */
  kvmCache?: string;
  /** boot with OVMF (UEFI) instead of SeaBIOS */
  uefi?: boolean;
  /** every chunk of serial output as it arrives */
  onOutput?: (text: string) => void;
  onEvent?: (e: BootEvent) => void;
  signal?: AbortSignal;
}

export interface BootResult {
  outcome: 'matched' | 'timeout' | 'panic' | 'exited';
  accel: Accel;
  /** from QEMU start to the outcome (of the TCG run, after a fallback) */
  seconds: number;
  /** the serial console, whole (of the TCG run, after a fallback) */
  output: string;
  /** the text that matched `expect` */
  match?: string;
}

export const QEMU_TOOLS = { 'qemu-system-x86_64': 'qemu-system-x86' };

/** OVMF builds, most specific first: [code, vars template]. */
export const OVMF_PAIRS: ReadonlyArray<readonly [string, string]> = [
  ['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_VARS_4M.fd'],
  ['/usr/share/OVMF/OVMF_CODE.fd', '/usr/share/OVMF/OVMF_VARS.fd'],
  ['/usr/share/edk2/ovmf/OVMF_CODE.fd', '/usr/share/edk2/ovmf/OVMF_VARS.fd'],
];

/** diskFormat reads the first bytes of a disk image: qcow2, vmdk, vhdx, else raw. */
export async function diskFormat(path: string): Promise<'qcow2' | 'vmdk' | 'vhdx' | 'raw'> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`disk image ${path}`);
    throw err;
  }
  try {
    const b = Buffer.alloc(8);
    await fh.read(b, 0, 8, 0);
    if (b.readUInt32BE(0) === 0x514649fb) return 'qcow2';
    if (b.subarray(0, 4).toString('latin1') === 'KDMV' || b.subarray(0, 4).toString('latin1') === '# Di') return 'vmdk';
    if (b.toString('latin1') === 'vhdxfile') return 'vhdx';
    return 'raw';
  } finally {
    await fh.close();
  }
}

/** qemuArgs builds the command line: no display, serial to `serialLog`, the disk on virtio (changes discarded), user networking. */
export function qemuArgs(opts: {
  disk: string;
  format: string;
  accel: Accel;
  memory: string;
  serialLog: string;
  ovmf?: { code: string; vars: string };
}): string[] {
  const args = [
    'qemu-system-x86_64',
    '-nodefaults',
    '-display',
    'none',
    '-no-reboot',
    ...accelArgs(opts.accel),
    '-m',
    opts.memory,
    '-chardev',
    `file,id=serial0,path=${opts.serialLog}`,
    '-serial',
    'chardev:serial0',
    '-drive',
    `file=${opts.disk},format=${opts.format},if=virtio,snapshot=on`,
    '-nic',
    'user,model=virtio-net-pci',
    '-device',
    'virtio-rng-pci',
  ];
  if (opts.ovmf) {
    args.push(
      '-drive',
      `if=pflash,format=raw,unit=0,readonly=on,file=${opts.ovmf.code}`,
      '-drive',
      `if=pflash,format=raw,unit=1,file=${opts.ovmf.vars}`,
    );
  }
  return args;
}

/**
 * bootDisk boots the disk in QEMU and watches the serial console: the outcome is 'matched' as soon as `expect`
 * shows up, 'panic' on a kernel panic, 'exited' when QEMU stops by itself, 'timeout' when time runs out. QEMU is
 * always stopped (and its temp files removed) before this returns. The disk is opened with snapshot=on: nothing
 * the guest writes reaches the file.
 *
 * With `kvm: 'auto'` (the default) a boot under KVM that QEMU does not survive (a signal, a non-zero exit) or that
 * prints nothing within `kvmWatchdogMs` is stopped and started again under TCG, with a 'kvm-fallback' event; the
 * host's verdict becomes "no KVM" (at once after a crash, after a silent KVM boot when TCG then prints something).
 * With `kvm: 'on'` a QEMU failure is an error (E_QEMU) that names the signal or exit code.
 */
export async function bootDisk(opts: BootOptions): Promise<BootResult> {
  requireTools(QEMU_TOOLS);
  const format = await diskFormat(opts.disk);
  const mode = opts.kvm ?? 'auto';
  const cache = opts.kvmCache ? { cacheFile: opts.kvmCache } : {};
  const choice = await chooseAccel(mode, cache);
  if (choice.kvmSkipped)
    opts.onEvent?.({ type: 'kvm-fallback', message: `KVM not used: ${choice.kvmSkipped}; booting under TCG` });
  if (choice.accel !== 'kvm' || mode !== 'auto') return bootOnce(opts, format, choice.accel);
  const watchdogMs = opts.kvmWatchdogMs ?? DEFAULT_KVM_WATCHDOG_MS;
  const first = await bootOnce(opts, format, 'kvm', { watchdogMs });
  if (!('kvmFailed' in first)) return first;
  opts.onEvent?.({ type: 'kvm-fallback', message: `KVM boot failed (${first.kvmFailed}); restarting under TCG` });
  if (first.crashed) await markKvmBroken(first.kvmFailed, cache);
  const second = await bootOnce(opts, format, 'tcg');
  if (!first.crashed && second.output !== '') await markKvmBroken(first.kvmFailed, cache);
  return second;
}

/** KvmFailed: a boot under KVM to be restarted under TCG; `crashed` when QEMU died (rather than stayed silent). */
interface KvmFailed {
  kvmFailed: string;
  crashed: boolean;
}

/** bootOnce runs QEMU once; with `fallback`, a KVM failure is returned (QEMU stopped) instead of thrown. */
async function bootOnce(opts: BootOptions, format: string, accel: Accel): Promise<BootResult>;
async function bootOnce(
  opts: BootOptions,
  format: string,
  accel: Accel,
  fallback: { watchdogMs: number },
): Promise<BootResult | KvmFailed>;
async function bootOnce(
  opts: BootOptions,
  format: string,
  accel: Accel,
  fallback?: { watchdogMs: number },
): Promise<BootResult | KvmFailed> {
  const expect = opts.expect ?? DEFAULT_EXPECT;
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const tmp = await mkdtemp(join(tmpdir(), 'tsbuild-boot-'));
  const serialLog = join(tmp, 'serial.log');
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    opts.signal?.throwIfAborted();
    let ovmf: { code: string; vars: string } | undefined;
    if (opts.uefi) {
      const pair = OVMF_PAIRS.find(([c, v]) => existsSync(c) && existsSync(v));
      if (!pair)
        throw new TsbuildError('E_MISSING_TOOLS', 'OVMF (UEFI firmware for QEMU) not found', {
          hint: 'apt-get install -y ovmf',
        });
      ovmf = { code: pair[0], vars: join(tmp, 'OVMF_VARS.fd') };
      await copyFile(pair[1], ovmf.vars);
    }
    await writeFile(serialLog, '');
    const argv = qemuArgs({
      disk: opts.disk,
      format,
      accel,
      memory: opts.memory ?? '1G',
      serialLog,
      ...(ovmf ? { ovmf } : {}),
    });
    opts.onEvent?.({ type: 'start', accel });
    const started = Date.now();
    let exited = false;
    let qemuError: unknown;
    const qemu = run(argv, { signal: stop.signal }).then(
      () => {
        exited = true;
      },
      (err: unknown) => {
        exited = true;
        if (!stop.signal.aborted) qemuError = err;
      },
    );
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      stop.abort();
    }, timeoutMs);
    let output = '';
    let silent = false;
    const watchdogAt = fallback && fallback.watchdogMs > 0 ? started + fallback.watchdogMs : Infinity;
    let outcome: BootResult['outcome'] | undefined;
    let match: string | undefined;
    const fh = await open(serialLog, 'r');
    try {
      const buf = Buffer.alloc(1 << 16);
      let pos = 0;
      let drained = false;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead > 0) {
          pos += bytesRead;
          const text = buf.subarray(0, bytesRead).toString('utf8');
          output += text;
          opts.onOutput?.(text);
          const m = expect.exec(output);
          if (m) {
            outcome = 'matched';
            match = m[0];
            break;
          }
          if (PANIC.test(output.slice(-4096 - text.length))) {
            outcome = 'panic';
            break;
          }
          continue;
        }
        if (output === '' && Date.now() >= watchdogAt) {
          silent = true; // nothing on the console yet: KVM may run nothing at all
          outcome = 'timeout';
          break;
        }
        if (timedOut || stop.signal.aborted) {
          outcome = 'timeout'; // or the caller aborted: throwIfAborted below says so
          break;
        }
        if (exited) {
          if (drained) {
            outcome = 'exited';
            break;
          }
          drained = true; // read once more: QEMU may have written its last bytes just before exiting
          continue;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      clearTimeout(timer);
      stop.abort();
      await qemu;
      await fh.close();
    }
    opts.signal?.throwIfAborted();
    if (fallback && silent) {
      return { kvmFailed: `no output on the serial console within ${fallback.watchdogMs / 1000}s`, crashed: false };
    }
    if (fallback && outcome === 'exited' && !qemuError && output === '') {
      return { kvmFailed: 'QEMU stopped without any output on the serial console', crashed: false };
    }
    if (outcome === 'exited' && qemuError) {
      if (fallback) return { kvmFailed: qemuFailure(qemuError), crashed: isSignal(qemuError) };
      throw new TsbuildError(
        'E_QEMU',
        `${qemuFailure(qemuError)} (${accel})`,
        accel === 'kvm'
          ? { hint: 'KVM may not work on this host: use --kvm auto or --kvm off', cause: qemuError }
          : { cause: qemuError },
      );
    }
    return {
      outcome,
      accel,
      seconds: (Date.now() - started) / 1000,
      output,
      ...(match !== undefined ? { match } : {}),
    };
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    await rm(tmp, { recursive: true, force: true });
  }
}

function isSignal(err: unknown): boolean {
  return err instanceof ToolError && / killed by SIG/.test(err.message);
}

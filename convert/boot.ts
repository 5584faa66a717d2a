// The QEMU runner behind `tsbuild boot` and the boot tests: boot a disk image with its serial console captured,
// stop when a pattern shows up (a login prompt by default), a kernel panic, or a timeout. KVM when it really works
// (a tiny guest is started first: nested KVM can accept a VM and then never run it), TCG otherwise.
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidInputError, NotFoundError, TsbuildError } from '../sys/errors.js';
import { requireTools, run } from '../sys/exec.js';

/** DEFAULT_EXPECT: a getty's login prompt (`debian login:`, `localhost login:`). */
export const DEFAULT_EXPECT = /\blogin: ?$/m;
/** PANIC: the kernel gave up; the boot cannot succeed any more. */
export const PANIC = /Kernel panic - not syncing|end Kernel panic/;

export type Accel = 'kvm' | 'tcg';

export interface BootOptions {
  /** the disk image: qcow2, raw, vmdk or vhdx (found from its first bytes) */
  disk: string;
  /** default DEFAULT_EXPECT */
  expect?: RegExp;
  /** default 300 s */
  timeoutMs?: number;
  /** QEMU -m: 1G, 512M… (default 1G) */
  memory?: string;
  kvm?: 'auto' | 'on' | 'off';
  /** boot with OVMF (UEFI) instead of SeaBIOS */
  uefi?: boolean;
  /** every chunk of serial output as it arrives */
  onOutput?: (text: string) => void;
  signal?: AbortSignal;
}

export interface BootResult {
  outcome: 'matched' | 'timeout' | 'panic' | 'exited';
  accel: Accel;
  /** from QEMU start to the outcome */
  seconds: number;
  /** the serial console, whole */
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
    '-machine',
    `pc,accel=${opts.accel}`,
    '-cpu',
    opts.accel === 'kvm' ? 'host' : 'max',
    '-smp',
    opts.accel === 'kvm' ? '2' : '1',
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
 */
export async function bootDisk(opts: BootOptions): Promise<BootResult> {
  requireTools(QEMU_TOOLS);
  const format = await diskFormat(opts.disk);
  const expect = opts.expect ?? DEFAULT_EXPECT;
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const accel = await chooseAccel(opts.kvm ?? 'auto');
  const tmp = await mkdtemp(join(tmpdir(), 'tsbuild-boot-'));
  const serialLog = join(tmp, 'serial.log');
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
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
    if (outcome === 'exited' && qemuError) {
      const e = qemuError as Error;
      throw new TsbuildError('E_QEMU', `QEMU failed: ${e.message}`, { cause: e });
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

let accelCache: Promise<Accel> | undefined;

/** chooseAccel: off → TCG; on → KVM (an error when /dev/kvm cannot be opened); auto → KVM only when the probe says it runs guests. */
export async function chooseAccel(mode: 'auto' | 'on' | 'off'): Promise<Accel> {
  if (mode !== 'auto' && mode !== 'on' && mode !== 'off')
    throw new InvalidInputError(`--kvm must be auto, on or off (got ${JSON.stringify(mode)})`);
  if (mode === 'off') return 'tcg';
  if (mode === 'on') {
    if (!kvmDeviceUsable())
      throw new TsbuildError('E_NO_KVM', '/dev/kvm is missing or not accessible', {
        hint: 'use --kvm auto or off (TCG)',
      });
    return 'kvm';
  }
  accelCache ??= kvmRunsGuests().then((ok) => (ok ? 'kvm' : 'tcg'));
  return accelCache;
}

export function kvmDeviceUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * PROBE_SECTOR is a 512-byte boot sector that prints PROBE_MARKER on COM1 (port 0x3f8) and halts: real-mode code
 * `cld; xor ax,ax; mov ds,ax; mov dx,0x3f8; mov si,msg; l: lodsb; test al,al; jz d; out dx,al; jmp l; d: cli; hlt; jmp d`.
 */
export const PROBE_MARKER = 'tsbuild-kvm-probe-ok';
export function probeSector(): Buffer {
  const code = [
    0xfc, 0x31, 0xc0, 0x8e, 0xd8, 0xba, 0xf8, 0x03, 0xbe, 0x17, 0x7c, 0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8,
    0xfa, 0xf4, 0xeb, 0xfd,
  ];
  const b = Buffer.alloc(512);
  Buffer.from(code).copy(b, 0);
  Buffer.from(`${PROBE_MARKER}\r\n\0`, 'latin1').copy(b, code.length); // msg at 0x7c17
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

/**
 * kvmRunsGuests starts the probe sector under KVM and waits up to 5 s for its marker. The answer is kept per boot of
 * the host (keyed by /proc/sys/kernel/random/boot_id) in $XDG_CACHE_HOME/tsbuild/kvm-probe.json.
 */
export async function kvmRunsGuests(): Promise<boolean> {
  if (!kvmDeviceUsable()) return false;
  const cacheFile = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tsbuild', 'kvm-probe.json');
  let bootId = '';
  try {
    bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const cached = JSON.parse(await readFile(cacheFile, 'utf8')) as { bootId?: string; kvm?: boolean };
    if (cached.bootId === bootId && typeof cached.kvm === 'boolean') return cached.kvm;
  } catch {
    // no cache yet
  }
  const tmp = await mkdtemp(join(tmpdir(), 'tsbuild-kvm-probe-'));
  let ok = false;
  try {
    const disk = join(tmp, 'probe.img');
    const log = join(tmp, 'serial.log');
    await writeFile(disk, probeSector());
    await writeFile(log, '');
    const stop = new AbortController();
    const argv = [
      'qemu-system-x86_64',
      '-nodefaults',
      '-display',
      'none',
      '-no-reboot',
      '-machine',
      'pc,accel=kvm',
      '-m',
      '32',
      '-chardev',
      `file,id=s0,path=${log}`,
      '-serial',
      'chardev:s0',
      '-drive',
      `file=${disk},format=raw,if=ide`,
    ];
    let gone = false;
    const qemu = run(argv, { signal: stop.signal })
      .catch(() => {})
      .finally(() => {
        gone = true;
      });
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && !gone) {
      await new Promise((r) => setTimeout(r, 100));
      if ((await readFile(log, 'latin1')).includes(PROBE_MARKER)) {
        ok = true;
        break;
      }
    }
    stop.abort();
    await qemu;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  try {
    await mkdir(join(cacheFile, '..'), { recursive: true });
    const tmpFile = `${cacheFile}.${randomBytes(4).toString('hex')}`;
    await writeFile(tmpFile, JSON.stringify({ bootId, kvm: ok }));
    await rename(tmpFile, cacheFile);
  } catch {
    // a read-only home: probe again next time
  }
  return ok;
}

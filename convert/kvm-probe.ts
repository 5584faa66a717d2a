// Whether KVM really runs guests on this host, asked the way a boot uses it: the same machine type, CPU model and
// SMP count as `tsbuild boot` (accelArgs), a guest that reports each step on the serial port (real mode, protected
// mode, long mode with paging), and a verdict kept per boot of the host so that later boots do not ask again.
// Nested or half-working KVM can open /dev/kvm and then abort (`failed to set MSR …`, SIGABRT) or run nothing.
import { randomBytes } from 'node:crypto';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidInputError, ToolError, TsbuildError } from '../sys/errors.js';
import { run } from '../sys/exec.js';

export type Accel = 'kvm' | 'tcg';
export type KvmMode = 'auto' | 'on' | 'off';

/** accelArgs is the machine, CPU and SMP part of QEMU's command line: the probe and the boot use the same. */
export function accelArgs(accel: Accel): string[] {
  return [
    '-machine',
    `pc,accel=${accel}`,
    '-cpu',
    accel === 'kvm' ? 'host' : 'max',
    '-smp',
    accel === 'kvm' ? '2' : '1',
  ];
}

/**
 * PROBE_SOURCE is the probe guest (GNU as; `as --32` then `ld -m elf_i386 -Ttext=0x7c00 --oformat binary`): it
 * prints a line on COM1 in real mode, enters protected mode and prints, builds an identity map of the first 2 MiB,
 * enters long mode (PAE, EFER.LME, paging) and prints PROBE_MARKER, then halts. PROBE_HEX is its output.
 */
export const PROBE_SOURCE = `.code16
.globl _start
_start:
  cli
  cld
  xor %ax, %ax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %ss
  mov $0x7c00, %sp
  mov $m16, %si
  call puts16
  in $0x92, %al
  or $2, %al
  and $0xfe, %al
  out %al, $0x92
  lgdtl gdtr
  mov %cr0, %eax
  or $1, %eax
  mov %eax, %cr0
  ljmpl $0x08, $pm32
puts16:
  mov $0x3f8, %dx
1: lodsb
  test %al, %al
  jz 2f
  out %al, %dx
  jmp 1b
2: ret
.code32
pm32:
  mov $0x10, %ax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %ss
  mov $0x7c00, %esp
  mov $m32, %esi
  call puts32
  mov $0x1000, %edi
  xor %eax, %eax
  mov $0xc00, %ecx
  rep stosl
  movl $0x2003, 0x1000
  movl $0x3003, 0x2000
  movl $0x83, 0x3000
  mov %cr4, %eax
  or $0x20, %eax
  mov %eax, %cr4
  mov $0x1000, %eax
  mov %eax, %cr3
  mov $0xc0000080, %ecx
  rdmsr
  or $0x100, %eax
  wrmsr
  mov %cr0, %eax
  or $0x80000000, %eax
  mov %eax, %cr0
  ljmp $0x18, $lm64
puts32:
  mov $0x3f8, %dx
1: lodsb
  test %al, %al
  jz 2f
  out %al, %dx
  jmp 1b
2: ret
.code64
lm64:
  mov $0x7c00, %esp
  mov $m64, %esi
  mov $0x3f8, %dx
1: lodsb
  test %al, %al
  jz 2f
  out %al, %dx
  jmp 1b
2: cli
  hlt
  jmp 2b
.p2align 3
gdt:
  .quad 0
  .quad 0x00cf9a000000ffff
  .quad 0x00cf92000000ffff
  .quad 0x00af9a000000ffff
gdtr:
  .word gdtr - gdt - 1
  .long gdt
m16: .asciz "tsbuild-kvm-probe: real mode\\r\\n"
m32: .asciz "tsbuild-kvm-probe: protected mode\\r\\n"
m64: .asciz "tsbuild-kvm-probe-ok (long mode)\\r\\n"
. = _start + 510
.byte 0x55, 0xaa
`;

const PROBE_HEX =
  'fafc31c08ed88ec08ed0bc007cbe067de82000e4920c0224fee692660f0116007d0f20c06683c8010f22c066ea3f7c00' +
  '000800baf803ac84c07403eeebf8c366b810008ed88ec08ed0bc007c0000be257d0000e85d000000bf0010000031c0b9' +
  '000c0000f3abc7050010000003200000c7050020000003300000c70500300000830000000f20e083c8200f22e0b80010' +
  '00000f22d8b9800000c00f320d000100000f300f20c00d000000800f22c0eac27c0000180066baf803ac84c07403eeeb' +
  'f8c3bc007c0000be497d000066baf803ac84c07403eeebf8faf4ebfc8d7426000000000000000000ffff0000009acf00' +
  'ffff00000092cf00ffff0000009aaf001f00e07c000074736275696c642d6b766d2d70726f62653a207265616c206d6f' +
  '64650d0a0074736275696c642d6b766d2d70726f62653a2070726f746563746564206d6f64650d0a0074736275696c64' +
  '2d6b766d2d70726f62652d6f6b20286c6f6e67206d6f6465290d0a';

/** PROBE_MARKER is printed by the probe guest once it runs 64-bit code with paging on. */
export const PROBE_MARKER = 'tsbuild-kvm-probe-ok';
/** The probe's lines before the marker, in order: how far a guest that stopped got. */
export const PROBE_STAGES = ['real mode', 'protected mode'] as const;
/** How long the probe guest may take to print PROBE_MARKER under KVM (it needs milliseconds). */
export const PROBE_TIMEOUT_MS = 5_000;

/** probeSector is the probe guest: a 512-byte boot sector (PROBE_SOURCE assembled). */
export function probeSector(): Buffer {
  const b = Buffer.alloc(512);
  Buffer.from(PROBE_HEX, 'hex').copy(b, 0);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

export function kvmDeviceUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** kvmCacheFile: `cacheFile`, else $TSBUILD_KVM_CACHE, else $XDG_CACHE_HOME/tsbuild/kvm-probe.json (~/.cache). */
export function kvmCacheFile(cacheFile?: string): string {
  return (
    cacheFile ||
    process.env.TSBUILD_KVM_CACHE ||
    join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tsbuild', 'kvm-probe.json')
  );
}

/** KvmVerdict: whether KVM runs guests in this boot of the host, and why not. */
export interface KvmVerdict {
  kvm: boolean;
  reason?: string;
  /** read from the cache file (found by an earlier probe or boot in this host boot) */
  cached?: boolean;
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

async function readVerdict(cacheFile: string): Promise<KvmVerdict | undefined> {
  try {
    const c = JSON.parse(await readFile(cacheFile, 'utf8')) as { bootId?: string; kvm?: boolean; reason?: string };
    if (c.bootId === bootId() && typeof c.kvm === 'boolean')
      return { kvm: c.kvm, cached: true, ...(typeof c.reason === 'string' ? { reason: c.reason } : {}) };
  } catch {
    // no verdict yet
  }
  return undefined;
}

async function writeVerdict(cacheFile: string, v: KvmVerdict): Promise<void> {
  try {
    await mkdir(join(cacheFile, '..'), { recursive: true });
    const tmpFile = `${cacheFile}.${randomBytes(4).toString('hex')}`;
    await writeFile(
      tmpFile,
      JSON.stringify({ bootId: bootId(), kvm: v.kvm, ...(v.reason ? { reason: v.reason } : {}) }),
    );
    await rename(tmpFile, cacheFile);
  } catch {
    // a read-only home: probe again next time
  }
}

/** The verdicts of this process, per cache file. */
const verdicts = new Map<string, Promise<KvmVerdict>>();

/** qemuFailure describes how QEMU failed in one line: `QEMU was killed by SIGABRT: <its last stderr line>`. */
export function qemuFailure(err: unknown): string {
  if (err instanceof ToolError) {
    const signal = /killed by (SIG[A-Z0-9]+)/.exec(err.message)?.[1];
    const how = signal ? `was killed by ${signal}` : `exited with code ${err.exitCode}`;
    const lines = err.stderr.trim().split('\n').filter(Boolean);
    const last = lines.find((l) => /failed to set MSR|Assertion/.test(l)) ?? lines.at(-1);
    return `QEMU ${how}${last ? `: ${last.trim().slice(0, 300)}` : ''}`;
  }
  return `QEMU failed: ${(err as Error).message ?? String(err)}`;
}

/**
 * kvmRunsGuests starts the probe guest under KVM (accelArgs('kvm')) and waits up to PROBE_TIMEOUT_MS for its marker.
 * The verdict is kept per boot of the host (keyed by /proc/sys/kernel/random/boot_id) in kvmCacheFile().
 */
export async function kvmRunsGuests(opts: { cacheFile?: string } = {}): Promise<KvmVerdict> {
  if (!kvmDeviceUsable()) return { kvm: false, reason: '/dev/kvm is missing or not accessible' };
  const cacheFile = kvmCacheFile(opts.cacheFile);
  let v = verdicts.get(cacheFile);
  if (!v) {
    v = (async () => (await readVerdict(cacheFile)) ?? (await probe(cacheFile)))();
    verdicts.set(cacheFile, v);
  }
  return v;
}

async function probe(cacheFile: string): Promise<KvmVerdict> {
  const tmp = await mkdtemp(join(tmpdir(), 'tsbuild-kvm-probe-'));
  let verdict: KvmVerdict;
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
      ...accelArgs('kvm'),
      '-m',
      '32',
      '-chardev',
      `file,id=s0,path=${log}`,
      '-serial',
      'chardev:s0',
      '-drive',
      `file=${disk},format=raw,if=ide`,
    ];
    let failure: string | undefined;
    let gone = false;
    const qemu = run(argv, { signal: stop.signal })
      .catch((err: unknown) => {
        if (!stop.signal.aborted) failure = qemuFailure(err);
      })
      .finally(() => {
        gone = true;
      });
    let text = '';
    const deadline = Date.now() + PROBE_TIMEOUT_MS;
    for (;;) {
      await new Promise((r) => setTimeout(r, 50));
      text = await readFile(log, 'latin1');
      if (text.includes(PROBE_MARKER) || gone || Date.now() >= deadline) break;
    }
    const exitedByItself = gone;
    stop.abort();
    await qemu;
    if (text.includes(PROBE_MARKER)) verdict = { kvm: true };
    else if (failure) verdict = { kvm: false, reason: failure };
    else {
      const reached = PROBE_STAGES.filter((st) => text.includes(`tsbuild-kvm-probe: ${st}`)).at(-1);
      const secs = PROBE_TIMEOUT_MS / 1000;
      verdict = {
        kvm: false,
        reason: reached
          ? `the probe guest stopped in ${reached} (${exitedByItself ? 'QEMU exited' : `no long mode within ${secs}s`})`
          : `the probe guest printed nothing ${exitedByItself ? 'before QEMU exited' : `within ${secs}s`}`,
      };
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  await writeVerdict(cacheFile, verdict);
  return verdict;
}

/** markKvmBroken records that a boot under KVM failed where TCG works: later boots of this host boot use TCG. */
export async function markKvmBroken(reason: string, opts: { cacheFile?: string } = {}): Promise<void> {
  const cacheFile = kvmCacheFile(opts.cacheFile);
  const v: KvmVerdict = { kvm: false, reason };
  verdicts.set(cacheFile, Promise.resolve({ ...v, cached: true }));
  await writeVerdict(cacheFile, v);
}

/** AccelChoice: the accelerator, and when `auto` could not use a usable-looking /dev/kvm, why (for a notice). */
export interface AccelChoice {
  accel: Accel;
  kvmSkipped?: string;
}

/**
 * chooseAccel: off → TCG; on → KVM (an error when /dev/kvm cannot be opened, no probe); auto → KVM only when the
 * probe (or this host boot's cached verdict) says it runs guests, TCG otherwise (with the reason when /dev/kvm exists).
 */
export async function chooseAccel(mode: KvmMode, opts: { cacheFile?: string } = {}): Promise<AccelChoice> {
  if (mode !== 'auto' && mode !== 'on' && mode !== 'off')
    throw new InvalidInputError(`--kvm must be auto, on or off (got ${JSON.stringify(mode)})`);
  if (mode === 'off') return { accel: 'tcg' };
  if (mode === 'on') {
    if (!kvmDeviceUsable())
      throw new TsbuildError('E_NO_KVM', '/dev/kvm is missing or not accessible', {
        hint: 'use --kvm auto or off (TCG)',
      });
    return { accel: 'kvm' };
  }
  if (!kvmDeviceUsable()) return { accel: 'tcg' };
  const v = await kvmRunsGuests(opts);
  if (v.kvm) return { accel: 'kvm' };
  const why = v.reason ?? 'the KVM probe failed';
  return {
    accel: 'tcg',
    kvmSkipped: v.cached ? `${why} (found earlier in this host boot)` : why,
  };
}

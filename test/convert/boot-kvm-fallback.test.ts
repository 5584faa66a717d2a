// `tsbuild boot --kvm auto` never fails where TCG works (issue 16). No broken host is needed: a fake
// qemu-system-x86_64 first on PATH plays one when its argv asks for KVM (it aborts with QEMU's MSR assertion, or
// stays silent forever) and execs the real QEMU otherwise. The disk is the KVM probe's own boot sector (a few
// seconds of TCG). Each test keeps the KVM verdict in a file of its own (TSBUILD_KVM_CACHE), so the machine's
// real verdict is neither read nor changed.
import test from 'ava';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PROBE_MARKER, probeSector } from '../../convert/boot.js';
import { makeTempDir, removeDir, tsbuild } from '../helpers/index.js';

const REAL_QEMU = '/usr/bin/qemu-system-x86_64';
const qemu = existsSync(REAL_QEMU) ? test : test.skip;
const kvmDevice = ((): boolean => {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
})();
/** `--kvm auto` only considers KVM (and so only falls back) when /dev/kvm opens; `--kvm on` needs it too. */
const qemuKvm = existsSync(REAL_QEMU) && kvmDevice ? test : test.skip;

const MSR_LINES = [
  'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x2000c04',
  "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3202: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.",
];

/** The fake's behaviour under KVM: abort like QEMU's MSR assertion, never print anything, or exit 0 at once. */
type Broken = 'abort' | 'silent' | 'exit0';

function fakeQemu(broken: Broken): string {
  const kvm =
    broken === 'abort'
      ? [...MSR_LINES.map((l) => `  printf '%s\\n' ${shq(l)} >&2`), '  kill -ABRT $$']
      : broken === 'silent'
        ? ['  exec sleep 3600']
        : ['  exit 0'];
  return [
    '#!/bin/sh',
    'ulimit -c 0',
    'case " $* " in',
    '*accel=kvm*|*" -enable-kvm "*)',
    ...kvm,
    '  ;;',
    'esac',
    `exec ${REAL_QEMU} "$@"`,
    '',
  ].join('\n');
}

function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

interface Setup {
  disk: string;
  env: NodeJS.ProcessEnv;
  cacheFile: string;
}

async function setup(t: { teardown(f: () => unknown): void }, broken: Broken, verdict?: boolean): Promise<Setup> {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const bin = join(dir, 'bin');
  await mkdir(bin);
  await writeFile(join(bin, 'qemu-system-x86_64'), fakeQemu(broken));
  await chmod(join(bin, 'qemu-system-x86_64'), 0o755);
  const disk = join(dir, 'probe.img');
  await writeFile(disk, Buffer.concat([probeSector(), Buffer.alloc((1 << 20) - 512)])); // SeaBIOS skips a one-sector virtio disk
  const cacheFile = join(dir, 'cache', 'kvm-probe.json');
  if (verdict !== undefined) {
    // a verdict of this host boot, as an earlier probe would have left it: the boot itself meets the broken KVM
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    await mkdir(join(dir, 'cache'));
    await writeFile(cacheFile, JSON.stringify({ bootId, kvm: verdict }));
  }
  return { disk, cacheFile, env: { PATH: `${bin}:${process.env.PATH ?? ''}`, TSBUILD_KVM_CACHE: cacheFile } };
}

async function verdictOf(cacheFile: string): Promise<{ kvm?: boolean; reason?: string }> {
  return JSON.parse(await readFile(cacheFile, 'utf8')) as { kvm?: boolean; reason?: string };
}

function notices(stderr: string): string[] {
  return stderr.split('\n').filter((l) => /KVM (not used|boot failed)/.test(l));
}

qemuKvm('--kvm auto: KVM aborting in the probe (MSR assertion, SIGABRT) means TCG, with one notice', async (t) => {
  const s = await setup(t, 'abort');
  const r = await tsbuild(['boot', s.disk, '--kvm', 'auto', '--expect', PROBE_MARKER, '--timeout', '120'], {
    env: s.env,
  });
  t.is(r.code, 0, r.stderr);
  t.true(r.stdout.includes(PROBE_MARKER));
  const n = notices(r.stderr);
  t.is(n.length, 1, r.stderr);
  t.regex(n[0] as string, /KVM not used: QEMU was killed by SIGABRT: .*failed to set MSR 0x10a.*; booting under TCG/);
  t.regex(r.stderr, /matched .* \(tcg\); the VM is stopped/);
  t.like(await verdictOf(s.cacheFile), { kvm: false });
  t.regex((await verdictOf(s.cacheFile)).reason ?? '', /SIGABRT/);
});

qemuKvm('--kvm auto: a boot that aborts under KVM after the probe passed restarts under TCG', async (t) => {
  const s = await setup(t, 'abort', true);
  const r = await tsbuild(['boot', s.disk, '--expect', PROBE_MARKER, '--timeout', '120'], { env: s.env });
  t.is(r.code, 0, r.stderr);
  const n = notices(r.stderr);
  t.is(n.length, 1, r.stderr);
  t.regex(n[0] as string, /KVM boot failed \(QEMU was killed by SIGABRT: .*\); restarting under TCG/);
  t.regex(r.stderr, /booting .* under KVM[\s\S]*booting .* under TCG[\s\S]*\(tcg\); the VM is stopped/);
  t.like(await verdictOf(s.cacheFile), { kvm: false }, 'later boots of this host boot go straight to TCG');

  const again = await tsbuild(['boot', s.disk, '--expect', PROBE_MARKER, '--timeout', '120'], { env: s.env });
  t.is(again.code, 0, again.stderr);
  t.notRegex(again.stderr, /under KVM/);
  t.regex(notices(again.stderr)[0] ?? '', /KVM not used: .*SIGABRT.*found earlier in this host boot/);
});

qemuKvm('--kvm auto: a KVM boot silent past the watchdog restarts under TCG', async (t) => {
  const s = await setup(t, 'silent', true);
  const started = Date.now();
  const r = await tsbuild(['boot', s.disk, '--expect', PROBE_MARKER, '--timeout', '120', '--kvm-watchdog', '3'], {
    env: s.env,
  });
  t.is(r.code, 0, r.stderr);
  const n = notices(r.stderr);
  t.is(n.length, 1, r.stderr);
  t.regex(n[0] as string, /KVM boot failed \(no output on the serial console within 3s\); restarting under TCG/);
  t.regex(r.stderr, /\(tcg\); the VM is stopped/);
  t.true(Date.now() - started < 100_000);
  t.like(await verdictOf(s.cacheFile), { kvm: false }, 'TCG printed where KVM did not: KVM is marked broken');
});

qemuKvm(
  '--kvm auto: a KVM boot that ends (exit 0, say a triple fault) with no output restarts under TCG',
  async (t) => {
    const s = await setup(t, 'exit0', true);
    const r = await tsbuild(['boot', s.disk, '--expect', PROBE_MARKER, '--timeout', '120'], { env: s.env });
    t.is(r.code, 0, r.stderr);
    const n = notices(r.stderr);
    t.is(n.length, 1, r.stderr);
    t.regex(n[0] as string, /KVM boot failed \(QEMU stopped without any output on the serial console\); restarting/);
    t.like(await verdictOf(s.cacheFile), { kvm: false });
  },
);

qemuKvm('--kvm auto: a probe guest that prints nothing under KVM means TCG', async (t) => {
  const s = await setup(t, 'silent');
  const r = await tsbuild(['boot', s.disk, '--expect', PROBE_MARKER, '--timeout', '120'], { env: s.env });
  t.is(r.code, 0, r.stderr);
  const n = notices(r.stderr);
  t.is(n.length, 1, r.stderr);
  t.regex(n[0] as string, /KVM not used: the probe guest printed nothing within 5s; booting under TCG/);
});

qemuKvm('--kvm on: QEMU aborting under KVM is a one-line error naming the signal, with no fallback', async (t) => {
  const s = await setup(t, 'abort');
  const r = await tsbuild(['boot', s.disk, '--kvm', 'on', '--expect', PROBE_MARKER, '--timeout', '120'], {
    env: s.env,
  });
  t.is(r.code, 1, r.stderr);
  t.is(notices(r.stderr).length, 0);
  t.notRegex(r.stderr, /under TCG/);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('error: '));
  t.is(errors.length, 1, r.stderr);
  t.regex(errors[0] as string, /^error: QEMU was killed by SIGABRT: .*\(kvm\)$/);
  t.false(existsSync(s.cacheFile), '--kvm on neither probes nor records a verdict');
});

qemu('--kvm off never asks for KVM', async (t) => {
  const s = await setup(t, 'abort');
  const r = await tsbuild(['boot', s.disk, '--kvm', 'off', '--expect', PROBE_MARKER, '--timeout', '120'], {
    env: s.env,
  });
  t.is(r.code, 0, r.stderr);
  t.is(notices(r.stderr).length, 0);
  t.regex(r.stderr, /booting .* under TCG/);
});

// The seccomp compiler (sys/seccomp/bpf.ts) and the default profile (runtime/seccomp.ts), run through a BPF
// interpreter (test/helpers/bpf.ts): no root needed.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileSeccomp, type LinuxSeccomp } from '../../sys/seccomp/bpf.js';
import { SYSCALLS } from '../../sys/seccomp/syscalls.js';
import {
  DEFAULT_SECCOMP_PROFILE,
  parseSeccompProfile,
  resolveSeccomp,
  securityOptions,
  seccompFor,
} from '../../runtime/seccomp.js';
import { capabilitySet, DEFAULT_CAPABILITIES } from '../../runtime/spec.js';
import { AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, RET, runFilter } from '../helpers/bpf.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const EPERM = 1;
const ENOSYS = 38;
const CLONE_NEWUSER = 0x10000000n;
const SIGCHLD = 17n;
const X64 = SYSCALLS.x86_64;
const I386 = SYSCALLS.x86;

const defaultProgram = compileSeccomp(resolveSeccomp(DEFAULT_SECCOMP_PROFILE, DEFAULT_CAPABILITIES), 'x86_64');
const adminProgram = compileSeccomp(
  resolveSeccomp(DEFAULT_SECCOMP_PROFILE, capabilitySet(['SYS_ADMIN'], [])),
  'x86_64',
);
const x64 = (prog: Buffer, name: string, args: bigint[] = []): number =>
  runFilter(prog, { nr: X64[name] as number, arch: AUDIT_ARCH_X86_64, args });

test('the default profile lets ordinary syscalls through and denies namespaces, mounts and the keyring', (t) => {
  for (const name of ['read', 'write', 'openat', 'execve', 'mmap', 'fork', 'vfork', 'exit_group', 'wait4', 'chroot'])
    t.is(x64(defaultProgram, name), RET.ALLOW, name);
  for (const name of ['unshare', 'setns', 'mount', 'umount2', 'pivot_root', 'keyctl', 'add_key', 'bpf'])
    t.is(x64(defaultProgram, name), RET.errno(EPERM), name);
  for (const name of ['perf_event_open', 'kexec_load', 'init_module', 'reboot', 'open_by_handle_at', 'io_uring_setup'])
    t.is(x64(defaultProgram, name), RET.errno(EPERM), name);
});

test('clone may make processes and threads but not namespaces; clone3 says ENOSYS so libc falls back', (t) => {
  t.is(x64(defaultProgram, 'clone', [SIGCHLD]), RET.ALLOW);
  t.is(x64(defaultProgram, 'clone', [0x3d0f00n]), RET.ALLOW); // pthread_create's flags
  t.is(x64(defaultProgram, 'clone', [CLONE_NEWUSER | SIGCHLD]), RET.errno(EPERM));
  t.is(x64(defaultProgram, 'clone', [0x20000n | SIGCHLD]), RET.errno(EPERM)); // CLONE_NEWNS
  t.is(x64(defaultProgram, 'clone', [(1n << 40n) | SIGCHLD]), RET.ALLOW); // high bits outside the mask
  t.is(x64(defaultProgram, 'clone3'), RET.errno(ENOSYS));
});

test('CAP_SYS_ADMIN brings back mount, unshare and namespaced clone, as docker does', (t) => {
  for (const name of ['mount', 'unshare', 'setns', 'clone3']) t.is(x64(adminProgram, name), RET.ALLOW, name);
  t.is(x64(adminProgram, 'clone', [CLONE_NEWUSER]), RET.ALLOW);
  t.is(x64(adminProgram, 'keyctl'), RET.errno(EPERM));
});

test('personality accepts only the values that keep address randomization', (t) => {
  for (const v of [0n, 8n, 0x20000n, 0x20008n, 0xffffffffn]) t.is(x64(defaultProgram, 'personality', [v]), RET.ALLOW);
  t.is(x64(defaultProgram, 'personality', [0x0040000n]), RET.errno(EPERM)); // ADDR_NO_RANDOMIZE
  t.is(x64(defaultProgram, 'personality', [(1n << 32n) | 8n]), RET.errno(EPERM));
});

test('32-bit x86 programs get the same policy under their own syscall numbers; x32 and other arches do not pass', (t) => {
  const i386 = (name: string, args: bigint[] = []): number =>
    runFilter(defaultProgram, { nr: I386[name] as number, arch: AUDIT_ARCH_I386, args });
  t.is(i386('read'), RET.ALLOW);
  t.is(i386('socketcall'), RET.ALLOW);
  t.is(i386('unshare'), RET.errno(EPERM));
  t.is(i386('clone', [CLONE_NEWUSER]), RET.errno(EPERM));
  t.is(i386('clone', [SIGCHLD]), RET.ALLOW);
  // x32: the x86_64 arch with bit 30 set in the number
  t.is(runFilter(defaultProgram, { nr: 0x40000000 + 0, arch: AUDIT_ARCH_X86_64 }), RET.errno(EPERM));
  t.is(runFilter(defaultProgram, { nr: 0, arch: 0xc00000b7 /* aarch64 */ }), RET.KILL_PROCESS);
});

test('syscalls beyond the table get the default action', (t) => {
  t.is(runFilter(defaultProgram, { nr: 100_000, arch: AUDIT_ARCH_X86_64 }), RET.errno(EPERM));
  t.is(runFilter(defaultProgram, { nr: 0x3fffffff, arch: AUDIT_ARCH_X86_64 }), RET.errno(EPERM));
});

test('the default profile takes a decision for every syscall the tables know', (t) => {
  const named = new Set(DEFAULT_SECCOMP_PROFILE.syscalls?.flatMap((r) => r.names));
  const missing = [...new Set([...Object.keys(X64), ...Object.keys(I386)])].filter((n) => !named.has(n));
  t.deepEqual(missing, []);
});

test('a resolved profile names each syscall in at most one unconditional rule (runc/libseccomp refuse conflicts)', (t) => {
  for (const caps of [DEFAULT_CAPABILITIES, capabilitySet(['ALL'], []), capabilitySet([], ['ALL'])]) {
    const seen = new Map<string, number>();
    for (const r of resolveSeccomp(DEFAULT_SECCOMP_PROFILE, caps).syscalls ?? [])
      if (!r.args?.length) for (const n of r.names) seen.set(n, (seen.get(n) ?? 0) + 1);
    t.deepEqual(
      [...seen].filter(([, c]) => c > 1),
      [],
    );
  }
});

test('argument comparisons follow 64-bit unsigned semantics', (t) => {
  const ops = ['SCMP_CMP_EQ', 'SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_GT', 'SCMP_CMP_GE'] as const;
  const values = [0n, 1n, 7n, 0xffffffffn, 0x100000000n, 0x100000007n, 0x1fffff00000000n];
  const reference: Record<(typeof ops)[number], (a: bigint, b: bigint) => boolean> = {
    SCMP_CMP_EQ: (a, b) => a === b,
    SCMP_CMP_NE: (a, b) => a !== b,
    SCMP_CMP_LT: (a, b) => a < b,
    SCMP_CMP_LE: (a, b) => a <= b,
    SCMP_CMP_GT: (a, b) => a > b,
    SCMP_CMP_GE: (a, b) => a >= b,
  };
  for (const op of ops)
    for (const v of values) {
      const profile: LinuxSeccomp = {
        defaultAction: 'SCMP_ACT_ERRNO',
        syscalls: [{ names: ['write'], action: 'SCMP_ACT_ALLOW', args: [{ index: 2, value: Number(v), op }] }],
      };
      const prog = compileSeccomp(profile, 'x86_64');
      for (const a of values) {
        const want = reference[op](a, v) ? RET.ALLOW : RET.errno(EPERM);
        t.is(x64(prog, 'write', [0n, 0n, a]), want, `${a} ${op} ${v}`);
      }
    }
  const masked = compileSeccomp(
    {
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        {
          names: ['ioctl'],
          action: 'SCMP_ACT_ERRNO',
          errnoRet: 13,
          args: [{ index: 1, value: 0xff00, valueTwo: 0x5400, op: 'SCMP_CMP_MASKED_EQ' }],
        },
      ],
    },
    'x86_64',
  );
  t.is(x64(masked, 'ioctl', [0n, 0x5412n]), RET.errno(13));
  t.is(x64(masked, 'ioctl', [0n, 0x8912n]), RET.ALLOW);
});

test('the compiled default profile fits the kernel limit with room to spare', (t) => {
  t.true(defaultProgram.length / 8 < 1024, `${defaultProgram.length / 8} instructions`);
});

test('what the compiler cannot express is refused, not dropped', (t) => {
  const base = { defaultAction: 'SCMP_ACT_ALLOW' };
  t.throws(() => compileSeccomp({ ...base, flags: ['SECCOMP_FILTER_FLAG_LOG'] }, 'x86_64'), { message: /flags/ });
  t.throws(() => compileSeccomp({ defaultAction: 'SCMP_ACT_NOTIFY' }, 'x86_64'), { message: /unsupported action/ });
  t.throws(
    () =>
      compileSeccomp(
        {
          ...base,
          syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 6, value: 0, op: 'SCMP_CMP_EQ' }] }],
        },
        'x86_64',
      ),
    { message: /index 6/ },
  );
  t.throws(
    () =>
      compileSeccomp(
        {
          ...base,
          syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'LIKE' }] }],
        },
        'x86_64',
      ),
    { message: /operator/ },
  );
});

test('docker-format profiles resolve includes and excludes by capability and architecture', (t) => {
  const profile = parseSeccompProfile(
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ERRNO',
      archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] }],
      syscalls: [
        { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW', args: null },
        { names: ['mount'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } },
        { names: ['ptrace'], action: 'SCMP_ACT_ALLOW', excludes: { caps: ['CAP_SYS_ADMIN'] } },
        { names: ['arm_fadvise64_64'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['arm', 'arm64'] } },
      ],
    }),
    'p.json',
  );
  const plain = resolveSeccomp(profile, DEFAULT_CAPABILITIES);
  t.deepEqual(
    plain.syscalls?.map((r) => r.names),
    process.arch === 'x64' ? [['read', 'write'], ['ptrace']] : plain.syscalls?.map((r) => r.names),
  );
  t.deepEqual(plain.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  const admin = resolveSeccomp(profile, capabilitySet(['SYS_ADMIN'], []));
  t.true(admin.syscalls?.some((r) => r.names.includes('mount')));
  t.false(admin.syscalls?.some((r) => r.names.includes('ptrace')));
});

test('a malformed profile file is a one-line error naming the file', (t) => {
  for (const [text, want] of [
    ['{', /p\.json: /],
    ['[]', /not a JSON object/],
    ['{"defaultAction":1}', /defaultAction/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":"read","action":"SCMP_ACT_ALLOW"}]}', /names/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"X","args":[{}]}]}', /args/],
    ['{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/x"}', /notify/],
  ] as const) {
    const e = t.throws(() => parseSeccompProfile(text, 'p.json'));
    t.regex(e?.message ?? '', want);
    t.false((e?.message ?? '').includes('\n'));
  }
});

test('--security-opt takes seccomp=unconfined, a profile file and no-new-privileges, and refuses the rest', async (t) => {
  const dir = await makeTempDir('tsbuild-seccomp-');
  t.teardown(() => removeDir(dir));
  const file = join(dir, 'p.json');
  writeFileSync(file, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW' }));
  t.is(securityOptions([]).seccomp, 'default');
  t.is(securityOptions(['seccomp=unconfined']).seccomp, 'unconfined');
  t.deepEqual(securityOptions([`seccomp=${file}`]).seccomp, { defaultAction: 'SCMP_ACT_ALLOW' });
  t.is(securityOptions(['no-new-privileges']).seccomp, 'default');
  t.throws(() => securityOptions(['no-new-privileges=false']), { message: /always sets no_new_privs/ });
  t.throws(() => securityOptions(['apparmor=unconfined']), { message: /unsupported --security-opt/ });
  t.throws(() => securityOptions([`seccomp=${join(dir, 'missing.json')}`]), { message: /ENOENT/ });
  t.is(seccompFor('unconfined', DEFAULT_CAPABILITIES), undefined);
});

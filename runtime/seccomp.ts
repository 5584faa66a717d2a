// The default seccomp profile of `run` and every RUN step, as data (the format of docker's `--security-opt
// seccomp=FILE` profiles: OCI rules plus `includes`/`excludes` conditions on capabilities and architectures), and
// its resolution for one container into the OCI `linux.seccomp` section that the executor compiles and `bundle`
// writes for runc. Policy, like docker's default: every syscall an ordinary program needs is allowed; what needs a
// capability the container does not have (mount, namespaces, modules, clock, reboot, kexec, BPF, perf) is allowed
// only with that capability; what no container needs (the kernel keyring, io_uring, obsolete syscalls) is denied.
// Denied calls fail with EPERM; clone3 with ENOSYS so that libc falls back to clone, whose namespace flags are checked.
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { InvalidInputError } from '../sys/errors.js';
import type { LinuxSeccomp, SeccompArg, SeccompRule } from '../sys/seccomp/bpf.js';

interface Condition {
  caps?: string[];
  arches?: string[];
  minKernel?: string;
}

export interface ProfileRule extends SeccompRule {
  /** the rule applies only when the container has every capability (and runs on an architecture) listed */
  includes?: Condition;
  /** the rule does not apply when the container has any capability (or architecture) listed */
  excludes?: Condition;
  comment?: string;
}

/** SeccompProfile is a profile file: OCI fields plus per-rule conditions, resolved per container. */
export interface SeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  archMap?: Array<{ architecture: string; subArchitectures?: string[] }>;
  syscalls?: ProfileRule[];
}

const EPERM = 1;
const ENOSYS = 38;
/** CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET */
const CLONE_NAMESPACES = 0x7e020000;

const words = (lines: string[]): string[] => lines.join(' ').split(' ');
const allowWith = (caps: string[], names: string): ProfileRule => ({
  names: names.split(' '),
  action: 'SCMP_ACT_ALLOW',
  includes: { caps },
});

/** DEFAULT_SECCOMP_PROFILE: see the header. Every syscall of sys/seccomp/syscalls.ts is named in some rule. */
export const DEFAULT_SECCOMP_PROFILE: SeccompProfile = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: EPERM,
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'],
  syscalls: [
    {
      comment: 'what ordinary programs use',
      names: words([
        '_llseek _newselect accept accept4 access adjtimex alarm arch_prctl bind brk cachestat capget capset',
        'chdir chmod chown chown32 chroot clock_getres clock_getres_time64 clock_gettime clock_gettime64',
        'clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3',
        'epoll_create epoll_create1 epoll_ctl epoll_pwait epoll_pwait2 epoll_wait eventfd eventfd2 execve',
        'execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir',
        'fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock',
        'fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex',
        'futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat get_mempolicy get_robust_list',
        'get_thread_area getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32',
        'getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom',
        'getresgid getresgid32 getresuid getresuid32 getrlimit getrusage getsid getsockname getsockopt gettid',
        'gettimeofday getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init inotify_init1',
        'inotify_rm_watch io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_setup io_submit',
        'ioctl ioprio_get ioprio_set ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self',
        'lchown lchown32 lgetxattr link linkat listen listmount listxattr listxattrat llistxattr lremovexattr',
        'lseek lsetxattr lsm_get_self_attr lsm_list_modules lsm_set_self_attr lstat lstat64 madvise',
        'map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2',
        'mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64',
        'mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock',
        'munlockall munmap name_to_handle_at nanosleep newfstatat nice oldfstat oldlstat oldolduname oldstat',
        'olduname open openat openat2 pause pidfd_getfd pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc',
        'pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_madvise',
        'process_mrelease process_vm_readv process_vm_writev pselect6 pselect6_time64 ptrace pwrite64 pwritev',
        'pwritev2 read readahead readdir readlink readlinkat readv recvfrom recvmmsg recvmmsg_time64 recvmsg',
        'remap_file_pages removexattr removexattrat rename renameat renameat2 restart_syscall rmdir rseq',
        'rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait',
        'rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_get_priority_max sched_get_priority_min sched_getaffinity',
        'sched_getattr sched_getparam sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64',
        'sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl',
        'semget semop semtimedop semtimedop_time64 sendfile sendfile64 sendmmsg sendmsg sendto set_robust_list',
        'set_thread_area set_tid_address setdomainname setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32',
        'setgroups setgroups32 sethostname setitimer setpgid setpriority setregid setregid32 setresgid',
        'setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit setsid setsockopt setuid setuid32',
        'setxattr setxattrat sgetmask shmat shmctl shmdt shmget shutdown sigaction sigaltstack signal signalfd',
        'signalfd4 sigpending sigprocmask sigreturn sigsuspend socket socketcall socketpair splice ssetmask stat',
        'stat64 statfs statfs64 statmount statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill',
        'time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime',
        'timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times',
        'tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes',
        'vfork vmsplice wait4 waitid waitpid write writev',
      ]),
      action: 'SCMP_ACT_ALLOW',
    },
    {
      comment: 'execution domains that do not weaken the address space layout (0xffffffff queries)',
      names: ['personality'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: 0x0, op: 'SCMP_CMP_EQ' }],
    },
    ...[0x8, 0x20000, 0x20008, 0xffffffff].map((value): ProfileRule => ({
      names: ['personality'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }],
    })),
    {
      comment: 'new processes and threads, but no new namespaces without CAP_SYS_ADMIN',
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: CLONE_NAMESPACES, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      excludes: { caps: ['CAP_SYS_ADMIN'] },
    },
    {
      comment: 'its flags are in memory where a filter cannot see them: ENOSYS makes libc use clone',
      names: ['clone3'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: ENOSYS,
      excludes: { caps: ['CAP_SYS_ADMIN'] },
    },
    allowWith(
      ['CAP_SYS_ADMIN'],
      'clone clone3 mount umount umount2 pivot_root unshare setns fsopen fsconfig fsmount fspick move_mount ' +
        'open_tree open_tree_attr mount_setattr quotactl quotactl_fd lookup_dcookie fanotify_init swapon swapoff ' +
        'bpf perf_event_open',
    ),
    allowWith(['CAP_BPF'], 'bpf'),
    allowWith(['CAP_PERFMON'], 'perf_event_open'),
    allowWith(['CAP_SYS_BOOT'], 'reboot kexec_load kexec_file_load'),
    allowWith(['CAP_SYS_MODULE'], 'init_module finit_module delete_module'),
    allowWith(['CAP_SYS_PACCT'], 'acct'),
    allowWith(['CAP_SYS_RAWIO'], 'iopl ioperm'),
    allowWith(['CAP_SYS_TIME'], 'settimeofday stime clock_settime clock_settime64 clock_adjtime clock_adjtime64'),
    allowWith(['CAP_SYSLOG'], 'syslog'),
    allowWith(['CAP_SYS_PTRACE'], 'kcmp userfaultfd'),
    allowWith(['CAP_SYS_NICE'], 'mbind set_mempolicy move_pages migrate_pages set_mempolicy_home_node'),
    allowWith(['CAP_SYS_TTY_CONFIG'], 'vhangup'),
    allowWith(['CAP_DAC_READ_SEARCH'], 'open_by_handle_at'),
    {
      comment: 'never: the kernel keyring is not namespaced, io_uring bypasses this filter, the rest is obsolete',
      names: (
        'keyctl add_key request_key io_uring_setup io_uring_enter io_uring_register modify_ldt vm86 vm86old ' +
        'uselib ustat sysfs _sysctl nfsservctl create_module get_kernel_syms query_module afs_syscall tuxcall ' +
        'security vserver putpmsg getpmsg idle bdflush epoll_ctl_old epoll_wait_old break ftime gtty lock mpx ' +
        'prof profil stty ulimit'
      ).split(' '),
      action: 'SCMP_ACT_ERRNO',
      errnoRet: EPERM,
    },
  ],
};

function applies(cond: Condition | undefined, caps: Set<string>, arch: string, all: boolean): boolean {
  if (!cond) return all;
  const tests: boolean[] = [];
  if (cond.caps?.length) tests.push(all ? cond.caps.every((c) => caps.has(c)) : cond.caps.some((c) => caps.has(c)));
  if (cond.arches?.length) tests.push(all ? cond.arches.includes(arch) : cond.arches.includes(arch));
  if (cond.minKernel) tests.push(kernelAtLeast(cond.minKernel));
  if (tests.length === 0) return all;
  return all ? tests.every(Boolean) : tests.some(Boolean);
}

function kernelAtLeast(min: string): boolean {
  const parse = (v: string): number[] => v.split(/[.-]/).slice(0, 2).map(Number);
  const [a = 0, b = 0] = parse(release());
  const [x = 0, y = 0] = parse(min);
  return a > x || (a === x && b >= y);
}

/** ARCH_NAMES maps Node's process.arch to the architecture names profiles use in includes/excludes. */
const ARCH_NAMES: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64' };

/**
 * resolveSeccomp picks the rules of `profile` that apply to a container with the capabilities `caps` (names such
 * as CAP_SYS_ADMIN) on this machine, giving the OCI section: no conditions, one unconditional rule per syscall.
 */
export function resolveSeccomp(profile: SeccompProfile, caps: readonly string[]): LinuxSeccomp {
  const have = new Set(caps);
  const arch = ARCH_NAMES[process.arch] ?? process.arch;
  const decided = new Set<string>();
  const syscalls: SeccompRule[] = [];
  for (const rule of profile.syscalls ?? []) {
    if (!applies(rule.includes, have, arch, true) || applies(rule.excludes, have, arch, false)) continue;
    const conditional = (rule.args ?? []).length > 0;
    const names = rule.names.filter((n) => !decided.has(n));
    if (names.length === 0) continue;
    if (!conditional) for (const n of names) decided.add(n);
    const out: SeccompRule = { names, action: rule.action };
    if (rule.errnoRet !== undefined) out.errnoRet = rule.errnoRet;
    if (conditional) out.args = (rule.args as SeccompArg[]).map((a) => ({ ...a }));
    syscalls.push(out);
  }
  const architectures = [
    ...(profile.architectures ?? []),
    ...(profile.archMap ?? []).flatMap((m) => [m.architecture, ...(m.subArchitectures ?? [])]),
  ];
  const out: LinuxSeccomp = { defaultAction: profile.defaultAction, syscalls };
  if (profile.defaultErrnoRet !== undefined) out.defaultErrnoRet = profile.defaultErrnoRet;
  if (architectures.length > 0) out.architectures = [...new Set(architectures)];
  return out;
}

/** SeccompOption is what `--security-opt seccomp=…` chose: docker's default, none, or a profile file's contents. */
export type SeccompOption = 'default' | 'unconfined' | SeccompProfile;

/** seccompFor resolves an option for a container with capabilities `caps`; undefined means unconfined. */
export function seccompFor(option: SeccompOption, caps: readonly string[]): LinuxSeccomp | undefined {
  if (option === 'unconfined') return undefined;
  return resolveSeccomp(option === 'default' ? DEFAULT_SECCOMP_PROFILE : option, caps);
}

/** parseSeccompProfile checks a profile file's JSON (hostile input): one-line errors that name the file. */
export function parseSeccompProfile(text: string, file: string): SeccompProfile {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new InvalidInputError(`seccomp profile ${file}: ${(e as Error).message}`);
  }
  const bad = (what: string): never => {
    throw new InvalidInputError(`seccomp profile ${file}: ${what}`);
  };
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  const strings = (x: unknown, what: string): string[] =>
    Array.isArray(x) && x.every((s) => typeof s === 'string') ? x : bad(`${what} must be a list of strings`);
  if (!isObj(v)) return bad('not a JSON object');
  if (typeof v.defaultAction !== 'string') bad('defaultAction must be a string');
  if (v.architectures !== undefined) strings(v.architectures, 'architectures');
  if (v.flags !== undefined && strings(v.flags, 'flags').length > 0) bad('filter flags are not supported');
  if (v.listenerPath !== undefined) bad('listenerPath (seccomp notify) is not supported');
  if (v.archMap !== undefined) {
    if (!Array.isArray(v.archMap)) bad('archMap must be a list');
    for (const m of v.archMap as unknown[]) {
      if (!isObj(m) || typeof m.architecture !== 'string') bad('archMap entries need an architecture');
      else if (m.subArchitectures !== undefined) strings(m.subArchitectures, 'subArchitectures');
    }
  }
  if (v.syscalls !== undefined && !Array.isArray(v.syscalls)) bad('syscalls must be a list');
  for (const [i, r] of ((v.syscalls as unknown[] | undefined) ?? []).entries()) {
    if (!isObj(r)) bad(`syscalls[${i}] is not an object`);
    const rule = r as Record<string, unknown>;
    if (typeof rule.name === 'string' && rule.names === undefined) rule.names = [rule.name];
    strings(rule.names, `syscalls[${i}].names`);
    if (typeof rule.action !== 'string') bad(`syscalls[${i}].action must be a string`);
    if (rule.args !== undefined && rule.args !== null && !Array.isArray(rule.args)) bad(`syscalls[${i}].args`);
    if (rule.args === null) delete rule.args;
    for (const a of (rule.args as unknown[] | undefined) ?? [])
      if (!isObj(a) || typeof a.index !== 'number' || typeof a.value !== 'number' || typeof a.op !== 'string')
        bad(`syscalls[${i}].args: each needs index, value and op`);
    for (const k of ['includes', 'excludes'] as const) {
      const c = rule[k];
      if (c === undefined) continue;
      if (!isObj(c)) bad(`syscalls[${i}].${k} is not an object`);
      else {
        if (c.caps !== undefined) strings(c.caps, `syscalls[${i}].${k}.caps`);
        if (c.arches !== undefined) strings(c.arches, `syscalls[${i}].${k}.arches`);
        if (c.minKernel !== undefined && typeof c.minKernel !== 'string') bad(`syscalls[${i}].${k}.minKernel`);
      }
    }
  }
  return v as unknown as SeccompProfile;
}

/** loadSeccompProfile reads `--security-opt seccomp=FILE`. */
export function loadSeccompProfile(file: string): SeccompProfile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InvalidInputError(
      `seccomp profile ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  return parseSeccompProfile(text, file);
}

/** SecurityOptions is what `--security-opt` values chose. */
export interface SecurityOptions {
  seccomp: SeccompOption;
}

/**
 * securityOptions reads docker's `--security-opt` values: `seccomp=unconfined`, `seccomp=FILE` (a profile in
 * docker's format) and `no-new-privileges[=true]` (always on here). Anything else is refused, never ignored.
 */
export function securityOptions(values: string[]): SecurityOptions {
  const out: SecurityOptions = { seccomp: 'default' };
  for (const v of values) {
    const eq = v.search(/[=:]/);
    const key = eq < 0 ? v : v.slice(0, eq);
    const value = eq < 0 ? undefined : v.slice(eq + 1);
    if (key === 'seccomp' && value) out.seccomp = value === 'unconfined' ? 'unconfined' : loadSeccompProfile(value);
    else if (key === 'no-new-privileges' && (value === undefined || value === 'true')) continue;
    else if (key === 'no-new-privileges' && value === 'false')
      throw new InvalidInputError('--security-opt no-new-privileges=false: tsbuild always sets no_new_privs');
    else
      throw new InvalidInputError(
        `unsupported --security-opt ${JSON.stringify(v)}`,
        'supported: seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges',
      );
  }
  return out;
}

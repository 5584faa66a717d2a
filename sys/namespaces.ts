// Start a process in new mount, PID, UTS, IPC (and network) namespaces, through one of two executors that read the
// same list of operations: a tiny C helper (sys/nsexec.c, compiled on first use with the host's cc) or a Node
// child (sys/nsexec.ts) behind util-linux unshare(1). Node itself never enters a namespace: it is multi-threaded.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { TsbuildError } from './errors.js';
import { run, which } from './exec.js';
import { startUserNet, userNetTool, type UserNet } from './usernet.js';
import { userCacheDir } from './user-cache.js';

/**
 * Op is one step of the executor's program, run in order inside the new namespaces (see sys/nsexec.c).
 * Paths before `pivot` are host paths; after it, container paths.
 */
export type Op =
  | { op: 'cgroup'; procs: string } // write "0" to a cgroup.procs file: join that cgroup
  | { op: 'sync'; fd: number } // write our host pid and '\n' to fd, wait for one byte back (EOF: exit 125); before pivot
  | { op: 'mount'; source: string; target: string; fstype: string; flags: number; data: string } // '' = NULL
  | { op: 'mountattr'; path: string; set: number } // mount_setattr(AT_RECURSIVE) MOUNT_ATTR_* bits on a mount tree
  | { op: 'mkdir'; path: string; mode: number } // mkdir -p
  | { op: 'touch'; path: string } // create an empty file (and its parents) if missing
  | { op: 'mknod'; path: string; mode: number; major: number; minor: number } // mode includes S_IFCHR; not umasked
  | { op: 'symlink'; target: string; path: string }
  | { op: 'pivot'; root: string } // pivot_root into a mount point and detach the old root
  | { op: 'mask'; path: string } // hide: read-only tmpfs over a directory, /dev/null over anything else
  | { op: 'ro'; path: string } // make read-only (skipped when missing)
  | { op: 'hostname'; name: string }
  | { op: 'loup' } // bring up the loopback interface
  | { op: 'umask'; mask: number }
  | { op: 'ctty' } // setsid and make fd 0 the controlling terminal
  | { op: 'capbset'; caps: bigint } // drop every capability not in the mask from the bounding set
  | { op: 'user'; uid: number; gid: number; groups: number[] }
  | { op: 'capset'; caps: bigint } // effective = permitted = caps, inheritable = none
  | { op: 'nnp' } // no_new_privs
  | { op: 'seccomp'; program: string } // hex BPF (sys/seccomp/bpf.ts), read now, installed right before exec
  | { op: 'rlimit'; resource: number; soft: bigint | 'inf'; hard: bigint | 'inf' } // setrlimit
  | { op: 'pdeathsig'; signal: number }
  | { op: 'chdir'; path: string }
  | { op: 'env'; entry: string }
  | { op: 'exec'; init: boolean; args: string[] }; // last: resolve args[0] in PATH and execve (or fork under an init)

/** encodeOps flattens operations into argv words: the op name, then its fixed arguments (exec: init, count, args). */
export function encodeOps(ops: Op[]): string[] {
  const out: string[] = [];
  for (const o of ops) {
    switch (o.op) {
      case 'cgroup':
        out.push(o.op, o.procs);
        break;
      case 'sync':
        out.push(o.op, String(o.fd));
        break;
      case 'mount':
        out.push(o.op, o.source, o.target, o.fstype, String(o.flags), o.data);
        break;
      case 'mountattr':
        out.push(o.op, o.path, o.set.toString(16));
        break;
      case 'mkdir':
        out.push(o.op, o.path, o.mode.toString(8));
        break;
      case 'touch':
      case 'mask':
      case 'ro':
      case 'chdir':
        out.push(o.op, o.path);
        break;
      case 'mknod':
        out.push(o.op, o.path, o.mode.toString(8), String(o.major), String(o.minor));
        break;
      case 'symlink':
        out.push(o.op, o.target, o.path);
        break;
      case 'pivot':
        out.push(o.op, o.root);
        break;
      case 'hostname':
        out.push(o.op, o.name);
        break;
      case 'loup':
      case 'ctty':
      case 'nnp':
        out.push(o.op);
        break;
      case 'umask':
        out.push(o.op, o.mask.toString(8));
        break;
      case 'capbset':
      case 'capset':
        out.push(o.op, o.caps.toString(16));
        break;
      case 'user':
        out.push(o.op, String(o.uid), String(o.gid), o.groups.join(','));
        break;
      case 'pdeathsig':
        out.push(o.op, String(o.signal));
        break;
      case 'seccomp':
        out.push(o.op, o.program);
        break;
      case 'rlimit':
        out.push(o.op, String(o.resource), String(o.soft), String(o.hard));
        break;
      case 'env':
        out.push(o.op, o.entry);
        break;
      case 'exec':
        out.push(o.op, o.init ? '1' : '0', String(o.args.length), ...o.args);
        break;
    }
  }
  return out;
}

export type StdioValue = 'pipe' | 'inherit' | 'ignore' | number;

/** Executor chooses the namespace entry: the compiled C helper, the Node child, or (auto) the helper when cc works. */
export type Executor = 'auto' | 'native' | 'node';

export interface StartOptions {
  ops: Op[];
  /** a new network namespace (only `lo`); false shares the host's */
  newNetwork: boolean;
  /**
   * with newNetwork: give the namespace outbound access through a user-mode stack (sys/usernet.ts) that this
   * process starts, before the operations run; the stack is stopped when the container has exited
   */
  userNetwork?: boolean;
  /** default: $TSBUILD_NSEXEC or 'auto' */
  executor?: Executor;
  /** spawn stdio for fds 0, 1, 2 */
  stdio: [StdioValue, StdioValue, StdioValue];
}

/** NsProcess is a started container: its PID 1 is the command (or the init). */
export interface NsProcess {
  /** the spawned process (helper or unshare); its stdio are the container's */
  child: ChildProcess;
  executor: 'native' | 'node';
  /** signal the container's PID 1 (SIGKILL ends the whole namespace) */
  kill(signal: NodeJS.Signals): void;
  /**
   * resolves when the container's PID 1 has exited and every process of it is gone; its network stack (--network
   * default) has been killed by then, and `teardown` says when it has been reaped
   */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** resolves once the container's network stack, if it had one, has exited (and at once when it had none) */
  teardown?: Promise<void>;
}

/** stacks killed and not reaped yet */
const dyingStacks = new Set<Promise<void>>();

/**
 * networkStacksGone resolves once every network stack this process started and killed has exited. A stack's exit
 * takes the kernel 10–30 ms (its tap device goes with the namespace's last reference), so a build does not wait for
 * each RUN's (runContainer's deferNetworkTeardown), only for all of them at its end.
 */
export async function networkStacksGone(): Promise<void> {
  while (dyingStacks.size) await Promise.all([...dyingStacks]);
}

/** RuntimeError is a failure to start the namespace executor at all. */
export class RuntimeError extends TsbuildError {
  constructor(message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super('E_RUNTIME', message, opts);
  }
}

const HELPER_CFLAGS = ['-O2', '-Wall'];

/**
 * helperSource finds sys/nsexec.c from the code that runs: the sources (sys/), the compiled modules (dist/sys/) or
 * the CLI bundle (dist/bundle/cli.js, scripts/bundle.mjs), which sits at the same depth as dist/sys/ for this.
 */
function helperSource(): string | undefined {
  for (const rel of ['./nsexec.c', '../../sys/nsexec.c']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  return undefined;
}

let helperPromise: Promise<string | undefined> | undefined;

/**
 * nativeHelper returns the path of the compiled C helper, compiling it into the user's cache directory
 * ($XDG_CACHE_HOME/tsbuild or ~/.cache/tsbuild) the first time; undefined when the source or a C compiler is missing.
 */
export function nativeHelper(): Promise<string | undefined> {
  helperPromise ??= buildHelper().catch((e: unknown) => {
    helperPromise = undefined;
    throw e;
  });
  return helperPromise;
}

async function buildHelper(): Promise<string | undefined> {
  const src = helperSource();
  if (!src) return undefined;
  const text = readFileSync(src);
  const hash = createHash('sha256').update(text).update(HELPER_CFLAGS.join(' ')).digest('hex').slice(0, 16);
  const dir = userCacheDir();
  const bin = join(dir, `nsexec-${hash}`);
  if (existsSync(bin)) return bin;
  // looked up only to compile: a search of $PATH is a stat per directory on every run otherwise
  const cc = which('cc') ?? which('gcc');
  if (!cc) return undefined;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${bin}.${process.pid}.tmp`;
  try {
    await run([cc, ...HELPER_CFLAGS, '-o', tmp, src]);
    renameSync(tmp, bin);
  } finally {
    rmSync(tmp, { force: true });
  }
  return bin;
}

/**
 * nodeEntry is the argv that runs sys/nsexec under this Node, through tsx when we are running from sources. It is the
 * file next to this code: sys/nsexec.ts, dist/sys/nsexec.js, or from the CLI bundle dist/bundle/nsexec.js (the
 * executor bundled on its own by scripts/bundle.mjs).
 */
function nodeEntry(): string[] {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = fileURLToPath(new URL(fromSource ? './nsexec.ts' : './nsexec.js', import.meta.url));
  return [process.execPath, ...(fromSource ? ['--import', import.meta.resolve('tsx')] : []), entry];
}

async function chooseExecutor(want: Executor): Promise<{ kind: 'native'; helper: string } | { kind: 'node' }> {
  if (want === 'node') return { kind: 'node' };
  let helper: string | undefined;
  let cause: unknown;
  try {
    helper = await nativeHelper();
  } catch (e) {
    cause = e;
  }
  if (helper) return { kind: 'native', helper };
  if (want === 'native') {
    const why = cause instanceof Error ? `: ${cause.message}` : '';
    throw new RuntimeError(`the native namespace helper is not available${why}`, {
      hint: 'install a C compiler: apt-get install -y gcc',
      cause,
    });
  }
  return { kind: 'node' };
}

/**
 * startInNamespaces spawns the executor with the operations and resolves once it runs; `exited` tells how the
 * container's PID 1 ended (the helper and unshare both die of the signal that killed it).
 */
export async function startInNamespaces(opts: StartOptions): Promise<NsProcess> {
  const want = opts.executor ?? ((process.env.TSBUILD_NSEXEC as Executor | undefined) || 'auto');
  const ex = await chooseExecutor(want);
  const userNet = opts.newNetwork && opts.userNetwork ? userNetTool() : undefined;
  // The user-mode stack needs the executor's pid and its new network namespace: the first operation reports the
  // one and waits until the other is configured, on a socket after fds 0-2 (and the Node executor's report fd 3).
  const syncFd = userNet ? (ex.kind === 'native' ? 3 : 4) : undefined;
  const words = encodeOps(syncFd === undefined ? opts.ops : [{ op: 'sync', fd: syncFd }, ...opts.ops]);
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  const stdio: StdioValue[] = [...opts.stdio];
  const extra: StdioValue[] = syncFd === undefined ? [] : ['pipe'];
  let child: ChildProcess;
  // detached: a session of its own, so that a ^C typed at our terminal reaches the container once, through
  // runContainer's forwarding, not also straight from the terminal. The parent-death signal still ties it to us.
  if (ex.kind === 'native') {
    child = spawn(ex.helper, [String(process.pid), `mui${opts.newNetwork ? 'n' : ''}`, ...words], {
      stdio: [...stdio, ...extra],
      env,
      detached: true,
    });
  } else {
    const unshare = ['unshare', '--mount', '--pid', '--fork', '--uts', '--ipc', ...(opts.newNetwork ? ['--net'] : [])];
    const argv = [
      'setpriv',
      '--pdeathsig',
      'KILL',
      '--',
      ...unshare,
      '--propagation',
      'private',
      '--kill-child',
      '--',
      ...nodeEntry(),
      ...words,
    ];
    // fd 3 carries the host pid of PID 1 (unshare does not forward signals, so we signal PID 1 ourselves).
    child = spawn(argv[0] as string, argv.slice(1), {
      stdio: [...stdio, 'pipe', ...extra],
      env: { ...env, TSBUILD_NSEXEC_REPORT_FD: '3' },
      detached: true,
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(new RuntimeError(`starting the namespace executor: ${e.message}`, { cause: e })),
    );
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  exited.catch(() => {}); // a spawn failure is reported once, below

  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new RuntimeError(`starting the namespace executor: ${e.message}`, {
          cause: e,
          hint: 'install util-linux (unshare, setpriv)',
        }),
      ),
    );
  });
  let net: UserNet | undefined;
  if (userNet && syncFd !== undefined) {
    const sock = child.stdio[syncFd] as Duplex;
    try {
      net = await attachUserNet(sock);
    } catch (e) {
      sock.destroy();
      child.kill('SIGKILL');
      await exited.catch(() => {});
      throw e;
    }
  }
  // The stack goes when the container has gone (normal exit, failure, kill): killed before `exited` resolves,
  // reaped by `teardown`.
  let teardown: Promise<void> | undefined;
  let done = exited;
  if (net) {
    const stack = net;
    const gone = exited.then(
      () => stack.stop(),
      () => stack.stop(),
    );
    dyingStacks.add(gone);
    void gone.finally(() => dyingStacks.delete(gone));
    teardown = gone;
    done = exited.finally(() => stack.kill());
  }
  let kill: (signal: NodeJS.Signals) => void = (signal) => {
    child.kill(signal);
  };
  if (ex.kind === 'node') {
    let pid1: number | undefined;
    const queued: NodeJS.Signals[] = [];
    const report = child.stdio[3] as NodeJS.ReadableStream | null;
    let text = '';
    report?.on('data', (b: Buffer) => {
      text += b.toString();
      const m = /^(\d+)\n/.exec(text);
      if (m && pid1 === undefined) {
        pid1 = Number(m[1]);
        for (const s of queued.splice(0)) signalPid(pid1, s);
      }
    });
    report?.on('error', () => {});
    kill = (signal) => {
      if (signal === 'SIGKILL')
        child.kill('SIGKILL'); // unshare dies; PID 1 gets its parent-death SIGKILL
      else if (pid1 === undefined) queued.push(signal);
      else signalPid(pid1, signal);
    };
  }
  return { child, executor: ex.kind, kill, exited: done, ...(teardown ? { teardown } : {}) };
}

/**
 * attachUserNet reads the host pid the executor's `sync` operation reports, attaches the stack to its network
 * namespace and lets the executor go on once the namespace is configured. Undefined when the executor ended first
 * (its own exit status tells why).
 */
async function attachUserNet(sock: Duplex): Promise<UserNet | undefined> {
  const pid = await new Promise<number | undefined>((resolve) => {
    let text = '';
    sock.on('data', (b: Buffer) => {
      text += b.toString();
      const m = /^(\d+)\n/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    sock.once('end', () => resolve(undefined));
    sock.once('close', () => resolve(undefined));
    sock.on('error', () => resolve(undefined));
  });
  if (pid === undefined) return undefined;
  const net = await startUserNet(pid);
  sock.end(Buffer.from([1]));
  return net;
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

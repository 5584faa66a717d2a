// Run one container process: cgroup, namespaces, stdio or terminal, signal forwarding, exit status, cleanup. The
// cgroup and the namespaced start go through the Host (sys/host.ts), so the logic here runs on a fake in tests.
import { closeSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { ReadStream as TtyStream } from 'node:tty';
import { CgroupError, type Cgroup } from '../sys/cgroups.js';
import { defaultHost, type Host } from '../sys/host.js';
import type { Executor, NsProcess, StdioValue } from '../sys/namespaces.js';
import { openPty, setWindowSize, type Pty } from '../sys/process.js';
import { executorOps } from './exec/program.js';
import type { RunSpec } from './spec.js';

/** A stdio end: the parent's own fd ('inherit'), nothing ('ignore'), a host fd, or a stream to copy through. */
export type InputIO = 'inherit' | 'ignore' | number | Readable;
export type OutputIO = 'inherit' | 'ignore' | number | Writable;

export interface RunIO {
  /** default 'ignore' (like `docker run` without -i) */
  stdin?: InputIO;
  /** default 'inherit' */
  stdout?: OutputIO;
  /** default 'inherit'; unused with a terminal (the terminal carries both outputs) */
  stderr?: OutputIO;
  /** aborting kills the container (SIGKILL) */
  signal?: AbortSignal;
}

export interface RunOptions {
  /** who starts the container and makes its cgroup; default defaultHost() */
  host?: Host;
  /** default: $TSBUILD_NSEXEC or 'auto' (the C helper when it can be compiled, else the Node executor) */
  executor?: Executor;
  /** forward SIGTERM, SIGINT, SIGHUP and SIGQUIT received by this process to the container's PID 1; default true */
  forwardSignals?: boolean;
  /** called once the executor process exists (its host pid), before waiting for it; errors kill the container */
  onStarted?: (pid: number) => void | Promise<void>;
  /**
   * return once the container has gone and its network stack has been killed, without waiting for the stack to be
   * reaped (sys/namespaces.ts networkStacksGone waits for all of them); default false: reaped before returning
   */
  deferNetworkTeardown?: boolean;
}

export interface RunResult {
  /** the container's exit code; 128+n when signal n killed PID 1 */
  exitCode: number;
  /** the signal that killed PID 1 */
  signal?: string;
  /** true when the memory limit made the kernel kill a process of the container */
  oomKilled?: boolean;
  /** why best-effort limits (spec.limitsBestEffort) were not applied */
  limitsSkipped?: string;
}

const FORWARDED: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'];

function stdioValue(io: InputIO | OutputIO | undefined, dflt: StdioValue): StdioValue {
  if (io === undefined) return dflt;
  if (typeof io === 'string' || typeof io === 'number') return io;
  return 'pipe';
}

/**
 * runContainer runs `spec` in new namespaces and resolves when its PID 1 has exited and every process of the
 * container is gone, with the exit status passed through. Failures of the runtime itself inside the container are
 * exit code 125, an executable that cannot run 126, a command not found 127 (each with a one-line message on the
 * container's stderr). With `spec.tty`, the container's stdio is a new pseudo-terminal (also its /dev/console and
 * controlling terminal) whose other end is copied to and from io.stdin/io.stdout here.
 */
export async function runContainer(spec: RunSpec, io: RunIO = {}, opts: RunOptions = {}): Promise<RunResult> {
  io.signal?.throwIfAborted();
  const host = opts.host ?? defaultHost();
  let cgroup: Cgroup | undefined;
  let pty: Pty | undefined;
  let slaveOpen = false;
  let masterOpen = false;
  const cleanups: Array<() => void> = [];
  try {
    const { memory, pids, cpus } = spec.limits;
    let limitsSkipped: string | undefined;
    if (memory !== undefined || pids !== undefined || cpus !== undefined) {
      try {
        cgroup = host.createCgroup({ limits: spec.limits });
      } catch (e) {
        if (!(e instanceof CgroupError) || !spec.limitsBestEffort) throw e;
        limitsSkipped = e.message;
      }
    }
    let stdio: [StdioValue, StdioValue, StdioValue];
    if (spec.tty) {
      pty = openPty();
      slaveOpen = masterOpen = true;
      sizeTerminal(pty, io.stdout);
      stdio = [pty.slave, pty.slave, pty.slave];
    } else {
      stdio = [stdioValue(io.stdin, 'ignore'), stdioValue(io.stdout, 'inherit'), stdioValue(io.stderr, 'inherit')];
    }
    const ops = executorOps(spec, {
      ...(cgroup ? { cgroupProcs: cgroup.procsFiles } : {}),
      ...(pty ? { console: pty.slavePath } : {}),
      ...(host.caps().mknod ? {} : { bindDevices: true }),
      ...(host.caps().userns && spec.network === 'host' ? { hostSysfs: true } : {}),
    });
    // Signals are caught from before the start: the container may run (and say it is ready) before the start
    // resolves here, and a SIGTERM then must not kill us and orphan it. One caught before the start is passed on
    // once it is known.
    const started: { ns?: NsProcess } = {};
    const early: NodeJS.Signals[] = [];
    if (opts.forwardSignals ?? true) {
      for (const sig of FORWARDED) {
        const forward = (): void => void (started.ns ? started.ns.kill(sig) : early.push(sig));
        process.on(sig, forward);
        cleanups.push(() => process.off(sig, forward));
      }
    }
    const ns = await host.startInNamespaces({
      ops,
      newNetwork: spec.network !== 'host',
      ...(spec.network === 'default' ? { userNetwork: true } : {}),
      stdio,
      ...(opts.executor ? { executor: opts.executor } : {}),
    });
    started.ns = ns;
    for (const sig of early) ns.kill(sig);
    // The output is wired before onStarted: a command that ends while onStarted runs (a short one, a loaded machine)
    // would otherwise have its output dropped by child_process, which drains a stream nobody reads when the child exits.
    const done: Array<Promise<unknown>> = pty ? [] : wireStdio(ns, io);
    if (opts.onStarted && ns.child.pid !== undefined) {
      try {
        await opts.onStarted(ns.child.pid);
      } catch (err) {
        ns.kill('SIGKILL');
        await ns.exited;
        throw err;
      }
    }
    if (pty) {
      closeSync(pty.slave);
      slaveOpen = false;
      done.push(wireTerminal(pty, io, cleanups));
      masterOpen = false; // the terminal's socket owns it now
    }
    if (io.signal) {
      const abort = (): void => ns.kill('SIGKILL');
      io.signal.addEventListener('abort', abort, { once: true });
      cleanups.push(() => io.signal?.removeEventListener('abort', abort));
      // aborted while the executor started (an event that fired before the listener existed is not replayed)
      if (io.signal.aborted) abort();
    }
    const { code, signal } = await ns.exited;
    await Promise.all(opts.deferNetworkTeardown ? done : [...done, ns.teardown]);
    const result: RunResult = { exitCode: code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0) };
    if (signal) result.signal = signal;
    if (cgroup && memory !== undefined) result.oomKilled = cgroup.oomKilled();
    if (limitsSkipped !== undefined) result.limitsSkipped = limitsSkipped;
    return result;
  } finally {
    for (const c of cleanups.reverse()) c();
    if (pty && slaveOpen) closeQuiet(pty.slave);
    if (pty && masterOpen) closeQuiet(pty.master);
    await cgroup?.remove();
  }
}

function closeQuiet(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed by its stream
  }
}

function wireStdio(ns: NsProcess, io: RunIO): Array<Promise<unknown>> {
  const { child } = ns;
  const done: Array<Promise<unknown>> = [];
  if (io.stdin && typeof io.stdin === 'object' && child.stdin) {
    const input = io.stdin;
    const sink = child.stdin;
    sink.on('error', () => {}); // EPIPE when the container does not read its input
    input.pipe(sink);
    void ns.exited.then(() => input.unpipe(sink));
  }
  for (const [out, from] of [
    [io.stdout, child.stdout],
    [io.stderr, child.stderr],
  ] as const) {
    if (out && typeof out === 'object' && from) {
      from.pipe(out, { end: false });
      done.push(from.closed ? Promise.resolve() : new Promise((resolve) => from.on('close', resolve)));
    }
  }
  return done;
}

interface TerminalLike {
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}

/** sizeTerminal gives the container's terminal the size of ours (when io.stdout is a terminal), else 24×80. */
function sizeTerminal(pty: Pty, out: OutputIO | undefined): void {
  const t: TerminalLike | undefined =
    out === undefined || out === 'inherit'
      ? process.stdout
      : typeof out === 'object'
        ? (out as TerminalLike)
        : undefined;
  if (t?.isTTY && t.columns && t.rows) setWindowSize(pty.master, t.rows, t.columns);
  else setWindowSize(pty.master, 24, 80);
}

/** wireTerminal copies io.stdin to the terminal and the terminal to io.stdout; resolves when the terminal hangs up. */
function wireTerminal(pty: Pty, io: RunIO, cleanups: Array<() => void>): Promise<void> {
  // A tty.ReadStream on the master both reads and writes (net.Socket refuses terminal fds).
  const master = new TtyStream(pty.master);
  const input = io.stdin === 'inherit' ? process.stdin : typeof io.stdin === 'object' ? io.stdin : undefined;
  const output =
    io.stdout === undefined || io.stdout === 'inherit'
      ? process.stdout
      : typeof io.stdout === 'object'
        ? io.stdout
        : undefined;
  if (input) {
    const t = input as Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => void };
    if (t.isTTY && t.setRawMode) {
      t.setRawMode(true);
      cleanups.push(() => t.setRawMode?.(false));
    }
    input.pipe(master);
    cleanups.push(() => {
      input.unpipe(master);
      input.pause(); // so that a terminal stdin does not keep this process alive
    });
  }
  if (output === process.stdout && process.stdout.isTTY) {
    const resize = (): void => sizeTerminal(pty, 'inherit');
    process.on('SIGWINCH', resize);
    cleanups.push(() => process.off('SIGWINCH', resize));
  }
  return new Promise((resolve) => {
    master.on('data', (b: Buffer) => output?.write(b));
    // Reading the master fails with EIO once every process holding the terminal has exited.
    master.on('error', () => resolve());
    master.on('end', () => resolve());
    master.on('close', () => resolve());
    cleanups.push(() => master.destroy());
  });
}

// One RUN: the process spec BuildKit's executor would give it, run through runtime/ in the step's root.
//
// The process: argv as dispatched (SHELL + script, or exec form), env = the stage's env (image Env + declared ARG
// values, proxy args) with PATH and HOME filled in when missing, cwd = WORKDIR, user = USER resolved in the root's
// /etc/passwd and /etc/group, hostname `buildkitsandbox`, Docker's default capabilities, no_new_privs. /etc/hosts
// and /etc/resolv.conf are bind-mounted from files made for the build (the host's resolv.conf, a hosts file
// naming the sandbox), so they never reach a layer. Network `host` shares the host's network (what `docker build`
// calls default); `none` is a new network namespace with only lo.
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { capabilitySet, DEFAULT_PATH, resolveUser, type Mount, type RunSpec } from '../../runtime/spec.js';
import type { InlineFile } from '../dockerfile/heredoc.js';

export const SANDBOX_HOSTNAME = 'buildkitsandbox';

export interface RunStepOptions {
  /** the step's root (merged tree) */
  rootfs: string;
  args: string[];
  /** KEY=value, in order */
  env: string[];
  cwd: string;
  /** USER as written in the config ('' = root) */
  user: string;
  network: 'host' | 'none';
  mounts: Mount[];
  /** `#!` heredocs: files mounted read-only (e.g. /dev/pipes/EOF) */
  files: InlineFile[];
  /** a private directory for the files this step needs (hosts, resolv.conf, heredoc scripts) */
  tmpDir: string;
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
  signal?: AbortSignal;
}

export interface RunStepResult {
  exitCode: number;
  signal?: string;
}

/** hostFiles writes the /etc/hosts and /etc/resolv.conf a build's RUN steps see (once per build). */
export async function hostFiles(dir: string): Promise<Record<string, string>> {
  const hosts = join(dir, 'hosts');
  const resolv = join(dir, 'resolv.conf');
  if (!existsSync(hosts)) {
    await writeFile(hosts, `127.0.0.1\tlocalhost ${SANDBOX_HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n`, { mode: 0o644 });
  }
  if (!existsSync(resolv)) {
    try {
      copyFileSync('/etc/resolv.conf', resolv);
    } catch {
      await writeFile(resolv, 'nameserver 8.8.8.8\nnameserver 8.8.4.4\n', { mode: 0o644 });
    }
  }
  return { '/etc/hosts': hosts, '/etc/resolv.conf': resolv };
}

/** runSpecFor builds the process spec of a RUN (pure apart from reading /etc/passwd and /etc/group in the root). */
export function runSpecFor(opts: Omit<RunStepOptions, 'onOutput' | 'signal' | 'tmpDir' | 'files'> & { extraFiles: Record<string, string> }): RunSpec {
  const user = resolveUser(opts.rootfs, opts.user);
  const env = [...opts.env];
  const has = (k: string): boolean => env.some((e) => e.slice(0, e.indexOf('=') < 0 ? e.length : e.indexOf('=')) === k);
  if (!has('PATH')) env.unshift(`PATH=${DEFAULT_PATH}`);
  if (!has('HOME')) env.push(`HOME=${homeOf(opts.rootfs, user.uid)}`);
  return {
    rootfs: opts.rootfs,
    args: opts.args,
    env,
    cwd: opts.cwd || '/',
    user,
    hostname: SANDBOX_HOSTNAME,
    network: opts.network,
    tty: false,
    init: false,
    mounts: opts.mounts,
    limits: {},
    noNewPrivileges: true,
    capabilities: capabilitySet([], []),
    extraFiles: opts.extraFiles,
  };
}

function homeOf(rootfs: string, uid: number): string {
  try {
    for (const line of readFileSync(join(rootfs, 'etc/passwd'), 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 7 && Number(f[2]) === uid && f[5]) return f[5];
    }
  } catch {
    // no passwd file
  }
  return '/';
}

/** runStep runs one RUN to completion and returns how it exited (it never throws for a non-zero exit). */
export async function runStep(opts: RunStepOptions): Promise<RunStepResult> {
  const extraFiles = await hostFiles(opts.tmpDir);
  const mounts = [...opts.mounts];
  for (const [i, f] of opts.files.entries()) {
    const file = join(opts.tmpDir, `inline-${process.hrtime.bigint()}-${i}`);
    await writeFile(file, f.content, { mode: f.mode });
    mounts.push({ source: file, destination: f.path, readonly: true });
  }
  const spec = runSpecFor({ ...opts, mounts, extraFiles });
  const sink = (stream: 'stdout' | 'stderr'): Writable =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        opts.onOutput?.(stream, chunk);
        cb();
      },
    });
  const { runContainer } = await import('../../runtime/run.js');
  const r = await runContainer(
    spec,
    { stdin: 'ignore', stdout: sink('stdout'), stderr: sink('stderr'), ...(opts.signal ? { signal: opts.signal } : {}) },
    { forwardSignals: false },
  );
  return { exitCode: r.exitCode, ...(r.signal ? { signal: r.signal } : {}) };
}

// One RUN: the process spec BuildKit's executor would give it, run through runtime/ in the step's root.
//
// The process: argv as dispatched (SHELL + script, or exec form), env = the stage's env (image Env + declared ARG
// values, proxy args) with PATH and HOME filled in when missing, cwd = WORKDIR, user = USER resolved in the root's
// /etc/passwd and /etc/group (the primary group also in the groups list, BuildKit's fix for CVE-2023-25173),
// hostname `buildkitsandbox` (or the build arg BUILDKIT_SANDBOX_HOSTNAME), Docker's default capabilities,
// no_new_privs. /etc/hosts and /etc/resolv.conf are bind-mounted from files made for the step (BuildKit's: the
// host's resolv.conf without loopback nameservers, a hosts file naming the sandbox), so they never reach a layer.
// Network `default` is a network namespace of its own with outbound access through a user-mode stack
// (sys/usernet.ts); `none` one with only lo; `host` the host's, only when allowed (root, or --allow network.host).
// The process runs through the build's Host. `--security=insecure` (with --allow security.insecure): BuildKit's
// insecure spec instead of the sandbox (steps/run-security.ts).
//
// runStep is the RUN step as execute.ts schedules it: the cache key (argv, env, cwd, user, network, security,
// mounts, heredoc files), BuildKit's created_by, and the work: a step root with the mount points the runtime needs, the
// RUN mounts (builder/steps/run-mounts.ts), the process, and the layer; a non-zero exit is a RunFailedError.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Host } from '../../sys/host.js';
import { InvalidInputError } from '../../sys/errors.js';
import { seccompFor } from '../../runtime/seccomp.js';
import {
  capabilitySet,
  DEFAULT_PATH,
  resolveUser,
  type Limits,
  type Mount,
  type Network,
  type Rlimit,
  type RunSpec,
  type TmpfsMount,
} from '../../runtime/spec.js';
import type { Stub } from '../../unionfs/rootfs.js';
import { cacheKey } from '../cache.js';
import { DockerfileError } from '../dockerfile/errors.js';
import { expandWord, lexWord } from '../dockerfile/expand.js';
import type { InlineFile } from '../dockerfile/heredoc.js';
import type { Instruction, RunInstruction } from '../dockerfile/instructions.js';
import { PROXY_ARGS } from '../plan.js';
import { DEFAULT_SHELL } from './metadata.js';
import { resolveHostGateway } from './host-gateway.js';
import { parseMount, prepareMounts } from './run-mounts.js';
import { insecureSpec, securityMode, type SecurityMode } from './run-security.js';
import type { SshForwarder } from '../ssh-forward.js';
import { commitOptions, commitStep, type FsStep, type StageState, type StepEnv } from './step.js';

export const SANDBOX_HOSTNAME = 'buildkitsandbox';

export interface RunProcessOptions {
  /** the step's root (merged tree) */
  rootfs: string;
  args: string[];
  /** KEY=value, in order */
  env: string[];
  cwd: string;
  /** USER as written in the config ('' = root) */
  user: string;
  network: Network;
  /** default SANDBOX_HOSTNAME */
  hostname?: string;
  mounts: Mount[];
  tmpfs?: TmpfsMount[];
  /** `#!` heredocs: files mounted read-only (e.g. /dev/pipes/EOF) */
  files: InlineFile[];
  /** a private directory for the files this step needs (hosts, resolv.conf, heredoc scripts) */
  tmpDir: string;
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
  signal?: AbortSignal;
  /** the host the process runs through (namespaces, mounts) */
  host?: Host;
  /** the /etc/hosts to mount (default: one hostFiles writes in tmpDir) */
  hostsFile?: string;
  /** cgroup limits, ulimits (builder/steps/run.ts RunSandbox); default none */
  sandbox?: RunSandbox;
  /** `RUN --security=insecure`: BuildKit's insecure spec (steps/run-security.ts) */
  insecure?: boolean;
}

/**
 * RunSandbox is the resource side of a RUN's sandbox: cgroup limits (DEFAULT_RUN_LIMITS unless the build asked for
 * others), ulimits, and what to do when default limits cannot be applied (no usable cgroup: warn once, run).
 */
export interface RunSandbox {
  limits: Limits;
  /** the limits are the defaults: without a usable cgroup the step runs without them */
  bestEffort: boolean;
  rlimits: Rlimit[];
  onLimitsSkipped?: (reason: string) => void;
  /** the network.host entitlement: root, or --allow network.host */
  allowNetworkHost?: boolean;
  /** --shm-size: bytes of /dev/shm */
  shmSize?: number;
  /** --no-cache: cache mounts start empty (a directory of this build's) */
  freshCacheMounts?: boolean;
  /** the security.insecure entitlement (--allow security.insecure) */
  allowInsecure?: boolean;
  /** the build's --ssh agents (builder/ssh-forward.ts) */
  ssh?: SshForwarder;
}

export { checkEntitlements, ENTITLEMENTS } from './run-security.js';

export interface RunProcessResult {
  exitCode: number;
  signal?: string;
  /** the step's memory limit made the kernel kill one of its processes */
  oomKilled?: boolean;
}

/** ExtraHost is one `--add-host NAME:IP` entry of /etc/hosts (IP may be `host-gateway`: steps/host-gateway.ts). */
export interface ExtraHost {
  host: string;
  ip: string;
}

/** hostsText is the /etc/hosts of RUN steps: the sandbox's names, then the extra entries (BuildKit's order). */
export function hostsText(extra: readonly ExtraHost[] = [], hostname = SANDBOX_HOSTNAME): string {
  const lines = [`127.0.0.1\tlocalhost ${hostname}`, '::1\tlocalhost ip6-localhost ip6-loopback'];
  return `${[...lines, ...extra.map((e) => `${e.ip}\t${e.host}`)].join('\n')}\n`;
}

/**
 * The build's /etc/hosts is `hosts` in the build's scratch directory (StepEnv.tmpDir): build() writes it with the
 * --add-host entries before any step runs (writeHostsFile); each RUN mounts it, and its cache key includes it when
 * it differs from the default. Without it (a step run outside build()) a RUN gets the default file.
 */
export async function writeHostsFile(buildTmpDir: string, extra: readonly ExtraHost[]): Promise<void> {
  await writeFile(join(buildTmpDir, 'hosts'), hostsText(extra), { mode: 0o644 });
}

/** buildHosts reads the build's hosts file (writeHostsFile); undefined when it is missing or the default one. */
async function buildHosts(buildTmpDir: string): Promise<string | undefined> {
  const text = await readFile(join(buildTmpDir, 'hosts'), 'utf8').catch(() => undefined);
  return text === hostsText() ? undefined : text;
}

/** hostFiles writes the /etc/hosts and /etc/resolv.conf a RUN step sees into its private directory. */
export async function hostFiles(
  dir: string,
  network: Network = 'host',
  hostname = SANDBOX_HOSTNAME,
): Promise<Record<string, string>> {
  const hosts = join(dir, 'hosts');
  const resolv = join(dir, 'resolv.conf');
  if (!existsSync(hosts)) await writeFile(hosts, hostsText([], hostname), { mode: 0o644 });
  if (!existsSync(resolv)) await writeFile(resolv, resolvConfText(network), { mode: 0o644 });
  return { '/etc/hosts': hosts, '/etc/resolv.conf': resolv };
}

const DEFAULT_NAMESERVERS = ['8.8.8.8', '8.8.4.4', '2001:4860:4860::8888', '2001:4860:4860::8844'];

/**
 * resolvConfText is BuildKit's resolv.conf for a RUN: the host's (systemd-resolved's upstream file when the host
 * lists only its stub 127.0.0.53); outside the host network without loopback nameservers (they would be the
 * sandbox's own loopback); Google's public servers when none is left. Then search, options, the other lines.
 */
export function resolvConfText(network: Network, read: (p: string) => string | undefined = readText): string {
  let text = read('/etc/resolv.conf') ?? '';
  const servers = (t: string): string[] =>
    t
      .split('\n')
      .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
      .filter((s): s is string => s !== undefined);
  if (network !== 'host' && servers(text).join() === '127.0.0.53')
    text = read('/run/systemd/resolve/resolv.conf') ?? text;
  let ns = servers(text);
  if (network !== 'host') ns = ns.filter((s) => !isLoopback(s));
  if (ns.length === 0) ns = DEFAULT_NAMESERVERS;
  const lines = text.split('\n').map((l) => l.trim());
  const words = (key: string): string[] =>
    lines.filter((l) => l.startsWith(`${key} `) || l.startsWith(`${key}\t`)).flatMap((l) => l.split(/\s+/).slice(1));
  const search = words('search').concat(words('domain'));
  const options = words('options');
  const other = lines.filter((l) => l && !/^(nameserver|search|domain|options)\s/.test(l) && !/^[#;]/.test(l));
  const out = ns.map((s) => `nameserver ${s}`);
  if (search.length) out.push(`search ${search.join(' ')}`);
  if (options.length) out.push(`options ${options.join(' ')}`);
  return `${[...out, ...other].join('\n')}\n`;
}

function isLoopback(ip: string): boolean {
  return /^127\./.test(ip) || ip === '::1' || /^0*:(0*:)*0*1$/.test(ip);
}

function readText(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}

/** runSpecFor builds the process spec of a RUN (pure apart from reading /etc/passwd and /etc/group in the root). */
export function runSpecFor(
  opts: Omit<RunProcessOptions, 'onOutput' | 'signal' | 'tmpDir' | 'files' | 'host'> & {
    extraFiles: Record<string, string>;
    /** BuildKit adds no devices to an insecure step in a user namespace */
    inUserns?: boolean;
  },
): RunSpec {
  const resolved = resolveUser(opts.rootfs, opts.user);
  // BuildKit (CVE-2023-25173): the primary group is always in the supplementary groups, first.
  const user = resolved.additionalGids.includes(resolved.gid)
    ? resolved
    : { ...resolved, additionalGids: [resolved.gid, ...resolved.additionalGids] };
  const env = [...opts.env];
  const has = (k: string): boolean => env.some((e) => e.slice(0, e.indexOf('=') < 0 ? e.length : e.indexOf('=')) === k);
  if (!has('PATH')) env.unshift(`PATH=${DEFAULT_PATH}`);
  if (!has('HOME')) env.push(`HOME=${homeOf(opts.rootfs, user.uid)}`);
  const capabilities = capabilitySet([], []);
  const spec: RunSpec = {
    rootfs: opts.rootfs,
    args: opts.args,
    env,
    cwd: opts.cwd || '/',
    user,
    hostname: opts.hostname ?? SANDBOX_HOSTNAME,
    network: opts.network,
    tty: false,
    init: false,
    mounts: opts.mounts,
    limits: { ...opts.sandbox?.limits },
    noNewPrivileges: true,
    capabilities,
    // BuildKit runs RUN under docker's default seccomp profile (`--security=insecure`: none, below)
    seccomp: seccompFor('default', capabilities) ?? 'unconfined',
    extraFiles: opts.extraFiles,
  };
  if (opts.sandbox?.bestEffort) spec.limitsBestEffort = true;
  if (opts.sandbox?.rlimits.length) spec.rlimits = [...opts.sandbox.rlimits];
  if (opts.sandbox?.shmSize !== undefined) spec.shmSize = opts.sandbox.shmSize;
  if (opts.tmpfs?.length) spec.tmpfs = [...opts.tmpfs];
  return opts.insecure ? insecureSpec(spec, { devices: !opts.inUserns }) : spec;
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

/** runProcess runs one RUN's process to completion and returns how it exited (it never throws for a non-zero exit). */
export async function runProcess(opts: RunProcessOptions): Promise<RunProcessResult> {
  const extraFiles = await hostFiles(opts.tmpDir, opts.network, opts.hostname);
  if (opts.hostsFile) extraFiles['/etc/hosts'] = opts.hostsFile;
  const mounts = [...opts.mounts];
  for (const [i, f] of opts.files.entries()) {
    const file = join(opts.tmpDir, `inline-${process.hrtime.bigint()}-${i}`);
    await writeFile(file, f.content, { mode: f.mode });
    mounts.push({ source: file, destination: f.path, readonly: true });
  }
  const spec = runSpecFor({ ...opts, mounts, extraFiles, inUserns: opts.host?.caps().userns ?? false });
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
    {
      stdin: 'ignore',
      stdout: sink('stdout'),
      stderr: sink('stderr'),
      ...(opts.signal ? { signal: opts.signal } : {}),
    },
    { forwardSignals: false, deferNetworkTeardown: true, ...(opts.host ? { host: opts.host } : {}) },
  );
  if (r.limitsSkipped !== undefined) opts.sandbox?.onLimitsSkipped?.(r.limitsSkipped);
  return {
    exitCode: r.exitCode,
    ...(r.signal ? { signal: r.signal } : {}),
    ...(r.oomKilled ? { oomKilled: true } : {}),
  };
}

/** RunFailedError is a RUN whose process exited non-zero. */
export class RunFailedError extends DockerfileError {
  constructor(
    file: string,
    ins: Instruction,
    readonly exitCode: number,
    readonly command: string[],
    readonly output: string,
    oomKilled = false,
  ) {
    super({
      file,
      line: ins.line,
      endLine: ins.endLine,
      reason:
        `RUN failed: process ${JSON.stringify(command.join(' '))} did not complete successfully: exit code: ${exitCode}` +
        (oomKilled ? ' (out of memory: the step hit its memory limit; raise it with --memory)' : ''),
    });
  }
}

export interface RunOptions {
  /** --network: RUN's default */
  network: 'default' | 'none' | 'host';
  secrets: ReadonlyMap<string, Uint8Array>;
  /** the --build-arg values (proxy args that no ARG declared reach the process, not the key) */
  buildArgs: ReadonlyMap<string, string>;
  escape: string;
  /** limits and ulimits of every RUN (see RunSandbox) */
  sandbox?: RunSandbox;
}

/** STUBS are the mount points every RUN needs, whether the image has them or not. */
const STUBS: readonly Stub[] = [
  { path: '/proc', dir: true },
  { path: '/dev', dir: true },
  { path: '/sys', dir: true },
  { path: '/etc/hosts', dir: false },
  { path: '/etc/resolv.conf', dir: false },
];

/** runStep makes the RUN step; the instruction is checked here (before the step is shown). */
export function runStep(env: StepEnv, stage: StageState, ins: RunInstruction, o: RunOptions): FsStep {
  const at = { file: env.file, line: ins.line, endLine: ins.endLine };
  let security: SecurityMode;
  try {
    security = securityMode(ins.security);
  } catch (err) {
    throw new DockerfileError({ ...at, reason: (err as Error).message });
  }
  // BuildKit's entitlement check, in its words
  if (security === 'insecure' && !o.sandbox?.allowInsecure)
    throw new DockerfileError({ ...at, reason: 'security.insecure is not allowed (pass --allow security.insecure)' });
  const config = stage.config;
  const args =
    ins.exec.form === 'exec'
      ? [...ins.exec.args]
      : [...(config.Shell?.length ? config.Shell : DEFAULT_SHELL), ins.exec.script];
  if (args.length === 0) throw new InvalidInputError('RUN needs a command');
  const cwd = config.WorkingDir || '/';
  const user = config.User ?? '';
  const net = ins.network ?? o.network;
  if (net !== 'none' && net !== 'host' && net !== 'default')
    throw new InvalidInputError(`unsupported network mode ${JSON.stringify(net)} (default, none or host)`);
  const network: Network = net;
  // BuildKit's entitlement check, in its words; here root is entitled too.
  if (network === 'host' && !o.sandbox?.allowNetworkHost)
    throw new DockerfileError({
      ...at,
      reason: 'network.host is not allowed (pass --allow network.host, or build as root)',
    });
  const hostname = o.buildArgs.get('BUILDKIT_SANDBOX_HOSTNAME') || SANDBOX_HOSTNAME;

  // Environment: the stage env, plus proxy build args that no ARG declared (kept out of history and keys).
  const envList = [...stage.env].map(([k, v]) => `${k}=${v}`);
  const proxies: string[] = [];
  // BuildKit's exec op sets each proxy in both spellings, from either one (the upper-case one wins)
  for (const k of PROXY_ARGS) {
    const upper = k.toUpperCase();
    const v = o.buildArgs.get(upper) ?? o.buildArgs.get(upper.toLowerCase());
    if (v !== undefined && !stage.env.has(k)) proxies.push(`${k}=${v}`);
  }
  const mounts = ins.mounts.map((m) => parseMount(m, (s) => expandWord(s, stage.env, { escape: o.escape }), cwd));
  let prepared: Awaited<ReturnType<typeof prepareMounts>> | undefined;
  let hosts: string | undefined;
  return {
    display: `RUN ${displayRun(ins, stage.env, mounts, o.escape)}`,
    takesPending: true,
    createdBy: `RUN ${runCommandString(args, stage.buildArgs, stage.env)} # buildkit`,
    cacheKey: async () => {
      prepared = await prepareMounts(env, mounts, o.secrets, {
        freshCaches: o.sandbox?.freshCacheMounts ?? false,
        ...(o.sandbox?.ssh ? { ssh: o.sandbox.ssh } : {}),
        hasEnv: (k) => stage.env.has(k),
      });
      hosts = await buildHosts(env.tmpDir);
      if (hosts !== undefined) hosts = resolveHostGateway(hosts, network);
      if (hostname !== SANDBOX_HOSTNAME)
        hosts = (hosts ?? hostsText()).replace(/^(127\.0\.0\.1\tlocalhost) .*$/m, `$1 ${hostname}`);
      return cacheKey(stage.fsKey, {
        op: 'run',
        args,
        env: envList,
        cwd,
        user,
        network,
        ...(security === 'insecure' ? { security } : {}),
        ...(hostname === SANDBOX_HOSTNAME ? {} : { hostname }),
        mounts: prepared.keys,
        files: ins.files.map((f) => ({ path: f.path, mode: f.mode, sha: sha(f.content) })),
        ...(hosts === undefined ? {} : { hosts }),
      });
    },
    apply: async (out) => {
      const p = prepared!;
      const output: Buffer[] = [];
      let outputSize = 0;
      const root = await env.rootfs.openStep(stage.layers, [...STUBS, ...p.stubs], stage.pending);
      try {
        const runMounts = await p.materialize();
        const r = await runProcess({
          rootfs: root.dir,
          args,
          env: [...envList, ...proxies, ...p.env],
          cwd,
          user,
          network,
          hostname,
          mounts: runMounts,
          tmpfs: p.tmpfs,
          files: ins.files,
          tmpDir: p.dir,
          ...(hosts === undefined ? {} : { hostsFile: await writeStepHosts(p.dir, hosts) }),
          signal: env.signal,
          host: env.host,
          ...(o.sandbox ? { sandbox: o.sandbox } : {}),
          ...(security === 'insecure' ? { insecure: true } : {}),
          onOutput: (stream, chunk) => {
            if (outputSize < 4 << 20) {
              output.push(chunk);
              outputSize += chunk.length;
            }
            out(stream, chunk);
          },
        });
        env.signal.throwIfAborted();
        if (r.exitCode !== 0)
          throw new RunFailedError(env.file, ins, r.exitCode, args, Buffer.concat(output).toString(), r.oomKilled);
        // BuildKit: a RUN that changes nothing still adds a layer (an empty one), and its history entry says so
        return await commitStep(root, { ...commitOptions(env), keepEmpty: true });
      } finally {
        await root.discard();
      }
    },
    release: async () => {
      await prepared?.release();
    },
  };
}

async function writeStepHosts(dir: string, text: string): Promise<string> {
  const file = join(dir, 'hosts-step');
  await writeFile(file, text, { mode: 0o644 });
  return file;
}

/** runCommandString is BuildKit's: `|N K=V … argv` when the stage declares ARGs (ENV values win). */
export function runCommandString(
  args: string[],
  buildArgs: ReadonlyArray<{ key: string; value?: string }>,
  env: ReadonlyMap<string, string>,
): string {
  const pairs: string[] = [];
  const index = new Map<string, number>();
  for (const a of buildArgs) {
    const v = env.get(a.key) ?? a.value ?? '';
    const at = index.get(a.key);
    if (at !== undefined) pairs[at] = `${a.key}=${v}`;
    else {
      index.set(a.key, pairs.length);
      pairs.push(`${a.key}=${v}`);
    }
  }
  const head = pairs.length ? [`|${pairs.length}`, ...pairs] : [];
  return [...head, ...args].join(' ');
}

/**
 * displayRun is BuildKit's name of a RUN step: the instruction with the stage's ENV expanded (quotes kept, unset
 * variables left as written), the variables a secret mount sets shown as `****`.
 */
function displayRun(
  ins: RunInstruction,
  env: ReadonlyMap<string, string>,
  mounts: ReadonlyArray<{ type: string; env?: string }>,
  escape?: string,
): string {
  const text = ins.raw.replace(/^\s*\S+\s*/, '');
  const masked = new Map(env);
  for (const m of mounts) if (m.type === 'secret' && m.env) masked.set(m.env, '****');
  let oneLine = text.replace(/\s*\n\s*/g, ' ');
  try {
    oneLine = lexWord(oneLine, masked, { rawQuotes: true, skipUnsetEnv: true, ...(escape ? { escape } : {}) }).result;
  } catch {
    // shown as written
  }
  return oneLine.length > 200 ? `${oneLine.slice(0, 200)}…` : oneLine;
}

function sha(s: string | Uint8Array): string {
  return createHash('sha256').update(s).digest('hex');
}

// Rootless mode: an ordinary user's tsbuild runs inside a user namespace of its own, as podman and buildah do. The
// process the user started (the outer one) re-executes the CLI under `unshare --user --mount`, maps the user to
// root and the user's /etc/subuid and /etc/subgid ranges to 1…N (newuidmap/newgidmap from Debian's uidmap), then
// lets the inner CLI start. Inside, the inner CLI is uid 0 with every capability of that namespace: it mounts
// overlays (userxattr), gives files to any mapped owner and runs containers, with the same code paths as root;
// sys/linux.ts tells the difference through caps().userns. Its mounts live in a mount namespace that dies with it.
//
// bin/tsbuild, the shell launcher users run, does the same without the outer Node process when it can: util-linux's
// `unshare --map-users/--map-groups` maps the ids and execs Node directly (one Node start instead of two). Run as
// `node bin/tsbuild.js`, or where the launcher is unsure, the path below is taken.
//
// The inner process is gated: `unshare` runs a shell that waits for the outer process to write the maps before it
// execs Node, so that Node starts as uid 0 of the namespace and keeps its capabilities across that exec.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { constants, userInfo } from 'node:os';
import { run, which } from './exec.js';
import { TsbuildError } from './errors.js';

/** IdRange is a block of subordinate ids: `start`, `start+1`, … `start+count-1` on the host. */
export interface IdRange {
  start: number;
  count: number;
}

/** UsernsInfo says how the namespace this process runs in was made (set by the outer process for the inner one). */
export interface UsernsInfo {
  /** the user's own uid and gid on the host (root inside) */
  hostUid: number;
  hostGid: number;
  /** the subordinate ranges mapped to 1…N, absent when only the user's own id is mapped */
  subuid?: IdRange;
  subgid?: IdRange;
}

const ENV_INNER = 'TSBUILD_USERNS_INNER';
const ENV_PARENT = 'TSBUILD_USERNS_PARENT';

/**
 * subordinateRange returns the first range of `file` (/etc/subuid or /etc/subgid format: `name-or-id:start:count`)
 * that belongs to the user, by name or by number.
 */
export function subordinateRange(text: string, user: string, id: number): IdRange | undefined {
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [owner, start, count] = line.split(':');
    if (owner !== user && owner !== String(id)) continue;
    const s = Number(start);
    const c = Number(count);
    if (Number.isSafeInteger(s) && Number.isSafeInteger(c) && s > 0 && c > 0) return { start: s, count: c };
  }
  return undefined;
}

function readRange(file: string, user: string, id: number): IdRange | undefined {
  try {
    return subordinateRange(readFileSync(file, 'utf8'), user, id);
  } catch {
    return undefined;
  }
}

/** usernsInfo is how this process's user namespace was made, when it is the inner CLI of rootless mode. */
export function usernsInfo(env: NodeJS.ProcessEnv = process.env): UsernsInfo | undefined {
  const v = env[ENV_INNER];
  if (!v) return undefined;
  const n = v.split(':').map(Number);
  const [hostUid = -1, hostGid = -1, us, uc, gs, gc] = n;
  const info: UsernsInfo = { hostUid, hostGid };
  if (us && uc) info.subuid = { start: us, count: uc };
  if (gs && gc) info.subgid = { start: gs, count: gc };
  return info;
}

/**
 * inUserNamespace tells whether this process runs in a user namespace other than the initial one: its uid map is
 * not the identity map of every id.
 */
export function inUserNamespace(): boolean {
  try {
    const map = readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
    return !(map.length === 3 && map[0] === '0' && map[1] === '0' && map[2] === '4294967295');
  } catch {
    return false;
  }
}

/** mappedIds counts the uids this process's user namespace maps (4294967295 in the initial namespace). */
export function mappedIds(): number {
  try {
    return readFileSync('/proc/self/uid_map', 'utf8')
      .trim()
      .split('\n')
      .reduce((n, line) => n + (Number(line.trim().split(/\s+/)[2]) || 0), 0);
  } catch {
    return 0;
  }
}

/** Commands that never touch a store's extracted files run as the user, without a namespace. */
const OUTSIDE = new Set(['login', 'logout', 'boot', 'help']);

/** commandOf finds the command word of a tsbuild command line (after the global flags); '' for the default build. */
export function commandOf(args: string[]): string {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--root') {
      i++;
      continue;
    }
    if (a.startsWith('--root=') || a === '--debug') continue;
    if (a.startsWith('-')) return a === '-h' || a === '--help' || a === '-v' || a === '--version' ? 'help' : '';
    return a;
  }
  return 'help';
}

/** wantsUserNamespace tells whether this invocation should re-execute itself in a user namespace. */
export function wantsUserNamespace(args: string[], env: NodeJS.ProcessEnv = process.env): boolean {
  if ((process.geteuid?.() ?? 0) === 0) return false;
  if (env[ENV_INNER]) return false;
  if (env.TSBUILD_USERNS === 'off') return false;
  return !OUTSIDE.has(commandOf(args));
}

/** UserNamespaceError is a failure to set up the rootless namespace (maps refused, helpers missing). */
export class UserNamespaceError extends TsbuildError {
  constructor(message: string, hint?: string) {
    super('E_USERNS', message, hint ? { hint } : {});
  }
}

const GATE = 'echo >&3; exec 3>&-; read -r go <&4 || exit 125; exec 4<&-; exec "$@"';

/**
 * reexecInUserNamespace runs this CLI again inside a new user and mount namespace and resolves with its exit
 * status (128+N when a signal ended it), or undefined when user namespaces are not available here (the caller
 * then goes on without one, after the warning printed here).
 */
export async function reexecInUserNamespace(args: string[]): Promise<number | undefined> {
  const uid = process.geteuid?.() ?? 0;
  const gid = process.getegid?.() ?? 0;
  let name = String(uid);
  try {
    name = userInfo().username;
  } catch {
    // no passwd entry: match /etc/subuid by number only
  }
  const subuid = readRange('/etc/subuid', name, uid);
  const subgid = readRange('/etc/subgid', name, gid);
  const useHelpers = subuid !== undefined && subgid !== undefined && !!which('newuidmap') && !!which('newgidmap');
  if (!useHelpers) {
    const why =
      subuid && subgid
        ? 'newuidmap/newgidmap are missing (apt-get install uidmap)'
        : `no subordinate ids for ${name} in /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${name})`;
    process.stderr.write(
      `warning: rootless with only your own id mapped: files of other owners cannot be made (chown, useradd); ${why}\n`,
    );
  }
  const inner = [uid, gid, ...(useHelpers ? [subuid.start, subuid.count, subgid.start, subgid.count] : [])].join(':');
  const node = [process.execPath, ...process.execArgv, process.argv[1] as string];
  const child = spawn(
    'unshare',
    ['--user', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', GATE, 'sh', ...node, ...args],
    {
      stdio: ['inherit', 'inherit', 'inherit', 'pipe', 'pipe'],
      env: { ...process.env, [ENV_INNER]: inner, [ENV_PARENT]: String(process.pid) },
    },
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', () => resolve({ code: 127, signal: null }));
  });
  const ready = await new Promise<boolean>((resolve) => {
    const out = child.stdio[3] as NodeJS.ReadableStream;
    out.once('data', () => resolve(true));
    out.once('end', () => resolve(false));
    out.on('error', () => resolve(false));
    void exited.then(() => resolve(false));
  });
  const gate = child.stdio[4] as NodeJS.WritableStream;
  gate.on('error', () => {}); // the child died first: its exit status tells
  if (!ready) {
    await exited;
    process.stderr.write(
      'warning: user namespaces are not available here (unshare --user failed): running without one; RUN steps and containers need root\n',
    );
    return undefined;
  }
  try {
    const pid = child.pid as number;
    if (useHelpers) {
      await run(['newuidmap', String(pid), '0', String(uid), '1', '1', String(subuid.start), String(subuid.count)]);
      await run(['newgidmap', String(pid), '0', String(gid), '1', '1', String(subgid.start), String(subgid.count)]);
    } else {
      writeFileSync(`/proc/${pid}/uid_map`, `0 ${uid} 1\n`);
      writeFileSync(`/proc/${pid}/setgroups`, 'deny\n');
      writeFileSync(`/proc/${pid}/gid_map`, `0 ${gid} 1\n`);
    }
  } catch (e) {
    child.kill('SIGKILL');
    await exited;
    throw new UserNamespaceError(
      `mapping ids into the user namespace: ${(e as Error).message.split('\n')[0]}`,
      'check /etc/subuid and /etc/subgid, or set TSBUILD_USERNS=off to run without a user namespace',
    );
  }
  gate.end('go\n');
  // A signal sent to the command the user started goes on to the inner CLI, which ends its work (RUN steps, temp
  // dirs) and exits 130/143; we wait for its status. The keys of a terminal (^C, ^\) are the exception: they signal
  // every process of the foreground process group, the inner CLI too, and a second SIGINT would kill it before it
  // cleaned up. (So a `kill -INT` from elsewhere to a command in a terminal's foreground is not passed on.)
  const forward = (signal: NodeJS.Signals): void => {
    const fromKeyboard = signal === 'SIGINT' || signal === 'SIGQUIT';
    if (!fromKeyboard || !inForegroundOfTerminal()) child.kill(signal);
  };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.on(s, forward);
  const { code, signal } = await exited;
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.off(s, forward);
  return signal ? 128 + (constants.signals[signal] ?? 1) : (code ?? 1);
}

/**
 * inForegroundOfTerminal tells whether this process has a controlling terminal and belongs to its foreground
 * process group (the one the terminal's ^C signals): fields tty_nr and tpgid of /proc/self/stat against pgrp.
 */
export function inForegroundOfTerminal(stat?: string): boolean {
  let text = stat;
  try {
    text ??= readFileSync('/proc/self/stat', 'utf8');
  } catch {
    return false;
  }
  // pid (comm) state ppid pgrp session tty_nr tpgid …: comm may hold spaces, so count from the last ')'
  const [, , pgrp, , ttyNr, tpgid] = text
    .slice(text.lastIndexOf(')') + 1)
    .trim()
    .split(/\s+/)
    .map(Number);
  return ttyNr !== 0 && tpgid !== undefined && tpgid > 0 && tpgid === pgrp;
}

/**
 * adoptUserNamespace is called first thing by the inner CLI. Started by the outer Node process (reexecInUserNamespace
 * sets TSBUILD_USERNS_PARENT), it dies with that process (a parent-death signal, so `kill -9` of the command the user
 * started ends the work too), and exits at once when that process is already gone. Started by the launcher
 * (bin/tsbuild execs `unshare … node` in the process the user started), there is no outer process: its parent is the
 * user's shell, whose exit must not end a command run in the background.
 */
export async function adoptUserNamespace(): Promise<void> {
  const raw = process.env[ENV_PARENT];
  if (raw === undefined) return;
  delete process.env[ENV_PARENT];
  const parent = Number(raw);
  const { prctl, PR } = await import('./process.js');
  // SIGKILL, not SIGTERM: a container's PID 1 may ignore a forwarded SIGTERM, and with nobody left to wait for it the
  // command must end now. Its containers die with it (their own parent-death signal), its mounts with its mount
  // namespace; the next command removes the temp dirs of dead processes.
  prctl(PR.SET_PDEATHSIG, 9);
  if (Number.isSafeInteger(parent) && process.ppid !== parent) process.exit(137);
}

/** inSession tells whether this process runs inside `tsbuild unshare` (where mounts outlive one command). */
export function inSession(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.TSBUILD_USERNS_SESSION === '1';
}

/**
 * runSession runs argv (default: the user's $SHELL) in this process's namespaces with TSBUILD_USERNS_SESSION=1, so
 * that tsbuild commands inside it share one mount namespace (what `buildah unshare` gives). Resolves with its exit
 * status (128+N for a signal).
 */
export async function runSession(argv: string[]): Promise<number> {
  const [cmd = process.env.SHELL || '/bin/sh', ...rest] = argv;
  const child = spawn(cmd, rest, { stdio: 'inherit', env: { ...process.env, TSBUILD_USERNS_SESSION: '1' } });
  const ignore = (): void => {};
  process.on('SIGINT', ignore); // the terminal's ^C is the shell's
  try {
    return await new Promise<number>((resolve, reject) => {
      child.on('error', (e) => reject(new TsbuildError('E_EXEC', `${cmd}: ${e.message}`)));
      child.on('exit', (code, signal) => resolve(signal ? 128 + (constants.signals[signal] ?? 1) : (code ?? 1)));
    });
  } finally {
    process.off('SIGINT', ignore);
  }
}

// The Node executor: PID 1 of the namespaces that unshare(1) made (see sys/namespaces.ts). It reads the operations
// from argv (the words encodeOps wrote), runs them in order, and execve()s the command, which replaces this whole
// multi-threaded process so the command is PID 1. Same operations and exit codes as sys/nsexec.c:
// 125 setup failed, 126 command not executable, 127 command not found.
import {
  accessSync,
  chmodSync,
  closeSync,
  constants,
  mkdirSync,
  openSync,
  readSync,
  readlinkSync,
  realpathSync,
  statSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MNT_DETACH, MS, mknod, mount, pivotRoot, sethostname, umount } from './libc.js';
import {
  dropBoundingCapabilities,
  execve,
  exitCodeOfStatus,
  fchdir,
  installSeccomp,
  loadProcessLib,
  RLIM_INFINITY,
  setMountAttr,
  setRlimit,
  loopbackUp,
  PR,
  prctl,
  reapAny,
  prepareExec,
  closeOnExecFrom,
  setCapabilities,
  setControllingTerminal,
  setForegroundGroup,
  setsid,
  setUser,
  spawnProcess,
} from './process.js';

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const FORWARDED: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

class ExitError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

function fail(what: string, e: unknown): never {
  throw new ExitError(125, `${what}: ${(e as Error).message}`);
}

function attempt<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ExitError) throw e;
    fail(what, e);
  }
}

function mkdirP(path: string, mode: number): void {
  attempt(`mkdir ${path}`, () => mkdirSync(path, { recursive: true, mode }));
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    return fail(`stat ${path}`, e);
  }
}

function pivot(root: string): void {
  const oldRoot = openSync('/', constants.O_RDONLY | constants.O_DIRECTORY);
  process.chdir(root);
  pivotRoot('.', '.');
  fchdir(oldRoot);
  mount(null, '.', null, MS.SLAVE | MS.REC, null);
  umount('.', MNT_DETACH);
  process.chdir('/');
  closeSync(oldRoot);
}

/**
 * syncParent tells the parent our host pid (the host's /proc is still mounted at /proc before pivot) and waits
 * for one byte: the parent attached the network stack to our namespace. EOF: it gave up.
 */
function syncParent(fd: number): void {
  attempt('report the pid to the parent', () => writeSync(fd, `${readlinkSync('/proc/self')}\n`));
  const byte = Buffer.alloc(1);
  for (;;) {
    let n: number;
    try {
      n = readSync(fd, byte, 0, 1, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EINTR') {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2); // a non-blocking socket: poll gently
        continue;
      }
      return fail('wait for the network', e);
    }
    if (n === 0) throw new ExitError(125, 'wait for the network: the parent gave up');
    closeSync(fd);
    return;
  }
}

function resolve(arg0: string, env: string[]): string {
  if (arg0.includes('/')) return arg0;
  const pathVar =
    env
      .filter((e) => e.startsWith('PATH='))
      .pop()
      ?.slice(5) ?? DEFAULT_PATH;
  let denied = false;
  for (const dir of pathVar.split(':')) {
    const p = dir ? `${dir}/${arg0}` : arg0;
    let regular: boolean;
    try {
      regular = statSync(p).isFile();
    } catch {
      continue;
    }
    if (!regular) continue;
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      denied = true;
    }
  }
  if (denied) throw new ExitError(126, `exec ${arg0}: permission denied`);
  throw new ExitError(127, `exec ${arg0}: executable file not found in $PATH`);
}

function execFailure(arg0: string, e: unknown): ExitError {
  const code = (e as { code?: string }).code;
  return new ExitError(
    code === 'ENOENT' || code === 'ENOTDIR' ? 127 : 126,
    `exec ${arg0}: ${code ?? (e as Error).message}`,
  );
}

/** runInit spawns the command and stays PID 1: reaps every zombie, forwards signals, exits with the command's status. */
function runInit(path: string, args: string[], env: string[], tty: boolean): void {
  process.title = 'tsbuild-init'; // hide the operations (host paths) from /proc/1/cmdline
  let child: number;
  prepareExec();
  try {
    child = spawnProcess(path, args, env);
  } catch (e) {
    throw execFailure(args[0] as string, e);
  }
  if (tty) attempt('hand the terminal to the command', () => setForegroundGroup(0, child));
  for (const sig of FORWARDED) {
    process.on(sig, () => {
      try {
        process.kill(child, sig);
      } catch {
        // already exited: its SIGCHLD is on the way
      }
    });
  }
  const reap = (): void => {
    for (let r = reapAny(); r; r = reapAny()) if (r.pid === child) process.exit(exitCodeOfStatus(r.status));
  };
  process.on('SIGCHLD', reap);
  // Signal listeners do not keep Node alive; this timer does (and catches any SIGCHLD that raced the listener).
  setInterval(reap, 1000);
  reap();
}

function main(words: string[]): void {
  loadProcessLib();
  const reportFd = Number(process.env.TSBUILD_NSEXEC_REPORT_FD);
  if (Number.isInteger(reportFd) && reportFd > 2) {
    // /proc is still the host's here: /proc/self names our pid as the host sees it.
    writeSync(reportFd, `${readlinkSync('/proc/self')}\n`);
    closeSync(reportFd);
  }
  // The command must not inherit descriptors that leaked into us (Node's own are close-on-exec already).
  attempt('mark descriptors close-on-exec', () => closeOnExecFrom(3));
  const env: string[] = [];
  const cgroupFds: number[] = [];
  let tty = false;
  let filter: Buffer | undefined;
  let i = 0;
  const take = (n: number, op: string): string[] => {
    if (i + n > words.length) throw new ExitError(125, `missing arguments of ${op}`);
    const a = words.slice(i, i + n);
    i += n;
    return a;
  };
  while (i < words.length) {
    const op = words[i++] as string;
    switch (op) {
      case 'cgroup': {
        // Opened now (the cgroup filesystem is out of sight after pivot_root), joined just before exec: this process
        // has a dozen threads that would count against a pids limit and might fail to start under it.
        const [procs] = take(1, op) as [string];
        cgroupFds.push(attempt(`open ${procs}`, () => openSync(procs, 'w')));
        break;
      }
      case 'sync': {
        const [fd] = take(1, op) as [string];
        syncParent(Number(fd));
        break;
      }
      case 'mount': {
        const [src, dst, fstype, flags, data] = take(5, op) as [string, string, string, string, string];
        attempt(`mount ${dst}`, () => mount(src || null, dst, fstype || null, Number(flags), data || null));
        break;
      }
      case 'mountattr': {
        const [path, bits] = take(2, op) as [string, string];
        const set = parseInt(bits, 16);
        attempt(`set mount attributes of ${path}`, () => {
          try {
            setMountAttr(path, set);
          } catch (e) {
            if ((e as { code?: string }).code !== 'ENOSYS') throw e;
            const flags =
              (set & 1 ? MS.RDONLY : 0) |
              (set & 2 ? MS.NOSUID : 0) |
              (set & 4 ? MS.NODEV : 0) |
              (set & 8 ? MS.NOEXEC : 0);
            mount(null, path, null, MS.BIND | MS.REMOUNT | flags, null);
          }
        });
        break;
      }
      case 'mkdir': {
        const [path, mode] = take(2, op) as [string, string];
        mkdirP(path, parseInt(mode, 8));
        break;
      }
      case 'touch': {
        const [path] = take(1, op) as [string];
        mkdirP(path.slice(0, path.lastIndexOf('/')) || '/', 0o755);
        attempt(`create ${path}`, () => closeSync(openSync(path, constants.O_CREAT | constants.O_RDONLY, 0o644)));
        break;
      }
      case 'mknod': {
        const [path, mode, major, minor] = take(4, op) as [string, string, string, string];
        attempt(`mknod ${path}`, () => {
          try {
            mknod(path, parseInt(mode, 8), Number(major), Number(minor));
          } catch (e) {
            if ((e as { code?: string }).code !== 'EEXIST') throw e;
          }
          chmodSync(path, parseInt(mode, 8) & 0o7777);
        });
        break;
      }
      case 'symlink': {
        const [target, path] = take(2, op) as [string, string];
        attempt(`symlink ${path}`, () => {
          try {
            symlinkSync(target, path);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
          }
        });
        break;
      }
      case 'pivot': {
        const [root] = take(1, op) as [string];
        attempt(`pivot_root ${root}`, () => pivot(root));
        break;
      }
      case 'mask': {
        const [path] = take(1, op) as [string];
        if (!exists(path)) break;
        const dir = statSync(path).isDirectory();
        attempt(`mask ${path}`, () =>
          dir
            ? mount('tmpfs', path, 'tmpfs', MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC, null)
            : mount('/dev/null', path, null, MS.BIND, null),
        );
        break;
      }
      case 'ro': {
        const [path] = take(1, op) as [string];
        if (!exists(path)) break;
        attempt(`remount ${path} read-only`, () => {
          mount(path, path, null, MS.BIND | MS.REC, null);
          mount(null, path, null, MS.BIND | MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC, null);
        });
        break;
      }
      case 'hostname': {
        const [name] = take(1, op) as [string];
        attempt('sethostname', () => sethostname(name));
        break;
      }
      case 'loup':
        attempt('bring up lo', loopbackUp);
        break;
      case 'umask': {
        const [mask] = take(1, op) as [string];
        process.umask(parseInt(mask, 8));
        break;
      }
      case 'ctty':
        tty = true;
        attempt('set the controlling terminal', () => {
          setsid();
          setControllingTerminal(0);
        });
        break;
      case 'capbset': {
        const [mask] = take(1, op) as [string];
        attempt('drop bounding capabilities', () => dropBoundingCapabilities(BigInt(`0x${mask}`)));
        break;
      }
      case 'user': {
        const [uid, gid, groups] = take(3, op) as [string, string, string];
        attempt(`set user ${uid}:${gid}`, () =>
          setUser(Number(uid), Number(gid), groups ? groups.split(',').map(Number) : []),
        );
        break;
      }
      case 'capset': {
        const [mask] = take(1, op) as [string];
        attempt('capset', () => setCapabilities(BigInt(`0x${mask}`)));
        break;
      }
      case 'seccomp': {
        const [hex] = take(1, op) as [string];
        if (!/^(?:[0-9a-f]{16})+$/.test(hex)) throw new ExitError(125, 'bad seccomp program');
        filter = Buffer.from(hex, 'hex');
        break;
      }
      case 'rlimit': {
        const [resource, soft, hard] = take(3, op) as [string, string, string];
        const limit = (v: string): bigint => (v === 'inf' ? RLIM_INFINITY : BigInt(v));
        attempt(`setrlimit ${resource}`, () => setRlimit(Number(resource), limit(soft), limit(hard)));
        break;
      }
      case 'nnp':
        attempt('set no_new_privs', () => prctl(PR.SET_NO_NEW_PRIVS, 1));
        break;
      case 'pdeathsig': {
        const [sig] = take(1, op) as [string];
        attempt('set the parent-death signal', () => prctl(PR.SET_PDEATHSIG, Number(sig)));
        break;
      }
      case 'chdir': {
        const [path] = take(1, op) as [string];
        attempt(`chdir ${path}`, () => process.chdir(path));
        break;
      }
      case 'env':
        env.push(...take(1, op));
        break;
      case 'exec': {
        const [init, count] = take(2, op) as [string, string];
        const args = words.slice(i);
        if (args.length < 1 || args.length !== Number(count)) throw new ExitError(125, 'bad exec arguments');
        const path = resolve(args[0] as string, env);
        for (const fd of cgroupFds) attempt('join the cgroup', () => writeSync(fd, '0'));
        if (filter) {
          const program = filter;
          attempt('install seccomp filter', () => installSeccomp(program));
        }
        if (init === '1') return runInit(path, args, env, tty);
        prepareExec();
        try {
          execve(path, args, env);
        } catch (e) {
          throw execFailure(args[0] as string, e);
        }
        break; // not reached: execve replaced the process or threw
      }
      default:
        throw new ExitError(125, `unknown operation ${op}`);
    }
  }
  throw new ExitError(125, 'no exec operation');
}

// Only as an entry point: importing this module must not run anything.
if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    const code = e instanceof ExitError ? e.exitCode : 125;
    writeSync(2, `tsbuild: ${(e as Error).message}\n`);
    process.exit(code);
  }
}

import { getImage } from '../../layers/store/image.js';
import { InvalidInputError } from '../../sys/errors.js';
import { runImage } from '../../runtime/run-image.js';
import { securityOptions } from '../../runtime/seccomp.js';
import { parseBytes } from '../../runtime/spec.js';
import { type GlobalFlags, list, openStore } from '../common.js';
import { stderrProgress } from '../progress.js';

interface RunFlags extends GlobalFlags {
  rm?: boolean;
  interactive?: boolean;
  tty?: boolean;
  env?: unknown;
  workdir?: string;
  user?: string | number;
  volume?: unknown;
  network?: string;
  hostname?: string;
  memory?: string | number;
  'pids-limit'?: string | number;
  cpus?: string | number;
  entrypoint?: string;
  init?: boolean;
  'read-only'?: boolean;
  'cap-add'?: unknown;
  'cap-drop'?: unknown;
  'storage-driver'?: string;
  'security-opt'?: unknown;
  device?: unknown;
  ulimit?: unknown;
}

export default async function run(name: string, flags: RunFlags): Promise<void> {
  try {
    await runCommand(name, flags);
  } catch (err) {
    // docker run: 125 when the failure is the runtime's own, not the command's
    throw Object.assign(err as object, { exitCode: 125 });
  }
}

async function runCommand(name: string, flags: RunFlags): Promise<void> {
  const asked = flags.network ?? 'none';
  if (asked !== 'none' && asked !== 'host' && asked !== 'default' && asked !== 'bridge')
    throw new InvalidInputError(`--network must be none, default (bridge) or host (got ${JSON.stringify(asked)})`);
  // docker's "bridge" is the sandboxed network of its own here (a user-mode stack, no host bridge)
  const network = asked === 'bridge' ? 'default' : asked;
  const driver = flags['storage-driver'];
  if (driver !== undefined && driver !== 'overlay' && driver !== 'vfs')
    throw new InvalidInputError('--storage-driver must be overlay or vfs');
  const number = (v: unknown, what: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0)
      throw new InvalidInputError(`${what} must be a positive number (got ${JSON.stringify(v)})`);
    return n;
  };
  const limits: { memory?: number; pids?: number; cpus?: number } = {};
  if (flags.memory !== undefined) limits.memory = parseBytes(String(flags.memory));
  const pids = number(flags['pids-limit'], '--pids-limit');
  if (pids !== undefined) limits.pids = pids;
  const cpus = number(flags.cpus, '--cpus');
  if (cpus !== undefined) limits.cpus = cpus;

  const security = securityOptions(list(flags['security-opt']));

  const store = await openStore(flags);
  const image = await getImage(store, name);
  const progress = stderrProgress({ quiet: true });
  const tty = Boolean(flags.tty);
  const result = await runImage({
    store,
    image,
    cmd: (flags._ ?? []).map(String),
    ...(flags.entrypoint !== undefined ? { entrypoint: String(flags.entrypoint) } : {}),
    env: list(flags.env),
    hostEnv: process.env,
    ...(flags.workdir !== undefined ? { workdir: String(flags.workdir) } : {}),
    ...(flags.user !== undefined ? { user: String(flags.user) } : {}),
    ...(flags.hostname !== undefined ? { hostname: String(flags.hostname) } : {}),
    network,
    tty,
    init: Boolean(flags.init),
    volumes: list(flags.volume),
    limits,
    capAdd: list(flags['cap-add']),
    capDrop: list(flags['cap-drop']),
    readonlyRootfs: Boolean(flags['read-only']),
    seccomp: security.seccomp,
    devices: list(flags.device),
    ulimits: list(flags.ulimit),
    remove: Boolean(flags.rm),
    ...(driver ? { driver } : {}),
    io: { stdin: flags.interactive ? 'inherit' : 'ignore', stdout: 'inherit', stderr: 'inherit' },
    onWarn: progress.warn,
  });
  if (result.oomKilled) progress.warn('W_OOM', 'the container was killed for exceeding its memory limit');
  process.exitCode = result.exitCode;
}

// The user-mode network stack of a sandboxed network namespace (`--network default`): slirp4netns attached to the
// namespace of a process, giving it one interface (tap0, 10.0.2.100/24,
// gateway 10.0.2.2) with outbound TCP/UDP through the host's sockets, and nothing of the host's own: no host
// loopback through the gateway, no port forwarding in either direction, none of the host's interfaces.
// Both work rootless: they are started by the Node process that starts the namespaces, so they live in the same
// user namespace as it. The stack dies with the step (stop), and with us: slirp4netns watches an exit fd whose
// other end only this process holds. (pasta, from Debian 12's passt, was tried and refuses to open the namespace
// of a process that holds every capability, as root: it is not offered.)
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { TsbuildError } from './errors.js';
import { which } from './exec.js';

export type UserNetTool = 'slirp4netns';

/** The address plan both stacks are given (slirp4netns's defaults). */
export const USERNET = { ifname: 'tap0', address: '10.0.2.100', prefix: 24, gateway: '10.0.2.2', mtu: 65520 } as const;

/** UserNetUnavailableError: slirp4netns is not installed. */
export class UserNetUnavailableError extends TsbuildError {
  constructor() {
    super(
      'E_MISSING_TOOLS',
      'the sandboxed network (--network default) needs slirp4netns: apt-get install -y slirp4netns, ' +
        'or choose --network none or --network host',
    );
  }
}

/** userNetTool finds the stack, or throws UserNetUnavailableError naming the package. */
export function userNetTool(find: (tool: string) => string | undefined = which): UserNetTool {
  if (find('slirp4netns')) return 'slirp4netns';
  throw new UserNetUnavailableError();
}

/** UserNet is a running stack; kill() ends it at once, stop() kills and reaps it (both idempotent). */
export interface UserNet {
  tool: UserNetTool;
  /** host pid of the stack process */
  pid: number | undefined;
  kill(): void;
  stop(): Promise<void>;
}

/** UserNetError: the stack did not come up. */
export class UserNetError extends TsbuildError {
  constructor(message: string) {
    super('E_RUNTIME', message);
  }
}

/**
 * startUserNet attaches a stack to the network namespace of host process `pid` and resolves once the namespace's
 * interface, address, route and lo are configured.
 */
export async function startUserNet(pid: number): Promise<UserNet> {
  return startSlirp(pid);
}

function exitOf(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

function collect(stream: Readable | null | undefined): () => string {
  let text = '';
  stream?.on('data', (b: Buffer) => {
    if (text.length < 4096) text += b.toString();
  });
  stream?.on('error', () => {});
  return () => text.trim().split('\n').slice(-3).join(' | ');
}

async function startSlirp(pid: number): Promise<UserNet> {
  // fd 3: slirp4netns writes "1" once the namespace is configured. fd 4: it exits when this socket reports hang-up,
  // which happens when we close our end, or die (even kill -9).
  const child = spawn(
    'slirp4netns',
    [
      '--configure',
      `--mtu=${USERNET.mtu}`,
      '--disable-host-loopback',
      '--ready-fd=3',
      '--exit-fd=4',
      String(pid),
      USERNET.ifname,
    ],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
  );
  const stderr = collect(child.stderr);
  const ready = child.stdio[3] as Readable;
  const exitEnd = child.stdio[4] as Readable & { destroy(): void };
  exitEnd.on('error', () => {});
  const exited = exitOf(child);
  const kill = (): void => {
    exitEnd.destroy();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const stop = async (): Promise<void> => {
    kill();
    await exited;
  };
  child.on('error', () => {}); // reported through `failed` below, or irrelevant once up
  let onExit: (() => void) | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const failed = (why: string): void =>
        reject(new UserNetError(`slirp4netns ${why}${stderr() ? `: ${stderr()}` : ''}`));
      child.once('error', (e) => failed(`could not start: ${e.message}`));
      onExit = () => failed('exited before the network was up');
      child.once('exit', onExit);
      ready.on('error', () => {});
      ready.once('data', () => resolve());
    });
  } catch (e) {
    await stop();
    throw e;
  } finally {
    if (onExit) child.off('exit', onExit);
  }
  return { tool: 'slirp4netns', pid: child.pid, kill, stop };
}

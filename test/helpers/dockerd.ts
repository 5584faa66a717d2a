// A private dockerd for interop tests and benchmarks: its own data root and socket, no iptables, no bridge. Root
// only. It imports nothing from ava, so bench/ uses it too.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);
export const DOCKER_CLI = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

export interface Dockerd {
  host: string;
  docker(args: string[], opts?: { input?: Buffer }): Promise<{ stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

/** startDockerd starts dockerd (Debian's docker.io) and waits until it answers. */
export async function startDockerd(): Promise<Dockerd> {
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-dockerd-'));
  const sock = join(dir, 'docker.sock');
  const host = `unix://${sock}`;
  const args = [
    '--data-root',
    join(dir, 'data'),
    '--exec-root',
    join(dir, 'exec'),
    '--pidfile',
    join(dir, 'docker.pid'),
    '-H',
    host,
    '--iptables=false',
    '--ip-masq=false',
    '--bridge=none',
  ];
  const logs: Buffer[] = [];
  const child: ChildProcess = spawn('dockerd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (b: Buffer) => logs.push(b));
  child.stderr?.on('data', (b: Buffer) => logs.push(b));
  const docker: Dockerd['docker'] = async (a, opts = {}) => {
    if (opts.input) {
      return new Promise((resolve, reject) => {
        const c = spawn(DOCKER_CLI, ['-H', host, ...a], { stdio: ['pipe', 'pipe', 'pipe'] });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        c.stdout.on('data', (b: Buffer) => out.push(b));
        c.stderr.on('data', (b: Buffer) => err.push(b));
        c.on('close', (code) => {
          const r = { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
          if (code === 0) resolve(r);
          else reject(new Error(`docker ${a.join(' ')}: ${code}: ${r.stderr}`));
        });
        c.stdin.end(opts.input);
      });
    }
    return exec(DOCKER_CLI, ['-H', host, ...a], { maxBuffer: 64 << 20 });
  };
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          r(undefined);
        }, 15_000);
        child.on('close', () => {
          clearTimeout(timer);
          r(undefined);
        });
      });
    }
    await exec('umount', ['-R', '-l', dir]).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 150; i++) {
    if (child.exitCode !== null) break;
    try {
      await docker(['version']);
      return { host, docker, stop };
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  await stop();
  throw new Error(`dockerd did not start: ${Buffer.concat(logs).toString().slice(-2000)}`);
}

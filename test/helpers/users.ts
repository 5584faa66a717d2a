// Ordinary users for rootless tests: made with useradd (a home, a subordinate id range), removed after the test
// file, and a way to run the CLI as them with a clean environment (runuser: no sudo, no PAM session).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CliResult, repoRoot, runCommand } from './index.js';

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  /** the user's subordinate uid range, when it has one */
  subuid: { start: number; count: number } | undefined;
  /** the user's default store ($XDG_DATA_HOME/tsbuild) */
  store: string;
  /** run argv as the user, in `cwd` (default: the home directory) */
  run(argv: string[], opts?: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string }): Promise<CliResult>;
  /** run the tsbuild CLI as the user, through the launcher bin/tsbuild (what `npm link` puts on the PATH) */
  tsbuild(args: string[], opts?: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string }): Promise<CliResult>;
  remove(): void;
}

/**
 * makeUser creates `name` (removing a leftover of an earlier run first) with a home directory and, when
 * `subids` is true, the range 300000-365535 in /etc/subuid and /etc/subgid (when useradd gave none).
 */
export function makeUser(name: string, opts: { subids?: boolean } = {}): TestUser {
  removeUser(name);
  execFileSync('useradd', ['--create-home', '--shell', '/bin/sh', name], { stdio: 'ignore' });
  const has = (f: string): boolean =>
    readFileSync(f, 'utf8')
      .split('\n')
      .some((l) => l.startsWith(`${name}:`));
  if (opts.subids === false) {
    execFileSync('sed', ['-i', `/^${name}:/d`, '/etc/subuid', '/etc/subgid']);
  } else if (!has('/etc/subuid') || !has('/etc/subgid')) {
    execFileSync('usermod', ['--add-subuids', '300000-365535', '--add-subgids', '300000-365535', name]);
  }
  const uid = Number(execFileSync('id', ['-u', name]).toString());
  const gid = Number(execFileSync('id', ['-g', name]).toString());
  const home = execFileSync('getent', ['passwd', name]).toString().split(':')[5] as string;
  const line = readFileSync('/etc/subuid', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  const subuid = line ? { start: Number(line.split(':')[1]), count: Number(line.split(':')[2]) } : undefined;
  const env = (extra: NodeJS.ProcessEnv = {}): string[] =>
    Object.entries({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, USER: name, ...extra }).map(
      ([k, v]) => `${k}=${v}`,
    );
  const run: TestUser['run'] = (argv, o = {}) =>
    runCommand('runuser', ['-u', name, '--', 'env', '-i', ...env(o.env), ...argv], {
      cwd: o.cwd ?? home,
      ...(o.input !== undefined ? { input: o.input } : {}),
    });
  return {
    name,
    uid,
    gid,
    home,
    subuid,
    store: join(home, '.local', 'share', 'tsbuild'),
    run,
    tsbuild: (args, o = {}) => run([join(repoRoot, 'bin', 'tsbuild'), ...args], o),
    remove: () => removeUser(name),
  };
}

function removeUser(name: string): void {
  try {
    execFileSync('pkill', ['-KILL', '-u', name], { stdio: 'ignore' });
  } catch {
    // no process left
  }
  try {
    execFileSync('userdel', ['--remove', name], { stdio: 'ignore' });
  } catch {
    // not there
  }
  execFileSync('sed', ['-i', `/^${name}:/d`, '/etc/subuid', '/etc/subgid']);
}

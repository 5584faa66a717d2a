// runContainer through the real namespace executors (the C helper and the Node child), as root.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { hostname as hostHostname } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { busyboxAvailable, makeBusyboxRootfs } from '../../fixtures/busybox.js';
import { runContainer, type RunResult } from '../../runtime/run.js';
import { processSpec, type ProcessSpecOptions, type RunSpec } from '../../runtime/spec.js';
import type { Executor } from '../../sys/namespaces.js';
import { isRoot, makeTempDir, removeDir, repoRoot, rootTest } from '../helpers/index.js';
import { processesWith } from '../helpers/procs.js';

const EXECUTORS: Executor[] = ['native', 'node'];
const enabled = isRoot && busyboxAvailable();
// Root-only (rootTest); the busybox rootfs needs Debian's busybox-static too.
const serial = busyboxAvailable() ? rootTest : (test.serial.skip as typeof test.serial);

let rootfs = '';
test.before(async () => {
  if (!enabled) return;
  rootfs = await makeTempDir('tsbuild-rootfs-');
  chmodSync(rootfs, 0o755); // mkdtemp makes it 0700: other users could not reach /
  await makeBusyboxRootfs(rootfs);
});
test.after.always(async () => {
  if (rootfs) await removeDir(rootfs);
});

interface Outcome extends RunResult {
  stdout: string;
  stderr: string;
}

function makeSpec(cmd: string[], opts: Partial<ProcessSpecOptions> = {}): RunSpec {
  return processSpec({ config: {}, rootfs, cmd, hostname: 'tsbuild-test', ...opts });
}

async function run(
  executor: Executor,
  cmd: string[],
  opts: Partial<ProcessSpecOptions> = {},
  stdin?: string,
): Promise<Outcome> {
  const out = new PassThrough();
  const err = new PassThrough();
  const chunks: Buffer[] = [];
  const errChunks: Buffer[] = [];
  out.on('data', (b: Buffer) => chunks.push(b));
  err.on('data', (b: Buffer) => errChunks.push(b));
  const io = stdin === undefined ? { stdout: out, stderr: err } : { stdin: streamOf(stdin), stdout: out, stderr: err };
  const r = await runContainer(makeSpec(cmd, opts), io, { executor });
  return { ...r, stdout: Buffer.concat(chunks).toString(), stderr: Buffer.concat(errChunks).toString() };
}

function streamOf(text: string): PassThrough {
  const s = new PassThrough();
  s.end(text);
  return s;
}

const sh = (script: string): string[] => ['sh', '-c', script];

/** both registers one behaviour for each executor. */
function both(title: string, fn: (t: ExecutionContext, executor: Executor) => Promise<void>): void {
  for (const executor of EXECUTORS) serial(`${title} (${executor} executor)`, (t) => fn(t, executor));
}

both('the command is PID 1 of a new PID namespace', async (t, ex) => {
  const r = await run(ex, ['cat', '/proc/1/cmdline']);
  t.is(r.exitCode, 0, r.stderr);
  t.is(r.stdout, 'cat\0/proc/1/cmdline\0');
});

both('the container has its own hostname', async (t, ex) => {
  const r = await run(ex, ['hostname']);
  t.is(r.stdout.trim(), 'tsbuild-test');
  t.not(r.stdout.trim(), hostHostname());
});

both('mount, pid, uts, ipc and network namespaces differ from the host', async (t, ex) => {
  const kinds = ['mnt', 'pid', 'uts', 'ipc', 'net'];
  const r = await run(ex, sh(kinds.map((k) => `readlink /proc/self/ns/${k}`).join('; ')));
  const inside = r.stdout.trim().split('\n');
  t.is(inside.length, kinds.length, r.stderr);
  kinds.forEach((k, i) => {
    t.regex(inside[i] as string, new RegExp(`^${k}:\\[\\d+\\]$`));
    t.not(inside[i], readlinkSync(`/proc/self/ns/${k}`), k);
  });
});

both('the default network has only the loopback interface, and it is up', async (t, ex) => {
  const r = await run(ex, sh('ls /sys/class/net; cat /sys/class/net/lo/flags'));
  t.deepEqual(r.stdout.trim().split('\n'), ['lo', '0x9']);
});

serial('network host shares the host interfaces', async (t) => {
  const r = await run('native', ['ls', '/sys/class/net'], { network: 'host' });
  t.deepEqual(r.stdout.trim().split('\n').sort(), readdirSync('/sys/class/net').sort());
  t.is(
    (await run('native', ['readlink', '/proc/self/ns/net'], { network: 'host' })).stdout.trim(),
    readlinkSync('/proc/self/ns/net'),
  );
});

both('host paths such as the repository checkout are invisible', async (t, ex) => {
  const r = await run(
    ex,
    sh(`test -e ${join(repoRoot, 'package.json')} && echo visible; ls /; cat /proc/self/mountinfo`),
  );
  t.false(r.stdout.includes('visible'));
  t.false(r.stdout.includes(repoRoot));
  t.deepEqual(r.stdout.split('\n').slice(0, 10), [
    'bin',
    'dev',
    'etc',
    'home',
    'proc',
    'root',
    'sbin',
    'sys',
    'tmp',
    'usr',
  ]);
});

both('/proc/sys is read-only and the masked paths are empty', async (t, ex) => {
  t.true(readFileSync('/proc/timer_list').length > 0 && readdirSync('/sys/firmware').length > 0, 'the host shows them');
  const r = await run(
    ex,
    sh(
      'echo 1 > /proc/sys/vm/overcommit_memory && echo wrote; wc -c < /proc/timer_list; wc -c < /proc/interrupts; ls /sys/firmware | wc -l',
    ),
  );
  t.false(r.stdout.includes('wrote'));
  t.regex(r.stderr, /Read-only file system/);
  t.deepEqual(r.stdout.trim().split(/\s+/), ['0', '0', '0']);
});

both('/dev has the runc devices, devpts, shm, mqueue and the fd links', async (t, ex) => {
  const r = await run(
    ex,
    sh(
      'ls /dev | tr "\\n" " "; echo; head -c 4 /dev/zero | wc -c; for l in ptmx fd stdout; do readlink /dev/$l; done; grep -E " /dev(/pts|/shm|/mqueue)? " /proc/self/mounts | cut -d" " -f2,3',
    ),
  );
  const [list, zero, ptmx, fd, stdout, ...mounts] = r.stdout.trim().split('\n');
  t.is(list?.trim(), 'fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero');
  t.is(zero, '4');
  t.deepEqual([ptmx, fd, stdout], ['pts/ptmx', '/proc/self/fd', '/proc/self/fd/1']);
  t.deepEqual(mounts, ['/dev tmpfs', '/dev/pts devpts', '/dev/shm tmpfs', '/dev/mqueue mqueue']);
});

both('the exit status passes through', async (t, ex) => {
  t.is((await run(ex, sh('exit 7'))).exitCode, 7);
});

both('a missing command exits 127 with one line on stderr', async (t, ex) => {
  const r = await run(ex, ['no-such-command']);
  t.is(r.exitCode, 127);
  t.is(r.stderr, 'tsbuild: exec no-such-command: executable file not found in $PATH\n');
  t.is((await run(ex, ['/no/such/path'])).exitCode, 127);
});

both('a command that is not executable exits 126', async (t, ex) => {
  writeFileSync(join(rootfs, 'bin/not-executable'), '#!/bin/sh\necho hi\n');
  chmodSync(join(rootfs, 'bin/not-executable'), 0o644);
  const r = await run(ex, ['not-executable']);
  t.is(r.exitCode, 126);
  t.regex(r.stderr, /^tsbuild: exec not-executable: .*(permission denied|EACCES)/i);
  t.is((await run(ex, ['/bin/not-executable'])).exitCode, 126);
  t.is((await run(ex, ['/etc'])).exitCode, 126);
});

both('a runtime failure exits 125', async (t, ex) => {
  // A read-only rootfs cannot get the missing working directory.
  const r = await run(ex, ['true'], { workdir: '/not/there', readonlyRootfs: true });
  t.is(r.exitCode, 125);
  t.regex(r.stderr, /^tsbuild: mkdir \/not[^\n]*\n$/);
});

const userMacro = test.macro({
  async exec(t, ex: Executor, user: string, expected: string) {
    const r = await run(ex, sh('echo $(id -u) $(id -g) $(id -G)'), { user });
    t.is(r.stdout.trim(), expected, r.stderr);
  },
  title: (provided, ex: Executor, user: string, expected: string) =>
    provided ?? `-u ${user} runs as ${expected} (${ex} executor)`,
});
// `id -G` lists the primary group, then the supplementary groups.
serial(userMacro, 'native', '1000', '1000 1000 1000 50');
serial(userMacro, 'native', 'nobody', '65534 65534 65534');
serial(userMacro, 'native', 'user:staff', '1000 50 50');
serial(userMacro, 'native', '1000:50', '1000 50 50');
serial(userMacro, 'native', 'root', '0 0 0');
serial(userMacro, 'node', 'user', '1000 1000 1000 50');
serial(userMacro, 'node', '1000:50', '1000 50 50');

both('the working directory is created and entered, and the environment is the spec', async (t, ex) => {
  const r = await run(ex, sh('pwd; env | sort'), { workdir: '/work/dir', env: ['FOO=bar baz'] });
  const [pwd, ...env] = r.stdout.trim().split('\n');
  t.is(pwd, '/work/dir');
  t.deepEqual(env, [
    'FOO=bar baz',
    'HOME=/root',
    'HOSTNAME=tsbuild-test',
    'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'PWD=/work/dir',
    'SHLVL=1',
  ]);
});

both('capabilities are the docker set, and no_new_privs is on', async (t, ex) => {
  const status = (await run(ex, ['cat', '/proc/self/status'])).stdout;
  const field = (s: string, k: string) => new RegExp(`^${k}:\\s*(\\S+)$`, 'm').exec(s)?.[1];
  t.is(field(status, 'CapBnd'), '00000000a80425fb');
  t.is(field(status, 'CapEff'), '00000000a80425fb');
  t.is(field(status, 'CapInh'), '0000000000000000');
  t.is(field(status, 'NoNewPrivs'), '1');
  t.is(field(status, 'SigIgn'), '0000000000000000', 'no signal is left ignored');
  t.is(field(status, 'SigBlk'), '0000000000000000', 'no signal is left blocked');
  const user = (await run(ex, ['cat', '/proc/self/status'], { user: 'user' })).stdout;
  t.is(field(user, 'CapEff'), '0000000000000000');
  t.is(field(user, 'CapBnd'), '00000000a80425fb');
});

both('stdin is copied in and only stdio is inherited', async (t, ex) => {
  const r = await run(ex, sh('cat; ls /proc/self/fd | tr "\\n" " "'), {}, 'hello\n');
  t.is(r.stdout, 'hello\n0 1 2 3 ');
});

both('a terminal is the container stdio, its controlling terminal and /dev/console', async (t, ex) => {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (b: Buffer) => chunks.push(b));
  const r = await runContainer(
    makeSpec(sh('tty; test -t 0 && test -t 1 && echo both-tty; stty size; cat /proc/self/stat | cut -d" " -f7'), {
      tty: true,
    }),
    { stdout: out },
    { executor: ex },
  );
  const lines = Buffer.concat(chunks).toString().split('\r\n');
  t.is(r.exitCode, 0);
  t.is(lines[0], '/dev/console');
  t.is(lines[1], 'both-tty');
  t.is(lines[2], '24 80');
  t.not(lines[3], '0', 'the terminal is the controlling terminal');
});

both('bind mounts are visible, read-only where asked, and extra files are bound', async (t, ex) => {
  const host = await makeTempDir();
  t.teardown(() => removeDir(host));
  writeFileSync(join(host, 'in.txt'), 'from host\n');
  writeFileSync(join(host, 'hosts'), '10.0.0.1 example\n');
  const r = await run(
    ex,
    sh('cat /ro/in.txt; echo x > /ro/new || echo ro-refused; echo written > /rw/out.txt; cat /etc/hosts'),
    {
      volumes: [`${host}:/ro:ro`, `${host}:/rw`],
      extraFiles: { '/etc/hosts': join(host, 'hosts') },
    },
  );
  t.is(r.stdout, 'from host\nro-refused\n10.0.0.1 example\n');
  t.is(readFileSync(join(host, 'out.txt'), 'utf8'), 'written\n');
});

both('with init, PID 1 reaps orphans, forwards signals and passes the status through', async (t, ex) => {
  const r = await run(
    ex,
    sh(
      'cat /proc/1/cmdline; echo; echo $$; sh -c "sleep 0.1 &"; sleep 1; grep -l "^State:.Z" /proc/[0-9]*/status | wc -l; exit 3',
    ),
    { init: true },
  );
  const [cmdline, pid, zombies] = r.stdout.trim().split('\n');
  t.is(cmdline?.split('\0')[0], 'tsbuild-init', 'the init shows no operations (host paths) in its cmdline');
  t.not(pid, '1');
  t.is(zombies, '0');
  t.is(r.exitCode, 3);
});

both('a killed container reports the signal as 128+n', async (t, ex) => {
  const ac = new AbortController();
  const p = runContainer(makeSpec(['sleep', '30']), { stdout: 'ignore', signal: ac.signal }, { executor: ex });
  setTimeout(() => ac.abort(), 300);
  const r = await p;
  t.is(r.exitCode, 137);
  t.is(r.signal, 'SIGKILL');
});

both('a memory limit OOM-kills a process that buffers 200 MB, and is reported', async (t, ex) => {
  // busybox sort keeps every line in memory: 150 MB of random bytes is about 200 MB of base64.
  const script = 'head -c 150000000 /dev/urandom | base64 | sort > /dev/null';
  const big = await run(ex, sh(script.replace('sort', 'time -v sort')), { limits: { memory: 2 * 1024 ** 3 } });
  t.is(big.exitCode, 0, big.stderr);
  t.false(big.oomKilled);
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(big.stderr)?.[1]);
  t.true(rss > 190_000, `sort really buffers the data (max RSS ${rss} kB)`);
  const small = await run(ex, sh(script), { limits: { memory: 64 * 1024 ** 2 } });
  t.is(small.exitCode, 137);
  t.true(small.oomKilled);
});

both('a pids limit contains a fork bomb', async (t, ex) => {
  const started = Date.now();
  const r = await run(
    ex,
    ['awk', 'BEGIN { for (i = 0; i < 100; i++) if (system("sleep 60 &") != 0) f++; print 100 - f, f }'],
    { limits: { pids: 20 } },
  );
  const [ok, failed] = r.stdout.trim().split(' ').map(Number);
  t.true((ok as number) < 20, `started ${ok}`);
  t.true((failed as number) > 80, `failed ${failed}`);
  // the sleeps would outlive PID 1 by a minute if the namespace did not take them down with it
  t.true(Date.now() - started < 45_000, 'the background sleeps die with PID 1');
});

function startParent(
  spec: RunSpec,
  executor: Executor,
): { child: ReturnType<typeof spawn>; output: () => string; ready: Promise<void> } {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'test/runtime/run-script.ts'), JSON.stringify({ spec, executor })],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: repoRoot,
    },
  );
  let text = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => {
      text += b.toString();
      if (text.includes('ready')) resolve();
    });
    child.stderr?.on('data', (b: Buffer) => (text += b.toString()));
    child.on('exit', () => reject(new Error(`parent exited early: ${text}`)));
  });
  return { child, output: () => text, ready };
}

both('SIGTERM to the parent reaches the container process', async (t, ex) => {
  const spec = makeSpec(sh('trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.05; done'));
  const { child, output, ready } = startParent(spec, ex);
  t.teardown(() => child.kill('SIGKILL'));
  await ready;
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  t.is(await exited, 3);
  t.true(output().includes('got-term'));
});

both('kill -9 of the parent leaves no process, no mount and, after the next run, no cgroup', async (t, ex) => {
  const marker = `tsbuild-marker-${process.pid}-${Date.now()}`;
  const spec = makeSpec(sh(`sleep 1000 & echo ready; wait; : ${marker}`), { limits: { pids: 50 } });
  const { child, ready } = startParent(spec, ex);
  t.teardown(() => child.kill('SIGKILL'));
  await ready;
  const parentPid = child.pid as number;
  const runCgroup = readdirSync('/sys/fs/cgroup/pids/tsbuild').find((n) => n.startsWith(`${parentPid}-`));
  t.truthy(runCgroup);
  const cgroupDir = `/sys/fs/cgroup/pids/tsbuild/${runCgroup}`;
  const inContainer = readFileSync(`${cgroupDir}/cgroup.procs`, 'utf8').trim().split('\n').map(Number);
  t.is(inContainer.length, 2, 'sh and sleep');
  const marked = processesWith(marker);
  t.true(marked.length >= 3, 'the container, its executor and its parent carry the marker');
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  // Gone means gone from /proc, not only exiting (an exiting process has an empty cmdline but holds its cgroup).
  const remaining = () =>
    [...new Set([...inContainer, ...marked, ...processesWith(marker)])].filter((p) => existsSync(`/proc/${p}`));
  for (let i = 0; i < 100 && remaining().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(remaining(), []);
  t.false(readFileSync('/proc/self/mountinfo', 'utf8').includes(rootfs));
  // Nobody was left to remove the cgroup; a run sweeps it. (The run of another test file running at the same time
  // may be the one that does, so this test does not insist on seeing the cgroup still there first.)
  if (!existsSync(cgroupDir)) t.log('a concurrent run swept the cgroup first');
  await run('native', ['true'], { limits: { pids: 50 } });
  t.false(existsSync(cgroupDir), 'the next run swept it');
});

both('a finished run leaves no mount and no cgroup behind', async (t, ex) => {
  const r = await run(ex, ['true'], { limits: { memory: 256 * 1024 ** 2, pids: 100, cpus: 1 } });
  t.is(r.exitCode, 0);
  t.false(readFileSync('/proc/self/mountinfo', 'utf8').includes(rootfs));
  for (const c of ['memory', 'pids', 'cpu']) {
    const parent = `/sys/fs/cgroup/${c}/tsbuild`;
    t.deepEqual(existsSync(parent) ? readdirSync(parent).filter((n) => n.startsWith(`${process.pid}-`)) : [], [], c);
  }
});

const distRun = join(repoRoot, 'dist/runtime/run.js');
const distSerial =
  enabled && existsSync(distRun) && existsSync(join(repoRoot, 'dist/sys/nsexec.js'))
    ? test.serial
    : (test.serial.skip as typeof test.serial);

distSerial(
  'the compiled runtime in dist/ finds its executors without tsx (skipped before `npm run build`)',
  async (t) => {
    for (const executor of EXECUTORS) {
      const spec = makeSpec(['cat', '/proc/1/cmdline']);
      const script = `import(${JSON.stringify(distRun)}).then(async (m) => { const r = await m.runContainer(${JSON.stringify(spec)}, {}, { executor: ${JSON.stringify(executor)} }); process.exitCode = r.exitCode; })`;
      const out = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
        const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
        let stdout = '';
        child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout }));
      });
      t.deepEqual(out, { code: 0, stdout: 'cat\0/proc/1/cmdline\0' }, executor);
    }
  },
);

// Issue 14 items 1, 2 and 5 as an ordinary user (rootless mode, sys/userns.ts): the store is private to its owner
// (another local user reaches none of the setuid files an image carried, from the first mkdir, and an older store
// is tightened), RUN steps and `tsbuild run` get the same sandbox as root's (device allow-list, seccomp, limits
// applied or refused, never ignored), and SIGINT, SIGTERM or kill -9 leave nothing behind. One user builds and runs
// for the whole file; a second ordinary user plays "another local user". The root versions of these tests are in
// test/layers/store/permissions.test.ts, test/runtime/sandbox.test.ts, test/builder/build-sandbox.test.ts and
// test/e2e/leftovers.test.ts; what test/rootless/rootless.test.ts already covers is not repeated here.
import test from 'ava';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxAvailable, makeBusyboxRootfs } from '../../fixtures/busybox.js';
import { tarSync } from '../../fixtures/hostile-layers.js';
import { type CliResult, isRoot, makeTempDir, removeDir, repoRoot, tsbuild } from '../helpers/index.js';
import { processesWith } from '../helpers/procs.js';
import { LINK_LAYERS, stackLayers } from '../helpers/layers.js';
import { isAlive, isZombie } from '../../sys/pid.js';
import { inForegroundOfTerminal } from '../../sys/userns.js';
import { FakeHost } from '../../sys/fake-host.js';
import type { NsProcess, StartOptions } from '../../sys/namespaces.js';
import { runContainer } from '../../runtime/run.js';
import { processSpec } from '../../runtime/spec.js';
import { makeUser, type TestUser } from '../helpers/users.js';

const gcc = spawnSync('sh', ['-c', 'command -v gcc']).status === 0;
const enabled = isRoot && busyboxAvailable() && gcc;
const why = !isRoot
  ? ' (skipped: needs root to make the users)'
  : !busyboxAvailable()
    ? ' (skipped: busybox-static is not installed)'
    : !gcc
      ? ' (skipped: gcc is needed for the syscall probe)'
      : '';
const serial = enabled ? test.serial : (test.serial.skip as typeof test.serial);

// A static probe an image carries: `probe id` prints its effective uid (what a setuid bit gave it); `probe` alone
// calls keyctl(2) and bpf(2), which docker's default seccomp profile refuses.
const PROBE_C = `#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "id") == 0) { printf("euid=%d\\n", (int)geteuid()); return 0; }
  long k = syscall(SYS_keyctl, 0, -3, 0);
  printf("keyctl=%s\\n", k < 0 ? strerror(errno) : "allowed");
  long b = syscall(SYS_bpf, 0, 0, 0);
  printf("bpf=%s\\n", b < 0 && errno == EPERM ? strerror(errno) : "allowed");
  return 0;
}
`;

function output(r: CliResult): string {
  return `exit ${r.code}\n${r.stdout}\n${r.stderr}`.slice(-4000);
}

async function modeOf(p: string): Promise<number> {
  return (await stat(p)).mode & 0o7777;
}

let user: TestUser | undefined;
let other: TestUser | undefined;
/** a directory every user may enter and read (0755), written by root */
let shared = '';
/** a directory the user may write to, where it keeps what it makes (pid files, outputs) */
let scratch = '';
const cli = `${process.execPath} -- ${join(repoRoot, 'bin', 'tsbuild.js')}`;
/** The two ways in: the launcher users run (one Node process) and `node bin/tsbuild.js` (an outer Node process
 * maps the ids and passes signals on to the inner one). */
const ENTRIES = [
  ['the launcher', join(repoRoot, 'bin', 'tsbuild')],
  ['node bin/tsbuild.js', cli],
] as const;

if (enabled) {
  test.before(async () => {
    user = makeUser('tsbuild-hd');
    other = makeUser('tsbuild-hd2', { subids: false });
    shared = await makeTempDir('tsbuild-hardening-');
    await chmod(shared, 0o755);
    scratch = join(shared, 'scratch');
    await mkdir(scratch);
    execFileSync('chown', [`${user.uid}:${user.gid}`, scratch]);
    // the busybox base, as a tar (a directory owned by root would be imported as nobody's files)
    const tree = join(shared, 'tree');
    await mkdir(tree);
    await makeBusyboxRootfs(tree);
    await writeFile(join(shared, 'probe.c'), PROBE_C);
    execFileSync('gcc', ['-static', '-O', '-o', join(tree, 'bin', 'probe'), join(shared, 'probe.c')]);
    execFileSync('tar', ['-C', tree, '--numeric-owner', '-cf', join(shared, 'bb.tar'), '.']);
    // the same with setuid copies of the probe: one of root's (the user on the host), one of uid 1234 (a subuid)
    await writeFile(
      join(shared, 'suid.tar'),
      tarSync([
        { name: 'suid-root', data: await readFile(join(tree, 'bin', 'probe')), mode: 0o4755, uid: 0, gid: 0 },
        { name: 'suid-1234', data: await readFile(join(tree, 'bin', 'probe')), mode: 0o6755, uid: 1234, gid: 1234 },
      ]),
    );
    for (const f of ['bb.tar', 'suid.tar']) await chmod(join(shared, f), 0o644);
    await removeDir(tree);
    const i = await user.tsbuild(['import', join(shared, 'bb.tar'), 'bb:1']);
    if (i.code !== 0) throw new Error(`import: ${output(i)}`);
  });
  test.after.always(async () => {
    user?.remove();
    other?.remove();
    if (shared) await removeDir(shared);
  });
}

/** asOther runs argv as the other local user, through sh so that no capability of runuser's is left at the exec. */
function asOther(argv: string[]): Promise<CliResult> {
  return (other as TestUser).run(['/bin/sh', '-c', 'exec "$@"', 'sh', ...argv]);
}

/** snapshotWith finds the snapshot directory (as root) that holds `file`. */
async function snapshotWith(store: string, file: string): Promise<string> {
  for (const n of await readdir(join(store, 'snapshots'))) {
    if (existsSync(join(store, 'snapshots', n, file))) return join(store, 'snapshots', n);
  }
  throw new Error(`no snapshot holds ${file}`);
}

const PRIVATE = ['snapshots', 'containers', 'tmp'];

async function assertUnreachable(t: import('ava').ExecutionContext, store: string, snap: string): Promise<void> {
  for (const f of ['suid-root', 'suid-1234']) {
    const r = await asOther([join(snap, f), 'id']);
    t.not(r.code, 0, `${f}: the other user ran it: ${r.stdout}`);
    t.notRegex(r.stdout, /euid=/);
    t.regex(r.stderr, /Permission denied/, f);
  }
  for (const name of PRIVATE) {
    const ls = await asOther(['ls', join(store, name)]);
    t.not(ls.code, 0, `the other user listed ${name}/: ${ls.stdout}`);
    t.regex(ls.stderr, /Permission denied/, name);
  }
}

// --- item 1: no way into another user's store ---

serial(
  `a rootless store is private from its first mkdir, whatever the umask: another user runs none of its setuid files${why}`,
  async (t) => {
    const u = user as TestUser;
    const store = join(scratch, 'umask-store');
    // umask 000: every directory the store makes would be 0777 if its mode came from the umask
    const r = await u.run([
      'sh',
      '-c',
      `umask 000 && ${cli} --root ${store} import ${join(shared, 'suid.tar')} suid:1 && ${cli} --root ${store} run --rm suid:1 /suid-root id`,
    ]);
    t.is(r.code, 0, output(r));
    t.regex(r.stdout, /^euid=0$/m, 'inside, the setuid bit works as the image says');
    t.is(await modeOf(store), 0o700, 'the store root');
    for (const name of PRIVATE) {
      if (name !== 'tmp' || existsSync(join(store, name))) t.is(await modeOf(join(store, name)), 0o700, name);
    }
    const snap = await snapshotWith(store, 'suid-root');
    t.is(await modeOf(join(snap, 'suid-1234')), 0o6755, 'the snapshot keeps the image content as it is');
    t.not((await stat(join(snap, 'suid-1234'))).uid, u.uid, 'uid 1234 of the image is one of the subuids');
    await assertUnreachable(t, store, snap);
    // the default store ($XDG_DATA_HOME/tsbuild), made by the before hook's import
    t.is(await modeOf(u.store), 0o700, u.store);
    t.is(await modeOf(join(u.store, 'snapshots')), 0o700);
  },
);

serial(
  `a rootless store an older version left 0755 is tightened by the next command that opens it${why}`,
  async (t) => {
    const u = user as TestUser;
    const store = join(scratch, 'old-store');
    const i = await u.tsbuild(['--root', store, 'import', join(shared, 'suid.tar'), 'suid:1']);
    t.is(i.code, 0, output(i));
    const r = await u.tsbuild(['--root', store, 'run', '--rm', 'suid:1', '/suid-root', 'id']);
    t.is(r.code, 0, output(r));
    // what an older tsbuild left: everything 0755 (the user owns these directories: it can chmod them)
    const open = await u.run([
      'sh',
      '-c',
      `cd ${store} && mkdir -p ${PRIVATE.join(' ')} && chmod 0755 . ${PRIVATE.join(' ')}`,
    ]);
    t.is(open.code, 0, output(open));
    const snap = await snapshotWith(store, 'suid-1234');
    const before = await asOther([join(snap, 'suid-1234'), 'id']);
    const subuid = (await stat(join(snap, 'suid-1234'))).uid;
    t.regex(before.stdout, new RegExp(`^euid=${subuid}$`, 'm'), `the setup reproduces the issue: ${output(before)}`);
    const images = await u.tsbuild(['--root', store, 'images']);
    t.is(images.code, 0, output(images));
    t.is(await modeOf(store), 0o700, 'the store root');
    for (const name of PRIVATE) t.is(await modeOf(join(store, name)), 0o700, name);
    await assertUnreachable(t, store, snap);
  },
);

// --- item 2: the sandbox ---

// docker's default devices, the directories and links every container's /dev has, and nothing else
const ALLOWED = new Set(
  'console fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero'.split(' '),
);
const SANDBOX_PROBE = [
  'ls /dev',
  'grep "^Seccomp:" /proc/self/status',
  'unshare -U true; echo unshare=$?',
  'unshare -r true; echo unshare-root=$?',
  'mount -t tmpfs none /mnt; echo mount=$?',
  'mknod /kvm c 10 232; echo mknod=$?',
  'probe',
].join('; ');

function assertSandboxed(t: import('ava').ExecutionContext, out: string, what: string): void {
  const devs = out
    .split('\n')
    .map((l) => l.replace(/^#\d+\s+[\d.]+\s/, '').trim())
    .filter((l) => /^[a-z]+$/.test(l));
  t.true(devs.includes('null') && devs.includes('urandom'), `${what}: /dev has the defaults: ${devs.join(' ')}`);
  t.deepEqual(
    devs.filter((d) => !ALLOWED.has(d)),
    [],
    `${what}: nothing but docker's default devices`,
  );
  t.regex(out, /Seccomp:\s+2$/m, what);
  t.regex(out, /unshare=1$/m, `${what}: no new user namespace`);
  t.regex(out, /unshare-root=1$/m, what);
  t.regex(out, /mount=[1-9]\d*$/m, `${what}: no mount`);
  t.regex(out, /mknod=[1-9]\d*$/m, `${what}: no device node`);
  t.regex(out, /keyctl=Operation not permitted$/m, `${what}: no keyring`);
  t.regex(out, /bpf=Operation not permitted$/m, `${what}: no bpf`);
}

serial(
  `rootless run and RUN: only the default devices (a volume of /dev carries none), no mknod, and seccomp refuses unshare -U, mount, keyctl and bpf${why}`,
  async (t) => {
    const u = user as TestUser;
    const r = await u.tsbuild(['run', '--rm', 'bb:1', 'sh', '-c', SANDBOX_PROBE]);
    t.is(r.code, 0, output(r));
    assertSandboxed(t, r.stdout, 'run');
    // the host's devices reach a container only through --device, never through a volume
    const probeDev = (p: string): string =>
      `if head -c 1 ${p} >/dev/null 2>&1; then echo OPEN ${p}; else echo DENIED ${p}; fi`;
    const v = await u.tsbuild([
      'run',
      '--rm',
      '-v',
      '/dev:/hostdev:ro',
      '--device',
      '/dev/zero:/dev/myzero',
      'bb:1',
      'sh',
      '-c',
      ['/hostdev/zero', '/hostdev/null', '/dev/myzero'].map(probeDev).join('; '),
    ]);
    t.is(v.code, 0, output(v));
    t.is(v.stdout, 'DENIED /hostdev/zero\nDENIED /hostdev/null\nOPEN /dev/myzero\n');
    const ctx = join(scratch, 'sandbox-ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), `FROM bb:1\nRUN ${SANDBOX_PROBE}\n`);
    const b = await u.tsbuild(['build', '--progress', 'plain', '--no-cache', ctx]);
    t.is(b.code, 0, output(b));
    assertSandboxed(t, b.stderr, 'RUN');
  },
);

/** refusedOrApplied: a limit is in force (a delegated cgroup v2 subtree) or refused with one `error:` line. */
function refusedOrApplied(
  t: import('ava').ExecutionContext,
  r: CliResult,
  applied: RegExp,
  what: string,
  errorCode = 1,
): void {
  if (r.code === 0) t.regex(r.stdout + r.stderr, applied, `${what}: the limit is in force`);
  else {
    t.is(r.code, errorCode, `${what}: ${output(r)}`);
    t.regex(r.stderr, /^error: .*cgroup v2/m, what);
    t.is(r.stderr.split('\n').filter((l) => l.startsWith('error:')).length, 1, `${what}: one error line`);
  }
}

serial(
  `rootless limits: --ulimit reaches RUN and run; --memory and --pids-limit are applied or refused with one line; the defaults are applied or named in one warning${why}`,
  async (t) => {
    const u = user as TestUser;
    const ctx = join(scratch, 'limits-ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(
      join(ctx, 'Dockerfile'),
      'FROM bb:1\nRUN echo nofile=$(ulimit -n):$(ulimit -Hn) pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null)\n',
    );
    const ul = await u.tsbuild(['build', '--progress', 'plain', '--no-cache', '--ulimit', 'nofile=77:88', ctx]);
    t.is(ul.code, 0, output(ul));
    t.regex(ul.stderr, /nofile=77:88/);
    const defaults = await u.tsbuild(['build', '--progress', 'plain', '--no-cache', ctx]);
    t.is(defaults.code, 0, output(defaults));
    if (!/pids=8192/.test(defaults.stderr)) {
      t.is(defaults.stderr.match(/RUN steps run without the default limits/g)?.length, 1, output(defaults));
    }
    const run = await u.tsbuild([
      'run',
      '--rm',
      '--ulimit',
      'nofile=55:66',
      'bb:1',
      'sh',
      '-c',
      'ulimit -n; ulimit -Hn',
    ]);
    t.is(run.code, 0, output(run));
    t.is(run.stdout, '55\n66\n');
    const pidsBuild = await u.tsbuild(['build', '--progress', 'plain', '--no-cache', '--pids-limit', '33', ctx]);
    refusedOrApplied(t, pidsBuild, /pids=33/, 'build --pids-limit');
    const memRun = await u.tsbuild(['run', '--rm', '--memory', '64m', 'bb:1', 'cat', '/sys/fs/cgroup/memory.max']);
    refusedOrApplied(t, memRun, /^67108864$/m, 'run --memory', 125); // run's own errors are 125, as docker's
    const pidsRun = await u.tsbuild(['run', '--rm', '--pids-limit', '33', 'bb:1', 'cat', '/sys/fs/cgroup/pids.max']);
    refusedOrApplied(t, pidsRun, /^33$/m, 'run --pids-limit', 125);
  },
);

// --- item 5: no leftovers ---

// Without root: what the fixes for the rootless cases rest on (a zombie is dead; an abort during the start is not
// lost; the terminal's ^C is not passed on twice).
test('a zombie counts as dead for the cleanup of stale directories (an orphaned rootless CLI may be reaped late)', async (t) => {
  // sh starts a short child, then becomes a sleep that never waits for it: the child, ending after that exec (so sh
  // cannot have reaped it first), stays a zombie meanwhile
  const child = spawn('sh', ['-c', 'sleep 1 & echo $!; exec sleep 20'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => child.kill('SIGKILL'));
  const zombie = await new Promise<number>((resolve) =>
    child.stdout.once('data', (b: Buffer) => resolve(Number(b.toString()))),
  );
  t.true(await poll(() => isZombie(zombie), 10_000), 'the setup made a zombie');
  t.false(isAlive(zombie));
  t.true(isAlive(child.pid as number), 'its parent, running, is alive');
  t.true(isAlive(1), 'PID 1 is alive');
});

test("a build interrupted while the RUN step's executor starts still kills the step", async (t) => {
  // the window between the executor's start and the abort listener: onStarted runs in it
  class SlowHost extends FakeHost {
    override async startInNamespaces(opts: StartOptions): Promise<NsProcess> {
      const child = spawn('sleep', ['20'], { stdio: opts.stdio });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.on('exit', (code, signal) => resolve({ code, signal })),
      );
      return { child, executor: 'node', kill: (s) => void child.kill(s), exited };
    }
  }
  const abort = new AbortController();
  const spec = processSpec({ config: {}, rootfs: '/nonexistent/rootfs', cmd: ['sleep', '20'] });
  const r = await runContainer(
    spec,
    { stdout: 'ignore', stderr: 'ignore', signal: abort.signal },
    { host: new SlowHost(), forwardSignals: false, onStarted: () => abort.abort() },
  );
  t.is(r.signal, 'SIGKILL', 'killed, not waited for');
});

test('SIGINT goes on to the inner CLI unless the terminal sent it to the whole foreground group', (t) => {
  const stat = (pgrp: number, tty: number, tpgid: number): string =>
    `4242 (tsbuild (x) y) S 1 ${pgrp} ${pgrp} ${tty} ${tpgid} 4194304 0 0`;
  t.true(inForegroundOfTerminal(stat(4242, 34816, 4242)), 'the foreground job of a terminal');
  t.false(inForegroundOfTerminal(stat(4242, 34816, 5000)), 'a background job');
  t.false(inForegroundOfTerminal(stat(4242, 0, -1)), 'no controlling terminal (a script, a service, a test)');
});

/** leftovers lists the temp dirs and containers in a store (as root). */
async function leftovers(store: string): Promise<string[]> {
  const found: string[] = [];
  for (const d of ['tmp', 'containers']) {
    const names = await readdir(join(store, d)).catch(() => [] as string[]);
    found.push(...names.map((n) => `${d}/${n}`));
  }
  return found;
}

async function poll(check: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 100)))
    if (check()) return true;
  return check();
}

/**
 * startBuild starts, as the user, a build whose RUN sleeps (the sleep's duration marks its processes) and resolves
 * once that RUN runs, with the pid of the command the user started (the outer CLI) and its end.
 */
async function startBuild(t: import('ava').ExecutionContext, name: string, entry: string = cli) {
  const u = user as TestUser;
  const marker = `41.${process.pid}${Date.now() % 100000}`;
  const ctx = join(scratch, `${name}-ctx`);
  await mkdir(ctx, { recursive: true });
  await writeFile(join(ctx, 'Dockerfile'), `FROM bb:1\nRUN sleep ${marker} && echo never\n`);
  const pidFile = join(scratch, `${name}.pid`);
  const done = u.run(['sh', '-c', `echo $$ > ${pidFile}; exec ${entry} build --progress quiet --no-cache ${ctx}`]);
  t.teardown(() => {
    for (const pid of processesWith(marker)) spawnSync('kill', ['-KILL', String(pid)]);
  });
  t.true(await poll(() => processesWith(marker).length > 0, 60_000), 'the RUN step started');
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  return { pid, marker, done };
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  for (const [how, entry] of ENTRIES)
    serial(
      `${signal} to a rootless build during RUN (started through ${how}) ends the step, removes its directories and exits ${code} with one line${why}`,
      async (t) => {
        const u = user as TestUser;
        const b = await startBuild(t, `${signal}-${how.length}`, entry);
        const live = await leftovers(u.store);
        t.true(live.length > 0, 'the build has its directories while RUN runs');
        // made private by their first mkdir: the other user cannot enter them while they hold the step's root
        for (const d of live) t.is(await modeOf(join(u.store, d)), 0o700, d);
        process.kill(b.pid, signal);
        const end = await b.done;
        t.is(end.code, code, output(end));
        t.is(end.stderr.trimEnd().split('\n').length, 1, `one line on stderr: ${end.stderr}`);
        t.regex(end.stderr, /^error: .*interrupted/);
        t.deepEqual(await leftovers(u.store), [], 'no temp dir or container left');
        t.true(await poll(() => processesWith(b.marker).length === 0, 10_000), 'the RUN step ended');
      },
    );
}

const haveScript = spawnSync('sh', ['-c', 'command -v script']).status === 0;
for (const [how, entry] of ENTRIES)
  (haveScript ? serial : (test.serial.skip as typeof test.serial))(
    `^C on a terminal reaches a rootless build (started through ${how}) once: it ends the step, cleans up and exits 130 with one line${why}${haveScript ? '' : ' (skipped: script(1) is not installed)'}`,
    async (t) => {
      const u = user as TestUser;
      // script(1) gives the build a terminal; ^C typed there signals its whole foreground group, inner CLI included
      const marker = `42.${process.pid}${Date.now() % 100000}`;
      const ctx = join(scratch, `tty-ctx-${how.length}`);
      await mkdir(ctx, { recursive: true });
      await writeFile(join(ctx, 'Dockerfile'), `FROM bb:1\nRUN sleep ${marker} && echo never\n`);
      t.teardown(() => {
        for (const pid of processesWith(marker)) spawnSync('kill', ['-KILL', String(pid)]);
      });
      // (the pattern does not match its own shell's command line)
      const typist = `n=0; until pgrep -f '${marker.replace('.', '[.]')}' >/dev/null || [ $n -gt 300 ]; do sleep 0.2; n=$((n+1)); done; sleep 0.5; printf '\\003'; sleep 2`;
      const r = await u.run([
        'sh',
        '-c',
        `(${typist}) | script -qfec "${entry} build --progress plain --no-cache ${ctx}" /dev/null`,
      ]);
      t.is(r.code, 130, output(r));
      const lines = r.stdout.split(/\r?\n/);
      t.deepEqual(
        lines.filter((l) => /^error:/.test(l)),
        ['error: build interrupted (SIGINT)'],
        output(r),
      );
      t.notRegex(r.stdout, /^\s+at /m, 'no stack trace');
      t.deepEqual(await leftovers(u.store), [], 'no temp dir or container left');
      t.true(await poll(() => processesWith(marker).length === 0, 10_000), 'the RUN step ended');
    },
  );

serial(
  `after kill -9 of a rootless build during RUN (or of an export), the next build removes what it left${why}`,
  async (t) => {
    const u = user as TestUser;
    const b = await startBuild(t, 'kill9');
    const stale = await leftovers(u.store);
    t.true(stale.length > 0);
    process.kill(b.pid, 'SIGKILL');
    await b.done;
    t.true(await poll(() => processesWith(b.marker).length === 0, 10_000), 'the RUN step died with the command');
    t.deepEqual(
      (await leftovers(u.store)).filter((n) => stale.includes(n)),
      stale,
      'the killed build left its directories',
    );
    // and what a killed export leaves: its work directory, with files of the image's owners (subuids on the host)
    const dead = spawnSync('true').pid as number;
    const exportDir = `tmp/export-${dead}-0123456789ab`;
    const made = await u.tsbuild([
      'unshare',
      'sh',
      '-c',
      `mkdir -p ${u.store}/${exportDir}/stage/etc && echo x > ${u.store}/${exportDir}/stage/etc/f && chown -R 1234:1234 ${u.store}/${exportDir}/stage`,
    ]);
    t.is(made.code, 0, output(made));
    const ctx = join(scratch, 'next-ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), 'FROM bb:1\nRUN echo hi > /hi\n');
    const r = await u.tsbuild(['build', '--progress', 'quiet', '--no-cache', ctx]);
    t.is(r.code, 0, output(r));
    t.deepEqual(await leftovers(u.store), [], 'the next build removed them');
  },
);

serial(
  `rootless unpack, run and RUN agree on an entry below a lower layer's symlink: all follow it inside the root${why}`,
  async (t) => {
    const u = user as TestUser;
    // the image is made by root in a store of its own (the library writes layers as given), then loaded by the user
    const rootStore = await makeTempDir('tsbuild-hardening-store-');
    t.teardown(() => removeDir(rootStore));
    const i = await tsbuild(['--root', rootStore, 'import', join(shared, 'bb.tar'), 'bb:1']);
    t.is(i.code, 0, output(i));
    await stackLayers(rootStore, 'bb:1', LINK_LAYERS, 'linky:1');
    const archive = join(shared, 'linky.tar');
    const s = await tsbuild(['--root', rootStore, 'save', 'linky:1', '-o', archive]);
    t.is(s.code, 0, output(s));
    await chmod(archive, 0o644);

    const l = await u.tsbuild(['load', '-i', archive]);
    t.is(l.code, 0, output(l));
    const out = join(scratch, 'linky-rootfs');
    const unpack = await u.tsbuild(['unpack', 'linky:1', out]);
    t.is(unpack.code, 0, output(unpack));
    t.is(await readFile(join(out, 'etc', 'leak'), 'utf8'), 'through the link\n');
    const run = await u.tsbuild(['run', '--rm', 'linky:1', 'sh', '-c', 'cat /etc/leak && readlink /a']);
    t.is(run.code, 0, output(run));
    t.is(run.stdout, 'through the link\n/etc\n', 'run sees what unpack wrote');
    const ctx = join(scratch, 'linky-ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), 'FROM linky:1\nRUN cat /etc/leak && readlink /a\n');
    const b = await u.tsbuild(['build', '--progress', 'plain', '--no-cache', ctx]);
    t.is(b.code, 0, output(b));
    t.regex(b.stderr, /through the link\n(#\d+\s+[\d.]+\s)?\/etc\n/, 'a RUN step sees it too');
    t.deepEqual(await leftovers(u.store), []);
  },
);

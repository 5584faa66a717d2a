// `tsbuild run`, `mount`, `umount` and `bundle` through the built CLI (dist/), as root, against a busybox-static
// image and the bootstrapped Debian image. test/runtime/run.test.ts covers the same runtime one level down.
import test, { type ExecutionContext } from 'ava';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { hostname as hostHostname } from 'node:os';
import { join } from 'node:path';
import { busyboxAvailable, makeBusyboxRootfs } from '../../fixtures/busybox.js';
import { copyImage, debianStore } from '../helpers/images.js';
import { type CliResult, isRoot, makeTempDir, removeDir, repoRoot, rootTest, tsbuild } from '../helpers/index.js';
import { processesWith } from '../helpers/procs.js';

const enabled = isRoot && busyboxAvailable();
// Root-only (rootTest); the busybox image needs Debian's busybox-static too.
const serial = busyboxAvailable() ? rootTest : (test.serial.skip as typeof test.serial);

/** One store for the file: `bb` (busybox, root), `bb-user` (busybox with USER, WORKDIR, ENV) and `debian:bookworm`. */
let root = '';
const IMAGES = { busybox: 'bb:latest', debian: 'debian:bookworm' } as const;
type Flavour = keyof typeof IMAGES;

test.before(async () => {
  if (!enabled) return;
  root = await makeTempDir('tsbuild-store-');
  const tree = await makeTempDir('tsbuild-bb-');
  try {
    chmodSync(tree, 0o755);
    await makeBusyboxRootfs(tree);
    writeFileSync(join(tree, 'bin/not-executable'), '#!/bin/sh\necho hi\n', { mode: 0o644 });
    await must(tsbuild(['--root', root, 'import', tree, IMAGES.busybox]));
    await must(
      tsbuild([
        '--root',
        root,
        'import',
        tree,
        'bb-user:latest',
        '--change',
        'USER nobody',
        '--change',
        'WORKDIR /srv/app',
        '--change',
        'ENV FOO=from-image BAR=image',
      ]),
    );
  } finally {
    await removeDir(tree);
  }
  await copyImage(await debianStore(), root, IMAGES.debian);
});

test.after.always(async () => {
  if (!root) return;
  // a failed test may leave a `tsbuild mount` view: never rm through a mount
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const target = line.split(' ')[4];
    if (target?.startsWith(`${root}/`)) spawnSync('umount', ['-l', target]);
  }
  await removeDir(root);
});

async function must(p: Promise<CliResult>): Promise<CliResult> {
  const r = await p;
  if (r.code !== 0) throw new Error(`tsbuild failed (${r.code}): ${r.stderr}`);
  return r;
}

/** run is `tsbuild --root ROOT run --rm FLAGS… IMAGE COMMAND…`. */
function run(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return tsbuild(['--root', root, 'run', '--rm', ...args], opts);
}

const sh = (script: string): string[] => ['sh', '-c', script];

/**
 * both registers one behaviour for the busybox image and for the Debian image. `skip` (decided when the file loads,
 * since ava declares tests synchronously) registers them as skipped, with the reason in the title.
 */
function both(
  title: string,
  fn: (t: ExecutionContext, image: string, flavour: Flavour) => Promise<void>,
  skip?: string,
): void {
  const register = skip === undefined ? serial : (test.serial.skip as typeof test.serial);
  const why = skip === undefined ? '' : ` (skipped: ${skip})`;
  for (const flavour of Object.keys(IMAGES) as Flavour[])
    register(`${title} (${flavour})${why}`, (t) => fn(t, IMAGES[flavour], flavour));
}

// 1. Isolation

both('the command is PID 1', async (t, image) => {
  const r = await run([image, 'cat', '/proc/1/cmdline']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'cat\0/proc/1/cmdline\0');
});

both("the hostname is the container's own, not the host's", async (t, image) => {
  const r = await run([image, ...sh('cat /proc/sys/kernel/hostname; echo $HOSTNAME')]);
  const [name, env] = r.stdout.trim().split('\n');
  t.regex(name as string, /^[0-9a-f]{12}$/);
  t.is(env, name, '$HOSTNAME agrees');
  t.not(name, hostHostname());
  t.is((await run(['--hostname', 'box', image, 'cat', '/proc/sys/kernel/hostname'])).stdout, 'box\n');
});

both("the mnt, pid, uts, ipc and net namespaces differ from the host's", async (t, image) => {
  const kinds = ['mnt', 'pid', 'uts', 'ipc', 'net'];
  const r = await run([image, ...sh(kinds.map((k) => `readlink /proc/self/ns/${k}`).join('; '))]);
  const inside = r.stdout.trim().split('\n');
  t.is(inside.length, kinds.length, r.stderr);
  kinds.forEach((k, i) => {
    t.regex(inside[i] as string, new RegExp(`^${k}:\\[\\d+\\]$`));
    t.not(inside[i], readlinkSync(`/proc/self/ns/${k}`), k);
  });
});

both('the default network has only the loopback interface', async (t, image) => {
  const r = await run([image, ...sh('ls /sys/class/net; echo --; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "')]);
  t.deepEqual(r.stdout.trim().split('\n'), ['lo', '--', 'lo'], r.stderr);
});

both("--network host sees the host's interfaces", async (t, image) => {
  const r = await run(['--network', 'host', image, ...sh('ls /sys/class/net; readlink /proc/self/ns/net')]);
  const lines = r.stdout.trim().split('\n');
  t.is(lines.pop(), readlinkSync('/proc/self/ns/net'));
  t.deepEqual(lines.sort(), readdirSync('/sys/class/net').sort());
  t.true(lines.length > 1, 'the host has more than lo');
});

both('the repository checkout is invisible', async (t, image) => {
  const r = await run([
    image,
    ...sh(`test -e ${join(repoRoot, 'package.json')} && echo visible; ls ${repoRoot} 2>&1; cat /proc/self/mountinfo`),
  ]);
  t.is(r.code, 0, r.stderr);
  t.false(r.stdout.includes('visible'));
  t.regex(r.stdout, /No such file or directory/);
  t.false(r.stdout.split('\n').slice(1).join('\n').includes(repoRoot), 'no mount shows the checkout');
});

both('writing /proc/sys/kernel/hostname or /proc/sysrq-trigger fails', async (t, image) => {
  const before = hostHostname();
  const r = await run([
    image,
    ...sh(
      'echo pwned > /proc/sys/kernel/hostname && echo wrote-hostname; echo h > /proc/sysrq-trigger && echo wrote-sysrq; hostname pwned 2>/dev/null && echo set-hostname; true',
    ),
  ]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '');
  t.regex(r.stderr, /Read-only file system/);
  t.is(hostHostname(), before);
  t.is(readFileSync('/proc/sys/kernel/hostname', 'utf8').trim(), before);
});

// 2. Exit status

both('the exit status of the command passes through', async (t, image) => {
  t.is((await run([image, ...sh('exit 7')])).code, 7);
  t.is((await run([image, 'true'])).code, 0);
});

both('a missing command exits 127 with one line on stderr', async (t, image) => {
  const r = await run([image, 'no-such-command']);
  t.is(r.code, 127);
  t.is(r.stderr, 'tsbuild: exec no-such-command: executable file not found in $PATH\n');
  t.is((await run([image, '/no/such/path'])).code, 127);
});

both('a file that is not executable exits 126', async (t, image, flavour) => {
  const r = await run([image, '/etc/passwd']);
  t.is(r.code, 126);
  t.regex(r.stderr, /^tsbuild: exec \/etc\/passwd: .*permission denied/i);
  t.is((await run([image, '/etc'])).code, 126, 'a directory');
  if (flavour === 'busybox') t.is((await run([image, 'not-executable'])).code, 126, 'found in $PATH but mode 644');
});

serial('an unknown image exits 125 with an error', async (t) => {
  const r = await run(['no-such-image:latest', 'true']);
  t.is(r.code, 125);
  t.regex(r.stderr, /^error: image "no-such-image:latest" not found/);
});

const badFlag = test.macro({
  async exec(t, args: string[], message: RegExp) {
    const r = await run([...args, IMAGES.busybox, 'echo', 'ran']);
    t.is(r.code, 125, r.stderr);
    t.is(r.stdout, '', 'the command did not run');
    t.regex(r.stderr, message);
  },
  title: (provided, args: string[]) => provided ?? `a bad flag exits 125 without running anything: ${args.join(' ')}`,
});
serial(badFlag, ['--bogus'], /^error: unknown flag: --bogus\n/);
serial(badFlag, ['--bogus=1'], /^error: unknown flag: --bogus\n/);
serial(badFlag, ['-Z'], /^error: unknown flag: -Z\n/);
serial(badFlag, ['--network', 'overlay0'], /^error: --network must be none, default \(bridge\) or host/);
serial(badFlag, ['--memory', 'lots'], /^error: invalid size "lots"/);
serial(badFlag, ['--pids-limit', '0'], /^error: --pids-limit must be a positive number/);

// 3. User, working directory, environment

const userMacro = test.macro({
  async exec(t, image: string, user: string, expected: string) {
    const r = await run(['-u', user, image, ...sh('echo $(id -u) $(id -g) $(id -G)')]);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout.trim(), expected);
  },
  title: (provided, image: string, user: string, expected: string) =>
    provided ?? `-u ${user} runs as ${expected} (${image})`,
});
// `id -G` lists the primary group, then the supplementary groups (busybox: user is in staff, 50).
serial(userMacro, IMAGES.busybox, '1000', '1000 1000 1000 50');
serial(userMacro, IMAGES.busybox, 'nobody', '65534 65534 65534');
serial(userMacro, IMAGES.busybox, '1000:50', '1000 50 50');
// Debian has no user 1000: docker runs it with group 0
serial(userMacro, IMAGES.debian, '1000', '1000 0 0');
serial(userMacro, IMAGES.debian, 'nobody', '65534 65534 65534');
serial(userMacro, IMAGES.debian, 'root', '0 0 0');

serial("the image's USER, WorkingDir and Env apply, and -u, -w, -e override them", async (t) => {
  const probe = sh('id -un; pwd; env | sort');
  const plain = await run(['bb-user:latest', ...probe]);
  t.is(plain.code, 0, plain.stderr);
  const [user, cwd, ...env] = plain.stdout.trim().split('\n');
  t.is(user, 'nobody');
  t.is(cwd, '/srv/app', 'the WorkingDir is created');
  t.true(env.includes('FOO=from-image') && env.includes('BAR=image'), env.join(' '));
  t.true(env.includes('HOME=/nonexistent'), "HOME comes from the user's passwd entry");

  const over = await run(
    [
      '-u',
      'root',
      '-w',
      '/tmp/work',
      '-e',
      'FOO=from-flag',
      '-e',
      'NEW=two words',
      '-e',
      'FROM_HOST',
      'bb-user:latest',
      ...probe,
    ],
    { env: { FROM_HOST: 'host-value' } },
  );
  t.is(over.code, 0, over.stderr);
  const [user2, cwd2, ...env2] = over.stdout.trim().split('\n');
  t.is(user2, 'root');
  t.is(cwd2, '/tmp/work');
  for (const kv of ['FOO=from-flag', 'BAR=image', 'NEW=two words', 'FROM_HOST=host-value', 'HOME=/root'])
    t.true(env2.includes(kv), kv);
});

both('-w and -e work on the image', async (t, image) => {
  const r = await run([
    '-w',
    '/opt/x',
    '-e',
    'GREETING=hello there',
    image,
    ...sh('pwd; echo "$GREETING"; echo $PATH'),
  ]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n'), [
    '/opt/x',
    'hello there',
    '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  ]);
});

// 4. Limits

const bigAlloc: Record<Flavour, string[]> = {
  // busybox sort keeps every line in memory: 150 MB of random bytes is about 200 MB of base64
  busybox: sh('head -c 150000000 /dev/urandom | base64 | sort > /dev/null'),
  debian: ['perl', '-e', '$x = "x" x (200 * 1024 * 1024); print length($x), "\\n"'],
};

both('--memory 64m OOM-kills a process that allocates 200 MB (exit 137)', async (t, image, flavour) => {
  const small = await run(['--memory', '64m', image, ...bigAlloc[flavour]]);
  t.is(small.code, 137, small.stderr);
  t.regex(small.stderr, /W_OOM/);
  const big = await run(['--memory', '1g', image, ...bigAlloc[flavour]]);
  t.is(big.code, 0, `the same command fits in 1g: ${big.stderr}`);
});

both('--pids-limit 20 contains a fork bomb, and the host still works', async (t, image) => {
  // PID 1 forks once, before the limit can be near, to start the bomb in a subshell (started from PID 1 itself, the
  // bomb could make PID 1's own fork fail under load, and `echo survived` was lost with it). Then PID 1 uses only
  // builtins: it waits until the namespace holds 15 processes (a glob over /proc, no fork), spins while the bomb runs
  // into the limit, and exits: the kernel kills the rest. (A fixed spin alone could end before a slow-starting bomb
  // had failed a single fork.)
  const bomb = [
    '(bomb() { bomb | bomb & }; bomb) &',
    'n=0; while [ $n -lt 100000 ]; do set -- /proc/[0-9]*; [ $# -ge 15 ] && break; n=$((n+1)); done;',
    'i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo survived',
  ].join(' ');
  const r = await run(['--pids-limit', '20', image, ...sh(bomb)]);
  t.is(r.stdout, 'survived\n', r.stderr.slice(0, 500));
  t.regex(r.stderr, /fork/i, 'forks failed');
  const count = await run([
    '--pids-limit',
    '20',
    image,
    'awk',
    'BEGIN { for (i = 0; i < 100; i++) if (system("sleep 60 &") != 0) f++; print 100 - f, f }',
  ]);
  const [ok, failed] = count.stdout.trim().split(' ').map(Number);
  t.true((ok as number) < 20 && (failed as number) > 80, count.stdout);
  const after = await run([image, 'echo', 'still-works']);
  t.is(after.stdout, 'still-works\n');
});

// 5. Signals and kill -9

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** start spawns `tsbuild run` itself and resolves once the container printed "ready". */
async function start(t: ExecutionContext, args: string[]): Promise<Started> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'tsbuild.js'), '--root', root, 'run', '--rm', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: repoRoot,
  });
  t.teardown(() => void child.kill('SIGKILL'));
  let text = '';
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))),
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => {
      text += b.toString();
      if (text.includes('ready')) resolve();
    });
    child.stderr?.on('data', (b: Buffer) => (text += b.toString()));
    void exited.then(() => reject(new Error(`tsbuild run exited early: ${text}`)));
  });
  return { child, output: () => text, exited };
}

both('SIGTERM to `tsbuild run` reaches the container process', async (t, image) => {
  const { child, output, exited } = await start(t, [
    image,
    ...sh("trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done"),
  ]);
  child.kill('SIGTERM');
  t.is(await exited, 3, output());
  t.true(output().includes('got-term'));
});

async function poll(check: () => boolean, ms = 5000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50)))
    if (check()) return true;
  return check();
}

both('kill -9 of `tsbuild run` leaves no mount of the store and no container process', async (t, image) => {
  const marker = `tsbuild-e2e-marker-${process.pid}-${Date.now()}`;
  // the container's PID 1 and a grandchild both carry the marker
  const { child, exited } = await start(t, [
    image,
    ...sh(`sh -c "sleep 1000; : ${marker}" & echo ready; wait; : ${marker}`),
  ]);
  t.true(processesWith(marker).length >= 2, 'the container runs');
  // a real kill comes later than the first milliseconds, when the overlay is still on the host (see run-image.ts)
  await new Promise((r) => setTimeout(r, 300));
  const storeMounts = () =>
    readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => l.includes(` ${root}/`));
  t.deepEqual(storeMounts(), [], 'the overlay is detached from the host once the container holds it');
  child.kill('SIGKILL');
  await exited;
  t.true(await poll(() => processesWith(marker).length === 0), `left: ${processesWith(marker).join(' ')}`);
  t.deepEqual(storeMounts(), []);
});

// 6. mount / umount

both('`tsbuild mount` prints a writable merged view of the image; `tsbuild umount` removes it', async (t, image) => {
  const m = await tsbuild(['--root', root, 'mount', image]);
  t.is(m.code, 0, m.stderr);
  const view = m.stdout.trim();
  t.true(view.startsWith(`${root}/`), view);
  const mountinfo = () => readFileSync('/proc/self/mountinfo', 'utf8');
  t.true(mountinfo().includes(` ${view} `), 'it is a mount');
  t.true(existsSync(join(view, 'bin/sh')));
  t.regex(readFileSync(join(view, 'etc/passwd'), 'utf8'), /^root:x:0:0:/);
  writeFileSync(join(view, 'written-by-test'), 'hello\n');
  t.is(readFileSync(join(view, 'written-by-test'), 'utf8'), 'hello\n');
  // the image itself did not change
  t.is((await run([image, ...sh('test -e /written-by-test && echo leaked || echo clean')])).stdout, 'clean\n');

  const u = await tsbuild(['--root', root, 'umount', view]);
  t.is(u.code, 0, u.stderr);
  t.false(mountinfo().includes(` ${view} `));
  t.false(mountinfo().includes(`${root}/containers/`));
  t.false(existsSync(view));
});

serial('`tsbuild umount` of a path that is not a tsbuild mount fails with a clear error (exit 1)', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  for (const path of [dir, '/tmp', join(root, 'containers', 'nothing-here')]) {
    const r = await tsbuild(['--root', root, 'umount', path]);
    t.is(r.code, 1, path);
    t.is(r.stderr.split('\n')[0], `error: a tsbuild mount at ${path} not found`);
  }
  t.true(existsSync(dir), 'nothing was removed');
});

// 7. bundle + runc

const runc = ['/usr/sbin/runc', '/usr/bin/runc'].find((p) => existsSync(p));

both(
  '`tsbuild bundle` writes a bundle that runc runs',
  async (t, image) => {
    if (!runc) throw new Error('unreachable: registered as skipped without runc');
    const dir = await makeTempDir('tsbuild-bundle-');
    t.teardown(() => removeDir(dir));
    const bundle = join(dir, 'bundle');
    const b = await tsbuild([
      '--root',
      root,
      'bundle',
      '-u',
      'nobody',
      '-w',
      '/srv',
      '-e',
      'GREETING=hi',
      image,
      bundle,
      '--',
      'sh',
      '-c',
      'echo "$GREETING from $(id -un) in $(pwd)"; cat /proc/1/cmdline; echo; ls /sys/class/net',
    ]);
    t.is(b.code, 0, b.stderr);
    t.true(existsSync(join(bundle, 'config.json')) && existsSync(join(bundle, 'rootfs/bin/sh')));
    const id = `tsbuild-e2e-${process.pid}-${Date.now()}`;
    t.teardown(() => void spawnSync(runc, ['delete', '-f', id]));
    const r = spawnSync(runc, ['run', '-b', bundle, id], {
      cwd: dir,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    t.is(r.status, 0, r.stderr);
    t.is(
      r.stdout,
      'hi from nobody in /srv\nsh\0-c\0echo "$GREETING from $(id -un) in $(pwd)"; cat /proc/1/cmdline; echo; ls /sys/class/net\0\nlo\n',
    );
  },
  runc ? undefined : 'runc is not installed: apt-get install runc',
);

// 8. a terminal

const haveScript = existsSync('/usr/bin/script');
const ttySerial = haveScript ? serial : (test.serial.skip as typeof test.serial);
const ttyWhy = haveScript ? '' : ' (skipped: script(1) is not installed: apt-get install bsdutils)';

ttySerial(`-t gives the command a terminal (under script(1))${ttyWhy}`, async (t) => {
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const cli = [
    process.execPath,
    join(repoRoot, 'bin', 'tsbuild.js'),
    '--root',
    root,
    'run',
    '--rm',
    '-t',
    IMAGES.busybox,
    'sh',
    '-c',
    'tty; test -t 0 && test -t 1 && echo both-tty; exit 5',
  ];
  const r = spawnSync('script', ['-qec', cli.map(q).join(' '), '/dev/null'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  t.is(r.status, 5, r.stderr);
  const lines = r.stdout.split(/\r*\n/);
  t.is(lines[0], '/dev/console');
  t.is(lines[1], 'both-tty');
  const plain = await run([IMAGES.busybox, ...sh('test -t 1 && echo tty || echo not-a-tty')]);
  t.is(plain.stdout, 'not-a-tty\n', 'without -t there is none');
});

// 8. Command-line spelling

serial(
  '-v mounts a volume (not --version), a leading --debug keeps `run`, and the command keeps its own flags',
  async (t) => {
    const dir = await makeTempDir('tsbuild-vol-');
    t.teardown(() => removeDir(dir));
    writeFileSync(join(dir, 'v.txt'), 'from-the-host\n');
    const v = await run(['-v', `${dir}/v.txt:/v.txt:ro`, IMAGES.busybox, 'cat', '/v.txt']);
    t.is(v.code, 0, v.stderr);
    t.is(v.stdout, 'from-the-host\n');
    const d = await tsbuild(['--debug', '--root', root, 'run', '--rm', IMAGES.busybox, 'echo', '--debug', '-v']);
    t.is(d.code, 0, d.stderr);
    t.is(d.stdout, '--debug -v\n');
    const e = await tsbuild(['--root', root, '--debug', 'run', '--rm', IMAGES.busybox, 'sh', '-c', 'echo $0', 'zero']);
    t.is(e.stdout, 'zero\n', e.stderr);
  },
);

serial('`tsbuild bundle IMAGE DIR CMD…` keeps the flags of the command without a --', async (t) => {
  const dir = await makeTempDir('tsbuild-bundle-');
  t.teardown(() => removeDir(dir));
  const b = await tsbuild(['--root', root, 'bundle', IMAGES.busybox, join(dir, 'b'), 'sh', '-c', 'echo hi', '-e', 'x']);
  t.is(b.code, 0, b.stderr);
  const config = JSON.parse(readFileSync(join(dir, 'b', 'config.json'), 'utf8')) as { process: { args: string[] } };
  t.deepEqual(config.process.args, ['sh', '-c', 'echo hi', '-e', 'x']);
});

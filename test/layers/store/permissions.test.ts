// Issue 14 part 1, "local root through the store": the store's directories that hold extracted image content
// (snapshots/, containers/, tmp/, cache-mounts/) and the store root are unreachable by other users, so a setuid-root
// binary or a 0666 device node an image carried cannot be used by them. The helper's modes are checked without
// root; the reproducer (import + run through the CLI, then `nobody` executing the snapshot's setuid bash) as root.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Store } from '../../../layers/store/store.js';
import { FakeHost } from '../../../sys/fake-host.js';
import { openRootfs } from '../../../unionfs/rootfs.js';
import { ensureSnapshots } from '../../../unionfs/snapshot.js';
import { makeWorkDir } from '../../../convert/work-dir.js';
import { ensureCacheDir } from '../../../builder/steps/run-mounts.js';
import { isRoot, removeDir, rootTest, runCommand, tsbuild } from '../../helpers/index.js';

type Teardown = { teardown(fn: () => unknown): void };

const PRIVATE = ['snapshots', 'containers', 'tmp', 'cache-mounts'];

async function modeOf(p: string): Promise<number> {
  return (await stat(p)).mode & 0o7777;
}

/** worldTraversable makes a temp dir that any user may enter (0755), like /srv, removed after the test. */
async function worldTraversable(t: Teardown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-perm-'));
  t.teardown(() => removeDir(dir));
  await chmod(dir, 0o755);
  return dir;
}

// --- the helper's modes (no root needed) ---

test('Store.open creates a new store root 0700, whatever the umask', async (t) => {
  const base = await worldTraversable(t);
  const old = process.umask(0);
  try {
    const store = await Store.open(join(base, 'a', 'store'));
    t.is(await modeOf(store.root), 0o700);
    t.is(await modeOf(join(base, 'a')), 0o777, 'the parents of the root are not the store: default mode');
  } finally {
    process.umask(old);
  }
});

test('store.privateDir creates each private directory 0700 and returns its path', async (t) => {
  const base = await worldTraversable(t);
  const store = await Store.open(join(base, 'store'));
  const old = process.umask(0);
  try {
    for (const name of PRIVATE) {
      const p = await store.privateDir(name as never);
      t.is(p, join(store.root, name));
      t.is(await modeOf(p), 0o700, name);
    }
  } finally {
    process.umask(old);
  }
});

test('Store.open tightens a store an older version made 0755 (root and private directories), and leaves blobs', async (t) => {
  const base = await worldTraversable(t);
  const root = join(base, 'store');
  await Store.open(root);
  for (const d of [root, ...PRIVATE.map((n) => join(root, n))]) {
    await mkdir(d, { recursive: true });
    await chmod(d, 0o755);
  }
  await mkdir(join(root, 'snapshots', 'abc'), { mode: 0o755 });
  await chmod(join(root, 'snapshots', 'abc'), 0o755);
  const blobs = await modeOf(join(root, 'blobs'));
  await Store.open(root);
  t.is(await modeOf(join(root, 'blobs')), blobs, 'blobs/ is left as it was (the root guards it)');
  for (const d of [root, ...PRIVATE.map((n) => join(root, n))]) t.is(await modeOf(d), 0o700, d);
  t.is(await modeOf(join(root, 'snapshots', 'abc')), 0o755, 'a snapshot root keeps its own mode (it is a container /)');
});

test('Store.open only takes bits away: a root 0500 stays 0500, 0750 becomes 0700', async (t) => {
  const base = await worldTraversable(t);
  const root = join(base, 'store');
  await Store.open(root);
  await chmod(root, 0o750);
  await Store.open(root);
  t.is(await modeOf(root), 0o700);
  if (!isRoot) return; // an unprivileged owner cannot write into a 0500 root; the chmod rule is the same
  await chmod(root, 0o500);
  await Store.open(root);
  t.is(await modeOf(root), 0o500);
  await chmod(root, 0o700);
});

test('the places that make store directories make them 0700: snapshots, containers, tmp (export), cache-mounts', async (t) => {
  const base = await worldTraversable(t);
  // a store root that exists 0755 but whose private directories do not yet (ensureSnapshots takes a root path)
  const root = join(base, 'store');
  await mkdir(root, { mode: 0o755 });
  await ensureSnapshots({ storeRoot: root, layers: [] });
  t.is(await modeOf(join(root, 'snapshots')), 0o700, 'snapshots/');
  const work = await makeWorkDir(root);
  t.is(await modeOf(join(root, 'tmp')), 0o700, 'tmp/');
  t.is(await modeOf(work), 0o700, 'the export work dir');
  const host = new FakeHost({ caps: { mount: false } });
  await ensureCacheDir(host, join(root, 'cache-mounts', 'x'.repeat(32)), {
    type: 'cache',
    id: 'x',
    target: '/c',
    readonly: false,
    sharing: 'shared',
    source: '',
    mode: 0o755,
    uid: 0,
    gid: 0,
  });
  t.is(await modeOf(join(root, 'cache-mounts')), 0o700, 'cache-mounts/');
  const store = await Store.open(join(base, 'store2'));
  const rootfs = await openRootfs({ store, host, layers: [] });
  t.teardown(() => rootfs.release());
  t.is(await modeOf(join(store.root, 'containers')), 0o700, 'containers/');
  t.is(await modeOf(rootfs.dir), 0o700, 'a container directory');
});

// --- the reproducer, through the CLI (root) ---

/**
 * asNobody runs a command as uid/gid 65534 without supplementary groups, through /bin/sh: setpriv itself calls
 * execve while root's capabilities are still effective (it keeps them to change the gid and groups after the uid), so
 * its own exec of a path under a 0700 directory succeeds (CAP_DAC_OVERRIDE). sh runs with no capabilities, as nobody
 * would, and the path is looked up with nobody's rights.
 */
function asNobody(args: string[]) {
  const sh = ['/bin/sh', '-c', 'exec "$@"', 'sh'];
  return runCommand('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...sh, ...args], { cwd: '/' });
}

/** suidTree makes d/ with a setuid-root copy of bash (and the libraries it needs) and a 0666 char device 10:232. */
function suidTree(base: string): string {
  const d = join(base, 'd');
  mkdirSync(d, { mode: 0o755 });
  copyFileSync('/bin/bash', join(d, 'suidbash'));
  chmodSync(join(d, 'suidbash'), 0o4755);
  const ldd = execFileSync('ldd', ['/bin/bash'], { encoding: 'utf8' });
  for (const lib of ldd.match(/\/\S+/g) ?? []) {
    mkdirSync(join(d, dirname(lib)), { recursive: true, mode: 0o755 });
    copyFileSync(lib, join(d, lib));
  }
  execFileSync('mknod', ['-m', '0666', join(d, 'kvm'), 'c', '10', '232']);
  return d;
}

/** importAndRun is the reproducer: import the tree as suid:1, run its setuid bash once; returns the snapshot. */
async function importAndRun(t: { is: (a: unknown, b: unknown, m?: string) => void }, root: string, d: string) {
  const imp = await tsbuild(['--root', root, 'import', d, 'suid:1']);
  t.is(imp.code, 0, imp.stderr);
  const run = await tsbuild(['--root', root, 'run', '--rm', 'suid:1', '/suidbash', '-c', 'true']);
  t.is(run.code, 0, run.stderr);
  const snaps = readdirSync(join(root, 'snapshots')).filter((n) => !n.startsWith('.'));
  const snap = snaps.map((n) => join(root, 'snapshots', n)).find((p) => existsSync(join(p, 'suidbash')));
  if (!snap) throw new Error(`no snapshot with suidbash in ${snaps.join(', ')}`);
  t.is(statSync(join(snap, 'suidbash')).mode & 0o7777, 0o4755, 'the snapshot keeps the image content as it is');
  return snap;
}

async function assertUnreachable(t: import('ava').ExecutionContext, root: string, snap: string): Promise<void> {
  const r = await asNobody([join(snap, 'suidbash'), '-p', '-c', 'id']);
  t.not(r.code, 0, `nobody ran the setuid bash of the snapshot: ${r.stdout}`);
  t.false(r.stdout.includes('euid=0'), r.stdout);
  t.regex(r.stderr, /Permission denied/);
  const dev = await asNobody(['stat', join(snap, 'kvm')]);
  t.not(dev.code, 0, `nobody reached the 0666 device node: ${dev.stdout}`);
  t.regex(dev.stderr, /Permission denied/);
  for (const name of ['snapshots', 'containers', 'tmp']) {
    const ls = await asNobody(['ls', join(root, name)]);
    t.not(ls.code, 0, `nobody listed ${name}/: ${ls.stdout}`);
    t.regex(ls.stderr, /Permission denied/, name);
  }
}

const haveSetpriv = existsSync('/usr/bin/setpriv') || existsSync('/bin/setpriv');
const cli = haveSetpriv ? rootTest : test.skip;
const why = !isRoot ? ' (skipped: needs root)' : !haveSetpriv ? ' (skipped: setpriv is not installed)' : '';

cli(
  `CVE-like local root: nobody cannot run a setuid-root binary or reach a 0666 device an image carried${why}`,
  async (t) => {
    const base = await worldTraversable(t);
    const root = join(base, 'store');
    const snap = await importAndRun(t, root, suidTree(base));
    await assertUnreachable(t, root, snap);
    t.is(await modeOf(root), 0o700, 'the store root');
    for (const name of ['snapshots', 'containers']) t.is(await modeOf(join(root, name)), 0o700, name);
  },
);

cli(`a store an older version left 0755 is tightened by the next command that opens it${why}`, async (t) => {
  const base = await worldTraversable(t);
  const root = join(base, 'store');
  const snap = await importAndRun(t, root, suidTree(base));
  // what an older tsbuild left: everything 0755
  for (const d of [root, ...PRIVATE.map((n) => join(root, n))]) {
    await mkdir(d, { recursive: true });
    await chmod(d, 0o755);
  }
  const before = await asNobody([join(snap, 'suidbash'), '-p', '-c', 'id']);
  t.regex(before.stdout, /euid=0\(/, `the setup reproduces the issue: nobody gets euid 0 (${before.stderr})`);
  const images = await tsbuild(['--root', root, 'images']);
  t.is(images.code, 0, images.stderr);
  for (const d of [root, ...PRIVATE.map((n) => join(root, n))]) t.is(await modeOf(d), 0o700, d);
  await assertUnreachable(t, root, snap);
});

test('the test cache directory is private (0700) once a test made it', async (t) => {
  const { ensureTestCache, CACHE } = await import('../../helpers/images.js');
  await ensureTestCache();
  t.is(await modeOf(CACHE), 0o700, CACHE);
});

// No leftovers after a crash or Ctrl-C (issue 14): a build stopped by SIGINT or SIGTERM during a RUN ends the
// step, unmounts and removes its directories, and exits 130/143 with one line on stderr; after a `kill -9` of a
// build (during a RUN) or of an export, the next `tsbuild prune` or `tsbuild build` detaches the dead process's
// mounts and removes its directories, and never touches those of a live process or a `tsbuild mount` view.
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxAvailable } from '../../fixtures/busybox.js';
import { busyboxTree, newStoreRoot } from '../helpers/images.js';
import { makeTempDir, removeDir, repoRoot, rootTest, tsbuild } from '../helpers/index.js';
import { processesWith } from '../helpers/procs.js';
import { LINK_LAYERS, stackLayers } from '../helpers/layers.js';

const serial = busyboxAvailable() ? rootTest : (test.serial.skip as typeof test.serial);

function mountsUnder(root: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((mp) => mp.startsWith(`${root}/`));
}

/** list names the entries of `<root>/<dir>` (none when it is missing). */
function list(root: string, dir: string): string[] {
  return existsSync(join(root, dir)) ? readdirSync(join(root, dir)).sort() : [];
}

async function poll(check: () => boolean, ms = 10_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50)))
    if (check()) return true;
  return check();
}

/** aStore makes a store with `bb:1` (busybox); its mounts are detached and its RUN processes killed after the test. */
async function aStore(t: ExecutionContext): Promise<string> {
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  const r = await tsbuild(['--root', root, 'import', tree, 'bb:1']);
  if (r.code !== 0) throw new Error(`import: ${r.stderr}`);
  // registered after newStoreRoot's removal, so it runs first (teardowns run last-in first-out)
  t.teardown(() => {
    for (const mp of mountsUnder(root).sort((a, b) => b.length - a.length)) spawnSync('umount', ['-l', mp]);
  });
  return root;
}

interface Started {
  pid: number;
  marker: string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** startBuild starts `tsbuild build` of a RUN that sleeps and resolves once the RUN step's process runs. */
async function startBuild(t: ExecutionContext, root: string): Promise<Started> {
  const ctx = await makeTempDir();
  t.teardown(() => removeDir(ctx));
  // a unique sleep time marks the RUN step's processes (sh and sleep)
  const marker = `30.${process.pid}${Date.now() % 100000}`;
  writeFileSync(join(ctx, 'Dockerfile'), `FROM bb:1\nRUN sleep ${marker} && echo never\n`);
  const child = spawn(
    process.execPath,
    [join(repoRoot, 'bin/tsbuild.js'), '--root', root, '--progress', 'quiet', ctx],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  t.teardown(() => {
    for (const pid of processesWith(marker)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  child.stdout.resume();
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stderr })),
  );
  if (!(await poll(() => processesWith(marker).length > 0, 60_000)))
    throw new Error(`the RUN step never started: ${stderr}`);
  await new Promise((r) => setTimeout(r, 300));
  return { pid: child.pid as number, marker, done };
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  serial(
    `${signal} during a RUN ends the step, unmounts, removes the build's directories and exits ${code}`,
    async (t) => {
      const root = await aStore(t);
      const b = await startBuild(t, root);
      t.true(mountsUnder(root).length > 0, 'the step root is mounted while RUN runs');
      process.kill(b.pid, signal);
      const end = await b.done;
      t.is(end.code, code, end.stderr);
      t.is(end.stderr.trimEnd().split('\n').length, 1, `one line on stderr: ${end.stderr}`);
      t.regex(end.stderr, /^error: .*interrupted/);
      t.deepEqual(mountsUnder(root), [], 'nothing mounted under the store');
      t.deepEqual(list(root, 'containers'), []);
      t.deepEqual(
        list(root, 'tmp').filter((n) => n.startsWith('build-')),
        [],
      );
      t.true(await poll(() => processesWith(b.marker).length === 0), `left: ${processesWith(b.marker).join(' ')}`);
    },
  );
}

/** deadPid is the pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync('true');
  return r.pid as number;
}

serial(
  'after kill -9 of a build during RUN, prune detaches its mounts and removes its directories, not those of live builds or views',
  async (t) => {
    const root = await aStore(t);
    // a `tsbuild mount` view and a live build, which prune must leave alone
    const view = await tsbuild(['--root', root, 'mount', 'bb:1']);
    t.is(view.code, 0, view.stderr);
    const viewPath = view.stdout.trim();
    const live = await startBuild(t, root);
    const liveDirs = [...list(root, 'containers'), ...list(root, 'tmp')].filter((n) => n.includes(`${live.pid}-`));
    t.true(liveDirs.length >= 2, `the live build's directories: ${liveDirs.join(' ')}`);
    const liveMounts = mountsUnder(root).filter((mp) => mp.includes(`/${live.pid}-`));
    t.true(liveMounts.length > 0);

    const killed = await startBuild(t, root);
    process.kill(killed.pid, 'SIGKILL');
    await killed.done;
    const stale = [...list(root, 'containers'), ...list(root, 'tmp')].filter((n) => n.includes(`${killed.pid}-`));
    t.true(
      mountsUnder(root).some((mp) => mp.includes(`/${killed.pid}-`)),
      'the killed build left a mount',
    );
    // and a killed export's work directory, with something mounted in it
    const exportDir = join(root, 'tmp', `export-${deadPid()}-0123456789ab`);
    mkdirSync(join(exportDir, 'stage'), { recursive: true });
    writeFileSync(join(exportDir, 'stage', 'kept-by-mount'), 'x');
    t.is(spawnSync('mount', ['-t', 'tmpfs', 'tmpfs', join(exportDir, 'stage')]).status, 0);

    const r = await tsbuild(['--root', root, 'prune']);
    t.is(r.code, 0, r.stderr);
    t.notRegex(r.stderr, /still mounted/);
    for (const name of stale) t.regex(r.stdout, new RegExp(`${name}`), `prune says it removed ${name}`);
    t.regex(r.stdout, /export-\d+-0123456789ab/);
    t.deepEqual(
      mountsUnder(root).filter((mp) => mp.includes(`/${killed.pid}-`) || mp.includes('/export-')),
      [],
      'the dead build and export mounts are gone',
    );
    t.deepEqual(
      [...list(root, 'containers'), ...list(root, 'tmp')].filter(
        (n) => n.includes(`${killed.pid}-`) || n.startsWith('export-'),
      ),
      [],
    );
    // what lives stays
    for (const n of liveDirs) t.true(list(root, 'containers').includes(n) || list(root, 'tmp').includes(n), n);
    for (const mp of liveMounts) t.true(mountsUnder(root).includes(mp), mp);
    t.true(mountsUnder(root).includes(viewPath), 'the tsbuild mount view stays mounted');
    t.true(existsSync(join(viewPath, 'bin/sh')));

    process.kill(live.pid, 'SIGTERM');
    t.is((await live.done).code, 143);
    t.is((await tsbuild(['--root', root, 'umount', viewPath])).code, 0);
    t.deepEqual(mountsUnder(root), []);
  },
);

serial('after kill -9 of a build during RUN, the next build removes what it left', async (t) => {
  const root = await aStore(t);
  const killed = await startBuild(t, root);
  process.kill(killed.pid, 'SIGKILL');
  await killed.done;
  t.true(mountsUnder(root).length > 0, 'the killed build left a mount');
  const ctx = await makeTempDir();
  t.teardown(() => removeDir(ctx));
  writeFileSync(join(ctx, 'Dockerfile'), 'FROM bb:1\nRUN echo hi > /hi\n');
  const r = await tsbuild(['--root', root, '--progress', 'quiet', ctx]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(mountsUnder(root), []);
  t.deepEqual(list(root, 'containers'), []);
  t.deepEqual(
    list(root, 'tmp').filter((n) => n.startsWith('build-') || n.startsWith('export-')),
    [],
  );
});

// One policy for a layer entry below a symlink that a lower layer made (`a -> /etc` below, `a/leak` above): unpack
// applies the layers into one directory and follows the link inside the root; run (per-layer snapshots under an
// overlay) must put the entry in the same place, not shadow the link with a directory `a` holding `leak`.

serial("unpack and run agree on an entry below a lower layer's symlink: both follow it inside the root", async (t) => {
  const root = await aStore(t);
  await stackLayers(root, 'bb:1', LINK_LAYERS, 'linky:1');

  const out = await makeTempDir();
  t.teardown(() => removeDir(out));
  const unpack = await tsbuild(['--root', root, 'unpack', 'linky:1', join(out, 'rootfs')]);
  const run = await tsbuild(['--root', root, 'run', '--rm', 'linky:1', 'sh', '-c', 'cat /etc/leak && readlink /a']);
  t.is(unpack.code, 0, unpack.stderr);
  t.is(readFileSync(join(out, 'rootfs/etc/leak'), 'utf8'), 'through the link\n');
  t.is(readlinkSync(join(out, 'rootfs/a')), '/etc');
  t.is(run.code, 0, run.stderr);
  t.is(run.stdout, 'through the link\n/etc\n', 'run sees what unpack wrote');
  t.deepEqual(mountsUnder(root), []);
});

// Bad input and interruptions, through the CLI: an unsupported distribution, a --size too small, and exports
// killed in the middle (SIGKILL during mkfs and during the qcow2 write, SIGTERM): no partial output file, ever. A
// killed export may leave its work directory in the store's tmp (and the raw disk's directory in /dev/shm); the next
// export (cleanStaleExports) removes them.
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanStaleExports } from '../../convert/recipe.js';
import { busyboxTree, newStoreRoot } from '../helpers/images.js';
import { isRoot, makeTempDir, removeDir, repoRoot, rootTest, tsbuild } from '../helpers/index.js';
import { exportStore, imageProblems } from '../convert/export-fixtures.js';

let store: string;
test.before(async () => {
  if (isRoot) store = await exportStore();
});

test('exporting an image of no supported distribution fails with one clear line and a hint', async (t) => {
  const root = await newStoreRoot(t);
  const tree = await busyboxTree(t);
  t.is((await tsbuild(['--root', root, 'import', tree, 'bb:1', '-c', 'CMD ["/bin/sh"]'])).code, 0);
  t.deepEqual(await imageProblems(root, 'bb:1'), []);
  const out = await makeTempDir();
  t.teardown(() => removeDir(out));
  const r = await tsbuild(['--root', root, 'export', 'bb:1', '-o', join(out, 'bb.qcow2')]);
  t.is(r.code, 1);
  t.regex(
    r.stderr,
    /^error: cannot make an image without \/etc\/os-release bootable on its own: tsbuild export supports debian, ubuntu, alpine$/m,
  );
  t.regex(r.stderr, /^hint: .*--kernel PATH/m);
  t.deepEqual(readdirSync(out), []);
});

test('an output in a directory that does not exist fails at once, naming the directory', async (t) => {
  const root = await newStoreRoot(t);
  const started = Date.now();
  const r = await tsbuild(['--root', root, 'export', 'whatever:1', '-o', '/nonexistent-dir/x.qcow2']);
  t.is(r.code, 1);
  t.is(r.stderr, 'error: cannot write /nonexistent-dir/x.qcow2: the directory /nonexistent-dir does not exist\n');
  t.true(Date.now() - started < 10_000, 'before any work (the image is not even looked up)');
});

test('a bad --uuid is refused with a clear error before any work', async (t) => {
  const root = await newStoreRoot(t);
  const out = await makeTempDir();
  t.teardown(() => removeDir(out));
  const r = await tsbuild(['--root', root, 'export', 'whatever:1', '-o', join(out, 'x.raw'), '--uuid', 'not-a-uuid']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^error: --uuid "not-a-uuid" is not a UUID$/m);
  t.regex(r.stderr, /^hint: give 32 hex digits as 8-4-4-4-12/m);
  t.deepEqual(readdirSync(out), []);
});

test('a bad TSBUILD_EXPORT_SCRATCH is refused with one line before any work', async (t) => {
  const root = await newStoreRoot(t);
  const out = await makeTempDir();
  t.teardown(() => removeDir(out));
  const r = await tsbuild(['--root', root, 'export', 'whatever:1', '-o', join(out, 'x.qcow2')], {
    env: { TSBUILD_EXPORT_SCRATCH: 'ram' },
  });
  t.is(r.code, 1);
  t.is(r.stderr, 'error: TSBUILD_EXPORT_SCRATCH must be auto, memory or disk (got "ram")\n');
  t.deepEqual(readdirSync(out), []);
});

rootTest('a --size too small names the size needed', async (t) => {
  const out = await makeTempDir();
  t.teardown(() => removeDir(out));
  const r = await tsbuild(['--root', store, 'export', 'app:0.1', '-o', join(out, 'app.qcow2'), '--size', '100M']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^error: --size 100M is too small: the disk needs at least (\d+)M \(\d+ bytes\)$/m);
  t.regex(r.stderr, /^hint: use --size \d+M or more, or --size auto$/m);
  t.deepEqual(readdirSync(out), []);
});

interface Run {
  pid: number;
  stderr: () => string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** start runs the export and resolves once a stderr line matches `when`. */
async function startUntil(args: string[], when: RegExp): Promise<Run> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin/tsbuild.js'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  await new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      if (when.test(err)) resolve();
    });
    void done.then(() => reject(new Error(`the export ended before ${when}: ${err}`)));
  });
  return { pid: child.pid as number, stderr: () => err, done };
}

/** helpers returns the pids of processes (mkfs, debugfs…) still working in a dead export's work directory. */
function helpers(workDir: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(workDir)) pids.push(Number(p));
    } catch {
      // gone
    }
  }
  return pids;
}

const killed = test.macro({
  async exec(t, flags: string[], when: RegExp, signal: NodeJS.Signals) {
    const out = await makeTempDir();
    t.teardown(() => removeDir(out));
    const output = join(out, 'app.qcow2');
    const run = await startUntil(['--root', store, 'export', 'app:0.1', '-o', output, ...flags], when);
    process.kill(run.pid, signal);
    const end = await run.done;
    const workDir = join(
      store,
      'tmp',
      readdirSync(join(store, 'tmp')).find((n) => n.startsWith(`export-${run.pid}-`)) ?? 'none',
    );
    t.teardown(() => {
      for (const pid of helpers(workDir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    });
    // the raw disk's directory in memory, when the export made it there (convert/work-dir.ts)
    const inMemory = /disk \(made in memory\):/.test(run.stderr());
    const memoryDir = readdirSync('/dev/shm').find((n) => n.startsWith(`tsbuild-export-${run.pid}-`));
    t.false(existsSync(output), 'no output file');
    t.deepEqual(readdirSync(out), [], 'no temp file beside the output');
    if (signal === 'SIGKILL') {
      t.is(end.signal, 'SIGKILL');
      // what the killed export left is in the store's tmp only; once its helpers are gone, the next export removes it
      for (let i = 0; i < 100 && helpers(workDir).length; i++) await new Promise((r) => setTimeout(r, 200));
      t.true(existsSync(workDir), 'the work directory was in the store tmp');
      t.is(memoryDir !== undefined, inMemory, 'the memory directory was left when there was one');
      t.true((await cleanStaleExports(store)).includes(workDir.split('/').pop() as string));
      t.false(existsSync(workDir));
      if (memoryDir) t.false(existsSync(join('/dev/shm', memoryDir)), 'the next export removes the memory one too');
    } else {
      t.is(end.code, 143, run.stderr());
      t.regex(run.stderr(), /error: export interrupted/);
      t.false(existsSync(workDir), 'an interrupted export cleans up after itself');
      t.is(memoryDir, undefined, 'in memory too');
    }
  },
  title: (given) => given ?? '',
});

rootTest('an export killed (SIGKILL) during mkfs leaves no output file', killed, [], /layout: /, 'SIGKILL');
rootTest(
  'an export killed (SIGKILL) during the qcow2 write leaves no output file',
  killed,
  ['--compress', 'deflate'],
  /partition-table: /,
  'SIGKILL',
);
rootTest('SIGTERM stops an export, which removes its work directory and exits 143', killed, [], /layout: /, 'SIGTERM');

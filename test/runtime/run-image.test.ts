// runImage for real, as root, through both executors: the overlay is volatile with `remove`, nothing of it stays
// mounted on the host, and the store keeps nothing of a removed container.
import test, { type ExecutionContext } from 'ava';
import { chmodSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { busyboxAvailable, makeBusyboxRootfs } from '../../fixtures/busybox.js';
import { importImage } from '../../layers/sources/import.js';
import { getImage, type Image } from '../../layers/store/image.js';
import { Store } from '../../layers/store/store.js';
import { runImage } from '../../runtime/run-image.js';
import type { Executor } from '../../sys/namespaces.js';
import { volatileKnown } from '../../unionfs/overlay.js';
import { containersRoot } from '../../unionfs/rootfs.js';
import { isRoot, makeTempDir, removeDir } from '../helpers/index.js';

const enabled = isRoot && busyboxAvailable();
const serial = enabled ? test.serial : (test.serial.skip as typeof test.serial);

let dir = '';
let store: Store;
let image: Image;
test.before(async () => {
  if (!enabled) return;
  dir = await makeTempDir('tsbuild-run-image-');
  chmodSync(dir, 0o755);
  await makeBusyboxRootfs(join(dir, 'rootfs'));
  store = await Store.open(join(dir, 'store'));
  await importImage(store, { source: join(dir, 'rootfs'), name: 'busybox' });
  image = await getImage(store, 'busybox');
});
test.after.always(async () => {
  if (dir) await removeDir(dir);
});

async function run(executor: Executor, cmd: string, remove: boolean, user?: string) {
  const out = new PassThrough();
  let stdout = '';
  out.on('data', (b: Buffer) => (stdout += b.toString()));
  const previous = process.env.TSBUILD_NSEXEC;
  process.env.TSBUILD_NSEXEC = executor;
  try {
    const r = await runImage({
      store,
      image,
      cmd: ['sh', '-c', cmd],
      remove,
      io: { stdout: out },
      ...(user ? { user } : {}),
    });
    return { ...r, stdout };
  } finally {
    if (previous === undefined) delete process.env.TSBUILD_NSEXEC;
    else process.env.TSBUILD_NSEXEC = previous;
  }
}

function both(title: string, fn: (t: ExecutionContext, executor: Executor) => Promise<void>): void {
  for (const ex of ['native', 'node'] as const) serial(`${title} (${ex} executor)`, (t) => fn(t, ex));
}

const rootLine = `awk '$5 == "/"' /proc/self/mountinfo`;
/** hostMounts lists the host's mounts under the store: a container's overlay must not stay there once it has run. */
const hostMounts = (): string[] =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(` ${store.root}/`));

both(
  'run --rm: the root is a volatile overlay, nothing of it stays mounted, and the store keeps nothing',
  async (t, ex) => {
    const r = await run(ex, `${rootLine}; echo written > /new; cat /new`, true);
    t.is(r.exitCode, 0);
    const [root, written] = r.stdout.split('\n');
    t.regex(root!, / - overlay overlay /);
    t.is(/volatile/.test(root!), volatileKnown(), root);
    t.is(written, 'written');
    t.deepEqual(hostMounts(), []);
    t.deepEqual(readdirSync(containersRoot(store.root)), []);
  },
);

both('run without --rm: a plain overlay, and what the container wrote stays in its upper directory', async (t, ex) => {
  const r = await run(ex, `${rootLine}; echo kept > /kept`, false);
  t.is(r.exitCode, 0);
  t.notRegex(r.stdout, /volatile/);
  t.is(readFileSync(join(r.containerDir!, 'upper', 'kept'), 'utf8'), 'kept\n');
  t.deepEqual(hostMounts(), []);
  await removeDir(r.containerDir!);
});

serial('run --rm of a container that leaves many files: its directory still goes', async (t) => {
  const r = await run('native', 'mkdir /many && cd /many && for i in $(seq 200); do echo $i > f$i; done', true);
  t.is(r.exitCode, 0);
  t.deepEqual(readdirSync(containersRoot(store.root)), []);
});

both(
  'the image’s /etc/passwd names the user and gives HOME, read from the merged tree before the run',
  async (t, ex) => {
    const r = await run(ex, 'echo $(id -u):$(id -G) $HOME', true, 'user');
    t.is(r.exitCode, 0);
    t.is(r.stdout, '1000:1000 50 /home/user\n');
  },
);

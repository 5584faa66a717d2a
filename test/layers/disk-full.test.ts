// Disk full (issue 14, part 4): a store or a target directory on a full filesystem gives one line, "no space left on
// MOUNT while writing WHAT", from load, import, commit and apply, never "not a valid tar archive" or a bare ENOSPC.
// Each test mounts its own 8 MiB tmpfs (root only) and writes more than that; the mount goes in t.teardown.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { report } from '../../cli/report.js';
import { getImage } from '../../layers/store/image.js';
import { Store } from '../../layers/store/store.js';
import { importImage } from '../../layers/sources/import.js';
import { loadArchive } from '../../layers/sources/archive-load.js';
import { saveImages } from '../../layers/sources/archive-save.js';
import { applyLayer } from '../../layers/tar/apply.js';
import { tarFromDirectory } from '../../layers/tar/create.js';
import { mountPointOf } from '../../sys/disk-full.js';
import { run } from '../../sys/exec.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';

type Teardown = { teardown(fn: () => unknown): void };

/** smallDisk mounts an 8 MiB tmpfs in a fresh temp dir and returns it. */
async function smallDisk(t: Teardown): Promise<string> {
  const dir = await makeTempDir('tsbuild-full-');
  await run(['mount', '-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tsbuild-full', dir]);
  t.teardown(async () => {
    await run(['umount', '-l', dir]);
    await removeDir(dir);
  });
  return dir;
}

/** bigTree is a directory with 12 MB of incompressible data (more than the small disk holds). */
async function bigTree(t: Teardown): Promise<string> {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'random.bin'), randomBytes(12 << 20));
  return dir;
}

/** firstLine is what the CLI prints first for an error. */
function firstLine(err: unknown): string {
  let out = '';
  report(err, { write: (s) => (out += s) });
  return out.split('\n')[0] as string;
}

async function tempBlobs(store: Store): Promise<string[]> {
  return (await readdir(store.blobDir)).filter((n) => n.startsWith('.tmp-'));
}

rootTest('mountPointOf names the tmpfs that holds a path deep inside it', async (t) => {
  const disk = await smallDisk(t);
  t.is(mountPointOf(join(disk, 'store', 'blobs', 'sha256', 'x')), disk);
  t.is(mountPointOf('/'), '/');
});

rootTest('load into a full store says which disk is full and which blob it was writing', async (t) => {
  const archiveDir = await makeTempDir();
  t.teardown(() => removeDir(archiveDir));
  const big = await Store.open(join(archiveDir, 'store'));
  await importImage(big, { source: await bigTree(t), name: 'big:1', compression: 'none' });
  const archive = join(archiveDir, 'big.tar');
  await saveImages(big, { images: [{ image: await getImage(big, 'big:1'), names: ['big:1'] }], output: archive });
  const disk = await smallDisk(t);
  const store = await Store.open(join(disk, 'store'));
  const err = await t.throwsAsync(loadArchive(store, { input: archive }), { code: 'E_NO_SPACE' });
  t.regex(
    firstLine(err),
    new RegExp(`^error: loading ${archive}: no space left on ${disk} while writing blob sha256:[a-f0-9]{64}$`),
  );
  t.deepEqual(await tempBlobs(store), [], 'the partial blob is removed');
  t.is((await store.readIndex()).manifests.length, 0);
});

rootTest('import into a full store says which disk is full and which layer it was writing', async (t) => {
  const tree = await bigTree(t);
  const disk = await smallDisk(t);
  const store = await Store.open(join(disk, 'store'));
  const err = await t.throwsAsync(importImage(store, { source: tree, name: 'big:1', compression: 'none' }), {
    code: 'E_NO_SPACE',
  });
  t.is(firstLine(err), `error: importing ${tree}: no space left on ${disk} while writing the layer of ${tree}`);
  t.deepEqual(await tempBlobs(store), []);
});

rootTest('applying a layer onto a full disk names the disk and the file it was writing', async (t) => {
  const tree = await bigTree(t);
  const disk = await smallDisk(t);
  const root = join(disk, 'rootfs');
  await mkdir(root);
  const err = await t.throwsAsync(applyLayer(tarFromDirectory(tree) as Readable, { root }), {
    code: 'E_NO_SPACE',
  });
  t.is(firstLine(err), `error: no space left on ${disk} while writing random.bin into ${root}`);
});

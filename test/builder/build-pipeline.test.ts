// A step's layer is written while the next steps run (overlay driver: StepRoot.commitLater, settled by the
// executor): the image and its cache are what writing each layer at once gave, a failure while writing a layer
// fails the build at that layer's own line, and the steps before a failing one keep their cache records.
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from '../../builder/build.js';
import type { BuildEvent } from '../../builder/events.js';
import { getImage } from '../../layers/store/image.js';
import type { Store } from '../../layers/store/store.js';
import { imageLayers } from '../../layers/model/layer.js';
import { flatten } from '../../unionfs/flatten.js';
import { run } from '../../sys/exec.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';
import { mountsUnder } from '../unionfs/helpers.js';
import { busyboxStore, treeOf, verifiedBuild } from './build-harness.js';

async function context(t: { teardown(fn: () => unknown): void }, dockerfile: string): Promise<string> {
  const dir = await makeTempDir('tsbuild-pipeline-ctx-');
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  await writeFile(join(dir, 'a.txt'), 'from the context\n');
  return dir;
}

const STEPS = [
  'FROM busybox:test',
  'RUN mkdir /d && echo one > /d/one && rm -rf /home',
  'WORKDIR /w',
  'COPY a.txt .',
  'RUN echo two > /d/two && rm /d/one && cat /w/a.txt > /w/copy',
  'ENV X=1',
  'RUN mkdir -p /d && touch /d/three',
  '',
].join('\n');

rootTest(
  'layers written while the next steps run give the image and the tree the vfs driver gives, and a rebuild is cached',
  async (t) => {
    const trees: Array<Record<string, string>> = [];
    const diffIds: string[][] = [];
    for (const driver of ['overlay', 'vfs'] as const) {
      const store = await busyboxStore(t);
      const ctx = await context(t, STEPS);
      const r = await verifiedBuild(t, {
        store,
        context: ctx,
        tags: ['p:1'],
        storageDriver: driver,
        sourceDateEpoch: 1_700_000_000,
      });
      diffIds.push(r.config.rootfs.diff_ids);
      const image = await getImage(store, 'p:1');
      const root = await makeTempDir('tsbuild-pipeline-');
      t.teardown(() => removeDir(root));
      await flatten({ store, layers: imageLayers(image), dir: join(root, 'r'), method: 'apply' });
      trees.push(treeOf(join(root, 'r')));
      if (driver === 'overlay') {
        // every layer of the build ended up as a snapshot, nothing is left in the work directories or mounted
        t.deepEqual(readdirSync(join(store.root, 'containers')), []);
        t.deepEqual(mountsUnder(store.root), []);
        const events: BuildEvent[] = [];
        await build({
          store,
          context: ctx,
          tags: ['p:2'],
          sourceDateEpoch: 1_700_000_000,
          onEvent: (e) => events.push(e),
        });
        t.is(events.filter((e) => e.type === 'cached').length, 5, 'the five filesystem steps come from the cache');
      }
    }
    t.deepEqual(trees[0], trees[1]);
    t.deepEqual(diffIds[0], diffIds[1]);
    t.regex(trees[0]!['d/two'] ?? '', /^file 0644 0:0 4 /);
    t.regex(trees[0]!['w/copy'] ?? '', /^file 0644 0:0 17 /);
    t.is(trees[0]!['d/one'], undefined);
    t.is(trees[0]!.home, undefined);
  },
);

/**
 * fullBlobDisk puts the store's blob directory on a tmpfs with 1 MiB to spare: the next big blob finds the disk
 * full, whichever thread writes it.
 */
async function fullBlobDisk(t: { teardown(fn: () => unknown): void }, store: Store): Promise<string> {
  const blobs = store.blobDir;
  const aside = `${blobs}.aside`;
  let used = 0;
  for (const name of readdirSync(blobs)) used += Math.ceil(statSync(join(blobs, name)).size / 4096) * 4096;
  renameSync(blobs, aside);
  mkdirSync(blobs);
  await run(['mount', '-t', 'tmpfs', '-o', `size=${Math.ceil(used / 1024) + 1024}k,mode=0755`, 'tsbuild-full', blobs]);
  t.teardown(() => run(['umount', '-l', blobs]));
  await run(['cp', '-a', `${aside}/.`, `${blobs}/`]);
  return blobs;
}

rootTest('a layer that cannot be written fails the build at its own line, after the step that ran on it', async (t) => {
  const store = await busyboxStore(t);
  const disk = await fullBlobDisk(t, store);
  const dockerfile = [
    'FROM busybox:test',
    'RUN echo small > /small',
    // two layers may be written at once (unionfs/commit-thread.ts): the second's small layer must be stored before
    // the big one fills the disk, which a thread still starting under load did not always do (CI, 2026-12-05)
    'RUN sleep 1; head -c 4194304 /dev/urandom > /big',
    'RUN echo after > /after',
    '',
  ].join('\n');
  const err = await t.throwsAsync(build({ store, context: await context(t, dockerfile), tags: ['p:1'] }));
  // the third line's layer (4 MiB) does not fit: the failure is reported there, not at the RUN that ran on it
  t.regex(err!.message, /^Dockerfile:3: RUN: no space left on \S+ while writing a new layer blob/);
  t.true(err!.message.includes(disk), err!.message);
  t.deepEqual(readdirSync(join(store.root, 'containers')), []);
  t.deepEqual(mountsUnder(store.root), [disk], 'no overlay is left, only the tmpfs of the test');
  t.deepEqual(
    readdirSync(disk).filter((n) => n.startsWith('.tmp-')),
    [],
    'no partial blob is left',
  );
  await t.throwsAsync(getImage(store, 'p:1'));
});

rootTest('the steps before a failing RUN keep their cache records, so the next build reuses them', async (t) => {
  const store = await busyboxStore(t);
  const failing = STEPS.replace('RUN mkdir -p /d && touch /d/three', 'RUN exit 7');
  await t.throwsAsync(build({ store, context: await context(t, failing), tags: ['p:1'] }), { message: /exit code: 7/ });
  const events: BuildEvent[] = [];
  await build({ store, context: await context(t, STEPS), tags: ['p:1'], onEvent: (e) => events.push(e) });
  t.is(events.filter((e) => e.type === 'cached').length, 4, 'RUN, WORKDIR, COPY and RUN before the failure');
});

rootTest(
  'a long run of steps settles its pending layers on the way, and COPY --link sees every layer before it',
  async (t) => {
    const store = await busyboxStore(t);
    const runs = Array.from({ length: 12 }, (_, i) => `RUN echo ${i} > /f${i}`);
    const dockerfile = [
      'FROM busybox:test',
      ...runs,
      'COPY --link a.txt /linked/',
      'RUN cat /f*  /linked/a.txt > /all',
      '',
    ].join('\n');
    await verifiedBuild(t, { store, context: await context(t, dockerfile), tags: ['long:1'] });
    const image = await getImage(store, 'long:1');
    t.is(image.manifest.layers.length - 1, 14); // the base, then one layer a step
    const root = await makeTempDir('tsbuild-pipeline-long-');
    t.teardown(() => removeDir(root));
    await flatten({ store, layers: imageLayers(image), dir: join(root, 'r'), method: 'apply' });
    const lines = readFileSync(join(root, 'r', 'all'), 'utf8')
      .trim()
      .split('\n');
    t.deepEqual(lines.slice(0, -1).sort(), Array.from({ length: 12 }, (_, i) => String(i)).sort());
    t.is(lines.at(-1), 'from the context');
    t.deepEqual(readdirSync(join(store.root, 'containers')), []);
  },
);

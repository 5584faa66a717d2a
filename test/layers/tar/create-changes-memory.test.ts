// A layer tar written from a change set of 100k paths holds little beside the change set itself (issue 14, part 4).
// The plan kept a sort-key string per entry (some 60 bytes) after a map of every change; it is now one string per
// directory (layers/tar/plan-tree.ts) and the changes are checked in path order without a map. The heap is measured
// after a full collection, above what the caller's Change[] takes. Slow (100k files made): skipped with
// TSBUILD_TEST_SLOW=0.
import test from 'ava';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Change } from '../../../layers/model/changeset.js';
import { tarFromChanges } from '../../../layers/tar/create.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;
const slow = process.env.TSBUILD_TEST_SLOW !== '0';

const DIRS = 100;
const FILES = 1000;

(slow ? test : test.skip)(
  `a layer of ${(DIRS * FILES) / 1000}k changes is written holding under 4 MB beside the change set${slow ? '' : ' (skipped: TSBUILD_TEST_SLOW=0)'}`,
  async (t) => {
    const root = await makeTempDir('tsbuild-changes-many-');
    t.teardown(() => removeDir(root));
    const changes: Change[] = [];
    for (let d = 0; d < DIRS; d++) {
      const dir = `directory-${String(d).padStart(3, '0')}`;
      mkdirSync(join(root, dir));
      changes.push({ path: dir, kind: 'add' });
      for (let f = 0; f < FILES; f++) {
        const path = `${dir}/file-number-${String(f).padStart(6, '0')}.txt`;
        closeSync(openSync(join(root, path), 'w'));
        changes.push({ path, kind: 'add' });
      }
    }
    gc();
    const base = process.memoryUsage().heapUsed;
    let peak = 0;
    let bytes = 0;
    // sampled while the plan is made (the walk yields to the event loop) and while the tar is written
    const sample = setInterval(() => {
      gc();
      peak = Math.max(peak, process.memoryUsage().heapUsed - base);
    }, 50);
    try {
      for await (const chunk of tarFromChanges(root, changes)) bytes += (chunk as Buffer).length;
    } finally {
      clearInterval(sample);
    }
    t.is(bytes, (DIRS * (FILES + 1) + 2) * 512); // headers only, and the two zero blocks
    t.log(`${(peak / 2 ** 20).toFixed(1)} MB held`);
    t.true(peak < 4 << 20, `${(peak / 2 ** 20).toFixed(1)} MB of heap were held at once`);
  },
);

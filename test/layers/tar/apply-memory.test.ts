// Applying a layer of 100k entries holds almost nothing per entry (issue 14, part 4: import, unpack and export stay
// bounded for a layer of a million entries). The applier remembers which paths the layer wrote (an opaque whiteout
// keeps them); that was a Set of the path strings, some 90 bytes an entry (90 MB of a 1M-entry unpack), and is now
// a table of 64-bit hashes (layers/tar/path-set.ts). The heap is measured after a full collection, so what counts
// is what is held. The host's file-writer thread is left out (writerThread: false): its queue of pending paths is
// sys/file-writer.ts's own. Slow (100k files made): skipped with TSBUILD_TEST_SLOW=0.
import test from 'ava';
import { createReadStream, createWriteStream, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pack as tarPack } from 'tar-stream';
import { applyLayer } from '../../../layers/tar/apply.js';
import { PathSet } from '../../../layers/tar/path-set.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;
const slow = process.env.TSBUILD_TEST_SLOW !== '0';

const EMPTY = Buffer.alloc(0);
const DIRS = 100;
const FILES = 1000;
const name = (d: number, f: number): string =>
  `directory-${String(d).padStart(3, '0')}/file-number-${String(f).padStart(6, '0')}.txt`;

/** writeLayer writes a tar of DIRS directories of FILES empty files each to `file`. */
async function writeLayer(file: string): Promise<void> {
  const p = tarPack();
  const done = pipeline(p, createWriteStream(file));
  for (let d = 0; d < DIRS; d++) {
    p.entry({ name: `directory-${String(d).padStart(3, '0')}/`, type: 'directory', mode: 0o755 });
    for (let f = 0; f < FILES; f++) p.entry({ name: name(d, f), size: 0, mode: 0o644 }, EMPTY);
    await new Promise((resolve) => setImmediate(resolve)); // let the file take what is packed
  }
  p.finalize();
  await done;
}

(slow ? test : test.skip)(
  `a layer of ${(DIRS * FILES) / 1000}k entries is applied holding under 5 MB of heap${slow ? '' : ' (skipped: TSBUILD_TEST_SLOW=0)'}`,
  async (t) => {
    const tmp = await makeTempDir('tsbuild-apply-many-');
    t.teardown(() => removeDir(tmp));
    const dir = join(tmp, 'root');
    mkdirSync(dir);
    await writeLayer(join(tmp, 'layer.tar'));
    gc();
    const base = process.memoryUsage().heapUsed;
    let peak = 0;
    const sample = setInterval(() => {
      gc();
      peak = Math.max(peak, process.memoryUsage().heapUsed - base);
    }, 100);
    const r = await applyLayer(createReadStream(join(tmp, 'layer.tar')), { root: dir, writerThread: false }).finally(
      () => clearInterval(sample),
    );
    t.is(r.entries, DIRS * (FILES + 1));
    t.is(readdirSync(join(dir, 'directory-099')).length, FILES);
    // the Set of paths held about 9 MB here; the hash table 2 MB
    t.true(peak < 5 << 20, `${(peak / 2 ** 20).toFixed(1)} MB of heap were held at once`);
  },
);

test('a path set answers for every path added, and not for others', (t) => {
  const s = new PathSet();
  let again = 0;
  for (let i = 0; i < 50_000; i++) if (!s.add(`a/${i}`)) again++;
  t.is(again, 0);
  t.is(s.size, 50_000);
  t.false(s.add('a/7'));
  let wrong = 0;
  for (let i = 0; i < 50_000; i++) {
    if (!s.has(`a/${i}`)) wrong++;
    if (s.has(`b/${i}`)) wrong++;
  }
  t.is(wrong, 0);
  t.true(s.has('a/49999'));
  t.false(s.has(''));
});

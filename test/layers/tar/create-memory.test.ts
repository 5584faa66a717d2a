// A layer tar of a tree with many small entries keeps to the consumer's pace (issue 14, part 4: memory stays
// bounded for a layer of a million entries). tar-stream takes a whole small entry at once and calls back at once,
// so without a gate of our own the writer ran ahead by the whole tar: 100 MB of headers held for 200k empty files.
import test from 'ava';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { tarFromDirectory } from '../../../layers/tar/create.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

// Collect garbage before each sample, so that what is measured is what is held.
setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

const DIRS = 60;
const FILES = 1000; // 60k entries: about 30 MB of tar headers

test('a slow reader of a 60k-entry tar never has more than a few MB buffered ahead of it', async (t) => {
  const dir = await makeTempDir('tsbuild-tar-many-');
  t.teardown(() => removeDir(dir));
  for (let d = 0; d < DIRS; d++) {
    mkdirSync(join(dir, `d${d}`));
    for (let f = 0; f < FILES; f++) writeFileSync(join(dir, `d${d}`, `f${f}`), '');
  }
  gc();
  const base = process.memoryUsage().arrayBuffers;
  let peak = 0;
  let total = 0;
  let chunks = 0;
  const stream = tarFromDirectory(dir);
  for await (const chunk of stream) {
    total += (chunk as Buffer).length;
    await sleep(5); // a consumer slower than the writer
    if (++chunks % 20 === 0) {
      gc();
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
    }
  }
  t.true(total > 25 << 20, `the tar is ${total} bytes`);
  // without the gate the writer holds the whole 30 MB tar; with it a few MB (10 seen under CI's load, so 16 here)
  t.true(peak < 16 << 20, `${(peak / 2 ** 20).toFixed(1)} MB of buffers were held at once`);
});

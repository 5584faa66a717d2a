// The COPY source listing (builder/steps/copy-select.ts): names come in BuildKit's order, their UTF-8 bytes.
import test from 'ava';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sortedNames } from '../../../builder/steps/copy-select.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

test('a directory is listed in the bytewise order of its UTF-8 names, not in UTF-16 order', async (t) => {
  const dir = await makeTempDir('tsbuild-sorted-');
  t.teardown(() => removeDir(dir));
  // U+1F600 is a surrogate pair (0xD83D…) in UTF-16, before U+FFFD there; in UTF-8 (0xF0…) it comes after (0xEF…)
  const names = ['b', 'a', 'Z', 'é', '\u{fffd}', '\u{1f600}', 'a.txt', 'a-b'];
  for (const n of names) writeFileSync(join(dir, n), n);
  t.deepEqual(sortedNames(dir), ['Z', 'a', 'a-b', 'a.txt', 'b', 'é', '\u{fffd}', '\u{1f600}']);
  const ascii = ['m', 'B', '_', '0', 'a'];
  const dir2 = join(dir, 'ascii');
  mkdirSync(dir2);
  for (const n of ascii) writeFileSync(join(dir2, n), n);
  t.deepEqual(sortedNames(dir2), ['0', 'B', '_', 'a', 'm']);
});

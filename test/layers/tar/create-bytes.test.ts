// Golden bytes of layer tars from a tree that has every kind of entry the writer handles specially: the digests
// below were taken from the writer before its rewrite for speed (tar-stream's header encoders, lstat with BigInt,
// per-entry Buffers), so any change of a byte shows here. The tree: files of every size class around the read
// paths' thresholds (0, 511–513, 64 KiB ± 1, mid-sized, 1 MiB ± 1, streamed), long and non-ASCII names and link
// targets (ustar prefix split, PAX path/linkpath, a directory name whose '/' overflows the name field), hardlinks
// (also to a long name), devices, a fifo, owners that overflow the ustar fields (saturated and PAX), mtimes before
// 1970, past 2038 and with nanoseconds, mode 0 and setuid/setgid/sticky, binary xattrs, a `.wh.` file name.
import { createHash } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Change } from '../../../layers/model/changeset.js';
import {
  tarFromChanges,
  tarFromDirectory,
  writeTarFromChanges,
  type TarWriteOptions,
} from '../../../layers/tar/create.js';
import { makeTempDir, removeDir, rootTest } from '../../helpers/index.js';
import { makeTrickyTree } from './create-tree.js';

async function digest(stream: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const b of stream) h.update(b as Buffer);
  return h.digest('hex');
}

/** The change set of the golden tarFromChanges: adds, modifies, deletes (one below another) and opaque markers. */
const CHANGES: Change[] = [
  { path: 'big/f-65536', kind: 'add' },
  { path: 'big/f-2500000', kind: 'modify' },
  { path: 'big/gone', kind: 'delete' },
  { path: 'd', kind: 'modify', opaque: true },
  { path: 'd/file3', kind: 'add' },
  { path: 'links/b', kind: 'add' },
  { path: 'links/a', kind: 'add' },
  { path: 'names/é-dir/日本語.txt', kind: 'add' },
  { path: 'names/é-dir/removed', kind: 'delete' },
  { path: 'owners', kind: 'add', opaque: true },
  { path: 'owners/pax', kind: 'add' },
  { path: 'xattrs/cap', kind: 'modify' },
  { path: 'xattrs/link', kind: 'add' },
  { path: 'dev/sda1', kind: 'add' },
  { path: 'gone-dir', kind: 'delete' },
  { path: 'gone-dir/below', kind: 'delete' },
  { path: 'times/after-2038', kind: 'add' },
  { path: 'times/before-1970', kind: 'add' },
  { path: 'empty', kind: 'modify', opaque: true },
];

// Taken from the writer before the rewrite (commit 80b9854), on ext4.
const GOLDEN = {
  directory: 'c028cbe73b7fc04a0d79fae681b882d6c934973be4282c105d4fa80c9fb099d2',
  directoryEpoch: 'aa823ddd944d25d130ffaab06ddd04c6159a816cbb39b46454a7e97d218b2271',
  changes: 'e6ae510f44deba33909f20218cce318ec5fe990feb1ba37d59794c83ad81e3db',
  changesEpoch: '607eeba4facc98185a7d69aae73fe919cdeea6186b69b299d58dcf4f6d3c5f5d',
};

const WHITEOUT =
  'W_TAR_WHITEOUT_NAME ROOT/d/sub/.wh.looks-like-a-whiteout: a file named .wh.* reads as a whiteout in a layer';
const BEFORE_1970 = 'W_TAR_MTIME ROOT/times/before-1970: mtime -1000 is before 1970';
const BEFORE_1970_FRACTION = 'W_TAR_MTIME ROOT/times/before-1970-fraction: mtime -1001 is before 1970';
/** the warnings of the four tars, in order */
const WARNINGS = [
  ...[WHITEOUT, BEFORE_1970, BEFORE_1970_FRACTION],
  ...[WHITEOUT, BEFORE_1970, BEFORE_1970_FRACTION],
  BEFORE_1970,
  BEFORE_1970,
];

rootTest('layer tars of a tree with every special case keep their golden bytes', async (t) => {
  const root = await makeTempDir('tsbuild-tar-bytes-');
  t.teardown(() => removeDir(root));
  await makeTrickyTree(root);
  const warnings: string[] = [];
  const opts = (sde?: number): TarWriteOptions => ({
    onWarn: (code, msg) => warnings.push(`${code} ${msg.replace(root, 'ROOT')}`),
    ...(sde === undefined ? {} : { sourceDateEpoch: sde }),
  });
  const got = {
    directory: await digest(tarFromDirectory(root, opts())),
    directoryEpoch: await digest(tarFromDirectory(root, opts(1_300_000_000))),
    changes: await digest(tarFromChanges(root, CHANGES, opts())),
    changesEpoch: await digest(tarFromChanges(root, CHANGES, opts(1_300_000_000))),
  };
  t.deepEqual(got, GOLDEN);
  t.deepEqual(warnings, WARNINGS);

  // the same bytes when written into a sink through one reused chunk (how a build's layers are committed)
  const written = async (sde?: number): Promise<string> => {
    const h = createHash('sha256');
    await writeTarFromChanges(root, CHANGES, (b) => h.update(b), opts(sde));
    return h.digest('hex');
  };
  t.is(await written(), GOLDEN.changes);
  t.is(await written(1_300_000_000), GOLDEN.changesEpoch);

  // and with the diff's `dir` hints, which spare the writer its lstat of each change
  const hinted = CHANGES.map((c) =>
    c.kind === 'delete' ? c : { ...c, dir: lstatSync(join(root, c.path)).isDirectory() },
  );
  t.is(await digest(tarFromChanges(root, hinted, opts())), GOLDEN.changes);
});

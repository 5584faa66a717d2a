// A snapshot is one layer extracted alone; an entry below a symlink that a lower layer made must land where
// applying onto the lower layers (unpack, flatten 'apply') puts it: through the link, inside the root.
import { lstatSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import type { Digest } from '../../layers/model/types.js';
import { ensureSnapshots, snapshotApply } from '../../unionfs/snapshot.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';

type E = { name: string; type?: 'file' | 'directory' | 'symlink' | 'link'; linkname?: string; body?: string };

async function tarBuffer(entries: E[]): Promise<Buffer> {
  const pack = tarStream.pack();
  for (const e of entries)
    pack.entry(
      {
        name: e.name,
        type: e.type ?? 'file',
        mode: e.type === 'directory' ? 0o755 : 0o644,
        mtime: new Date(0),
        ...(e.linkname ? { linkname: e.linkname } : {}),
      },
      e.body ?? '',
    );
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as unknown as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

rootTest('an entry below a lower layer symlink goes through it; whiteouts and hard links too', async (t) => {
  const root = await makeTempDir();
  t.teardown(() => removeDir(root));
  const layers = [
    [
      { name: 'usr/', type: 'directory' },
      { name: 'usr/lib/', type: 'directory' },
      { name: 'usr/lib/old', body: 'old\n' },
      { name: 'lib', type: 'symlink', linkname: '/usr/lib' },
      { name: 'up', type: 'symlink', linkname: '../../usr' },
    ],
    [
      { name: 'lib/x', body: 'x\n' },
      { name: 'lib/.wh.old' },
      { name: 'lib/hard', type: 'link', linkname: 'lib/x' },
      { name: 'up/lib/y', body: 'y\n' },
    ],
  ] as E[][];
  const bufs = await Promise.all(layers.map(tarBuffer));
  const dirs = await ensureSnapshots({
    storeRoot: root,
    layers: bufs.map((b, i) => ({
      diffId: `sha256:${String(i + 1).repeat(64)}` as Digest,
      open: async () => Readable.from([b]),
    })),
    apply: snapshotApply(),
  });
  const top = dirs[1] as string;
  t.is(readFileSync(join(top, 'usr/lib/x'), 'utf8'), 'x\n');
  t.is(readFileSync(join(top, 'usr/lib/y'), 'utf8'), 'y\n');
  t.is(statSync(join(top, 'usr/lib/hard')).ino, statSync(join(top, 'usr/lib/x')).ino);
  t.true(lstatSync(join(top, 'usr/lib/old')).isCharacterDevice(), 'the whiteout hides usr/lib/old');
  t.false(lstatSync(join(top, 'lib'), { throwIfNoEntry: false }) !== undefined, 'no directory shadows the symlink');
  t.is(readlinkSync(join(dirs[0] as string, 'lib')), '/usr/lib');
});

// Committing what changed in a root filesystem: the change set becomes a deterministic tar (layers/tar/create.ts),
// compressed and stored as a blob (layers/store/commit.ts). Loaded only when a step commits, so `tsbuild run` and
// `tsbuild mount`, which never commit, do not load the tar writer and the compressors.
import type { Change } from '../layers/model/changeset.js';
import type { Layer } from '../layers/model/layer.js';
import { commitLayer, commitUncompressed } from '../layers/store/commit.js';
import type { Store } from '../layers/store/store.js';
import { tarFromChanges, writeTarFromChanges } from '../layers/tar/create.js';
import type { CommitOptions } from './rootfs.js';

/** commitChanges stores `changes` of the tree at `root` as a layer. */
export async function commitChanges(
  store: Store,
  root: string,
  changes: Change[],
  opts: CommitOptions,
): Promise<Layer> {
  const tarOpts = opts.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: opts.sourceDateEpoch };
  // uncompressed (a build's layers): the tar is written into the blob as it is made, through one reused chunk
  const c =
    opts.compression === 'none'
      ? await commitUncompressed(store, (write) => writeTarFromChanges(root, changes, write, tarOpts))
      : await commitLayer(store, tarFromChanges(root, changes, tarOpts), { compression: opts.compression });
  return { descriptor: c.descriptor, diffId: c.diffId };
}

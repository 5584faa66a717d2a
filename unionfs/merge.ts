// The userspace (aufs-style) rootfs: when overlay mounts are not allowed, the layers are applied one after the
// other into one plain directory; a step then runs in it, and diffManifest finds what the step changed.
import { mkdir, readdir } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { InvalidInputError, wrap } from '../sys/errors.js';

/** MergeLayer opens a layer's uncompressed tar; each call returns a fresh stream. */
export interface MergeLayer {
  /** for error messages (a diffID, a file name) */
  name?: string;
  open(): Promise<Readable>;
}

/**
 * ApplyLayer extracts one layer tar into a directory, honouring OCI whiteouts (`.wh.` names delete from what the
 * directory already holds); it consumes the stream. The real caller passes layers/tar-apply's applyLayer with OCI
 * whiteouts; tests pass GNU tar.
 */
export type ApplyLayer = (tar: Readable, dir: string) => Promise<void>;

/**
 * mergeLayers builds the merged tree of `layers` (bottom first) in `target`, which must be missing or empty: each
 * layer is opened only when its turn comes and applied over the previous ones. On failure the stream at hand is
 * destroyed and the error names the layer; `target` is left partly built for the caller to remove.
 */
export async function mergeLayers(opts: { target: string; layers: MergeLayer[]; apply: ApplyLayer }): Promise<void> {
  await mkdir(opts.target, { recursive: true });
  if ((await readdir(opts.target)).length > 0) throw new InvalidInputError(`cannot merge layers into ${opts.target}: it is not empty`);
  for (const [i, layer] of opts.layers.entries()) {
    const what = `layer ${i + 1}/${opts.layers.length}${layer.name ? ` (${layer.name})` : ''}`;
    let tar: Readable | undefined;
    try {
      tar = await layer.open();
      await opts.apply(tar, opts.target);
    } catch (e) {
      tar?.destroy();
      throw wrap(`applying ${what} into ${opts.target}`, e);
    }
  }
}

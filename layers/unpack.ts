// Flattening an image into a directory: every layer applied in order, whiteouts resolved.
import { mkdir, readdir } from 'node:fs/promises';
import { InvalidInputError } from '../sys/errors.js';
import type { Image } from './store/image.js';
import { openLayer } from './store/layer-read.js';
import type { Store } from './store/store.js';
import { applyLayer } from './tar/apply.js';

export type UnpackEvent = { type: 'layer'; index: number; count: number; digest: string };

/**
 * unpackImage writes the image's rootfs into `dir`, which must be missing or empty. Owners are kept when
 * running as root. On error the directory is left partly written (the caller removes it).
 */
export async function unpackImage(
  store: Store,
  image: Image,
  dir: string,
  opts: { onEvent?: (e: UnpackEvent) => void; onWarn?: (code: string, message: string) => void } = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  if ((await readdir(dir)).length) throw new InvalidInputError(`${dir} is not empty`);
  const layers = image.manifest.layers;
  for (const [i, desc] of layers.entries()) {
    opts.onEvent?.({ type: 'layer', index: i, count: layers.length, digest: desc.digest });
    await applyLayer(openLayer(store, desc), { root: dir, whiteouts: 'delete', ...(opts.onWarn ? { onWarn: opts.onWarn } : {}) });
  }
}

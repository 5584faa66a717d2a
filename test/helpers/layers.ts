// Images with hand-made layers on top of a stored base: for the cases no Dockerfile can make (an entry below a lower
// layer's symlink). Writes through the library, so the layers are stored exactly as given.
import type { Readable } from 'node:stream';

/** TarEntry is one entry of a hand-made layer. */
export interface TarEntry {
  name: string;
  type: 'symlink' | 'file';
  body?: string;
  linkname?: string;
}

/** tarOf is a layer tar of the given entries (mode 0644, mtime 0). */
export async function tarOf(entries: readonly TarEntry[]): Promise<Readable> {
  const tarStream = await import('tar-stream');
  const pack = tarStream.pack();
  for (const e of entries)
    pack.entry(
      { name: e.name, type: e.type, mode: 0o644, mtime: new Date(0), ...(e.linkname ? { linkname: e.linkname } : {}) },
      e.body ?? '',
    );
  pack.finalize();
  return pack as unknown as Readable;
}

/** stackLayers tags `tag` in the store at `root`: the image `base` with one layer per entry list on top. */
export async function stackLayers(
  root: string,
  base: string,
  layers: ReadonlyArray<readonly TarEntry[]>,
  tag: string,
): Promise<void> {
  const { Store } = await import('../../layers/store/store.js');
  const { commitLayer } = await import('../../layers/store/commit.js');
  const { getImage, writeImage, tagImage } = await import('../../layers/store/image.js');
  const store = await Store.open(root);
  const img = await getImage(store, base);
  const added = [];
  for (const entries of layers) added.push(await commitLayer(store, await tarOf(entries)));
  const all = [
    ...img.manifest.layers.map((d, i) => ({
      descriptor: d,
      diffId: img.config.rootfs.diff_ids[i] as `sha256:${string}`,
    })),
    ...added.map((l) => ({ descriptor: l.descriptor, diffId: l.diffId })),
  ];
  const { rootfs: _r, ...config } = img.config;
  const written = await writeImage(store, { config, layers: all });
  await tagImage(store, written.descriptor, tag);
}

/** LINK_LAYERS: `/a -> /etc` in one layer, then `a/leak` in the next, below that symlink. */
export const LINK_LAYERS: ReadonlyArray<readonly TarEntry[]> = [
  [{ name: 'a', type: 'symlink', linkname: '/etc' }],
  [{ name: 'a/leak', type: 'file', body: 'through the link\n' }],
];

// `tsbuild inspect NAME…`: each image as JSON (name, digest, manifest, config). One name prints its object; several
// print an array in the order given, as `docker inspect` does. A name that is not found fails the command, naming
// it.
import { getImage } from '../../layers/store/image.js';
import { type GlobalFlags, openStore, out } from '../common.js';

export default async function inspect(first: string, flags: GlobalFlags): Promise<void> {
  const store = await openStore(flags);
  const names = [first, ...(flags._ ?? []).map(String)];
  const docs = [];
  for (const name of names) {
    const img = await getImage(store, name);
    docs.push({
      name: img.name ?? null,
      digest: img.descriptor.digest,
      mediaType: img.descriptor.mediaType,
      size: img.descriptor.size,
      imageId: img.manifest.config.digest,
      manifest: img.manifest,
      config: img.config,
    });
  }
  out(JSON.stringify(names.length === 1 ? docs[0] : docs, null, 2));
}

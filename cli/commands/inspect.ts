import { getImage } from '../../layers/store/image.js';
import { type GlobalFlags, openStore, out } from '../common.js';

export default async function inspect(name: string, flags: GlobalFlags): Promise<void> {
  const store = await openStore(flags);
  const img = await getImage(store, name);
  out(
    JSON.stringify(
      {
        name: img.name ?? null,
        digest: img.descriptor.digest,
        mediaType: img.descriptor.mediaType,
        size: img.descriptor.size,
        imageId: img.manifest.config.digest,
        manifest: img.manifest,
        config: img.config,
      },
      null,
      2,
    ),
  );
}

import { getImage } from '../../layers/store/image.js';
import { InvalidInputError } from '../../sys/errors.js';
import { defaultHost } from '../../sys/host.js';
import { inSession } from '../../sys/userns.js';
import { imageLayers } from '../../layers/model/layer.js';
import { markContainer, openRootfs } from '../../unionfs/rootfs.js';
import { type GlobalFlags, openStore, out } from '../common.js';

export default async function mountCmd(
  name: string,
  flags: GlobalFlags & { 'storage-driver'?: string },
): Promise<void> {
  const driver = flags['storage-driver'];
  if (driver !== undefined && driver !== 'overlay' && driver !== 'vfs')
    throw new InvalidInputError('--storage-driver must be overlay or vfs');
  if (defaultHost().caps().userns && !inSession() && driver !== 'vfs') {
    // rootless: an overlay lives in this command's mount namespace and would be gone when it returns
    throw new InvalidInputError(
      'tsbuild mount as an ordinary user works inside `tsbuild unshare` (the overlay lives in its namespace)',
      'run `tsbuild unshare`, then tsbuild mount in that shell; or use --storage-driver vfs (a copy)',
    );
  }
  const store = await openStore(flags);
  const image = await getImage(store, name);
  const rootfs = await openRootfs({
    store,
    layers: imageLayers(image),
    driver: driver ?? 'auto',
    persistent: true,
  });
  await markContainer(rootfs.dir, {
    image: image.descriptor.digest,
    name: image.name ?? null,
    driver: rootfs.driver,
    path: rootfs.path,
  });
  out(rootfs.path);
}

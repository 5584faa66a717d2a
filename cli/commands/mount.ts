import { getImage } from '../../layers/store/image.js';
import { InvalidInputError } from '../../sys/errors.js';
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

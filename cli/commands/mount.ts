import { getImage } from '../../layers/store/image.js';
import { InvalidInputError } from '../../sys/errors.js';
import { markContainer, prepareRootfs } from '../../unionfs/image-rootfs.js';
import { type GlobalFlags, openStore, out } from '../common.js';

export default async function mountCmd(name: string, flags: GlobalFlags & { 'storage-driver'?: string }): Promise<void> {
  const driver = flags['storage-driver'];
  if (driver !== undefined && driver !== 'overlay' && driver !== 'vfs') throw new InvalidInputError('--storage-driver must be overlay or vfs');
  const store = await openStore(flags);
  const image = await getImage(store, name);
  const rootfs = await prepareRootfs({
    store,
    layers: image.manifest.layers.map((descriptor, i) => ({ descriptor, diffId: image.config.rootfs.diff_ids[i] as `sha256:${string}` })),
    driver: driver ?? 'auto',
    persistent: true,
  });
  await markContainer(rootfs.dir, { image: image.descriptor.digest, name: image.name ?? null, driver: rootfs.driver, path: rootfs.path });
  out(rootfs.path);
}

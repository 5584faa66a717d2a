import { unmountView } from '../../unionfs/rootfs.js';
import { type GlobalFlags, openStore } from '../common.js';

export default async function umountCmd(path: string, flags: GlobalFlags): Promise<void> {
  const store = await openStore(flags);
  await unmountView(store.root, path);
}

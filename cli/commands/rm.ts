import { untagImage } from '../../layers/store/image.js';
import { type GlobalFlags, openStore, out } from '../common.js';

export default async function rm(first: string, flags: GlobalFlags): Promise<void> {
  const store = await openStore(flags);
  for (const name of [first, ...(flags._ ?? [])]) {
    const e = await untagImage(store, name);
    out(`Untagged: ${e.name || e.descriptor.digest}`);
  }
}

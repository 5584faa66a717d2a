import { findImage, tagImage } from '../../layers/store/image.js';
import { type GlobalFlags, openStore } from '../common.js';

export default async function tag(source: string, target: string, flags: GlobalFlags): Promise<void> {
  const store = await openStore(flags);
  const entry = await findImage(store, source);
  const { annotations: _drop, ...plain } = entry.descriptor;
  await tagImage(store, plain, target);
}

import { pruneBlobs } from '../../layers/gc.js';
import { type GlobalFlags, openStore, out } from '../common.js';
import { humanSize } from '../progress.js';

export default async function prune(flags: GlobalFlags): Promise<void> {
  const store = await openStore(flags);
  const r = await pruneBlobs(store);
  for (const d of r.removed) out(`deleted: ${d}`);
  out(`Total reclaimed space: ${humanSize(r.bytesFreed)} (${r.bytesFreed} bytes)`);
}

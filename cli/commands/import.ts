import { importImage } from '../../layers/sources/import.js';
import { type GlobalFlags, compressionFlag, list, openStore, out, sourceDateEpoch } from '../common.js';
import { applyConfigChanges } from '../../builder/steps/metadata.js';

export default async function importCmd(
  source: string,
  name: string | undefined,
  flags: GlobalFlags & { change?: unknown; message?: string; compression?: string },
): Promise<void> {
  const store = await openStore(flags);
  const changes = list(flags.change);
  const config = changes.length ? applyConfigChanges({}, changes) : {};
  const sde = sourceDateEpoch();
  const r = await importImage(store, {
    source,
    ...(name ? { name } : {}),
    config,
    ...(flags.message ? { message: String(flags.message) } : {}),
    compression: compressionFlag(flags.compression),
    ...(sde === undefined ? {} : { sourceDateEpoch: sde }),
  });
  out(r.descriptor.digest);
}

import { importImage } from '../../layers/sources/import.js';
import { InternalError } from '../../sys/errors.js';
import { type GlobalFlags, compressionFlag, list, openStore, out, unpackEntered, sourceDateEpoch } from '../common.js';
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
  // an import that stops without settling (a stream left waiting) is a bug: exit 70 with a message, never 0
  let stalled: () => void = () => {};
  const guard = new Promise<never>((_, reject) => {
    stalled = () => reject(new InternalError('import stopped before the end of its input'));
    process.once('beforeExit', stalled);
  });
  // A named image is unpacked as it enters the store: its snapshot is extracted from the layer tar while the tar is
  // committed. When that fails, unpackEntered extracts it from the stored layer (and warns if that fails too).
  const early = name ? (await import('../../unionfs/snapshot.js')).baseSnapshotFromTar(store.root) : undefined;
  try {
    const importing = importImage(store, {
      source,
      ...(name ? { name } : {}),
      config,
      ...(flags.message ? { message: String(flags.message) } : {}),
      compression: compressionFlag(flags.compression),
      ...(sde === undefined ? {} : { sourceDateEpoch: sde }),
      ...(early ? { alsoRead: (tar) => early.extract(tar) } : {}),
    });
    const r = await Promise.race([importing, guard]).finally(() => process.off('beforeExit', stalled));
    await early?.keep(r.diffId).catch(() => false);
    await unpackEntered(store, [r.descriptor.digest]);
    out(r.descriptor.digest);
  } finally {
    await early?.discard();
  }
}

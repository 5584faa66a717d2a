// `tsbuild load`: one line per image, in docker's words (`Loaded image: NAME`, `Loaded image ID: DIGEST` for an
// unnamed one). A load that stops without settling (a stream left waiting) is a bug: it exits 70, never 0.
import { loadArchive } from '../../layers/sources/archive-load.js';
import { InternalError, InvalidInputError } from '../../sys/errors.js';
import { type GlobalFlags, compressionFlag, openStore, out, unpackEntered } from '../common.js';

export default async function load(flags: GlobalFlags & { input?: string; compression?: string }): Promise<void> {
  const store = await openStore(flags);
  const input = flags.input ? String(flags.input) : '-';
  if (input === '-' && process.stdin.isTTY)
    throw new InvalidInputError('no archive given', 'pass -i FILE or pipe an archive to stdin');
  let stalled: () => void = () => {};
  const loading = loadArchive(store, { input, compression: compressionFlag(flags.compression) });
  const guard = new Promise<never>((_, reject) => {
    stalled = () => reject(new InternalError('load stopped before the end of the archive'));
    process.once('beforeExit', stalled);
  });
  const loaded = await Promise.race([loading, guard]).finally(() => process.off('beforeExit', stalled));
  await unpackEntered(
    store,
    loaded.map((img) => img.descriptor.digest),
  );
  for (const img of loaded) {
    if (img.names.length) for (const n of img.names) out(`Loaded image: ${n}`);
    else out(`Loaded image ID: ${img.descriptor.digest}`);
  }
}

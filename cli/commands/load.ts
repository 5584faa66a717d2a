import { loadArchive } from '../../layers/sources/archive-load.js';
import { InvalidInputError } from '../../sys/errors.js';
import { type GlobalFlags, compressionFlag, openStore, out } from '../common.js';

export default async function load(flags: GlobalFlags & { input?: string; compression?: string }): Promise<void> {
  const store = await openStore(flags);
  const input = flags.input ? String(flags.input) : '-';
  if (input === '-' && process.stdin.isTTY)
    throw new InvalidInputError('no archive given', 'pass -i FILE or pipe an archive to stdin');
  const loaded = await loadArchive(store, { input, compression: compressionFlag(flags.compression) });
  for (const img of loaded) {
    if (img.names.length) for (const n of img.names) out(`Loaded image: ${n}`);
    else out(`Loaded image: ${img.descriptor.digest}`);
  }
}

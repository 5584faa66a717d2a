import { saveImages } from '../../layers/sources/archive-save.js';
import { InvalidInputError } from '../../sys/errors.js';
import { findImage, loadImage } from '../../layers/store/image.js';
import { type GlobalFlags, openStore, sourceDateEpoch } from '../common.js';

export default async function save(first: string, flags: GlobalFlags & { output?: string }): Promise<void> {
  const store = await openStore(flags);
  const images = [];
  for (const input of [first, ...(flags._ ?? [])]) {
    const entry = await findImage(store, input);
    const image = await loadImage(store, entry.descriptor);
    const byDigest = input.includes('@') || /^(sha256:)?[a-f0-9]{4,64}$/.test(input);
    images.push({ image, names: entry.name && !byDigest ? [entry.name] : [] });
  }
  let output: string | NodeJS.WritableStream = flags.output ? String(flags.output) : process.stdout;
  if (!flags.output && process.stdout.isTTY) {
    throw new InvalidInputError('refusing to write an archive to a terminal', 'pass -o FILE or redirect stdout');
  }
  if (output === '-') output = process.stdout;
  await saveImages(store, { images, output: output as string, mtime: sourceDateEpoch() ?? 0 });
}

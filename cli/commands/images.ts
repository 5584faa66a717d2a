import { listImages, loadImage } from '../../layers/store/image.js';
import { parseReference, repositoryName } from '../../layers/model/names.js';
import { InvalidInputError } from '../../sys/errors.js';
import { type GlobalFlags, openStore, out } from '../common.js';
import { humanSize, sinceText } from '../progress.js';

interface Row {
  name: string;
  repository: string;
  tag: string;
  digest: string;
  imageId: string;
  created: string | null;
  size: number;
}

/**
 * matcher reads docker's `images REPOSITORY[:TAG]` argument: the repository must be the image's (after
 * normalization: `busybox` is `docker.io/library/busybox`), and the tag too when one is given.
 */
function matcher(filter: string | undefined): (name: string) => boolean {
  if (filter === undefined) return () => true;
  const want = parseReference(filter);
  const tagGiven = /:[^/]*$/.test(filter.split('@')[0] ?? '');
  return (name) => {
    if (!name) return false;
    let ref;
    try {
      ref = parseReference(name);
    } catch {
      return false;
    }
    return (
      ref.registry === want.registry &&
      ref.repository === want.repository &&
      (!tagGiven || ref.tag === want.tag) &&
      (!want.digest || ref.digest === want.digest)
    );
  };
}

export default async function images(
  repository: string | undefined,
  flags: GlobalFlags & { format?: string; quiet?: boolean },
): Promise<void> {
  const format = flags.format ?? 'table';
  if (format !== 'table' && format !== 'json')
    throw new InvalidInputError(`--format must be table or json (got ${JSON.stringify(format)})`);
  const wanted = matcher(repository);
  const store = await openStore(flags);
  const rows: Row[] = [];
  for (const e of await listImages(store)) {
    if (!wanted(e.name)) continue;
    const img = await loadImage(store, e.descriptor).catch(() => undefined);
    let repository = '<none>';
    let tag = '<none>';
    if (e.name) {
      try {
        const ref = parseReference(e.name);
        repository = repositoryName(ref);
        tag = ref.tag ?? '<none>';
      } catch {
        repository = e.name;
      }
    }
    const size = img
      ? img.manifest.config.size + img.manifest.layers.reduce((n, l) => n + l.size, 0)
      : e.descriptor.size;
    rows.push({
      name: e.name,
      repository,
      tag,
      digest: e.descriptor.digest,
      imageId: img?.manifest.config.digest ?? '',
      created: img?.config.created ?? null,
      size,
    });
  }
  if (format === 'json') {
    out(JSON.stringify(rows, null, 2));
    return;
  }
  if (flags.quiet) {
    for (const r of rows) out(r.digest);
    return;
  }
  const table = [['NAME', 'TAG', 'DIGEST', 'CREATED', 'SIZE']];
  for (const r of rows)
    table.push([r.repository, r.tag, r.digest.slice(7, 19), sinceText(r.created ?? undefined), humanSize(r.size)]);
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => (row[i] ?? '').length)));
  for (const row of table)
    out(
      row
        .map((c, i) => (i === row.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3)))
        .join('')
        .trimEnd(),
    );
}

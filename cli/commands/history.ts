// `tsbuild history NAME`: one row per history entry, newest first, as `docker history`. The LAYER column is the
// layer blob an entry made (`<missing>` for an entry that made none); --no-trunc prints it whole (sha256:…) and the
// CREATED BY column unshortened; -q prints only that column; --format json prints one JSON object per line (docker's
// keys: ID, CreatedAt, CreatedSince, CreatedBy, Size, Comment; never truncated).
import { getImage } from '../../layers/store/image.js';
import { InvalidInputError } from '../../sys/errors.js';
import { type GlobalFlags, openStore, out } from '../common.js';
import { humanSize, sinceText } from '../progress.js';

export default async function history(
  name: string,
  flags: GlobalFlags & { trunc?: boolean; quiet?: boolean; format?: string },
): Promise<void> {
  const format = flags.format ?? 'table';
  if (format !== 'table' && format !== 'json')
    throw new InvalidInputError(`--format must be table or json (got ${JSON.stringify(format)})`);
  const store = await openStore(flags);
  const img = await getImage(store, name);
  const layers = [...img.manifest.layers];
  const rows = (img.config.history ?? []).map((h) => {
    const layer = h.empty_layer ? undefined : layers.shift();
    return { h, layer };
  });
  rows.reverse();
  const truncate = flags.trunc !== false;
  const id = (digest: string | undefined): string =>
    digest === undefined ? '<missing>' : truncate ? digest.slice(7, 19) : digest;
  if (format === 'json') {
    for (const { h, layer } of rows)
      out(
        JSON.stringify({
          ID: layer?.digest ?? '<missing>',
          CreatedAt: h.created ?? '',
          CreatedSince: sinceText(h.created),
          CreatedBy: h.created_by ?? '',
          Size: humanSize(layer?.size ?? 0),
          Comment: h.comment ?? '',
        }),
      );
    return;
  }
  if (flags.quiet) {
    for (const { layer } of rows) out(id(layer?.digest));
    return;
  }
  const table = [['LAYER', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT']];
  for (const { h, layer } of rows) {
    let by = (h.created_by ?? '').replace(/\s+/g, ' ');
    if (truncate && by.length > 45) by = `${by.slice(0, 44)}…`;
    table.push([id(layer?.digest), sinceText(h.created), by, humanSize(layer?.size ?? 0), h.comment ?? '']);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => (row[i] ?? '').length)));
  for (const row of table)
    out(
      row
        .map((c, i) => (i === row.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3)))
        .join('')
        .trimEnd(),
    );
}

import { getImage } from '../../layers/store/image.js';
import { type GlobalFlags, openStore, out } from '../common.js';
import { humanSize, sinceText } from '../progress.js';

export default async function history(name: string, flags: GlobalFlags & { trunc?: boolean }): Promise<void> {
  const store = await openStore(flags);
  const img = await getImage(store, name);
  const layers = [...img.manifest.layers];
  const rows = (img.config.history ?? []).map((h) => {
    const layer = h.empty_layer ? undefined : layers.shift();
    return { h, layer };
  });
  const truncate = flags.trunc !== false;
  const table = [['LAYER', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT']];
  for (const { h, layer } of rows.reverse()) {
    let by = (h.created_by ?? '').replace(/\s+/g, ' ');
    if (truncate && by.length > 45) by = `${by.slice(0, 44)}…`;
    table.push([
      layer ? layer.digest.slice(7, 19) : '<missing>',
      sinceText(h.created),
      by,
      humanSize(layer?.size ?? 0),
      h.comment ?? '',
    ]);
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

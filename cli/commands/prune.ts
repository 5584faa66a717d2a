// `tsbuild prune [-a] [--filter until=…] [-f]`: docker's shape. The default removes what nothing needs (blobs no image
// or cache record names, dead processes' scratch state); --all also untagged images and the caches, --filter until=
// limits what --all removes by age. Prints what it removed, the bytes freed, and what it kept. Never prompts, so -f
// (docker's "do not prompt") changes nothing.
import { InvalidInputError } from '../../sys/errors.js';
import { type Kept, pruneStore } from '../../unionfs/prune.js';
import { type GlobalFlags, list, openStore, out } from '../common.js';
import { humanSize, stderrProgress } from '../progress.js';

interface PruneFlags extends GlobalFlags {
  all?: boolean;
  a?: boolean;
  filter?: string | string[];
  force?: boolean;
}

export default async function prune(flags: PruneFlags): Promise<void> {
  const all = Boolean(flags.all ?? flags.a);
  const until = untilFilter(list(flags.filter), all);
  const store = await openStore(flags);
  const r = await pruneStore(store, { all, ...(until ? { until: until.ms } : {}) });
  const progress = stderrProgress();
  for (const n of r.notes) progress.warn('W_PRUNE_KEPT', n);
  for (const d of r.images) out(`deleted untagged image: ${d}`);
  for (const d of r.blobs) out(`deleted: ${d}`);
  for (const d of r.snapshots) out(`deleted snapshot: ${d}`);
  for (const m of r.unmounted) out(`unmounted (a dead process's): ${m}`);
  for (const c of r.containers) out(`deleted container: ${c}`);
  for (const d of r.tmpDirs) out(`deleted work directory of a dead process: tmp/${d}`);
  for (const k of r.cacheRecords) out(`deleted cache record: ${k}`);
  for (const k of r.kernelRecords) out(`deleted export-kernel cache record: ${k}`);
  for (const m of r.cacheMounts) out(`deleted cache mount: cache-mounts/${m}`);
  const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;
  out(
    (r.images.length ? `Deleted ${count(r.images.length, 'untagged image')}, ` : 'Deleted ') +
      `${count(r.blobs.length, 'blob')}, ${count(r.snapshots.length, 'snapshot')}, ${count(r.containers.length, 'stale container')}, ` +
      (r.tmpDirs.length
        ? `${count(r.tmpDirs.length, 'stale work directory')}, `.replace('directorys', 'directories')
        : '') +
      `${count(r.cacheRecords.length + r.kernelRecords.length, 'cache record')}` +
      (r.cacheMounts.length ? `, ${count(r.cacheMounts.length, 'cache mount')}` : ''),
  );
  out(`Total reclaimed space: ${humanSize(r.bytesFreed)} (${r.bytesFreed} bytes)`);
  for (const k of r.kept) out(keptLine(k, until?.text));
}

/** keptLine: `kept: export kernel cache (1 record, 72.2MB; remove with --all)`. */
function keptLine(k: Kept, until: string | undefined): string {
  const unit = k.what === 'untagged images' ? 'image' : k.what === 'cache mounts' ? 'directory' : 'record';
  const what = k.what === 'untagged images' ? `${k.count} untagged image${k.count === 1 ? '' : 's'}` : k.what;
  const n =
    k.what === 'untagged images'
      ? ''
      : `${k.count} ${k.count === 1 ? unit : unit.replace(/y$/, 'ie')}${k.count === 1 ? '' : 's'}, `;
  const why = k.why === 'all' ? 'remove with --all' : `newer than until=${until ?? ''}`;
  return `kept: ${what} (${n}${humanSize(k.bytes)}; ${why})`;
}

/**
 * untilFilter reads `--filter until=…` (the only filter): a duration before now (Go's form: `24h`, `1h30m`, `90s`,
 * `1.5h`, units ns us µs ms s m h), a Unix time in seconds (`1700000000`, `1700000000.5`), or a date and time
 * (`2024-05-01`, `2024-05-01T10:00`, `2024-05-01T10:00:00Z`, `…+02:00`; local time without a zone), as docker
 * reads it. It limits what --all removes, so it needs --all.
 */
export function untilFilter(
  filters: string[],
  all: boolean,
  now = Date.now(),
): { ms: number; text: string } | undefined {
  if (filters.length === 0) return undefined;
  let found: { ms: number; text: string } | undefined;
  for (const f of filters) {
    const eq = f.indexOf('=');
    const key = eq < 0 ? f : f.slice(0, eq);
    if (key !== 'until')
      throw new InvalidInputError(`--filter ${JSON.stringify(f)}: only until=TIME is supported (e.g. until=24h)`);
    if (found) throw new InvalidInputError('--filter until= is given twice');
    const text = f.slice(eq + 1);
    found = { ms: parseUntil(text, now), text };
  }
  if (!all)
    throw new InvalidInputError(
      '--filter until= limits what --all removes (the default prune removes only what nothing needs): add --all',
    );
  return found;
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** parseUntil turns an until= value into ms since the epoch (see untilFilter). */
export function parseUntil(text: string, now = Date.now()): number {
  const bad = (): never => {
    throw new InvalidInputError(
      `--filter until=${text}: not a duration (24h, 1h30m, 90s), a Unix time (1700000000) or a date (2024-05-01T10:00:00Z)`,
    );
  };
  if (text === '') bad();
  // a Go duration: decimal numbers with units, one after the other
  if (/^[+-]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$/.test(text)) {
    let ms = 0;
    for (const m of text.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g))
      ms += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
    return now - (text.startsWith('-') ? -ms : ms);
  }
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000; // Unix seconds (docker: seconds.nanoseconds)
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?)?(Z|[+-]\d{2}:?\d{2})?$/.exec(
    text,
  );
  if (!m) return bad();
  const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', zone] = m;
  const fields = [Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), Number(frac || 0) * 1000];
  const [Y, M, D, H, MI, S, MS] = fields as [number, number, number, number, number, number, number];
  if (M > 11 || D < 1 || D > 31 || H > 23 || MI > 59 || S > 60) bad();
  if (zone === undefined) return new Date(Y, M, D, H, MI, S, MS).getTime(); // local time, as docker
  const utc = Date.UTC(Y, M, D, H, MI, S, MS);
  if (zone === 'Z') return utc;
  const z = /^([+-])(\d{2}):?(\d{2})$/.exec(zone) as RegExpExecArray;
  const offset = (Number(z[2]) * 60 + Number(z[3])) * 60_000;
  return z[1] === '+' ? utc - offset : utc + offset;
}

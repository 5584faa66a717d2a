import { pruneStore } from '../../unionfs/prune.js';
import { type GlobalFlags, openStore, out } from '../common.js';
import { humanSize, stderrProgress } from '../progress.js';

export default async function prune(flags: GlobalFlags): Promise<void> {
  const store = await openStore(flags);
  const r = await pruneStore(store);
  const progress = stderrProgress();
  for (const n of r.notes) progress.warn('W_PRUNE_KEPT', n);
  for (const d of r.blobs) out(`deleted: ${d}`);
  for (const d of r.snapshots) out(`deleted snapshot: ${d}`);
  for (const m of r.unmounted) out(`unmounted (a dead process's): ${m}`);
  for (const c of r.containers) out(`deleted container: ${c}`);
  for (const d of r.tmpDirs) out(`deleted work directory of a dead process: tmp/${d}`);
  for (const k of r.cacheRecords) out(`deleted cache record: ${k}`);
  for (const k of r.kernelRecords) out(`deleted export-kernel cache record: ${k}`);
  const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;
  out(
    `Deleted ${count(r.blobs.length, 'blob')}, ${count(r.snapshots.length, 'snapshot')}, ${count(r.containers.length, 'stale container')}, ` +
      (r.tmpDirs.length
        ? `${count(r.tmpDirs.length, 'stale work directory')}, `.replace('directorys', 'directories')
        : '') +
      `${count(r.cacheRecords.length + r.kernelRecords.length, 'cache record')}`,
  );
  out(`Total reclaimed space: ${humanSize(r.bytesFreed)} (${r.bytesFreed} bytes)`);
}

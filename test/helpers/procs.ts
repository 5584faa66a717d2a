// Looking for processes a test started: by a marker on their command line.
import { readdirSync, readFileSync } from 'node:fs';

/** processesWith lists the pids (other than ours) whose command line contains `marker`. */
export function processesWith(marker: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker)) pids.push(Number(p));
    } catch {
      // gone
    }
  }
  return pids;
}

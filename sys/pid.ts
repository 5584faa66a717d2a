// Whether a process still exists: the liveness test behind every "left by a dead process" cleanup.
//
// A zombie is dead: it runs nothing and holds nothing but its pid, until its parent reaps it. The inner CLI of
// rootless mode (sys/userns.ts) is orphaned when the command the user started is killed with `kill -9`, and its new
// parent (PID 1, or a subreaper) may reap it late; the next command must not take its directories for a live one's.
import { readFileSync } from 'node:fs';

/** isAlive tells whether `pid` names a live process (one we may not signal counts as alive; a zombie does not). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return !isZombie(pid);
}

/** isZombie tells whether `pid` has exited and waits to be reaped (state Z or X in /proc/PID/stat). */
export function isZombie(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false; // no /proc, or gone since: the signal test said enough
  }
  // pid (comm) state …: comm may hold spaces and parentheses, so the state follows the last ')'
  const state = stat.slice(stat.lastIndexOf(')') + 1).trim()[0];
  return state === 'Z' || state === 'X';
}

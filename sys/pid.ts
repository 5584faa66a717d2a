// Whether a process still exists: the liveness test behind every "left by a dead process" cleanup.

/** isAlive tells whether `pid` names a live process (one we may not signal counts as alive). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

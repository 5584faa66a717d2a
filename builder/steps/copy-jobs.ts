// The file writes of one COPY walk, a few at a time (builder/steps/copy-write.ts). The walk itself stays on the main
// thread and in order: it makes directories, symlinks and devices, checks every destination and throws type
// conflicts as the sequential copy did. Only a regular file's data copy (libuv's thread pool) and its metadata
// afterwards run as a job, with at most `limit` jobs in flight, so that the pool's threads and both CPUs create
// files while the walk goes on (a COPY of thousands of small files into an overlay is mostly file creation).
//
// Order is kept where it can be seen:
// - every entry has a position in walk order (start, defer and fail take the next one);
// - a directory's own metadata (its times above all) is deferred until every job started before it has settled, so
//   its children are all written first; it is skipped when an entry before it failed, as the sequential copy would
//   never have reached it;
// - the error reported is the one of the first entry in walk order that failed, whatever order jobs end in; once a
//   failure is known the walk stops (room() throws), and finish() waits for every job started: nothing is still
//   being written when the copy rejects.
// A job that fails leaves its file as the sequential copy would; jobs started after it (at most `limit`) complete.

/** STOP is what room() throws when a job has failed: the walk stops, finish() reports the first failure. */
const STOP = Symbol('copy stopped');

/** JobWindow runs a walk's jobs, at most `limit` at a time (1: each job is done before the walk goes on). */
export class JobWindow {
  /** the walk position the next entry takes */
  private pos = 0;
  /** running jobs by walk position (a Map keeps insertion order: the first key is the lowest) */
  private readonly running = new Map<number, Promise<boolean>>();
  /** deferred work, lowest position first; each runs once every job before it has settled */
  private readonly deferred: Array<{ seq: number; fn: () => void }> = [];
  /** the failure at the lowest walk position so far */
  private failure: { seq: number; err: unknown } | undefined;
  private waiters: Array<() => void> = [];

  constructor(readonly limit: number) {}

  /** room resolves when a job may start; it throws (a private value) when a job has failed: the walk stops. */
  async room(): Promise<void> {
    while (this.running.size >= this.limit) await new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.failure) throw STOP;
  }

  /**
   * start runs a job at the next walk position (after room()); the promise resolves true when the job succeeded,
   * false when it failed (the failure is recorded), and never rejects.
   */
  start(job: () => Promise<void>): Promise<boolean> {
    const seq = this.pos++;
    const done = (async () => {
      try {
        await job();
        return true;
      } catch (err) {
        this.record(seq, err);
        return false;
      } finally {
        this.settled(seq);
      }
    })();
    this.running.set(seq, done);
    return done;
  }

  /**
   * defer runs fn at the next walk position, once every job started before has settled (now when none is running;
   * then its error is thrown here); fn is skipped when an entry before it failed.
   */
  defer(fn: () => void): void {
    const seq = this.pos++;
    if (this.running.size === 0 && this.deferred.length === 0) {
      if (this.failure === undefined) fn();
      return;
    }
    this.deferred.push({ seq, fn });
  }

  /** fail records an error of the walk itself at the next walk position (STOP is not an error). */
  fail(err: unknown): void {
    const seq = this.pos++;
    if (err !== STOP) this.record(seq, err);
  }

  /** finish waits for every job and deferred work, then throws the failure of the first entry in walk order. */
  async finish(): Promise<void> {
    while (this.running.size > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.flushDeferred();
    if (this.failure) throw this.failure.err;
  }

  private record(seq: number, err: unknown): void {
    if (this.failure === undefined || seq < this.failure.seq) this.failure = { seq, err };
  }

  private settled(seq: number): void {
    this.running.delete(seq);
    this.flushDeferred();
    const ws = this.waiters;
    this.waiters = [];
    for (const resolve of ws) resolve();
  }

  private flushDeferred(): void {
    const low = this.running.size === 0 ? Infinity : this.running.keys().next().value!;
    while (this.deferred.length > 0 && this.deferred[0]!.seq < low) {
      const d = this.deferred.shift()!;
      if (this.failure !== undefined && this.failure.seq < d.seq) continue;
      try {
        d.fn();
      } catch (err) {
        this.record(d.seq, err);
      }
    }
  }
}

/**
 * walkWith runs a walk with a window of `limit` jobs and waits for all of them: it rejects with the error of the
 * first entry in walk order that failed (the walk's own or a job's), once nothing is running any more.
 */
export async function walkWith(limit: number, walk: (win: JobWindow) => Promise<void>): Promise<void> {
  const win = new JobWindow(limit);
  try {
    await walk(win);
  } catch (err) {
    win.fail(err);
  }
  await win.finish();
}

// Bounded parallelism for blob transfers: at most `limit` jobs at once; the first failure aborts the others.

/**
 * forEachLimit runs `fn` over `items` with at most `limit` running at once. On the first failure it aborts the
 * signal given to the running jobs, starts no more, waits for the running ones to settle, and rethrows that failure.
 */
export async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, signal: AbortSignal) => Promise<void>,
  outer?: AbortSignal,
): Promise<void> {
  const ctl = new AbortController();
  const onOuter = (): void => ctl.abort(outer?.reason);
  if (outer?.aborted) throw outer.reason;
  outer?.addEventListener('abort', onOuter, { once: true });
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure && !ctl.signal.aborted && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item, ctl.signal);
      } catch (err) {
        if (!failure) {
          failure = { err };
          ctl.abort(err);
        }
      }
    }
  };
  try {
    const n = Math.max(1, Math.min(Math.floor(limit) || 1, items.length));
    await Promise.all(Array.from({ length: n }, worker));
  } finally {
    outer?.removeEventListener('abort', onOuter);
  }
  if (failure) throw failure.err;
  if (outer?.aborted) throw outer.reason;
}

// Progress events of a push or pull. The library only emits them; the CLI draws them on stderr.
import type { Digest } from '../model/types.js';

/** BlobOutcome says how a blob got where it is. */
export type BlobOutcome = 'exists' | 'mounted' | 'uploaded' | 'cached' | 'downloaded';

export type TransferEvent =
  /** a blob transfer begins (`done` is 0) */
  | { type: 'blob-start'; digest: Digest; size: number; direction: 'up' | 'down' }
  /** bytes moved so far (throttled: roughly every 1% or 1 MiB) */
  | { type: 'blob-progress'; digest: Digest; size: number; done: number }
  | { type: 'blob-done'; digest: Digest; size: number; outcome: BlobOutcome }
  /** a request or a blob transfer is tried again */
  | { type: 'retry'; what: string; attempt: number; reason: string; delayMs: number }
  | { type: 'manifest'; digest: Digest; mediaType: string; reference: string; direction: 'up' | 'down' }
  /** an uncompressed layer is compressed before a push (its uncompressed digest and size) */
  | { type: 'compress'; digest: Digest; size: number }
  | { type: 'warning'; message: string };

export type OnTransferEvent = (e: TransferEvent) => void;

/** progressReporter throttles blob-progress events for one blob. */
export function progressReporter(
  onEvent: OnTransferEvent | undefined,
  digest: Digest,
  size: number,
): (done: number) => void {
  if (!onEvent) return () => {};
  const step = Math.max(1 << 20, Math.floor(size / 100));
  let last = -1;
  return (done: number) => {
    if (done - last >= step || (done === size && last !== size)) {
      last = done;
      onEvent({ type: 'blob-progress', digest, size, done });
    }
  };
}

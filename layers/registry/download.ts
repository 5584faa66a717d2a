// Downloading one blob into the store: verified for size and digest while it streams (store.putBlob), resumed with
// a Range request after a dropped connection (206 continues; a 200 is read again from the start, the bytes already
// stored being skipped), never recompressed. A wrong blob fails and leaves nothing in the store.
import { Readable } from 'node:stream';
import { DigestMismatchError, SizeMismatchError, TsbuildError } from '../../sys/errors.js';
import type { Store } from '../store/store.js';
import type { Descriptor } from '../model/types.js';
import type { RegistryClient, RegistryResponse } from './client.js';
import { type BlobOutcome, type OnTransferEvent, progressReporter } from './events.js';
import { ExchangeError, header } from './http-exchange.js';
import { backoffMs, isTransientError, sleep } from './retry.js';
import { tooSlow, TransferClock } from './transfer-floor.js';
import { checkBlobSize } from '../limits.js';
import { noSpace } from '../../sys/disk-full.js';

/** DOWNLOAD_ATTEMPTS bounds the connections used for one blob. */
const DOWNLOAD_ATTEMPTS = 6;

export interface DownloadOptions {
  client: RegistryClient;
  store: Store;
  repository: string;
  descriptor: Descriptor;
  scopes: string[];
  signal?: AbortSignal;
  onEvent?: OnTransferEvent;
}

/** downloadBlob stores a blob unless the store has it: 'cached' or 'downloaded'. */
export async function downloadBlob(opts: DownloadOptions): Promise<BlobOutcome> {
  const { store, descriptor: desc, client } = opts;
  if (await store.hasBlob(desc.digest, desc.size)) return 'cached';
  // an absurd declared size is refused before the first byte is asked for (let alone written)
  await checkBlobSize(
    `blob ${desc.digest} of ${client.registry}/${opts.repository}`,
    desc.size,
    store.blobDir,
    client.env,
  );
  opts.onEvent?.({ type: 'blob-start', digest: desc.digest, size: desc.size, direction: 'down' });
  try {
    await store.putBlob(Readable.from(blobBytes(opts), { objectMode: false, highWaterMark: 1 << 20 }), {
      digest: desc.digest,
      size: desc.size,
    });
  } catch (err) {
    if (err instanceof DigestMismatchError || err instanceof SizeMismatchError) {
      const actual =
        err instanceof DigestMismatchError
          ? `its content hashes to ${err.actual}`
          : `it has ${err.actual} bytes, not ${err.expected}`;
      throw new TsbuildError(
        'E_DIGEST_MISMATCH',
        `${client.registry}/${opts.repository} served a wrong blob ${desc.digest}: ${actual}`,
        {
          cause: err,
          hint: 'the registry (or something between it and you) corrupted the data; nothing was stored',
        },
      );
    }
    throw noSpace(err, store.blobDir, `blob ${desc.digest}`);
  }
  return 'downloaded';
}

/** blobBytes yields the blob's bytes in order, reconnecting (bounded) when a connection drops. */
async function* blobBytes(opts: DownloadOptions): AsyncGenerator<Buffer> {
  const { client, descriptor: desc } = opts;
  const what = `pulling blob ${desc.digest} from ${client.registry}/${opts.repository}`;
  const report = progressReporter(opts.onEvent, desc.digest, desc.size);
  // the transfer floor spans the whole blob, resumed connections included
  const late = new AbortController();
  let res: RegistryResponse | undefined;
  const clock = new TransferClock(client.floor, (err) => {
    late.abort(err);
    res?.body.destroy(err);
  });
  const signal = opts.signal ? AbortSignal.any([opts.signal, late.signal]) : late.signal;
  let offset = 0;
  try {
    yield* attempts();
  } catch (err) {
    if (clock.late) throw tooSlow(what, late.signal.reason);
    throw err;
  } finally {
    clock.stop();
  }

  async function* attempts(): AsyncGenerator<Buffer> {
    for (let attempt = 1; ; attempt++) {
      res = undefined;
      try {
        res = await client.request({
          method: 'GET',
          url: `/v2/${opts.repository}/blobs/${desc.digest}`,
          headers: offset > 0 ? { Range: `bytes=${offset}-` } : {},
          scopes: opts.scopes,
          expect: [200, 206],
          what,
          signal,
        });
        const declared = Number(header(res.headers, 'content-length'));
        if (res.status === 200 && Number.isFinite(declared) && declared > desc.size)
          throw new SizeMismatchError(desc.digest, desc.size, declared);
        let skip = 0;
        if (res.status === 206) {
          const start = rangeStart(header(res.headers, 'content-range'));
          if (start === undefined || start > offset)
            throw new TsbuildError(
              'E_REGISTRY',
              `${what}: the registry answered a range that does not start at byte ${offset}`,
            );
          skip = offset - start;
        } else skip = offset;
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          let c = chunk;
          if (skip) {
            if (skip >= c.length) {
              skip -= c.length;
              continue;
            }
            c = c.subarray(skip);
            skip = 0;
          }
          offset += c.length;
          if (offset > desc.size) throw new SizeMismatchError(desc.digest, desc.size, offset);
          clock.progress(offset);
          report(offset);
          yield c;
        }
        if (offset < desc.size)
          throw new ExchangeError(`connection closed after ${offset} of ${desc.size} bytes`, 'E_TRUNCATED', true);
        return;
      } catch (err) {
        if (attempt >= DOWNLOAD_ATTEMPTS || !isTransientError(err) || signal.aborted) throw err;
        const delayMs = backoffMs(attempt);
        opts.onEvent?.({ type: 'retry', what, attempt, reason: (err as Error).message, delayMs });
        await sleep(delayMs, signal);
      } finally {
        // also when the consumer stops early (the generator is returned): free the connection
        if (res && !res.body.complete) res.body.destroy();
      }
    }
  }
}

/** rangeStart reads the first byte of `Content-Range: bytes <start>-<end>/<total>`. */
function rangeStart(value: string | undefined): number | undefined {
  const m = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(value?.trim() ?? '');
  return m ? Number(m[1]) : undefined;
}

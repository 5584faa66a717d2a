// Uploading one blob: HEAD (skip what the repository has), cross-repository mount, then a monolithic PUT (small),
// one streamed PATCH + PUT (large), or PATCH chunks with Content-Range (--chunk-size). After a failure the upload
// status (GET <location> → Range) says where to continue; a session the registry dropped is started anew.
// Bytes go out as stored, read through store.openBlob (which verifies them), always to the newest Location.
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { Store } from '../store/store.js';
import type { Descriptor } from '../model/types.js';
import type { RegistryClient, RegistryResponse } from './client.js';
import type { BlobOutcome, OnTransferEvent } from './events.js';
import { progressReporter } from './events.js';
import { header } from './http-exchange.js';
import { RegistryError } from './registry-error.js';
import { backoffMs, isTransientError, sleep } from './retry.js';

/** MONOLITHIC_MAX: blobs up to this size go in one PUT; larger ones in a streamed PATCH. */
export const MONOLITHIC_MAX = 4 << 20;
/** UPLOAD_ATTEMPTS bounds the sessions and resumes of one blob. */
const UPLOAD_ATTEMPTS = 6;
const OCTET = 'application/octet-stream';

export interface UploadOptions {
  client: RegistryClient;
  store: Store;
  repository: string;
  descriptor: Descriptor;
  /** auth scopes for every request of this push (push on the destination, pull on mount sources) */
  scopes: string[];
  /** other repositories of the same registry that are known to hold the blob */
  mountFrom?: string[];
  /** PATCH in chunks of this many bytes */
  chunkSize?: number;
  monolithicMax?: number;
  signal?: AbortSignal;
  onEvent?: OnTransferEvent;
}

/** uploadBlob makes sure the repository has the blob and says how: 'exists', 'mounted' or 'uploaded'. */
export async function uploadBlob(opts: UploadOptions): Promise<BlobOutcome> {
  const { client, repository, descriptor: desc } = opts;
  const what = `pushing blob ${desc.digest} to ${client.registry}/${repository}`;
  const base = { scopes: opts.scopes, what, ...(opts.signal ? { signal: opts.signal } : {}) };

  const exists = async (): Promise<boolean> => {
    const res = await client.request({
      ...base,
      method: 'HEAD',
      url: `/v2/${repository}/blobs/${desc.digest}`,
      expect: [200, 404],
    });
    await client.discard(res);
    return res.status === 200;
  };
  if (await exists()) return 'exists';

  let location: URL | undefined;
  for (const from of (opts.mountFrom ?? []).filter((r) => r !== repository).slice(0, 2)) {
    const q = new URLSearchParams({ mount: desc.digest, from });
    let res: RegistryResponse;
    try {
      res = await client.request({
        ...base,
        method: 'POST',
        url: `/v2/${repository}/blobs/uploads/?${q}`,
        expect: [201, 202],
      });
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      continue; // a refused mount (e.g. no pull access to the source) is only a missed shortcut
    }
    await client.discard(res);
    if (res.status === 201) return 'mounted';
    location = locationOf(res, what);
    break;
  }

  opts.onEvent?.({ type: 'blob-start', digest: desc.digest, size: desc.size, direction: 'up' });
  const report = progressReporter(opts.onEvent, desc.digest, desc.size);
  // the session: its newest Location and the bytes it has confirmed (updated by sendFrom as it goes)
  let session: Session | undefined = location ? { location, offset: 0 } : undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      if (!session) {
        const res = await client.request({
          ...base,
          method: 'POST',
          url: `/v2/${repository}/blobs/uploads/`,
          expect: [202],
        });
        await client.discard(res);
        session = { location: locationOf(res, what), offset: 0 };
      }
      await sendFrom(opts, session, report, what);
      return 'uploaded';
    } catch (err) {
      if (attempt >= UPLOAD_ATTEMPTS || !isTransientError(err) || opts.signal?.aborted) {
        if (session) await cancel(client, session.location, opts.scopes);
        throw err;
      }
      const delayMs = backoffMs(attempt);
      opts.onEvent?.({ type: 'retry', what, attempt, reason: (err as Error).message, delayMs });
      await sleep(delayMs, opts.signal);
      // the registry may have finished it after all (a lost answer)
      if (await exists().catch(() => false)) return 'uploaded';
      const status = session
        ? await uploadStatus(client, session.location, opts.scopes, desc.size).catch(() => undefined)
        : undefined;
      if (!status && session) await cancel(client, session.location, opts.scopes);
      session = status;
    }
  }
}

interface Session {
  /** the newest Location */
  location: URL;
  /** bytes the registry has confirmed */
  offset: number;
}

/** sendFrom sends the blob from the session's offset and commits it, keeping `session` current as chunks land. */
async function sendFrom(
  opts: UploadOptions,
  session: Session,
  report: (n: number) => void,
  what: string,
): Promise<void> {
  const { client, store, descriptor: desc } = opts;
  const base = { scopes: opts.scopes, what, ...(opts.signal ? { signal: opts.signal } : {}) };
  const offset = session.offset;
  const chunkSize = opts.chunkSize && opts.chunkSize > 0 ? Math.floor(opts.chunkSize) : undefined;
  const monolithicMax = opts.monolithicMax ?? MONOLITHIC_MAX;

  if (!chunkSize && offset === 0 && desc.size <= monolithicMax) {
    const res = await client.request({
      ...base,
      method: 'PUT',
      url: withDigest(session.location, desc.digest),
      headers: { 'Content-Type': OCTET, 'Content-Length': String(desc.size) },
      body: () => counted(blobFrom(store, desc, 0), 0, report),
      expect: [201],
      retry: false,
    });
    await client.discard(res);
    report(desc.size);
    return;
  }

  if (!chunkSize) {
    if (offset < desc.size) {
      const res = await client.request({
        ...base,
        method: 'PATCH',
        url: session.location.href,
        headers: { 'Content-Type': OCTET, 'Content-Length': String(desc.size - offset) },
        body: () => counted(blobFrom(store, desc, offset), offset, report),
        expect: [202, 204],
        retry: false,
      });
      await client.discard(res);
      session.location = locationOf(res, what, session.location);
      checkRange(res, desc.size, what);
      session.offset = desc.size;
    }
  } else {
    const source = blobFrom(store, desc, offset);
    try {
      for await (const chunk of rechunk(source, chunkSize)) {
        const start = session.offset;
        const end = start + chunk.length - 1;
        const res = await client.request({
          ...base,
          method: 'PATCH',
          url: session.location.href,
          headers: {
            'Content-Type': OCTET,
            'Content-Range': `${start}-${end}`,
            'Content-Length': String(chunk.length),
          },
          body: chunk,
          expect: [202, 204],
          retry: false,
        });
        await client.discard(res);
        session.location = locationOf(res, what, session.location);
        checkRange(res, end + 1, what);
        session.offset = end + 1;
        report(session.offset);
      }
    } finally {
      source.destroy();
    }
  }
  const res = await client.request({
    ...base,
    method: 'PUT',
    url: withDigest(session.location, desc.digest),
    headers: { 'Content-Length': '0' },
    expect: [201],
    retry: false,
  });
  await client.discard(res);
  report(desc.size);
}

/** uploadStatus asks where a session stands: GET <location> → 204 + Range 0-<end>. undefined when the session is gone. */
async function uploadStatus(
  client: RegistryClient,
  location: URL,
  scopes: string[],
  size: number,
): Promise<Session | undefined> {
  const res = await client.request({
    method: 'GET',
    url: location.href,
    scopes,
    expect: [200, 204, 400, 404],
    what: 'checking an upload',
  });
  await client.discard(res);
  if (res.status !== 204 && res.status !== 200) return undefined;
  const m = /^(?:bytes[ =])?0-(\d+)$/.exec(header(res.headers, 'range')?.trim() ?? '');
  if (!m) return undefined;
  const end = Number(m[1]);
  // "0-0" is ambiguous (nothing, or one byte): start afresh rather than guess
  if (end === 0 || end + 1 > size) return undefined;
  return { location: locationOf(res, 'checking an upload', location), offset: end + 1 };
}

async function cancel(client: RegistryClient, location: URL, scopes: string[]): Promise<void> {
  try {
    const res = await client.request({
      method: 'DELETE',
      url: location.href,
      scopes,
      expect: [200, 202, 204, 400, 404],
      retry: false,
      what: 'cancelling an upload',
    });
    await client.discard(res);
  } catch {
    // best effort: the registry expires abandoned sessions
  }
}

/** locationOf resolves a response's Location against the URL that answered; `fallback` when there is none. */
function locationOf(res: RegistryResponse, what: string, fallback?: URL): URL {
  const loc = header(res.headers, 'location');
  if (!loc) {
    if (fallback) return fallback;
    throw new RegistryError(`${what}: the registry answered HTTP ${res.status} without a Location`, res.status);
  }
  try {
    return new URL(loc, res.url);
  } catch {
    throw new RegistryError(
      `${what}: the registry answered an invalid Location ${JSON.stringify(loc.slice(0, 200))}`,
      res.status,
    );
  }
}

/** checkRange compares a Range answer (0-<end>) with what was sent; a mismatch is a transient failure (resume). */
function checkRange(res: RegistryResponse, sent: number, what: string): void {
  const range = header(res.headers, 'range');
  if (!range) return;
  const m = /^(?:bytes[ =])?0-(\d+)$/.exec(range.trim());
  if (!m) return;
  const end = Number(m[1]);
  if (sent > 0 && end !== sent - 1) {
    const err = new RegistryError(
      `${what}: the registry holds bytes 0-${end} after ${sent} were sent`,
      res.status,
      [],
      { code: 'E_UPLOAD_RANGE' },
    );
    (err as { transient?: boolean }).transient = true;
    throw err;
  }
}

/** withDigest appends `digest=` to a Location without rebuilding its query (which may carry signed state). */
export function withDigest(location: URL, digest: string): string {
  const href = location.href.replace(/#.*$/, '');
  const sep = href.endsWith('?') || href.endsWith('&') ? '' : href.includes('?') ? '&' : '?';
  return `${href}${sep}digest=${encodeURIComponent(digest)}`;
}

/** blobFrom reads a stored blob from `offset` (the skipped prefix is still hashed, so the blob is verified at EOF). */
function blobFrom(store: Store, desc: Descriptor, offset: number): Readable {
  const src = store.openBlob(desc.digest, { expectedSize: desc.size });
  if (offset === 0) return src;
  let skip = offset;
  const skipper = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (skip >= chunk.length) {
        skip -= chunk.length;
        cb();
        return;
      }
      const rest = skip ? chunk.subarray(skip) : chunk;
      skip = 0;
      cb(null, rest);
    },
  });
  src.on('error', (err) => skipper.destroy(err));
  skipper.on('close', () => src.destroy());
  return src.pipe(skipper);
}

/** counted reports bytes passing through (starting at `base`). */
function counted(src: Readable, base: number, report: (n: number) => void): Readable {
  let n = base;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      n += chunk.length;
      report(n);
      cb(null, chunk);
    },
  });
  src.on('error', (err) => t.destroy(err));
  t.on('close', () => src.destroy());
  return src.pipe(t);
}

/** rechunk turns a stream into buffers of exactly `size` bytes (the last may be shorter). */
async function* rechunk(src: Readable, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let have = 0;
  for await (const chunk of src as AsyncIterable<Buffer>) {
    let c = chunk;
    while (have + c.length >= size) {
      const take = size - have;
      parts.push(c.subarray(0, take));
      yield Buffer.concat(parts);
      parts = [];
      have = 0;
      c = c.subarray(take);
    }
    if (c.length) {
      parts.push(c);
      have += c.length;
    }
  }
  if (have) yield Buffer.concat(parts);
}

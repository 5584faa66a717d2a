// One pass over a load archive: blobs/sha256/<hex> entries go to the store (verified against their names, also when
// the store already holds them), legacy layer tars (`<id>/layer.tar`, skopeo's `<hex>.tar`) are committed as
// layers, small JSON documents are kept in memory, and symlinks and hard links are remembered (docker writes a
// repeated layer as a symlink). An archive must end with tar's end-of-archive blocks: one cut between two entries
// is refused as truncated.
// Every entry body is read to its end, whatever happens to its content: tar-stream stops (and this promise would
// never settle) when a body is left unread or destroyed.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { autoDecompress } from '../compress/compress.js';
import { commitLayer, type CommittedLayer } from '../store/commit.js';
import { parseDigest } from '../model/digest.js';
import { DigestMismatchError, InvalidInputError, NoSpaceError, SizeMismatchError, wrap } from '../../sys/errors.js';
import { isNoSpace, noSpace } from '../../sys/disk-full.js';
import { oneLine, type Store } from '../store/store.js';
import type { Compression, Digest } from '../model/types.js';

const MAX_JSON = 32 << 20;
/**
 * LEGACY_LAYER names the layer tars of a docker-archive: `<id>/layer.tar` (docker save), and `<hex>.tar` at the top
 * (skopeo and podman write the layer there, `<id>/layer.tar` being a symlink to it).
 */
const LEGACY_LAYER = /^(?:[^/]+\/layer\.tar|[a-f0-9]{64}\.tar)$/;

export interface Collected {
  json: Map<string, Buffer>;
  blobs: Set<Digest>;
  legacyLayers: Map<string, CommittedLayer>;
  /** symlinks and hard links: entry name → the entry name it points at (normalized, relative to the archive root) */
  links: Map<string, string>;
}

export interface CollectOptions {
  compression?: Compression;
  onEvent?: (e: { type: 'blob' | 'layer'; name: string; size: number }) => void;
}

type Body = NodeJS.ReadableStream & { resume(): unknown };

/** entryName normalizes a tar entry name (`./a//b/` → `a/b`). */
export function entryName(name: string): string {
  return posix
    .normalize(name)
    .replace(/^(\.\/)+/, '')
    .replace(/\/$/, '');
}

/** drain reads a body to its end, hashing it; resolves with its digest and size. */
function drain(body: Body): Promise<{ digest: Digest; size: number }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let size = 0;
    body.on('data', (b: Buffer) => {
      hash.update(b);
      size += b.length;
    });
    body.on('end', () => resolve({ digest: `sha256:${hash.digest('hex')}`, size }));
    body.on('error', reject);
  });
}

/**
 * storeBlob stores one blobs/sha256/<hex> entry. A blob the store already holds is not written again, but the entry
 * is still read to its end and must hash to its name, so the result of a load does not depend on what was stored.
 */
async function storeBlob(store: Store, body: Body, digest: Digest, size: number): Promise<void> {
  if (await store.hasBlob(digest, size)) {
    const got = await drain(body);
    if (got.size !== size) throw new SizeMismatchError(digest, size, got.size);
    if (got.digest !== digest) throw new DigestMismatchError(digest, got.digest);
    // marks the stored blob fresh for a concurrent prune (and stores nothing: the blob is there)
    await store.putBlob(Readable.from([]), { digest, size });
    return;
  }
  await store.putBlob(Readable.from(body as AsyncIterable<Buffer>, { objectMode: false }), { digest, size });
}

/** collect reads the whole archive once. */
export function collect(store: Store, input: Readable, opts: CollectOptions): Promise<Collected> {
  const got: Collected = { json: new Map(), blobs: new Set(), legacyLayers: new Map(), links: new Map() };
  const extract = tar.extract();
  /** what the entry being read writes, for a disk-full error that surfaces through the tar reader */
  let writing = 'the archive';
  /** the last entry seen and where its data ends (padded to 512), and the bytes of tar given to `extract` */
  let lastEntry: { name: string; end: number } | undefined;
  let fed = 0;
  /** entryFailure: a full disk as one NoSpaceError naming what was written, anything else wrapped with the entry */
  const entryFailure = (name: string, what: string, err: unknown): Error => {
    const full = noSpace(err, store.blobDir, what);
    return full instanceof NoSpaceError ? full : wrap(`archive entry ${name}`, err);
  };
  return new Promise<Collected>((resolve, reject) => {
    const fail = (err: Error): void => {
      input.destroy();
      extract.destroy();
      reject(err);
    };
    extract.on('entry', (header, stream, next) => {
      const body = stream as unknown as Body;
      // a truncated input ends the body being read with an error that also reaches `extract` (failing the load
      // there): without a listener here it would end the process with a stack trace
      body.on('error', () => {});
      const byteOffset = (header as { byteOffset?: number }).byteOffset ?? 0;
      lastEntry = { name: header.name, end: byteOffset + Math.ceil((header.size ?? 0) / 512) * 512 };
      const done = (err?: unknown): void => {
        if (err) fail(err as Error);
        else next();
      };
      const skip = (): void => {
        drain(body).then(() => done(), done);
      };
      const name = entryName(header.name);
      if (header.type === 'symlink' || header.type === 'link') {
        const target = header.linkname ?? '';
        got.links.set(
          name,
          entryName(header.type === 'symlink' ? posix.join(posix.dirname(name), target) : posix.normalize(target)),
        );
        return skip();
      }
      if (header.type !== 'file' && header.type !== 'contiguous-file') return skip();
      const size = header.size ?? 0;
      const blob = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(name);
      if (blob) {
        if (blob[1] !== 'sha256') return done(new InvalidInputError(`blob ${name}: unsupported digest algorithm`));
        let digest: Digest;
        try {
          digest = parseDigest(`sha256:${blob[2]}`, name);
        } catch (err) {
          return done(err);
        }
        writing = `blob ${digest}`;
        storeBlob(store, body, digest, size).then(
          () => {
            got.blobs.add(digest);
            opts.onEvent?.({ type: 'blob', name: digest, size });
            done();
          },
          (err) => done(entryFailure(name, `blob ${digest}`, err)),
        );
        return;
      }
      if (LEGACY_LAYER.test(name)) {
        writing = `the layer of ${name}`;
        const tarBody = Readable.from(body as unknown as AsyncIterable<Buffer>, { objectMode: false });
        commitLayer(store, tarBody, { compression: opts.compression ?? 'gzip' }).then(
          (layer) => {
            got.legacyLayers.set(name, layer);
            opts.onEvent?.({ type: 'layer', name, size: layer.uncompressedSize });
            done();
          },
          (err) => done(entryFailure(name, `the layer of ${name}`, err)),
        );
        return;
      }
      if (name.endsWith('.json') || name === 'oci-layout' || name === 'repositories') {
        if (size > MAX_JSON) return done(new InvalidInputError(`archive entry ${name} is too large (${size} bytes)`));
        const parts: Buffer[] = [];
        body.on('data', (b: Buffer) => parts.push(b));
        body.on('end', () => {
          got.json.set(name, Buffer.concat(parts));
          done();
        });
        body.on('error', done);
        return;
      }
      skip();
    });
    extract.on('finish', () => {
      // A tar ends with zero blocks after its last entry. Without them the input stopped between two entries (a
      // copy cut short): what is missing cannot be known, and blobs the store already has would hide it.
      if (lastEntry && fed <= lastEntry.end)
        return fail(
          new InvalidInputError(
            `the archive ends right after entry ${entryName(lastEntry.name)}, without the end-of-archive marker: it is truncated`,
          ),
        );
      resolve(got);
    });
    extract.on('close', () => reject(new InvalidInputError('the archive ended before its last entry was read')));
    extract.on('error', (err: Error) =>
      fail(
        isNoSpace(err)
          ? (noSpace(err, store.blobDir, writing) as Error)
          : new InvalidInputError(`not a valid tar archive: ${err.message}`),
      ),
    );
    const plain = autoDecompress();
    input.on('error', fail);
    plain.on('error', fail);
    plain.on('data', (b: Buffer) => {
      fed += b.length;
    });
    input.pipe(plain).pipe(extract);
  });
}

/** parseJson parses an archive's JSON entry (an InvalidInputError naming it when missing or not JSON). */
export function parseJson(got: Collected, name: string, label: string): unknown {
  const buf = got.json.get(name);
  if (!buf) throw new InvalidInputError(`${label}: ${name} is missing`);
  try {
    return JSON.parse(buf.toString('utf8')) as unknown;
  } catch (err) {
    throw new InvalidInputError(`${label}: ${name} is not valid JSON: ${oneLine((err as Error).message)}`);
  }
}

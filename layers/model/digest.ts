// Digests: parsing, hashing, ChainIDs.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { InvalidInputError } from '../../sys/errors.js';
import type { Digest } from './types.js';

const SHA256_RE = /^sha256:[a-f0-9]{64}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function isDigest(s: string): s is Digest {
  return SHA256_RE.test(s);
}

/** parseDigest checks a sha256 digest string and returns it typed; other algorithms are refused by name. */
export function parseDigest(s: string, what = 'digest'): Digest {
  if (SHA256_RE.test(s)) return s as Digest;
  if (DIGEST_RE.test(s))
    throw new InvalidInputError(`${what} ${s}: unsupported digest algorithm (tsbuild stores sha256)`);
  throw new InvalidInputError(`${what} ${JSON.stringify(s)} is not a valid digest`);
}

export function sha256(data: string | Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** hexOf returns the encoded part of a digest (the blob file name). */
export function hexOf(d: Digest): string {
  return d.slice('sha256:'.length);
}

/** chainId computes ChainID(L0..Ln) from diffIDs: the key of an unpacked rootfs snapshot. */
export function chainId(diffIds: readonly Digest[]): Digest {
  if (diffIds.length === 0) throw new InvalidInputError('chainId of no layers');
  let id = diffIds[0] as Digest;
  for (const d of diffIds.slice(1)) id = sha256(`${id} ${d}`);
  return id;
}

/** chainIds returns the ChainID of every prefix of `diffIds` (layer 1, layers 1–2, …), in one pass. */
export function chainIds(diffIds: readonly Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const d of diffIds) out.push(out.length === 0 ? d : sha256(`${out[out.length - 1]} ${d}`));
  return out;
}

/** HashingStream passes bytes through unchanged while counting and hashing them; read `digest` after 'end'. */
export class HashingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  size = 0;
  private result: Digest | undefined;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    this.result = `sha256:${this.hash.digest('hex')}`;
    cb();
  }
  /** digest of everything that passed; throws until the stream has flushed. */
  get digest(): Digest {
    if (!this.result) throw new Error('digest not computed until the stream is consumed');
    return this.result;
  }
}

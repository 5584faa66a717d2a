// Limits against hostile or broken inputs that are about sizes: how far a compressed layer may expand, how large a
// blob may declare itself, and whether the store's filesystem has room for it. Every limit is read from the
// environment (a bad value is an error, never ignored) and every refusal is one line that says how to allow it.
//
// - Expansion (TSBUILD_MAX_EXPANSION, default 100): a compressed layer or tarball may expand to at most RATIO times
//   its compressed size, and never less than EXPANSION_FLOOR (1 GiB), so small layers are never refused. Measured
//   on real layers (Debian bookworm's 170 MB base layer: gzip -6 2.8×, gzip -9 2.8×, zstd -3 3.3×; tsbuild's
//   exported example layers 2.6×), so 100× leaves a wide margin, while zeros (gzip -1 229×, gzip -6 about 1000×,
//   zstd -3 about 32000×) stop after the floor or 100× their size. When the total compressed size is unknown (a
//   stream), the bytes read so far count. TSBUILD_EXPANSION_FLOOR (bytes) moves the floor.
// - Blob size (TSBUILD_MAX_BLOB_SIZE, bytes, default 64 GiB): larger declared sizes are refused before anything is
//   requested; the largest layers in public images are a few GiB.
// - Room (checkRoom): a blob of a declared size is refused when the store's filesystem has fewer free bytes (statfs,
//   what an unprivileged writer may use).
import { statfs } from 'node:fs/promises';
import { TsbuildError } from '../sys/errors.js';

export const DEFAULT_MAX_EXPANSION = 100;
export const EXPANSION_FLOOR = 1 << 30;
export const DEFAULT_MAX_BLOB_SIZE = 64 * 2 ** 30;

/** LimitError is a refusal of a size limit (exit 1), code E_LIMIT. */
export class LimitError extends TsbuildError {
  constructor(message: string, hint?: string) {
    super('E_LIMIT', message, hint === undefined ? {} : { hint });
  }
}

/** positiveNumber reads a positive number from the environment (undefined when unset; anything else is an error). */
export function positiveNumber(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0)
    throw new TsbuildError('E_INVALID', `${name}=${JSON.stringify(raw.slice(0, 40))}: not a positive number`);
  return n;
}

/** maxExpansion is the ratio uncompressed/compressed a layer may reach (TSBUILD_MAX_EXPANSION, default 100). */
export function maxExpansion(env: NodeJS.ProcessEnv = process.env): number {
  return positiveNumber(env, 'TSBUILD_MAX_EXPANSION') ?? DEFAULT_MAX_EXPANSION;
}

/** maxBlobSize is the largest size a blob may declare (TSBUILD_MAX_BLOB_SIZE bytes, default 64 GiB). */
export function maxBlobSize(env: NodeJS.ProcessEnv = process.env): number {
  return positiveNumber(env, 'TSBUILD_MAX_BLOB_SIZE') ?? DEFAULT_MAX_BLOB_SIZE;
}

/** expansionFloor is the output every compressed input may reach (TSBUILD_EXPANSION_FLOOR bytes, default 1 GiB). */
export function expansionFloor(env: NodeJS.ProcessEnv = process.env): number {
  return positiveNumber(env, 'TSBUILD_EXPANSION_FLOOR') ?? EXPANSION_FLOOR;
}

/** expansionLimit is the most bytes `compressed` bytes may expand to under `ratio`, never less than `floor`. */
export function expansionLimit(compressed: number, ratio: number, floor = EXPANSION_FLOOR): number {
  return Math.max(floor, Math.ceil(compressed * ratio));
}

/** ExpansionError: "layer sha256:… expands past 100× its compressed size (… bytes): refusing; set …". */
export function expansionError(what: string, ratio: number, compressed: number, expanded: number): LimitError {
  return new LimitError(
    `${what} expands past ${ratio}× its compressed size (${compressed} bytes compressed, ` +
      `more than ${expanded} bytes expanded): refusing`,
    `set TSBUILD_MAX_EXPANSION=${suggestRatio(expanded, compressed, ratio)} to allow it (default ${DEFAULT_MAX_EXPANSION})`,
  );
}

function suggestRatio(expanded: number, compressed: number, ratio: number): number {
  const needed = Math.max(ratio * 10, Math.ceil(expanded / Math.max(1, compressed)) * 10);
  return 10 ** Math.ceil(Math.log10(needed));
}

/** freeBytes is what a writer may still use on the filesystem that holds `dir` (statfs f_bavail × f_bsize). */
export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/**
 * checkBlobSize refuses a declared size over the ceiling, or one the filesystem of `dir` cannot hold, before the
 * first byte is written. `what` names the blob: `blob sha256:… of 127.0.0.1:5000/repo`.
 */
export async function checkBlobSize(
  what: string,
  size: number,
  dir: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const ceiling = maxBlobSize(env);
  if (size > ceiling)
    throw new LimitError(
      `${what} declares ${size} bytes, more than the ${ceiling}-byte limit: refusing`,
      'set TSBUILD_MAX_BLOB_SIZE=BYTES to allow larger blobs',
    );
  await checkRoom(`${what} declares ${size} bytes`, size, dir);
}

/** checkRoom refuses to write `bytes` when the filesystem of `dir` has fewer free: `${said}, but only … free`. */
export async function checkRoom(said: string, bytes: number, dir: string): Promise<void> {
  const free = await freeBytes(dir);
  if (bytes > free)
    throw new LimitError(
      `${said}, but only ${free} bytes are free on the filesystem of ${dir}: refusing`,
      'free space or point --root at a larger disk',
    );
}

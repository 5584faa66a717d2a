// The build cache: a key per filesystem step (RUN, COPY, ADD, WORKDIR's mkdir) chained over the previous
// filesystem state, as BuildKit's solver keys its vertices; and the on-disk record of what a key produced.
//
// Keys: cacheKey(parent, op) = sha256 over the parent key and a canonical JSON of what determines the result:
// - RUN: argv, env (declared ARGs included, undeclared proxy args left out), user, cwd, network, security, mounts
//   (bind sources by content or by the source stage's key, cache ids, secret ids, never secret values);
// - COPY/ADD: destination, --chown/--chmod/--link/--parents/--exclude, and the content checksum of the selected
//   files (builder/steps/copy.ts hashSelection: path, mode, owner, size, type, link target, xattrs, data; not mtime);
// - WORKDIR: path and user.
// Metadata instructions (ENV, LABEL, CMD…) change the image config only; they have no key, as in BuildKit.
//
// Records live in `<store>/cache/<key hex>.json`, written atomically (temp + rename). A record names the layer a
// step produced (blob descriptor + diffID, or none for a step that changed nothing) and when it was made. A
// lookup checks that the blob is still in the store: `tsbuild prune` removes blobs that no image references, and
// a record whose blob is gone is a miss.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Store } from '../layers/store/store.js';
import type { Descriptor, Digest } from '../layers/model/types.js';
import { pruneLayerRecords } from '../layers/store/gc.js';

export interface LayerRef {
  descriptor: Descriptor;
  diffId: Digest;
}

/** CacheRecord is what a step produced. */
export interface CacheRecord {
  version: 1;
  /** the layer, or null when the step changed nothing (an empty-layer history entry) */
  layer: LayerRef | null;
  /** RFC 3339: when the layer was made (the history entry's `created`) */
  created: string;
  /** what made it, for people reading the cache directory */
  createdBy?: string;
}

/** canonical serializes a value as JSON with object keys sorted, so equal values give equal keys. */
export function canonical(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
}

/** CACHE_VERSION changes every key when the way tsbuild builds a layer changes. */
const CACHE_VERSION = 'tsbuild-cache-v1';

/** cacheKey chains an operation onto a parent key: `sha256:<hex>`. */
export function cacheKey(parent: string, op: unknown): string {
  return `sha256:${createHash('sha256').update(CACHE_VERSION).update('\0').update(parent).update('\0').update(canonical(op)).digest('hex')}`;
}

/** BuildCache reads and writes records in one store. */
export class BuildCache {
  readonly dir: string;
  constructor(readonly store: Store) {
    this.dir = join(store.root, 'cache');
  }

  private path(key: string): string {
    const hex = key.replace(/^sha256:/, '');
    if (!/^[a-f0-9]{64}$/.test(hex)) throw new Error(`bad cache key ${key}`);
    return join(this.dir, `${hex}.json`);
  }

  /** get returns the record of a key, or undefined when there is none, it is unreadable, or its blob is gone. */
  async get(key: string): Promise<CacheRecord | undefined> {
    let rec: CacheRecord;
    try {
      rec = JSON.parse(await readFile(this.path(key), 'utf8')) as CacheRecord;
    } catch {
      return undefined;
    }
    if (!rec || rec.version !== 1 || typeof rec.created !== 'string') return undefined;
    if (rec.layer) {
      const d = rec.layer.descriptor;
      if (!d || typeof d.digest !== 'string' || !(await this.store.hasBlob(d.digest, d.size))) return undefined;
    }
    return rec;
  }

  /**
   * prune removes the records that name a layer whose blob the store no longer has (`tsbuild prune` calls it after
   * removing blobs); records of steps that changed nothing, and files it cannot read, stay. Returns the keys removed
   * and the bytes their files took.
   */
  async prune(): Promise<{ removed: string[]; bytes: number }> {
    return pruneLayerRecords(this.store, this.dir);
  }


  /** put writes a record atomically (a crash leaves the old record or none). */
  async put(key: string, rec: CacheRecord): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const final = this.path(key);
    const tmp = `${final}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      await writeFile(tmp, `${JSON.stringify(rec)}\n`, { flag: 'wx', mode: 0o644 });
      await rename(tmp, final);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}

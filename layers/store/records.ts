// Records: small JSON files in the store that map a key (a sha256 digest) to what a cached piece of work produced,
// one directory per named kind. Every kind's record names the layer it produced (or none), so `prune` can list
// every kind and remove the records whose layer blob is gone without knowing who wrote them.
//
// Layout: `<store>/<dir of the kind>/<key hex>.json`. Writes are atomic (temp file + rename: a crash leaves the old
// record or none); an unreadable record reads as absent and is never removed by prune (not ours to judge).
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InternalError } from '../../sys/errors.js';
import type { Layer } from '../model/layer.js';
import type { Digest } from '../model/types.js';
import type { Store } from './store.js';

/** RECORD_KINDS are the kinds of records a store holds, by name, with their directory under the store root. */
export const RECORD_KINDS = {
  /** the build cache: a step's cache key → the layer it made (builder/cache.ts) */
  build: 'cache',
  /** the export kernel cache: an install key → the kernel layer (convert/kernel/) */
  'export-kernel': 'cache/export-kernel',
} as const;

export type RecordKind = keyof typeof RECORD_KINDS;

/** LayerRecord is the part every record shares: the layer it names (null: the work changed nothing). */
export interface LayerRecord {
  layer: Layer | null;
}

/** Records reads and writes the records of one kind in one store. */
export class Records<T extends LayerRecord> {
  readonly dir: string;
  constructor(
    readonly store: Store,
    readonly kind: RecordKind,
  ) {
    this.dir = join(store.root, RECORD_KINDS[kind]);
  }

  private path(key: string): string {
    const hex = key.replace(/^sha256:/, '');
    if (!/^[a-f0-9]{64}$/.test(hex)) throw new InternalError(`bad ${this.kind} record key ${key}`);
    return join(this.dir, `${hex}.json`);
  }

  /**
   * get returns the record of `key`, or undefined when there is none, it is not JSON, `valid` refuses it, or the
   * blob of the layer it names is gone from the store.
   */
  async get(key: string, valid: (rec: T) => boolean = () => true): Promise<T | undefined> {
    let rec: T;
    try {
      rec = JSON.parse(await readFile(this.path(key), 'utf8')) as T;
    } catch {
      return undefined;
    }
    if (!rec || typeof rec !== 'object' || !valid(rec)) return undefined;
    const d = rec.layer?.descriptor;
    if (rec.layer && (!d || typeof d.digest !== 'string' || !(await this.store.hasBlob(d.digest, d.size))))
      return undefined;
    return rec;
  }

  /** put writes the record of `key` atomically. */
  async put(key: string, rec: T): Promise<void> {
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

  /**
   * prune removes the records whose layer blob the store no longer has (`tsbuild prune` runs it after removing
   * blobs). Records that name no layer, and files it cannot read, stay. Returns the keys removed and their bytes.
   */
  async prune(): Promise<{ removed: Digest[]; bytes: number }> {
    const removed: Digest[] = [];
    let bytes = 0;
    for (const name of (await readdir(this.dir).catch(() => [] as string[])).sort()) {
      const hex = /^([a-f0-9]{64})\.json$/.exec(name)?.[1];
      if (!hex) continue;
      let text: string;
      let digest: unknown;
      try {
        text = await readFile(join(this.dir, name), 'utf8');
        digest = (JSON.parse(text) as Partial<LayerRecord> | null)?.layer?.descriptor?.digest;
      } catch {
        continue;
      }
      if (typeof digest !== 'string' || (await this.store.hasBlob(digest as Digest))) continue;
      await rm(join(this.dir, name), { force: true });
      removed.push(`sha256:${hex}`);
      bytes += Buffer.byteLength(text);
    }
    return { removed, bytes };
  }
}

/** pruneRecords prunes every kind of record; returns what each kind lost. */
export async function pruneRecords(store: Store): Promise<Record<RecordKind, { removed: Digest[]; bytes: number }>> {
  const out = {} as Record<RecordKind, { removed: Digest[]; bytes: number }>;
  for (const kind of Object.keys(RECORD_KINDS) as RecordKind[]) out[kind] = await new Records(store, kind).prune();
  return out;
}

// Records: small JSON files in the store that map a key (a sha256 digest) to what a cached piece of work produced,
// one directory per named kind. Every kind's record names the layer it produced (or none), so `prune` can list
// every kind and remove the records whose layer blob is gone without knowing who wrote them.
//
// Layout: `<store>/<dir of the kind>/<key hex>.json`. Writes are atomic (temp file + rename: a crash leaves the old
// record or none); an unreadable record reads as absent and is never removed by prune (not ours to judge). A record's
// mtime is when it was last used: `put` writes it, a hit in `get` touches it; `prune --all --filter until=…` goes by it.
//
// The layer blobs that records name are kept by the default `tsbuild prune` (recordBlobs) even when no image
// reaches them: a cache is worth its bytes until the user says otherwise (`prune --all` removes the records first).
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
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

/** RecordEntry is one readable record as `list` sees it. */
export interface RecordEntry {
  key: Digest;
  /** the layer blob it names; undefined when it names none */
  blob?: Digest;
  /** the record file's size */
  bytes: number;
  /** when it was last written or hit (the file's mtime) */
  usedMs: number;
}

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
    const now = new Date();
    await utimes(this.path(key), now, now).catch(() => {}); // last used: what `prune --filter until=…` reads
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

  /** list returns the readable records (JSON naming a layer or none), sorted by key; unreadable files are skipped. */
  async list(): Promise<RecordEntry[]> {
    const out: RecordEntry[] = [];
    for (const name of (await readdir(this.dir).catch(() => [] as string[])).sort()) {
      const hex = /^([a-f0-9]{64})\.json$/.exec(name)?.[1];
      if (!hex) continue;
      const path = join(this.dir, name);
      let text: string;
      let layer: unknown;
      let usedMs: number;
      try {
        [text, usedMs] = await Promise.all([readFile(path, 'utf8'), stat(path).then((st) => st.mtimeMs)]);
        const rec = JSON.parse(text) as Partial<LayerRecord> | null;
        if (!rec || typeof rec !== 'object' || !('layer' in rec)) continue;
        layer = rec.layer;
      } catch {
        continue;
      }
      const digest = (layer as Layer | null)?.descriptor?.digest;
      if (layer !== null && typeof digest !== 'string') continue;
      out.push({
        key: `sha256:${hex}`,
        ...(typeof digest === 'string' ? { blob: digest } : {}),
        bytes: Buffer.byteLength(text),
        usedMs,
      });
    }
    return out;
  }

  /**
   * prune removes the records whose layer blob the store no longer has (`tsbuild prune` runs it after removing
   * blobs). Records that name no layer, and files it cannot read, stay. Returns the keys removed and their bytes.
   */
  async prune(): Promise<{ removed: Digest[]; bytes: number }> {
    const removed: Digest[] = [];
    let bytes = 0;
    for (const r of await this.list()) {
      if (r.blob === undefined || (await this.store.hasBlob(r.blob))) continue;
      await rm(this.path(r.key), { force: true });
      removed.push(r.key);
      bytes += r.bytes;
    }
    return { removed, bytes };
  }

  /**
   * removeUnused removes every readable record last used before `beforeMs` (every one when undefined): what
   * `tsbuild prune --all` does to the caches. Unreadable files stay. Returns the keys removed and their bytes.
   */
  async removeUnused(beforeMs?: number): Promise<{ removed: Digest[]; bytes: number }> {
    const removed: Digest[] = [];
    let bytes = 0;
    for (const r of await this.list()) {
      if (beforeMs !== undefined && r.usedMs >= beforeMs) continue;
      await rm(this.path(r.key), { force: true });
      removed.push(r.key);
      bytes += r.bytes;
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

/** recordBlobs returns, per kind, the layer blobs that the readable records of that kind name. */
export async function recordBlobs(store: Store): Promise<Record<RecordKind, Set<Digest>>> {
  const out = {} as Record<RecordKind, Set<Digest>>;
  for (const kind of Object.keys(RECORD_KINDS) as RecordKind[]) {
    out[kind] = new Set();
    for (const r of await new Records(store, kind).list()) if (r.blob) out[kind].add(r.blob);
  }
  return out;
}

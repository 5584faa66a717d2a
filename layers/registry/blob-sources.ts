// Where blobs are known to live: `<root>/registry-blobs.json` records, per registry, the repositories each blob
// was pushed to or pulled from, so a push to another repository of the same registry can mount instead of upload.
// The record is a hint: a stale entry only costs a refused mount.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWrite, type Store } from '../store/store.js';
import type { Digest } from '../model/types.js';

const FILE = 'registry-blobs.json';
const MAX_REPOS_PER_BLOB = 4;
const MAX_BLOBS_PER_REGISTRY = 20_000;
const MAX_REGISTRIES = 64;

type SourceMap = Record<string, Record<string, string[]>>;

/** BlobSources is the in-memory record; `save` merges what was added into the file under the store lock. */
export class BlobSources {
  private constructor(
    private readonly store: Store,
    private data: SourceMap,
    private readonly added: Array<{ registry: string; repository: string; digests: Digest[] }> = [],
  ) {}

  /** load reads the record (a missing or malformed file is an empty record). */
  static async load(store: Store): Promise<BlobSources> {
    return new BlobSources(store, await readRecord(store));
  }

  /** repositoriesOf lists repositories of `registry` known to hold `digest`, most recent first. */
  repositoriesOf(registry: string, digest: Digest): string[] {
    return [...(this.data[registry]?.[digest] ?? [])];
  }

  /** add notes that `digests` are in `registry`/`repository`. */
  add(registry: string, repository: string, digests: Digest[]): void {
    this.added.push({ registry, repository, digests });
    merge(this.data, registry, repository, digests);
  }

  /** save merges the additions into the file (re-read under the store lock, so concurrent writers lose nothing). */
  async save(): Promise<void> {
    if (!this.added.length) return;
    // Take the additions now: what add() records while this save waits for the lock goes to the next save.
    const batch = this.added.splice(0);
    try {
      await this.store.withLock(async () => {
        const current = await readRecord(this.store);
        for (const a of batch) merge(current, a.registry, a.repository, a.digests);
        await atomicWrite(join(this.store.root, FILE), `${JSON.stringify({ version: 1, registries: current })}\n`);
        this.data = current;
      });
    } catch (err) {
      this.added.unshift(...batch);
      throw err;
    }
  }
}

function merge(data: SourceMap, registry: string, repository: string, digests: Digest[]): void {
  let reg = data[registry];
  if (!reg) {
    const names = Object.keys(data);
    if (names.length >= MAX_REGISTRIES) delete data[names[0] as string];
    reg = {};
    data[registry] = reg;
  }
  for (const d of digests) {
    const repos = (reg[d] ?? []).filter((r) => r !== repository);
    delete reg[d]; // re-insert: insertion order is recency
    reg[d] = [repository, ...repos].slice(0, MAX_REPOS_PER_BLOB);
  }
  const keys = Object.keys(reg);
  for (let i = 0; i < keys.length - MAX_BLOBS_PER_REGISTRY; i++) delete reg[keys[i] as string];
}

async function readRecord(store: Store): Promise<SourceMap> {
  try {
    const doc = JSON.parse(await readFile(join(store.root, FILE), 'utf8')) as {
      version?: unknown;
      registries?: unknown;
    };
    if (doc?.version !== 1 || !doc.registries || typeof doc.registries !== 'object') return {};
    const out: SourceMap = {};
    for (const [reg, blobs] of Object.entries(doc.registries as Record<string, unknown>)) {
      if (!blobs || typeof blobs !== 'object') continue;
      const clean: Record<string, string[]> = {};
      for (const [d, repos] of Object.entries(blobs as Record<string, unknown>)) {
        if (/^sha256:[a-f0-9]{64}$/.test(d) && Array.isArray(repos))
          clean[d] = repos.filter((r): r is string => typeof r === 'string').slice(0, MAX_REPOS_PER_BLOB);
      }
      out[reg] = clean;
    }
    return out;
  } catch {
    return {};
  }
}

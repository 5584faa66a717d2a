// Shared pieces of the cache tests: two stores that hold the same busybox:test (two CI runners), a context made
// from a file table, and a build that sorts its filesystem steps into those that ran and those the cache gave.
import type { ExecutionContext } from 'ava';
import { cp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildOptions, BuildResult } from '../../builder/build.js';
import type { BuildEvent } from '../../builder/events.js';
import { compressImageLayers } from '../../layers/store/compress-layers.js';
import { Store } from '../../layers/store/store.js';
import { makeTempDir, removeDir } from '../helpers/index.js';
import { busyboxStore, verifiedBuild } from '../builder/build-harness.js';

export const EPOCH = 1_700_000_000;

/** MULTI is the two-stage Dockerfile the runner tests build: a builder stage and a final stage copying from it. */
export const MULTI = `FROM busybox:test AS builder
COPY a.txt /src/a.txt
RUN cat /src/a.txt > /out && echo built >> /out
FROM busybox:test
WORKDIR /app
COPY --from=builder /out /app/out
RUN wc -c /app/out > /app/size
`;

/** context writes `files` into a temp directory (removed after the test). */
export async function context(t: ExecutionContext, files: Record<string, string>): Promise<string> {
  const dir = await makeTempDir('tsbuild-cache-ctx-');
  t.teardown(() => removeDir(dir));
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  return dir;
}

/** runners makes the stores of runners A and B, each holding only the same busybox:test. */
export async function runners(t: ExecutionContext): Promise<[Store, Store]> {
  const a = await busyboxStore(t);
  const dir = await makeTempDir('tsbuild-store-b-');
  t.teardown(() => removeDir(dir));
  await cp(a.root, join(dir, 'store'), { recursive: true });
  return [a, await Store.open(join(dir, 'store'))];
}

export interface Run {
  result: BuildResult;
  /** filesystem steps (RUN, COPY, ADD, WORKDIR) that ran, sorted */
  ran: string[];
  /** filesystem steps the cache gave, sorted */
  cached: string[];
  warnings: string[];
  /** step names in the order they ended */
  order: Array<{ name: string; cached: boolean }>;
}

/** run builds (SOURCE_DATE_EPOCH fixed, the image verified) and sorts the filesystem steps. */
export async function run(t: ExecutionContext, opts: BuildOptions): Promise<Run> {
  const names = new Map<number, string>();
  const cached = new Set<number>();
  const done: number[] = [];
  const warnings: string[] = [];
  const onEvent = (e: BuildEvent): void => {
    if (e.type === 'step') names.set(e.id, e.name.replace(/^\[[^\]]*\d+\/\d+\] /, ''));
    if (e.type === 'cached') cached.add(e.id);
    if (e.type === 'done') done.push(e.id);
    if (e.type === 'warning') warnings.push(e.message);
  };
  const result = await verifiedBuild(t, { sourceDateEpoch: EPOCH, ...opts, onEvent });
  const fs = [...new Set(done)].filter((id) => /^(RUN|COPY|ADD|WORKDIR)/.test(names.get(id) ?? ''));
  const pick = (hit: boolean): string[] =>
    fs
      .filter((id) => cached.has(id) === hit)
      .map((id) => names.get(id)!)
      .sort();
  const order = done.map((id) => ({ name: names.get(id) ?? '', cached: cached.has(id) }));
  return { result, ran: pick(false), cached: pick(true), warnings, order };
}

/**
 * asCarried is the digest runner A's image has once its layers are compressed, as a cache (and `push`) carries them:
 * what runner B, building from that cache, must get. The image ID (config digest) is the same either way.
 */
export async function asCarried(store: Store, a: Run): Promise<string> {
  return (await compressImageLayers(store, a.result.descriptor, 'gzip')).descriptor.digest;
}

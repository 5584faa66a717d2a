// Registry transfer speed: push and pull of a >= 500 MB image (5 gzip layers of incompressible data) to and from a
// local docker-registry, tsbuild against `skopeo copy` in the same run. Every push goes to a fresh registry, every
// pull into a fresh store, so nothing is skipped. Prints medians and the tsbuild/skopeo ratio (target <= 1.0x).
// Run by hand: npm run build && npx tsx bench/registry.ts [layerMiB=110] [layers=5] [runs=3]
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { randomFillSync } from 'node:crypto';
import { promisify } from 'node:util';
import { tagImage, writeImage } from '../layers/store/image.js';
import { importImage } from '../layers/sources/import.js';
import { Store } from '../layers/store/store.js';
import type { Descriptor, Manifest } from '../layers/model/types.js';
import { startRegistry } from '../test/helpers/registry.js';

const exec = promisify(execFile);
const LAYER_MIB = Number(process.argv[2] ?? 110);
const LAYERS = Number(process.argv[3] ?? 5);
const RUNS = Number(process.argv[4] ?? 3);
const CLI = join(import.meta.dirname, '..', 'bin', 'tsbuild.js');

/** Teardowns collects what the registry helper registers, run when a measurement is over. */
class Teardowns {
  private fns: Array<() => unknown> = [];
  teardown(fn: () => unknown): void {
    this.fns.push(fn);
  }
  async run(): Promise<void> {
    for (const fn of this.fns.reverse()) await fn();
    this.fns = [];
  }
}

async function randomFile(path: string, mib: number): Promise<void> {
  const out = createWriteStream(path);
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < mib; i++) {
    randomFillSync(chunk);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

/** makeImage imports LAYERS directories of random data and stacks their layers into one image `bench:1`. */
async function makeImage(root: string, work: string): Promise<number> {
  const store = await Store.open(root);
  const layers = [];
  for (let i = 0; i < LAYERS; i++) {
    const dir = join(work, `layer${i}`);
    await mkdir(dir, { recursive: true });
    await randomFile(join(dir, `data${i}.bin`), LAYER_MIB);
    const r = await importImage(store, { source: dir, compression: 'gzip' });
    const manifest = await store.readJson<Manifest>(r.descriptor.digest);
    layers.push({ descriptor: manifest.layers[0] as Descriptor, diffId: r.diffId });
    await rm(dir, { recursive: true, force: true });
  }
  const { descriptor: desc } = await writeImage(store, {
    config: { architecture: 'amd64', os: 'linux', config: {} },
    layers,
  });
  await tagImage(store, desc, 'bench:1');
  return layers.reduce((n, l) => n + l.descriptor.size, 0);
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function tsbuild(args: string[]): Promise<void> {
  await exec(process.execPath, [CLI, ...args], { maxBuffer: 16 << 20 });
}

async function skopeo(args: string[]): Promise<void> {
  await exec('skopeo', ['--insecure-policy', ...args], { maxBuffer: 16 << 20 });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'tsbuild-bench-registry-'));
  const td = new Teardowns();
  try {
    const root = join(work, 'store');
    const t0 = performance.now();
    const bytes = await makeImage(root, work);
    console.log(
      `image: ${LAYERS} gzip layers, ${(bytes / 1e6).toFixed(0)} MB, made in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    const push = { tsbuild: [] as number[], skopeo: [] as number[] };
    const pull = { tsbuild: [] as number[], skopeo: [] as number[] };
    for (let run = 0; run < RUNS; run++) {
      for (const tool of run % 2 ? (['skopeo', 'tsbuild'] as const) : (['tsbuild', 'skopeo'] as const)) {
        const reg = await startRegistry(td);
        const ms =
          tool === 'tsbuild'
            ? await timed(() => tsbuild(['--root', root, 'push', 'bench:1', `${reg.host}/bench:1`]))
            : await timed(() =>
                skopeo(['copy', '--dest-tls-verify=false', `oci:${root}:bench:1`, `docker://${reg.host}/bench:1`]),
              );
        push[tool].push(ms);
        console.log(`push ${tool.padEnd(7)} run ${run + 1}: ${(ms / 1000).toFixed(2)} s`);
        await td.run();
      }
    }
    // one registry holding the image for the pulls
    const reg = await startRegistry(td);
    await tsbuild(['--root', root, 'push', 'bench:1', `${reg.host}/bench:1`]);
    for (let run = 0; run < RUNS; run++) {
      for (const tool of run % 2 ? (['skopeo', 'tsbuild'] as const) : (['tsbuild', 'skopeo'] as const)) {
        const dest = join(work, `pull-${tool}-${run}`);
        const ms =
          tool === 'tsbuild'
            ? await timed(() => tsbuild(['--root', dest, 'pull', `${reg.host}/bench:1`]))
            : await timed(() =>
                skopeo(['copy', '--src-tls-verify=false', `docker://${reg.host}/bench:1`, `oci:${dest}:bench`]),
              );
        pull[tool].push(ms);
        console.log(`pull ${tool.padEnd(7)} run ${run + 1}: ${(ms / 1000).toFixed(2)} s`);
        await rm(dest, { recursive: true, force: true });
      }
    }
    await td.run();
    const line = (what: string, m: { tsbuild: number[]; skopeo: number[] }): string => {
      const a = median(m.tsbuild);
      const b = median(m.skopeo);
      return `${what}: tsbuild ${(a / 1000).toFixed(2)} s (${(bytes / 1e6 / (a / 1000)).toFixed(0)} MB/s), skopeo ${(b / 1000).toFixed(2)} s (${(bytes / 1e6 / (b / 1000)).toFixed(0)} MB/s), ratio ${(a / b).toFixed(2)}x`;
    };
    console.log(line('push', push));
    console.log(line('pull', pull));
  } finally {
    await td.run();
    await rm(work, { recursive: true, force: true });
  }
}

await main();

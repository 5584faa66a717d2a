// Cache mounts shared through a build cache (issue 13, acceptance 4; `--cache-to …,mounts=true`): what runner A
// left in a `RUN --mount=type=cache` directory reaches runner B's RUN through the cache, owners, modes and symlinks
// kept; a non-empty local cache mount is never replaced; a hostile entry in an imported mount layer stays contained.
import test from 'ava';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { cacheMountDir } from '../../builder/steps/run-mounts.js';
import { hostileLayers } from '../../fixtures/hostile-layers.js';
import { MOUNT_ID_ANNOTATION } from '../../layers/cache/index.js';
import { parseCacheSpec } from '../../layers/cache/spec.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';
import { haveRegistry, startRegistry } from '../helpers/registry.js';
import { context, run, runners } from './runners.js';

// A's RUN fills the mount; B's RUN (another N, so it misses) checks what it finds there and fails when it is not A's
const DOCKERFILE = `FROM busybox:test
ARG N=1
ARG EXPECT
RUN --mount=type=cache,target=/var/cache/x,id=xcache,mode=0750,uid=42,gid=43 \\
    if [ "$N" = 1 ]; then \\
      echo from-A > /var/cache/x/seen && mkdir /var/cache/x/d && chown 1234:5678 /var/cache/x/d && \\
      chmod 0710 /var/cache/x/d && ln -s seen /var/cache/x/link; \\
    else \\
      test "$(cat /var/cache/x/seen)" = "$EXPECT" && \\
      test "$(stat -c %u:%g:%a /var/cache/x/d)" = 1234:5678:710 && \\
      test "$(readlink /var/cache/x/link)" = seen && \\
      test "$(stat -c %u:%g:%a /var/cache/x)" = 42:43:750; \\
    fi && echo "$N" > /n
`;

const rtest = haveRegistry ? rootTest : rootTest.skip;

rtest('mounts=true: a RUN --mount=type=cache on runner B sees what runner A left there', async (t) => {
  const [storeA, storeB] = await runners(t);
  const reg = await startRegistry(t);
  const ref = `${reg.host}/tsbuild/cache:mounts`;
  const ctx = await context(t, { Dockerfile: DOCKERFILE });
  const a = await run(t, {
    store: storeA,
    context: ctx,
    cacheTo: [parseCacheSpec(`type=registry,ref=${ref},mounts=true`, 'to')],
  });
  t.is(a.result.cache?.exported[0]?.mounts, 1, 'one cache mount exported');
  t.false(existsSync(cacheMountDir(storeB.root, 'xcache')), 'B has no such cache mount yet');
  const b = await run(t, {
    store: storeB,
    context: ctx,
    buildArgs: { N: '2', EXPECT: 'from-A' },
    cacheFrom: [parseCacheSpec(ref, 'from')],
  });
  t.is(b.ran.length, 1, 'the RUN ran, and its checks passed');
  t.deepEqual(
    b.warnings.filter((w) => !/were not consumed/.test(w)),
    [],
  );
});

rootTest('an imported cache mount never replaces a non-empty local one', async (t) => {
  const [storeA, storeB] = await runners(t);
  const dir = await makeTempDir('tsbuild-cache-dir-');
  t.teardown(() => removeDir(dir));
  const ctx = await context(t, { Dockerfile: DOCKERFILE });
  await run(t, { store: storeA, context: ctx, cacheTo: [parseCacheSpec(`type=local,dest=${dir},mounts=true`, 'to')] });
  // B's own build leaves its own files in the mount (N=1 writes from-A; then it is rewritten as B's)
  await run(t, { store: storeB, context: ctx });
  await writeFile(join(cacheMountDir(storeB.root, 'xcache'), 'seen'), 'from-B\n');
  const b = await run(t, {
    store: storeB,
    context: ctx,
    buildArgs: { N: '3', EXPECT: 'from-B' },
    cacheFrom: [parseCacheSpec(`type=local,src=${dir}`, 'from')],
  });
  t.is(b.ran.length, 1);
  t.is(await readFile(join(cacheMountDir(storeB.root, 'xcache'), 'seen'), 'utf8'), 'from-B\n');
});

for (const [name, make] of Object.entries(hostileLayers).slice(0, 6))
  rootTest(`a hostile cache mount layer (${name}) stays contained: one warning, nothing written outside`, async (t) => {
    const [storeA, storeB] = await runners(t);
    const dir = await makeTempDir('tsbuild-cache-dir-');
    t.teardown(() => removeDir(dir));
    const host = await makeTempDir('tsbuild-host-target-');
    t.teardown(() => removeDir(host));
    const ctx = await context(t, { Dockerfile: DOCKERFILE });
    await run(t, {
      store: storeA,
      context: ctx,
      cacheTo: [parseCacheSpec(`type=local,dest=${dir},mounts=true`, 'to')],
    });
    // replace the mount layer's blob by the hostile tar (the manifest and config point at the new digest)
    const blob = (d: string): string => join(dir, 'blobs/sha256', d.slice(7));
    const put = async (bytes: Buffer): Promise<{ digest: string; size: number }> => {
      const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      await writeFile(blob(digest), bytes);
      return { digest, size: bytes.length };
    };
    const tar = make(host);
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
    const manifest = JSON.parse(await readFile(blob(index.manifests[0].digest), 'utf8'));
    const layer = manifest.layers.find(
      (l: { annotations?: Record<string, string> }) => l.annotations?.[MOUNT_ID_ANNOTATION],
    );
    Object.assign(layer, await put(gzipSync(tar)));
    layer.annotations['containerd.io/uncompressed'] = `sha256:${createHash('sha256').update(tar).digest('hex')}`;
    index.manifests[0] = { ...index.manifests[0], ...(await put(Buffer.from(JSON.stringify(manifest)))) };
    await writeFile(join(dir, 'index.json'), JSON.stringify(index));

    const b = await run(t, {
      store: storeB,
      context: ctx,
      buildArgs: { N: '1' },
      cacheFrom: [parseCacheSpec(`type=local,src=${dir}`, 'from')],
    });
    t.deepEqual(await readdir(host), [], 'nothing was written outside the mount');
    const warned = b.warnings.filter((w) => /cache mount xcache not imported/.test(w));
    t.is(warned.length, 1, b.warnings.join('\n'));
    t.notRegex(warned[0]!, /\n/);
  });

test('mounts= is for --cache-to, true or false', (t) => {
  t.true((parseCacheSpec('type=local,dest=/x,mounts=true', 'to') as { mounts?: boolean }).mounts);
  t.throws(() => parseCacheSpec('type=local,src=/x,mounts=true', 'from'), { message: /mounts= belongs to --cache-to/ });
  t.throws(() => parseCacheSpec('type=local,dest=/x,mounts=yes', 'to'), { message: /mounts must be true or false/ });
  t.throws(() => parseCacheSpec('type=inline,mounts=true', 'to'), { message: /mounts=true needs type=registry/ });
});

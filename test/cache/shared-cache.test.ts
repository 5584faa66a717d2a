// The build cache shared between runners (issue 13): runner A builds with --cache-to into a real registry (Debian's
// docker-registry on 127.0.0.1) or an OCI layout directory; runner B, another store that never built anything,
// builds the same Dockerfile with --cache-from and runs no step, giving the same image digest (SOURCE_DATE_EPOCH).
// A missing cache is a warning; layer blobs are fetched only once every step is known to hit.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from '../../builder/build.js';
import { parseCacheSpec } from '../../layers/cache/spec.js';
import { listImages } from '../../layers/store/image.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';
import { haveRegistry, startRegistry } from '../helpers/registry.js';
import { busyboxStore } from '../builder/build-harness.js';
import { asCarried, context, EPOCH, MULTI, run, runners } from './runners.js';

const BUILDER_STEPS = ['COPY a.txt /src/a.txt', 'RUN cat /src/a.txt > /out && echo built >> /out'];
const FINAL_STEPS = ['WORKDIR /app', 'COPY --from=builder /out /app/out', 'RUN wc -c /app/out > /app/size'];
const sorted = (...lists: string[][]): string[] => lists.flat().sort();

const rtest = haveRegistry ? rootTest : rootTest.skip;

rtest('runner B hits every step of runner A through a registry cache (mode=max) and gets the same image', async (t) => {
  const [storeA, storeB] = await runners(t);
  const reg = await startRegistry(t);
  const ref = `${reg.host}/tsbuild/cache:main`;
  const ctx = await context(t, { Dockerfile: MULTI, 'a.txt': 'a\n' });
  const a = await run(t, {
    store: storeA,
    context: ctx,
    cacheTo: [parseCacheSpec(`type=registry,ref=${ref},mode=max`, 'to')],
  });
  t.deepEqual(a.ran, sorted(BUILDER_STEPS, FINAL_STEPS));
  t.is(a.result.cache?.exported.length, 1);

  const b = await run(t, { store: storeB, context: ctx, cacheFrom: [parseCacheSpec(ref, 'from')] });
  t.deepEqual(b.ran, [], 'no step runs on runner B');
  t.deepEqual(b.cached, sorted(BUILDER_STEPS, FINAL_STEPS));
  t.is(b.result.digest, await asCarried(storeA, a), 'the same image, its layers as the cache carries them');
  t.is(b.result.configDigest, a.result.configDigest, 'the same image ID');
  t.deepEqual(b.warnings, []);

  // one context file changes: B runs again from the COPY that reads it, and what depends on its result
  await writeFile(join(ctx, 'a.txt'), 'a changed\n');
  const c = await run(t, { store: storeB, context: ctx, cacheFrom: [parseCacheSpec(ref, 'from')] });
  t.deepEqual(c.cached, ['WORKDIR /app']);
  t.deepEqual(c.ran, sorted(BUILDER_STEPS, FINAL_STEPS.slice(1)));
});

rtest('mode=min exports only the final stage: runner B runs the builder stage and hits the rest', async (t) => {
  const [storeA, storeB] = await runners(t);
  const reg = await startRegistry(t);
  const ref = `${reg.host}/tsbuild/cache:min`;
  const ctx = await context(t, { Dockerfile: MULTI, 'a.txt': 'a\n' });
  const a = await run(t, {
    store: storeA,
    context: ctx,
    cacheTo: [parseCacheSpec(`type=registry,ref=${ref}`, 'to')],
  });
  const b = await run(t, {
    store: storeB,
    context: ctx,
    cacheFrom: [parseCacheSpec(`type=registry,ref=${ref}`, 'from')],
  });
  t.deepEqual(b.ran, sorted(BUILDER_STEPS));
  t.deepEqual(b.cached, sorted(FINAL_STEPS));
  t.is(b.result.digest, await asCarried(storeA, a));
  t.is(b.result.configDigest, a.result.configDigest);
});

rootTest('a cache in a local directory round-trips, and the first --cache-from that has a key wins', async (t) => {
  const [storeA, storeB] = await runners(t);
  const dir = await makeTempDir('tsbuild-cache-dir-');
  t.teardown(() => removeDir(dir));
  const ctx = await context(t, { Dockerfile: MULTI, 'a.txt': 'a\n' });
  const a = await run(t, {
    store: storeA,
    context: ctx,
    cacheTo: [parseCacheSpec(`type=local,dest=${dir},mode=max`, 'to')],
  });
  const b = await run(t, {
    store: storeB,
    context: ctx,
    cacheFrom: [
      parseCacheSpec(`type=local,src=${join(dir, 'absent')}`, 'from'),
      parseCacheSpec(`type=local,src=${dir}`, 'from'),
    ],
  });
  t.deepEqual(b.ran, []);
  t.is(b.result.digest, await asCarried(storeA, a));
  t.is(b.result.configDigest, a.result.configDigest);
  t.is(b.warnings.length, 1, 'the absent directory is one warning');
  t.regex(b.warnings[0]!, /^--cache-from type=local,.*absent: .*building without it$/);
});

rootTest('a missing registry cache is a one-line warning and the build goes on', async (t) => {
  const ctx = await context(t, { Dockerfile: MULTI, 'a.txt': 'a\n' });
  const missing = haveRegistry ? `${(await startRegistry(t)).host}/tsbuild/none:x` : '127.0.0.1:1/tsbuild/none:x';
  const r = await run(t, {
    store: await busyboxStore(t),
    context: ctx,
    cacheFrom: [parseCacheSpec(`type=registry,ref=${missing}`, 'from')],
  });
  t.deepEqual(r.ran, sorted(BUILDER_STEPS, FINAL_STEPS));
  t.is(r.warnings.length, 1);
  t.notRegex(r.warnings[0]!, /\n/);
  t.regex(r.warnings[0]!, /^--cache-from .*tsbuild\/none:x: .*building without it$/);
});

rootTest('a fully cached build fetches no layer blob before every step is known to hit', async (t) => {
  const [storeA, storeB] = await runners(t);
  const dir = await makeTempDir('tsbuild-cache-dir-');
  t.teardown(() => removeDir(dir));
  const single = `FROM busybox:test\nRUN echo one > /1\nCOPY a.txt /a.txt\nRUN cat /a.txt /1 > /2\n`;
  const ctx = await context(t, { Dockerfile: single, 'a.txt': 'a\n' });
  await run(t, {
    store: storeA,
    context: ctx,
    cacheTo: [parseCacheSpec(`type=local,dest=${dir}`, 'to')],
  });
  const b = await run(t, {
    store: storeB,
    context: ctx,
    cacheFrom: [parseCacheSpec(`type=local,src=${dir}`, 'from')],
  });
  t.deepEqual(b.ran, []);
  const firstFetch = b.order.findIndex((s) => s.name.startsWith('[internal] importing cache layer'));
  const lastHit = b.order.map((s) => s.cached).lastIndexOf(true);
  t.true(firstFetch > lastHit, `blobs are fetched after the last hit (${JSON.stringify(b.order)})`);
  t.is(b.result.cache?.fetched.blobs, 3, 'then each of the three layers once');
});

rootTest('a cache written as the older index form is read too', async (t) => {
  const [storeA, storeB] = await runners(t);
  const dir = await makeTempDir('tsbuild-cache-dir-');
  t.teardown(() => removeDir(dir));
  const ctx = await context(t, { Dockerfile: MULTI, 'a.txt': 'a\n' });
  const a = await run(t, {
    store: storeA,
    context: ctx,
    cacheTo: [parseCacheSpec(`type=local,dest=${dir},mode=max`, 'to')],
  });
  // rewrite the manifest as BuildKit's legacy form: an index listing the blobs and the config
  const { createHash } = await import('node:crypto');
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
  const top = index.manifests[0];
  const manifest = JSON.parse(await readFile(join(dir, 'blobs/sha256', top.digest.slice(7)), 'utf8'));
  const legacy = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [...manifest.layers, manifest.config],
    }),
  );
  const hex = createHash('sha256').update(legacy).digest('hex');
  await writeFile(join(dir, 'blobs/sha256', hex), legacy);
  index.manifests = [
    { ...top, mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${hex}`, size: legacy.length },
  ];
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  const b = await run(t, {
    store: storeB,
    context: ctx,
    cacheFrom: [parseCacheSpec(`type=local,src=${dir}`, 'from')],
  });
  t.deepEqual(b.ran, []);
  t.is(b.result.digest, await asCarried(storeA, a));
  t.is(b.result.configDigest, a.result.configDigest);
});

rootTest('a cache that names the wrong diffID for a layer fails the build before the store holds a lie', async (t) => {
  const [storeA, storeB] = await runners(t);
  const dir = await makeTempDir('tsbuild-cache-dir-');
  t.teardown(() => removeDir(dir));
  const ctx = await context(t, { Dockerfile: MULTI, 'a.txt': 'a\n' });
  await run(t, { store: storeA, context: ctx, cacheTo: [parseCacheSpec(`type=local,dest=${dir},mode=max`, 'to')] });
  const { createHash } = await import('node:crypto');
  const blob = (d: string): string => join(dir, 'blobs/sha256', d.slice(7));
  const put = async (bytes: Buffer): Promise<{ digest: string; size: number }> => {
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    await writeFile(blob(digest), bytes);
    return { digest, size: bytes.length };
  };
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
  const manifest = JSON.parse(await readFile(blob(index.manifests[0].digest), 'utf8'));
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8'));
  const wrong = `sha256:${'e'.repeat(64)}`;
  for (const l of config.layers) l.annotations = { ...l.annotations, diffID: wrong };
  manifest.config = { ...manifest.config, ...(await put(Buffer.from(JSON.stringify(config)))) };
  for (const l of manifest.layers) l.annotations = { ...l.annotations, 'containerd.io/uncompressed': wrong };
  index.manifests[0] = { ...index.manifests[0], ...(await put(Buffer.from(JSON.stringify(manifest)))) };
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  await t.throwsAsync(
    build({
      store: storeB,
      context: ctx,
      sourceDateEpoch: EPOCH,
      cacheFrom: [parseCacheSpec(`type=local,src=${dir}`, 'from')],
    }),
    { message: new RegExp(`uncompresses to sha256:[0-9a-f]{64}, not to the diffID ${wrong}`) },
  );
  const names = (await listImages(storeB)).map((i) => i.name);
  t.deepEqual(
    names.filter((n) => !n.includes('busybox')),
    [],
    'nothing was named',
  );
});

// What a cache export writes: an OCI image manifest that validates against the image-spec schemas, whose config is
// `application/vnd.buildkit.cacheconfig.v0` with `layers` and `records` keyed by tsbuild's cache keys, and whose
// layers carry `containerd.io/uncompressed` and `buildkit/createdat`; the same through a registry (read back over
// the distribution API, and by skopeo when it is installed). Also: which --cache-from/--cache-to values are refused,
// and the image pushed after a registry cache hit mounts the cached layers instead of uploading them.
import test, { type ExecutionContext } from 'ava';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from '../../builder/build.js';
import {
  CACHE_CONFIG_MEDIA_TYPE,
  CREATED_AT_ANNOTATION,
  type CacheConfigV0,
  UNCOMPRESSED_ANNOTATION,
} from '../../layers/cache/index.js';
import { parseCacheSpec } from '../../layers/cache/spec.js';
import type { Descriptor, Index, Manifest } from '../../layers/model/types.js';
import { pushImage } from '../../layers/registry/push.js';
import { compressImageLayers } from '../../layers/store/compress-layers.js';
import { Store } from '../../layers/store/store.js';
import { makeTempDir, removeDir, rootTest, runCommand, tsbuild } from '../helpers/index.js';
import { haveImageSchemas, validateOci } from '../helpers/oci-schema.js';
import { haveRegistry, haveSkopeo, startRegistry } from '../helpers/registry.js';
import { busyboxStore } from '../builder/build-harness.js';

const DOCKERFILE = `FROM busybox:test
RUN echo one > /1
COPY a.txt /a.txt
RUN true
`;

async function context(t: ExecutionContext): Promise<string> {
  const dir = await makeTempDir('tsbuild-cache-fmt-ctx-');
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'Dockerfile'), DOCKERFILE);
  await writeFile(join(dir, 'a.txt'), 'a\n');
  return dir;
}

const blob = (dir: string, digest: string): Promise<Buffer> => readFile(join(dir, 'blobs', 'sha256', digest.slice(7)));

/** carriedLayers are the image's layer digests as a cache carries them: compressed (the build keeps them uncompressed). */
async function carriedLayers(store: Store, image: Descriptor): Promise<string[]> {
  const top = (await compressImageLayers(store, image, 'gzip')).descriptor;
  return (await store.readJson<Manifest>(top.digest)).layers.map((l) => l.digest);
}

/** checkCache asserts the manifest and config of a cache made from DOCKERFILE's three steps. */
function checkCache(t: ExecutionContext, manifest: Manifest, config: CacheConfigV0, imageLayerDigests: string[]): void {
  if (haveImageSchemas) t.deepEqual(validateOci('manifest', manifest), [], 'the manifest validates');
  t.is(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  t.is(manifest.config.mediaType, CACHE_CONFIG_MEDIA_TYPE);
  // every step makes a layer: RUN echo, COPY, and `RUN true` an empty one (as BuildKit)
  t.deepEqual(
    manifest.layers.map((l) => l.digest),
    imageLayerDigests.slice(1),
    'the layers are the build steps’ blobs (compressed), not the base image’s',
  );
  for (const l of manifest.layers) {
    t.regex(l.annotations?.[UNCOMPRESSED_ANNOTATION] ?? '', /^sha256:[a-f0-9]{64}$/);
    t.is(l.annotations?.[CREATED_AT_ANNOTATION], '2023-11-14T22:13:20Z', 'SOURCE_DATE_EPOCH');
  }
  t.is(config.layers?.length, 3);
  t.deepEqual(
    config.layers?.map((l) => [l.blob, l.parent, l.annotations?.diffID]),
    manifest.layers.map((l) => [l.digest, -1, l.annotations?.[UNCOMPRESSED_ANNOTATION]]),
  );
  t.is(config.records?.length, 3);
  t.is(config.records?.filter((r) => !r.layers).length, 0, 'even the step that changed nothing has its layer');
  for (const r of config.records ?? []) t.regex(r.digest, /^sha256:[a-f0-9]{64}$/);
}

rootTest('a local cache is an OCI layout holding a cacheconfig manifest with annotated layers', async (t) => {
  const dir = await makeTempDir('tsbuild-cache-dir-');
  t.teardown(() => removeDir(dir));
  const store = await busyboxStore(t);
  const r = await build({
    store,
    context: await context(t),
    sourceDateEpoch: 1_700_000_000,
    cacheTo: [parseCacheSpec(`type=local,dest=${dir},tag=v1`, 'to')],
  });
  t.deepEqual(JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as Index;
  if (haveImageSchemas) t.deepEqual(validateOci('index', index), []);
  t.is(index.manifests.length, 1);
  t.is(index.manifests[0]!.annotations?.['org.opencontainers.image.ref.name'], 'v1');
  t.is(index.manifests[0]!.digest, r.cache?.exported[0]?.digest);
  const manifest = JSON.parse((await blob(dir, index.manifests[0]!.digest)).toString()) as Manifest;
  const config = JSON.parse((await blob(dir, manifest.config.digest)).toString()) as CacheConfigV0;
  checkCache(t, manifest, config, await carriedLayers(store, r.descriptor));
  for (const l of manifest.layers) t.is((await blob(dir, l.digest)).length, l.size, 'every layer blob is there');
});

const rtest = haveRegistry ? rootTest : rootTest.skip;

rtest('a registry cache is a manifest the registry serves with the cacheconfig media type', async (t) => {
  const reg = await startRegistry(t);
  const ref = `${reg.host}/tsbuild/cache:fmt`;
  const store = await busyboxStore(t);
  const r = await build({
    store,
    context: await context(t),
    sourceDateEpoch: 1_700_000_000,
    cacheTo: [parseCacheSpec(`type=registry,ref=${ref},mode=max,oci-mediatypes=true,image-manifest=true`, 'to')],
  });
  const res = await fetch(`http://${reg.host}/v2/tsbuild/cache/manifests/fmt`, {
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  t.is(res.status, 200);
  t.is(res.headers.get('docker-content-digest'), r.cache?.exported[0]?.digest);
  const manifest = (await res.json()) as Manifest;
  const config = (await (
    await fetch(`http://${reg.host}/v2/tsbuild/cache/blobs/${manifest.config.digest}`)
  ).json()) as CacheConfigV0;
  checkCache(t, manifest, config, await carriedLayers(store, r.descriptor));
  if (haveSkopeo) {
    const raw = await runCommand('/usr/bin/skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
    t.is(raw.code, 0, raw.stderr);
    t.is((JSON.parse(raw.stdout) as Manifest).config.mediaType, CACHE_CONFIG_MEDIA_TYPE, 'skopeo inspect --raw');
  }
});

rtest('pushing the image after a registry cache hit mounts the cached layers from the cache repository', async (t) => {
  const reg = await startRegistry(t);
  const ref = `${reg.host}/tsbuild/cache:main`;
  const a = await busyboxStore(t);
  const dir = await makeTempDir('tsbuild-store-b-');
  t.teardown(() => removeDir(dir));
  await cp(a.root, join(dir, 'store'), { recursive: true });
  const b = await Store.open(join(dir, 'store'));
  const ctx = await context(t);
  await build({ store: a, context: ctx, cacheTo: [parseCacheSpec(`type=registry,ref=${ref}`, 'to')] });
  const rb = await build({
    store: b,
    context: ctx,
    tags: ['app:1'],
    cacheFrom: [parseCacheSpec(ref, 'from')],
  });
  t.is(rb.cache?.fetched.blobs, 3);
  const pushed = await pushImage(b, 'app:1', `${reg.host}/tsbuild/app:1`);
  t.is(pushed.blobs.mounted, 3, 'the three step layers are mounted from tsbuild/cache');
  t.is(pushed.blobs.uploaded, 2, 'only the base layer and the config are uploaded');
});

const refused = test.macro((t, value: string, direction: 'from' | 'to', message: RegExp) => {
  const err = t.throws(() => parseCacheSpec(value, direction));
  t.regex(err?.message ?? '', message);
  t.is((err as { code?: string })?.code, 'E_INVALID');
});

test(
  '--cache-from mounts=true is refused',
  refused,
  'type=local,src=/tmp/x,mounts=true',
  'from',
  /mounts= belongs to --cache-to/,
);
test(
  '--cache-to compression= is refused',
  refused,
  'type=registry,ref=r/c,compression=zstd',
  'to',
  /compression= is not supported/,
);
test('--cache-to type=inline,mode=max is refused', refused, 'type=inline,mode=max', 'to', /mode=min only/);
test(
  '--cache-to oci-mediatypes=false is refused',
  refused,
  'type=registry,ref=r/c,oci-mediatypes=false',
  'to',
  /oci-mediatypes= is not supported as false/,
);
test('--cache-from mode= is refused', refused, 'type=registry,ref=r/c,mode=max', 'from', /mode= belongs to --cache-to/);
test('--cache-to type=gha is refused', refused, 'type=gha', 'to', /type must be registry, local or inline/);
test('an unknown option is refused', refused, 'type=local,dest=/x,frob=1', 'to', /frob= is not a known option/);
test('--cache-to needs a type', refused, 'r/c:tag', 'to', /give type=registry/);

test('a bare --cache-from image reference reads as type=registry', (t) => {
  t.deepEqual(parseCacheSpec('localhost:5000/app:cache', 'from'), {
    type: 'registry',
    ref: 'localhost:5000/app:cache',
    mode: 'min',
    ignoreError: false,
  });
});

test('the CLI refuses an unsupported cache option with a one-line error and exit 1', async (t) => {
  const r = await tsbuild(['build', '--cache-to', 'type=local,dest=/tmp/never,compression=zstd', '.']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^error: --cache-to type=local,dest=\/tmp\/never,compression=zstd: compression= is not supported/);
});

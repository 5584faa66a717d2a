// Limits against a hostile or broken registry (issue 14, part 4), served by a small mock registry on 127.0.0.1: a
// server that drips its answer (never idle, never done) fails on the transfer floor, set low here through
// TSBUILD_REGISTRY_MIN_RATE / TSBUILD_REGISTRY_GRACE; absurd declared sizes are refused before a byte is asked for;
// a Content-Length over the declared size is refused before the body is read. The index stays untouched.
import test from 'ava';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import { tarSync } from '../../fixtures/hostile-layers.js';
import { type Handler, serve } from './util.js';
import { freeBytes } from '../../layers/limits.js';
import { pullImage, type PullOptions } from '../../layers/registry/pull.js';
import { transferFloor } from '../../layers/registry/transfer-floor.js';
import { Store } from '../../layers/store/store.js';
import { MediaType } from '../../layers/model/types.js';
import { newStoreRoot } from '../helpers/images.js';

const sha = (b: Buffer | string): `sha256:${string}` => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** drip writes one byte every `ms` until the client goes away. */
function drip(res: http.ServerResponse, ms = 150): void {
  const timer = setInterval(() => res.write('x'), ms);
  res.on('close', () => clearInterval(timer));
}

/** an image whose layers are given (descriptor sizes may lie), its config real */
function image(layers: Array<{ digest: `sha256:${string}`; size: number }>) {
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: sha(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: MediaType.OciLayerGzip, ...l })),
    }),
  );
  return { config, manifest };
}

const realLayer = gzipSync(tarSync([{ name: 'a', data: 'a\n' }]));

/** registry serves /v2/, the manifest as `repo:1`, the config, and hands layer requests to `layer`. */
function registry(img: ReturnType<typeof image>, layer: Handler, manifest?: Handler): Handler {
  return (req, res) => {
    const url = req.url ?? '/';
    if (url === '/v2/') return void res.end('{}');
    if (url === '/v2/repo/manifests/1') {
      if (manifest) return manifest(req, res);
      res.writeHead(200, { 'Content-Type': MediaType.OciManifest, 'Content-Length': img.manifest.length });
      return void res.end(img.manifest);
    }
    if (url === `/v2/repo/blobs/${sha(img.config)}`) {
      res.writeHead(200, { 'Content-Length': img.config.length });
      return void res.end(img.config);
    }
    if (url.startsWith('/v2/repo/blobs/')) return layer(req, res);
    res.writeHead(404);
    res.end();
  };
}

const base: PullOptions = {
  credentials: { username: 'u', password: 'p' },
  retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 },
};
/** a floor of 1000 bytes/s after 1 s, through the environment */
const slowEnv = { ...process.env, TSBUILD_REGISTRY_MIN_RATE: '1000', TSBUILD_REGISTRY_GRACE: '1' };

async function leftovers(store: Store): Promise<string[]> {
  return (await readdir(store.blobDir)).filter((n) => n.startsWith('.tmp-'));
}

test('a registry that drips a blob one byte at a time fails on the transfer floor, naming the blob', async (t) => {
  t.timeout(30_000, 'the drip must not hang the pull');
  const img = image([{ digest: sha(realLayer), size: realLayer.length }]);
  const reg = await serve(
    t,
    registry(img, (_req, res) => {
      res.writeHead(200, { 'Content-Length': realLayer.length });
      drip(res);
    }),
  );
  const store = await Store.open(await newStoreRoot(t));
  const err = await t.throwsAsync(pullImage(store, `${reg.host}/repo:1`, { ...base, env: slowEnv }), {
    code: 'E_TOO_SLOW',
    message: new RegExp(
      `^pulling blob ${sha(realLayer)} from ${reg.host}/repo: only \\d+ bytes in [\\d.]+ s, below the floor of 1000 bytes/s after 1 s`,
    ),
  });
  t.regex((err as { hint?: string }).hint ?? '', /TSBUILD_REGISTRY_MIN_RATE/);
  t.is((await store.readIndex()).manifests.length, 0);
  t.deepEqual(await leftovers(store), []);
});

test('a registry that drips a manifest fails on the transfer floor, naming the manifest', async (t) => {
  t.timeout(30_000, 'the drip must not hang the pull');
  const img = image([{ digest: sha(realLayer), size: realLayer.length }]);
  const reg = await serve(
    t,
    registry(
      img,
      () => {},
      (_req, res) => {
        res.writeHead(200, { 'Content-Type': MediaType.OciManifest, 'Content-Length': img.manifest.length });
        drip(res);
      },
    ),
  );
  const store = await Store.open(await newStoreRoot(t));
  await t.throwsAsync(pullImage(store, `${reg.host}/repo:1`, { ...base, env: slowEnv }), {
    code: 'E_TOO_SLOW',
    message: new RegExp(`^pulling manifest ${reg.host}/repo:1: only \\d+ bytes in`),
  });
  t.is((await store.readIndex()).manifests.length, 0);
});

test('a layer declaring 10^15 bytes is refused before it is requested', async (t) => {
  t.timeout(30_000);
  const fake = sha('huge');
  const img = image([{ digest: fake, size: 1e15 }]);
  let layerRequests = 0;
  const reg = await serve(
    t,
    registry(img, (_req, res) => {
      layerRequests++;
      res.writeHead(200, { 'Content-Length': 1 << 20 });
      res.end(Buffer.alloc(1 << 20));
    }),
  );
  const store = await Store.open(await newStoreRoot(t));
  const err = await t.throwsAsync(pullImage(store, `${reg.host}/repo:1`, base), {
    code: 'E_LIMIT',
    message: `blob ${fake} of ${reg.host}/repo declares 1000000000000000 bytes, more than the 68719476736-byte limit: refusing`,
  });
  t.regex((err as { hint?: string }).hint ?? '', /TSBUILD_MAX_BLOB_SIZE/);
  t.is(layerRequests, 0);
  t.deepEqual(await leftovers(store), []);
  t.is((await store.readIndex()).manifests.length, 0);
});

test('a layer larger than the free space of the store is refused before it is requested', async (t) => {
  t.timeout(30_000);
  const fake = sha('larger than the disk');
  const size = 2 ** 52;
  const img = image([{ digest: fake, size }]);
  let layerRequests = 0;
  const reg = await serve(
    t,
    registry(img, (_req, res) => {
      layerRequests++;
      res.writeHead(500);
      res.end();
    }),
  );
  const store = await Store.open(await newStoreRoot(t));
  const env = { ...process.env, TSBUILD_MAX_BLOB_SIZE: String(2 ** 60) };
  await t.throwsAsync(pullImage(store, `${reg.host}/repo:1`, { ...base, env }), {
    code: 'E_LIMIT',
    message: new RegExp(
      `^blob ${fake} of ${reg.host}/repo declares ${size} bytes, but only \\d+ bytes are free on the filesystem of ${store.blobDir}: refusing$`,
    ),
  });
  t.is(layerRequests, 0);
});

test('layers that fit the free space one by one but not together are refused before any is requested', async (t) => {
  t.timeout(30_000);
  const store = await Store.open(await newStoreRoot(t));
  const each = Math.floor((await freeBytes(store.blobDir)) * 0.6);
  const img = image([
    { digest: sha('first half'), size: each },
    { digest: sha('second half'), size: each },
  ]);
  let layerRequests = 0;
  const reg = await serve(
    t,
    registry(img, (_req, res) => {
      layerRequests++;
      res.writeHead(500);
      res.end();
    }),
  );
  const env = { ...process.env, TSBUILD_MAX_BLOB_SIZE: String(2 ** 60) };
  await t.throwsAsync(pullImage(store, `${reg.host}/repo:1`, { ...base, env }), {
    code: 'E_LIMIT',
    message: new RegExp(
      `^the 3 blobs of ${reg.host}/repo:1 to download declare \\d+ bytes, but only \\d+ bytes are free`,
    ),
  });
  t.is(layerRequests, 0);
});

test('a Content-Length over the declared size is refused before the body is read', async (t) => {
  t.timeout(30_000, 'the body must not be waited for');
  const img = image([{ digest: sha(realLayer), size: realLayer.length }]);
  const reg = await serve(
    t,
    registry(img, (_req, res) => {
      res.writeHead(200, { 'Content-Length': 1e12 });
      drip(res);
    }),
  );
  const store = await Store.open(await newStoreRoot(t));
  await t.throwsAsync(pullImage(store, `${reg.host}/repo:1`, base), {
    code: 'E_DIGEST_MISMATCH',
    message: `${reg.host}/repo served a wrong blob ${sha(realLayer)}: it has 1000000000000 bytes, not ${realLayer.length}`,
  });
  t.deepEqual(await leftovers(store), []);
});

test('an index whose child manifest declares 10^15 bytes is refused before the child is requested', async (t) => {
  const child = sha('child');
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        {
          mediaType: MediaType.OciManifest,
          digest: child,
          size: 1e15,
          platform: { os: 'linux', architecture: 'amd64' },
        },
      ],
    }),
  );
  const reg = await serve(t, (req, res) => {
    if (req.url === '/v2/') return void res.end('{}');
    if (req.url === '/v2/repo/manifests/1') {
      res.writeHead(200, { 'Content-Type': MediaType.OciIndex });
      return void res.end(index);
    }
    res.writeHead(200, { 'Content-Type': MediaType.OciManifest });
    res.end(Buffer.alloc(5 << 20, 0x20));
  });
  const store = await Store.open(await newStoreRoot(t));
  await t.throwsAsync(pullImage(store, `${reg.host}/repo:1`, base), {
    code: 'E_MANIFEST_INVALID',
    message: /its descriptor declares 1000000000000000 bytes, more than the 4194304-byte limit of manifests/,
  });
  t.false(
    reg.seen.some((r) => `${r.method} ${r.url}`.includes(child)),
    'the child was not requested',
  );
});

test('the transfer floor defaults to 16 KiB/s after 60 s, and bad values are errors', (t) => {
  t.deepEqual(transferFloor({}), { graceMs: 60_000, minBytesPerSec: 16_384 });
  t.deepEqual(transferFloor({ TSBUILD_REGISTRY_MIN_RATE: '500', TSBUILD_REGISTRY_GRACE: '2.5' }), {
    graceMs: 2500,
    minBytesPerSec: 500,
  });
  t.throws(() => transferFloor({ TSBUILD_REGISTRY_MIN_RATE: 'fast' }), { message: /TSBUILD_REGISTRY_MIN_RATE/ });
  t.throws(() => transferFloor({ TSBUILD_REGISTRY_GRACE: '-1' }), { message: /TSBUILD_REGISTRY_GRACE/ });
});

// Registry replies as hostile input, served by a small mock registry on 127.0.0.1 (for what docker-registry 2.8
// cannot be made to do): redirects to another host (no Authorization may follow), redirect loops, oversized or
// malformed manifests, a manifest that does not match its digest, schema 1, missing platforms, oversized blobs,
// Warning headers. Every failure leaves the store's index untouched.
import test from 'ava';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import { tarSync } from '../../fixtures/hostile-layers.js';
import { type Handler, serve } from './util.js';
import { pullImage } from '../../layers/registry/pull.js';
import { backoffMs, DEFAULT_RETRY, retryAfterMs } from '../../layers/registry/retry.js';
import type { TransferEvent } from '../../layers/registry/events.js';
import { getImage } from '../../layers/store/image.js';
import { Store } from '../../layers/store/store.js';
import { verifyImage } from '../../layers/store/verify.js';
import { MediaType } from '../../layers/model/types.js';
import { newStoreRoot } from '../helpers/images.js';

type Teardown = { teardown(fn: () => unknown): void };

const sha = (b: Buffer | string): `sha256:${string}` => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** a tiny valid image: config + one (fake) layer + manifest */
function image(arch = 'amd64') {
  // A real gzipped layer tar with its DiffID, so that a pulled image passes verifyImage.
  const tar = tarSync([{ name: 'arch', data: `${arch}\n` }]);
  const layer = gzipSync(tar);
  const config = Buffer.from(
    JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(tar)] } }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: sha(config), size: config.length },
      layers: [{ mediaType: MediaType.OciLayerGzip, digest: sha(layer), size: layer.length }],
    }),
  );
  return {
    layer,
    config,
    manifest,
    blobs: new Map([
      [sha(layer), layer],
      [sha(config), config],
    ]),
  };
}

/** registryHandler serves /v2/, one repository's manifests by tag or digest, and its blobs. */
function registryHandler(
  manifests: Record<string, { body: Buffer; type: string }>,
  blobs: Map<string, Buffer>,
  extra?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean,
): Handler {
  return (req, res) => {
    if (extra?.(req, res)) return;
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/v2/') return void res.end('{}');
    const m = /^\/v2\/repo\/(manifests|blobs)\/(.+)$/.exec(url.pathname);
    if (m?.[1] === 'manifests' && manifests[m[2] as string]) {
      const doc = manifests[m[2] as string] as { body: Buffer; type: string };
      res.writeHead(200, { 'Content-Type': doc.type, 'Content-Length': doc.body.length });
      return void res.end(req.method === 'HEAD' ? undefined : doc.body);
    }
    if (m?.[1] === 'blobs' && blobs.has(m[2] as string)) {
      const b = blobs.get(m[2] as string) as Buffer;
      res.writeHead(200, { 'Content-Length': b.length });
      return void res.end(b);
    }
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'nope' }] }));
  };
}

async function freshStore(t: Teardown): Promise<Store> {
  return Store.open(await newStoreRoot(t));
}

const fast = { retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 } };

test('a blob redirected to another host is fetched there without the Authorization header', async (t) => {
  const img = image();
  const cdn = await serve(t, (req, res) => {
    const d = new URL(req.url ?? '/', 'http://x').pathname.slice(1);
    const b = img.blobs.get(d as `sha256:${string}`);
    res.writeHead(b ? 200 : 404);
    res.end(b);
  });
  const reg = await serve(
    t,
    registryHandler({ '1': { body: img.manifest, type: MediaType.OciManifest } }, new Map(), (req, res) => {
      if (req.headers.authorization !== `Basic ${Buffer.from('u:p').toString('base64')}`) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="mock"' });
        res.end();
        return true;
      }
      const m = /^\/v2\/repo\/blobs\/(sha256:[a-f0-9]+)$/.exec(req.url ?? '');
      if (m) {
        res.writeHead(307, { Location: `http://${cdn.host}/${m[1]}` });
        res.end();
        return true;
      }
      return false;
    }),
  );
  const store = await freshStore(t);
  const r = await pullImage(store, `${reg.host}/repo:1`, { credentials: { username: 'u', password: 'p' }, ...fast });
  t.is(r.descriptor.digest, sha(img.manifest));
  t.deepEqual(await verifyImage(store, await getImage(store, r.name)), []);
  t.is(cdn.seen.length, 2);
  t.true(
    cdn.seen.every((q) => q.headers.authorization === undefined),
    'no credentials went to the other host',
  );
  t.true(reg.seen.some((q) => q.headers.authorization?.startsWith('Basic ')));
});

test('a redirect loop ends after a bounded number of hops and stores nothing', async (t) => {
  const img = image();
  const reg = await serve(
    t,
    registryHandler({ '1': { body: img.manifest, type: MediaType.OciManifest } }, new Map(), (req, res) => {
      if (req.url?.includes('/blobs/')) {
        res.writeHead(302, { Location: req.url });
        res.end();
        return true;
      }
      return false;
    }),
  );
  const store = await freshStore(t);
  await t.throwsAsync(pullImage(store, `${reg.host}/repo:1`, fast), {
    code: 'E_REDIRECT',
    message: /more than 5 redirects/,
  });
  t.is((await store.readIndex()).manifests.length, 0);
  t.true(reg.seen.length < 40, `${reg.seen.length} requests`);
});

const refused = test.macro({
  async exec(
    t,
    serveManifest: (img: ReturnType<typeof image>) => {
      ref: string;
      manifests: Record<string, { body: Buffer; type: string }>;
    },
    message: RegExp,
  ) {
    const img = image();
    const { ref, manifests } = serveManifest(img);
    const reg = await serve(t, registryHandler(manifests, img.blobs));
    const store = await freshStore(t);
    await t.throwsAsync(pullImage(store, `${reg.host}/repo${ref}`, fast), { message });
    t.is((await store.readIndex()).manifests.length, 0, 'nothing is named');
  },
  title: (provided = '') => `pull refuses ${provided}`,
});

test(
  'a manifest larger than 4 MiB',
  refused,
  () => ({ ref: ':big', manifests: { big: { body: Buffer.alloc(5 << 20, 0x20), type: MediaType.OciManifest } } }),
  /larger than 4194304 bytes/,
);
test(
  'a manifest that is not JSON',
  refused,
  () => ({
    ref: ':bad',
    manifests: { bad: { body: Buffer.from('{"schemaVersion": 2,'), type: MediaType.OciManifest } },
  }),
  /not valid JSON/,
);
test(
  'a manifest pulled by digest that hashes to something else',
  refused,
  (img) => {
    const other = sha('something else');
    return { ref: `@${other}`, manifests: { [other]: { body: img.manifest, type: MediaType.OciManifest } } };
  },
  /served a manifest that hashes to sha256:/,
);
test(
  'a Docker schema 1 manifest',
  refused,
  () => ({
    ref: ':old',
    manifests: {
      old: {
        body: Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'repo', tag: 'old', fsLayers: [] })),
        type: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
      },
    },
  }),
  /schema 1 manifests are not supported/,
);
test(
  'a manifest with an unknown media type',
  refused,
  () => ({
    ref: ':odd',
    manifests: {
      odd: {
        body: Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/x-odd' })),
        type: 'application/x-odd',
      },
    },
  }),
  /unsupported manifest type "application\/x-odd"/,
);
test(
  'a blob longer than its descriptor says',
  refused,
  (img) => {
    img.blobs.set(sha(img.layer), Buffer.concat([img.layer, Buffer.from('trailing')]));
    return { ref: ':1', manifests: { '1': { body: img.manifest, type: MediaType.OciManifest } } };
  },
  /served a wrong blob sha256:[a-f0-9]{64}: it has \d+ bytes, not \d+/,
);
test(
  'a manifest whose layer digest is not sha256',
  refused,
  (img) => {
    const doc = JSON.parse(img.manifest.toString()) as { layers: Array<{ digest: string }> };
    (doc.layers[0] as { digest: string }).digest = `sha512:${'a'.repeat(128)}`;
    return {
      ref: ':sha512',
      manifests: { sha512: { body: Buffer.from(JSON.stringify(doc)), type: MediaType.OciManifest } },
    };
  },
  /invalid or unsupported digest in layer 0/,
);

function indexOf(
  children: Array<{ img: ReturnType<typeof image>; platform: { os: string; architecture: string; variant?: string } }>,
): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: children.map((c) => ({
        mediaType: MediaType.OciManifest,
        digest: sha(c.img.manifest),
        size: c.img.manifest.length,
        platform: c.platform,
      })),
    }),
  );
}

test('an index gives the manifest of the asked platform, and the stored descriptor says which platform', async (t) => {
  const amd = image('amd64');
  const arm = image('arm64');
  const index = indexOf([
    { img: amd, platform: { os: 'linux', architecture: 'amd64' } },
    { img: arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ]);
  const reg = await serve(
    t,
    registryHandler(
      {
        multi: { body: index, type: MediaType.OciIndex },
        [sha(amd.manifest)]: { body: amd.manifest, type: MediaType.OciManifest },
        [sha(arm.manifest)]: { body: arm.manifest, type: MediaType.OciManifest },
      },
      new Map([...amd.blobs, ...arm.blobs]),
    ),
  );
  const store = await freshStore(t);
  const r = await pullImage(store, `${reg.host}/repo:multi`, {
    platform: { os: 'linux', architecture: 'arm64' },
    ...fast,
  });
  t.is(r.descriptor.digest, sha(arm.manifest));
  t.deepEqual(await verifyImage(store, await getImage(store, r.name)), []);
  t.deepEqual(r.descriptor.platform, { os: 'linux', architecture: 'arm64', variant: 'v8' });
  t.false(await store.hasBlob(sha(amd.layer)), 'the other platform is not downloaded');
  await t.throwsAsync(
    pullImage(store, `${reg.host}/repo:multi`, { platform: { os: 'linux', architecture: 's390x' }, ...fast }),
    {
      code: 'E_NOT_FOUND',
      message: /a linux\/s390x manifest in 127\.0\.0\.1:\d+\/repo:multi not found/,
    },
  );
});

test('Warning headers of a registry are reported, never acted upon', async (t) => {
  const img = image();
  const reg = await serve(
    t,
    registryHandler({ '1': { body: img.manifest, type: MediaType.OciManifest } }, img.blobs, (_req, res) => {
      res.setHeader('Warning', '299 - "this repository is deprecated"');
      return false;
    }),
  );
  const events: TransferEvent[] = [];
  const store = await freshStore(t);
  const r = await pullImage(store, `${reg.host}/repo:1`, { onEvent: (e) => events.push(e), ...fast });
  t.deepEqual(await verifyImage(store, await getImage(store, r.name)), []);
  t.true(events.some((e) => e.type === 'warning' && e.message.endsWith('this repository is deprecated')));
});

test('Retry-After is read as seconds or a date and capped; back-off grows and is bounded', (t) => {
  t.is(retryAfterMs('2'), 2000);
  const fromDate = retryAfterMs(new Date(Date.now() + 5000).toUTCString()) as number;
  t.true(fromDate > 3000 && fromDate <= 5000, `${fromDate}`);
  t.is(retryAfterMs('86400'), DEFAULT_RETRY.maxRetryAfterMs);
  t.is(retryAfterMs('soon'), undefined);
  for (let i = 1; i < 30; i++) t.true(backoffMs(i) <= DEFAULT_RETRY.maxDelayMs);
  t.true(backoffMs(1) <= DEFAULT_RETRY.baseDelayMs);
});

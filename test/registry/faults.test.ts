// Faults between tsbuild and a real registry, injected by a proxy: 500s, 429 with Retry-After, connections cut in
// the middle of a blob (upload and download), a lost chunk, and a wrong blob. Push and pull must still complete
// with correct digests, or (wrong blob) fail naming the blob and store nothing.
import test from 'ava';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { haveRegistry, startRegistry } from '../helpers/registry.js';
import { isBlobData, type SeenRequest, startFaultProxy } from './fault-proxy.js';
import { anotherStore, busyboxImage, imageProblems, indexEntries, manifestOf, newCtx } from './util.js';

const rtest = haveRegistry ? test : test.skip;

const isManifestPut = (r: SeenRequest): boolean => r.method === 'PUT' && r.path.includes('/manifests/');

rtest('push and pull complete when every third request answers 500', async (t) => {
  const reg = await startRegistry(t);
  const proxy = await startFaultProxy(t, reg.port, (r) => (r.n % 3 === 0 ? { status: 500 } : undefined));
  const a = await newCtx(t);
  const name = `${proxy.host}/faults/five:1`;
  const digest = await busyboxImage(t, a, name);
  t.is((await a.ok(['push', name])).trim(), digest);
  const b = await anotherStore(t, a);
  t.is((await b.ok(['pull', name])).trim(), digest);
  t.deepEqual(await imageProblems(b.root, name), []);
  t.deepEqual((await manifestOf(b.root, name)).layers, (await manifestOf(a.root, name)).layers);
  t.true(proxy.log.filter((r) => r.status === 500).length >= 4, 'faults were injected');
});

rtest('a 429 with Retry-After is retried after the time the registry asked for', async (t) => {
  const reg = await startRegistry(t);
  // only the first manifest PUT and the first blob GET are limited
  const limited = new Set<string>();
  const proxy = await startFaultProxy(t, reg.port, (r) => {
    const kind = isManifestPut(r) ? 'put' : r.method === 'GET' && r.path.includes('/blobs/sha256:') ? 'get' : '';
    if (kind && !limited.has(kind)) {
      limited.add(kind);
      return {
        status: 429,
        headers: { 'Retry-After': '1' },
        body: JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }),
      };
    }
    return undefined;
  });
  const a = await newCtx(t);
  const name = `${proxy.host}/faults/slow:1`;
  const digest = await busyboxImage(t, a, name);
  t.is((await a.ok(['push', name])).trim(), digest);
  const b = await anotherStore(t, a);
  t.is((await b.ok(['pull', name])).trim(), digest);
  t.deepEqual(await imageProblems(b.root, name), []);
  const puts = proxy.log.filter(isManifestPut);
  t.is(puts[0]?.status, 429);
  t.is(puts[1]?.status, 201);
  t.true((puts[1]?.at ?? 0) - (puts[0]?.at ?? 0) >= 950, `waited ${(puts[1]?.at ?? 0) - (puts[0]?.at ?? 0)} ms`);
  const limitedGet = proxy.log.find((r) => r.method === 'GET' && r.status === 429);
  const again = proxy.log.find((r) => r.method === 'GET' && r.path === limitedGet?.path && r.n > (limitedGet?.n ?? 0));
  t.truthy(again);
  t.true((again?.at ?? 0) - (limitedGet?.at ?? 0) >= 950);
});

rtest('a connection cut in the middle of a blob upload is survived (PUT and streamed PATCH)', async (t) => {
  const reg = await startRegistry(t);
  let cutPatch = false;
  let cutPut = false;
  const proxy = await startFaultProxy(t, reg.port, (r) => {
    if (r.method === 'PATCH' && !cutPatch) {
      cutPatch = true;
      return { cutRequestAfter: 1 << 20 };
    }
    if (r.method === 'PUT' && isBlobData(r) && Number(r.headers['content-length']) > 100 && !cutPut) {
      cutPut = true;
      return { cutRequestAfter: 100 };
    }
    return undefined;
  });
  const a = await newCtx(t);
  const name = `${proxy.host}/faults/cut-up:1`;
  const digest = await busyboxImage(t, a, name, { randomMiB: 6 });
  t.is((await a.ok(['push', name])).trim(), digest);
  t.true(cutPatch && cutPut, 'both kinds of upload were cut');
  // read it back from the registry itself, not through the proxy
  const b = await anotherStore(t, a);
  const direct = `${reg.host}/faults/cut-up:1`;
  t.is((await b.ok(['pull', direct])).trim(), digest);
  t.deepEqual(await imageProblems(b.root, direct), []);
  t.deepEqual((await manifestOf(b.root, direct)).layers, (await manifestOf(a.root, name)).layers);
});

rtest('a lost chunk is resumed in the same upload session after asking the registry where it stands', async (t) => {
  const reg = await startRegistry(t);
  let failed = false;
  const proxy = await startFaultProxy(t, reg.port, (r) => {
    // the second chunk of the layer is lost
    if (r.method === 'PATCH' && String(r.headers['content-range']).startsWith('524288-') && !failed) {
      failed = true;
      return { status: 503 };
    }
    return undefined;
  });
  const a = await newCtx(t);
  const name = `${proxy.host}/faults/chunks:1`;
  const digest = await busyboxImage(t, a, name, { randomMiB: 2 });
  t.is((await a.ok(['push', name, '--chunk-size', '524288'])).trim(), digest);
  t.log(
    proxy.log
      .map(
        (r) =>
          `${r.method} ${r.path.slice(-30)} ${r.headers['content-range'] ?? ''} ${r.headers.range ?? ''} → ${r.status}`,
      )
      .join('\n'),
  );
  const starts = proxy.log.filter((r) => r.method === 'POST' && r.path.endsWith('/blobs/uploads/'));
  t.is(starts.length, 2, 'one session per blob: the failed chunk did not start a new one');
  const status = proxy.log.filter((r) => r.method === 'GET' && r.path.includes('/blobs/uploads/'));
  t.is(status.length, 1, 'the upload status was asked once');
  t.is(status[0]?.status, 204);
  const layerChunks = proxy.log
    .filter((r) => r.method === 'PATCH' && r.status === 202)
    .map((r) => String(r.headers['content-range']));
  t.true(layerChunks.includes('524288-1048575'), 'the lost chunk was sent again');
  t.is(
    layerChunks.filter((c) => c.startsWith('0-')).length,
    2,
    'no chunk before it was sent twice (one first chunk per blob)',
  );
  const b = await anotherStore(t, a);
  t.is((await b.ok(['pull', `${reg.host}/faults/chunks:1`])).trim(), digest);
  t.deepEqual(await imageProblems(b.root, `${reg.host}/faults/chunks:1`), []);
});

rtest('a connection cut in the middle of a blob download is resumed with a Range request', async (t) => {
  const reg = await startRegistry(t);
  const a = await newCtx(t);
  const name = `${reg.host}/faults/cut-down:1`;
  const digest = await busyboxImage(t, a, name, { randomMiB: 6 });
  await a.ok(['push', name]);
  const layer = (await manifestOf(a.root, name)).layers[0]?.digest as string;
  let cut = false;
  const proxy = await startFaultProxy(t, reg.port, (r) => {
    if (r.method === 'GET' && r.path.endsWith(layer) && !cut) {
      cut = true;
      return { cutResponseAfter: 2 << 20 };
    }
    return undefined;
  });
  const b = await anotherStore(t, a);
  const via = `${proxy.host}/faults/cut-down:1`;
  t.is((await b.ok(['pull', via])).trim(), digest);
  t.deepEqual(await imageProblems(b.root, via), []);
  const gets = proxy.log.filter((r) => r.method === 'GET' && r.path.endsWith(layer));
  t.is(gets.length, 2);
  t.regex(String(gets[1]?.headers.range), /^bytes=[1-9]\d*-$/, 'the second GET continues where the first stopped');
  t.is(gets[1]?.status, 206);
  t.deepEqual((await manifestOf(b.root, via)).layers, (await manifestOf(a.root, name)).layers);
});

rtest('a registry serving a wrong blob makes the pull fail naming the blob, and the store gets nothing', async (t) => {
  const reg = await startRegistry(t);
  const a = await newCtx(t);
  const name = `${reg.host}/faults/wrong:1`;
  await busyboxImage(t, a, name);
  await a.ok(['push', name]);
  const layer = (await manifestOf(a.root, name)).layers[0]?.digest as string;
  const proxy = await startFaultProxy(t, reg.port, (r) =>
    r.method === 'GET' && r.path.endsWith(layer) ? { corrupt: true } : undefined,
  );
  const b = await anotherStore(t, a);
  const r = await b.run(['pull', `${proxy.host}/faults/wrong:1`]);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`error: .*served a wrong blob ${layer}: its content hashes to sha256:`));
  t.is(await indexEntries(b.root), 0, 'no image is named');
  const blobs = await readdir(join(b.root, 'blobs', 'sha256'));
  t.false(blobs.includes(layer.slice(7)), 'the wrong blob is not stored');
  t.false(
    blobs.some((n) => n.startsWith('.tmp-')),
    'no temp file is left',
  );
  const index = JSON.parse(await readFile(join(b.root, 'index.json'), 'utf8')) as { manifests: unknown[] };
  t.deepEqual(index.manifests, []);
});

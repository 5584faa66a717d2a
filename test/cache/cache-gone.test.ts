// A shared cache whose registry goes away mid-import (issue 13, acceptance 3): runner B reads the cache manifest and
// config through a proxy that dies in the middle of the first layer blob it serves. The build still succeeds, with
// one warning line, running the steps whose layers did not arrive, and gives runner A's image; the
// store holds nothing half-written: no temp blob, every blob matches its name, every record names a blob it has.
import type { ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import { join } from 'node:path';
import { parseCacheSpec } from '../../layers/cache/spec.js';
import type { Store } from '../../layers/store/store.js';
import { rootTest } from '../helpers/index.js';
import { haveRegistry, startRegistry } from '../helpers/registry.js';
import { context, MULTI, run, runners } from './runners.js';

const ALL = [
  'COPY a.txt /src/a.txt',
  'RUN cat /src/a.txt > /out && echo built >> /out',
  'WORKDIR /app',
  'COPY --from=builder /out /app/out',
  'RUN wc -c /app/out > /app/size',
].sort();

/**
 * dyingProxy forwards to `upstream` until the second blob GET (the first is the cache config): it sends that blob's
 * headers and half its body, then drops every connection and stops listening, as a registry that goes away.
 */
async function dyingProxy(t: ExecutionContext, upstream: number): Promise<{ host: string; requests: string[] }> {
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  let blobs = 0;
  let gone = false;
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const dies = req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '') && ++blobs === 2;
    const up = http.request(
      { host: '127.0.0.1', port: upstream, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        if (!dies) return void r.pipe(res);
        const half = Math.floor(Number(r.headers['content-length'] ?? 2) / 2);
        let sent = 0;
        r.on('data', (b: Buffer) => {
          if (gone) return;
          const part = b.subarray(0, Math.max(0, half - sent));
          sent += part.length;
          if (part.length) res.write(part);
          if (sent >= half) {
            gone = true;
            r.destroy();
            server.close();
            for (const s of sockets) s.destroy();
          }
        });
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { host: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, requests };
}

/** halfWritten lists what a store holds that a finished writer should not have left. */
async function halfWritten(store: Store): Promise<string[]> {
  const problems: string[] = [];
  const blobDir = join(store.root, 'blobs', 'sha256');
  for (const name of await readdir(blobDir)) {
    if (!/^[a-f0-9]{64}$/.test(name)) {
      problems.push(`temp file blobs/sha256/${name}`);
      continue;
    }
    const hex = createHash('sha256')
      .update(await readFile(join(blobDir, name)))
      .digest('hex');
    if (hex !== name) problems.push(`blob ${name} holds other bytes (${hex})`);
  }
  const recordDir = join(store.root, 'cache');
  for (const name of await readdir(recordDir).catch(() => [] as string[])) {
    if (!name.endsWith('.json')) {
      if (name.includes('tmp')) problems.push(`temp record ${name}`);
      continue;
    }
    const rec = JSON.parse(await readFile(join(recordDir, name), 'utf8')) as {
      layer: { descriptor: { digest: string } } | null;
    };
    if (rec.layer && !(await store.hasBlob(rec.layer.descriptor.digest as `sha256:${string}`)))
      problems.push(`record ${name} names ${rec.layer.descriptor.digest}, which the store lacks`);
  }
  for (const dir of ['tmp', 'containers'])
    for (const name of await readdir(join(store.root, dir)).catch(() => [] as string[]))
      problems.push(`${dir}/${name} left behind`);
  return problems;
}

const rtest = haveRegistry ? rootTest : rootTest.skip;

rtest(
  'a registry cache that goes away mid-import: one warning, the steps run, the same image, a clean store',
  async (t) => {
    const [storeA, storeB] = await runners(t);
    const reg = await startRegistry(t);
    const ctx = await context(t, { Dockerfile: MULTI, 'a.txt': 'a\n' });
    const a = await run(t, {
      store: storeA,
      context: ctx,
      cacheTo: [parseCacheSpec(`type=registry,ref=${reg.host}/tsbuild/cache:main,mode=max`, 'to')],
    });
    const proxy = await dyingProxy(t, reg.port);
    const b = await run(t, {
      store: storeB,
      context: ctx,
      cacheFrom: [parseCacheSpec(`${proxy.host}/tsbuild/cache:main`, 'from')],
      cacheRemote: { retry: { attempts: 2, baseDelayMs: 10 } },
    });
    t.true(
      proxy.requests.some((r) => r.startsWith('GET') && r.includes('/manifests/main')),
      'the cache manifest came through the proxy',
    );
    t.is(b.warnings.length, 1, b.warnings.join('\n'));
    t.notRegex(b.warnings[0]!, /\n/);
    t.regex(
      b.warnings[0]!,
      /^--cache-from cache 127\.0\.0\.1:\d+\/tsbuild\/cache:main: fetching layer .*building without it$/,
    );
    // the steps of the first try all hit; the second try runs those whose layers did not arrive (at least the one
    // cut off) and hits those that did
    t.true(b.ran.length > 0, 'the step whose layer was cut off runs');
    t.deepEqual([...new Set([...b.ran, ...b.cached])].sort(), ALL);
    t.is(b.result.digest, a.result.digest, 'the same image all the same');
    t.deepEqual(await halfWritten(storeB), [], 'nothing half-written in the store');
  },
);

// The Alpine bootstrap path against a local mirror (this machine cannot reach Alpine's): the same code that
// fetches latest-releases.yaml, verifies the minirootfs checksum and imports it.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseLatestReleases } from '../../../layers/sources/bootstrap.js';
import { getImage } from '../../../layers/store/image.js';
import { Store } from '../../../layers/store/store.js';
import { verifyImage } from '../../../layers/store/verify.js';
import { tsbuild } from '../../helpers/index.js';
import { busyboxTree, newStoreRoot } from '../../helpers/images.js';

function serve(files: Record<string, Buffer | string>): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const body = files[req.url ?? ''];
    if (body === undefined) {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.end(body);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/alpine`, server }),
    ),
  );
}

const releasesYaml = (file: string, sha: string): string => `---
-
  title: "Standard"
  flavor: alpine-standard
  file: alpine-standard-3.20.3-x86_64.iso
  sha256: ${'0'.repeat(64)}
  arch: x86_64
-
  title: "Mini root filesystem"
  desc: "Minimal root filesystem."
  branch: v3.20
  arch: x86_64
  version: 3.20.3
  flavor: alpine-minirootfs
  file: ${file}
  sha256: ${sha}
`;

test('parseLatestReleases finds the minirootfs entry among the flavors', (t) => {
  const rel = parseLatestReleases(releasesYaml('alpine-minirootfs-3.20.3-x86_64.tar.gz', 'a'.repeat(64)));
  t.deepEqual(
    rel.map((r) => r.flavor),
    ['alpine-standard', 'alpine-minirootfs'],
  );
  t.is(rel[1]?.version, '3.20.3');
});

test('bootstrap alpine:3.20 imports the minirootfs from a mirror after checking its sha256', async (t) => {
  const tree = await busyboxTree(t);
  const tgz = execFileSync('bash', ['-c', `tar -C ${tree} -cf - . | gzip -n`], { maxBuffer: 64 << 20 });
  const file = 'alpine-minirootfs-3.20.3-x86_64.tar.gz';
  const sha = createHash('sha256').update(tgz).digest('hex');
  const { url, server } = await serve({
    '/alpine/v3.20/releases/x86_64/latest-releases.yaml': releasesYaml(file, sha),
    [`/alpine/v3.20/releases/x86_64/${file}`]: tgz,
  });
  t.teardown(() => server.close());
  const root = await newStoreRoot(t);
  const r = await tsbuild(['--root', root, 'bootstrap', 'alpine:3.20', '--mirror', url]);
  t.is(r.code, 0, r.stderr);
  const info = JSON.parse((await tsbuild(['--root', root, 'inspect', 'alpine:3.20'])).stdout);
  t.deepEqual(info.config.config.Cmd, ['/bin/sh']);
  t.regex(info.config.history[0].created_by, /alpine-minirootfs-3\.20\.3/);
  const store = await Store.open(root);
  t.deepEqual(await verifyImage(store, await getImage(store, 'alpine:3.20')), []);
});

test('bootstrap alpine fails naming the file when the checksum does not match, and stores no image', async (t) => {
  const file = 'alpine-minirootfs-3.20.3-x86_64.tar.gz';
  const { url, server } = await serve({
    '/alpine/v3.20/releases/x86_64/latest-releases.yaml': releasesYaml(file, 'b'.repeat(64)),
    [`/alpine/v3.20/releases/x86_64/${file}`]: execFileSync('bash', ['-c', 'tar -C /etc -cf - hostname | gzip -n']),
  });
  t.teardown(() => server.close());
  const root = await newStoreRoot(t);
  const r = await tsbuild(['--root', root, 'bootstrap', 'alpine:3.20', '--mirror', url]);
  t.is(r.code, 1);
  t.regex(r.stderr, /^error: .*alpine-minirootfs-3\.20\.3-x86_64\.tar\.gz: sha256 [a-f0-9]{64} does not match/m);
  t.is((await tsbuild(['--root', root, 'images', '-q'])).stdout, '');
});

test('bootstrap alpine with an unreachable mirror fails with one line naming the URL and a hint', async (t) => {
  const { server, url } = await serve({});
  server.close();
  const root = await newStoreRoot(t);
  const r = await tsbuild(['--root', root, 'bootstrap', 'alpine:3.20', '--mirror', url]);
  t.is(r.code, 1);
  t.regex(
    r.stderr,
    /^error: cannot reach http:\/\/127\.0\.0\.1:\d+\/alpine\/v3\.20\/releases\/x86_64\/latest-releases\.yaml: ECONNREFUSED\nhint: .*--mirror/m,
  );
});

// The CI fleet: two runners sharing a build cache through a registry (issue 13). Runner A, a store holding only the
// base image, builds fixtures/example cold with --cache-to (mode=max, cache mounts included); runner B, another such
// store, builds the same with --cache-from and hits every step. Both use the CLI exactly as a CI job does. Runner B
// reaches the registry through a counting proxy on 127.0.0.1, so the bytes it downloaded are measured where they
// arrive. Prints the two wall times, their ratio, and B's requests and bytes.
// Run by hand, as root: npm run build && npx tsx bench/cache.ts   (needs /usr/bin/docker-registry and Debian's package mirror for
// the example's apt-get)
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { startRegistry } from '../test/helpers/registry.js';

const exec = promisify(execFile);
const REPO = join(import.meta.dirname, '..');
const CLI = join(REPO, 'bin', 'tsbuild.js');
const EXAMPLE = join(REPO, 'fixtures', 'example');

/** debianStore: the test suite's store holding debian:bookworm, bootstrapped here when missing. */
async function debianStore(): Promise<string> {
  const root = join(process.env.TSBUILD_TEST_CACHE ?? '/var/tmp/tsbuild-test-cache', 'debian-store');
  try {
    await exec('node', [CLI, '--root', root, 'inspect', 'debian:bookworm']);
  } catch {
    await exec('node', [CLI, '--root', root, 'bootstrap', 'debian:bookworm'], {
      env: { ...process.env, SOURCE_DATE_EPOCH: '1700000000' },
    });
  }
  return root;
}

const teardowns: Array<() => unknown> = [];
const t = { teardown: (fn: () => unknown) => void teardowns.push(fn) };

/** countingProxy forwards to the registry on `upstream` and counts requests and response bytes. */
async function countingProxy(upstream: number): Promise<{ host: string; requests: number; bytes: number }> {
  const stats = { host: '', requests: 0, bytes: 0 };
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    stats.requests++;
    const up = http.request(
      { host: '127.0.0.1', port: upstream, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.on('data', (b: Buffer) => (stats.bytes += b.length));
        r.pipe(res);
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
  stats.host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return stats;
}

/** runner copies the base store (debian:bookworm only) into a fresh root. */
async function runner(work: string, name: string, base: string): Promise<string> {
  const root = join(work, name);
  await exec('cp', ['-a', base, root]);
  return root;
}

async function ciBuild(root: string, reg: string, tag: string): Promise<{ seconds: number; out: string }> {
  const cache = `type=registry,ref=${reg}/example/app:cache`;
  const started = performance.now();
  const r = await exec(
    'node',
    [
      CLI,
      '--root',
      root,
      'build',
      '-t',
      `${reg}/example/app:${tag}`,
      '--cache-from',
      cache,
      '--cache-to',
      `${cache},mode=max,mounts=true`,
      '.',
    ],
    { cwd: EXAMPLE, env: { ...process.env, SOURCE_DATE_EPOCH: '1700000000' }, maxBuffer: 64 << 20 },
  );
  return { seconds: (performance.now() - started) / 1000, out: r.stdout.trim() };
}

const work = await mkdtemp(join(tmpdir(), 'tsbuild-bench-cache-'));
const load0 = loadavg()[0]!;
try {
  const base = await debianStore();
  const reg = await startRegistry(t);
  const a = await runner(work, 'runner-a', base);
  const b = await runner(work, 'runner-b', base);
  const cold = await ciBuild(a, reg.host, 'a');
  const proxy = await countingProxy(reg.port);
  const cached = await ciBuild(b, proxy.host, 'b');
  console.log(`runner A, cold build with --cache-to:        ${cold.seconds.toFixed(2)} s`);
  console.log(
    `runner B, fully cached build (--cache-from): ${cached.seconds.toFixed(2)} s (${(cached.seconds / cold.seconds).toFixed(3)}x of A)`,
  );
  console.log(`runner B downloaded:                         ${proxy.bytes} bytes in ${proxy.requests} requests`);
  console.log(`build output: A ${cold.out}, B ${cached.out}`);
  console.log(`load average ${load0.toFixed(2)} at the start, ${loadavg()[0]!.toFixed(2)} at the end`);
} finally {
  for (const fn of teardowns.reverse()) await fn();
  await rm(work, { recursive: true, force: true });
}

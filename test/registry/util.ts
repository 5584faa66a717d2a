// Shared pieces of the registry tests: images made with `tsbuild import`, a private DOCKER_CONFIG, CLI wrappers.
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import { join } from 'node:path';
import { getImage } from '../../layers/store/image.js';
import { Store } from '../../layers/store/store.js';
import { verifyImage } from '../../layers/store/verify.js';
import type { Manifest } from '../../layers/model/types.js';
import { type CliResult, makeTempDir, removeDir, tsbuild } from '../helpers/index.js';
import { busyboxTree, newStoreRoot } from '../helpers/images.js';

type Teardown = { teardown(fn: () => unknown): void };

/** Handler answers one request of a mock registry. */
export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/**
 * serve starts a mock registry on 127.0.0.1 (an ephemeral port) that records every request; the test's teardown
 * destroys its open connections and closes it.
 */
export async function serve(
  t: Teardown,
  handler: Handler,
): Promise<{ host: string; port: number; seen: http.IncomingMessage[] }> {
  const seen: http.IncomingMessage[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req);
    handler(req, res);
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as net.AddressInfo).port;
  return { host: `127.0.0.1:${port}`, port, seen };
}

/** Ctx is a store root plus a DOCKER_CONFIG of its own (never the real ~/.docker). */
export interface Ctx {
  root: string;
  dockerConfig: string;
  env: NodeJS.ProcessEnv;
  run(args: string[], input?: string): Promise<CliResult>;
  ok(args: string[], input?: string): Promise<string>;
}

export async function newCtx(t: Teardown): Promise<Ctx> {
  const root = await newStoreRoot(t);
  const dockerConfig = await makeTempDir('tsbuild-dockercfg-');
  t.teardown(() => removeDir(dockerConfig));
  const env = { DOCKER_CONFIG: dockerConfig };
  const run = (args: string[], input?: string): Promise<CliResult> =>
    tsbuild(['--root', root, ...args], { env, ...(input === undefined ? {} : { input }) });
  return {
    root,
    dockerConfig,
    env,
    run,
    ok: async (args, input) => {
      const r = await run(args, input);
      if (r.code !== 0) throw new Error(`tsbuild ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      return r.stdout;
    },
  };
}

/** anotherStore makes a second store root sharing the context's DOCKER_CONFIG. */
export async function anotherStore(t: Teardown, ctx: Ctx): Promise<Ctx> {
  const root = await newStoreRoot(t);
  const run = (args: string[], input?: string): Promise<CliResult> =>
    tsbuild(['--root', root, ...args], { env: ctx.env, ...(input === undefined ? {} : { input }) });
  return {
    ...ctx,
    root,
    run,
    ok: async (args, input) => {
      const r = await run(args, input);
      if (r.code !== 0) throw new Error(`tsbuild ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      return r.stdout;
    },
  };
}

/**
 * busyboxImage imports a busybox tree as `name` (with `randomMiB` MiB of incompressible data added, to get a
 * layer big enough for streamed and chunked uploads) and returns the image digest.
 */
export async function busyboxImage(
  t: Teardown,
  ctx: Ctx,
  name: string,
  opts: { randomMiB?: number } = {},
): Promise<string> {
  const tree = await busyboxTree(t);
  if (opts.randomMiB) await writeFile(join(tree, 'random.bin'), randomBytes(opts.randomMiB << 20));
  const digest = (await ctx.ok(['import', tree, name])).trim();
  const problems = await imageProblems(ctx.root, name);
  if (problems.length) throw new Error(`imported ${name} is not sound: ${problems.join('; ')}`);
  return digest;
}

/** imageProblems is what verifyImage finds wrong with a stored image ([] for a sound one). */
export async function imageProblems(root: string, name: string): Promise<string[]> {
  const store = await Store.open(root);
  return verifyImage(store, await getImage(store, name));
}

/** manifestOf reads the manifest of a stored image. */
export async function manifestOf(root: string, name: string): Promise<Manifest> {
  const store = await Store.open(root);
  return (await getImage(store, name)).manifest;
}

/** indexEntries counts the names in a store's index.json. */
export async function indexEntries(root: string): Promise<number> {
  const store = await Store.open(root);
  return (await store.readIndex()).manifests.length;
}

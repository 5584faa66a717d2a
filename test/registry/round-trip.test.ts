// push then pull through a real docker-registry: plain HTTP, chunked uploads, htpasswd Basic auth, token auth
// (GET with Basic, and the OAuth2 POST refresh with a saved identity token), anonymous tokens, TLS with --ca-cert.
import test, { type ExecutionContext } from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getImage, tagImage } from '../../layers/store/image.js';
import { Store } from '../../layers/store/store.js';
import { MediaType } from '../../layers/model/types.js';
import { verifyImage } from '../../layers/store/verify.js';
import { haveRegistry, type RegistryOptions, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startFaultProxy } from './fault-proxy.js';
import { anotherStore, busyboxImage, type Ctx, imageProblems, manifestOf, newCtx } from './util.js';

const rtest = haveRegistry ? test : test.skip;

interface Case {
  registry: RegistryOptions;
  /** run before the push (login) */
  before?: (ctx: Ctx, reg: TestRegistry) => Promise<void>;
  /** extra push/pull flags */
  flags?: (reg: TestRegistry) => string[];
  pushFlags?: string[];
  randomMiB?: number;
  /** checks after the round trip */
  after?: (t: ExecutionContext, ctx: Ctx, reg: TestRegistry) => Promise<void>;
}

const roundTrip = test.macro(async (t, c: Case) => {
  const reg = await startRegistry(t, c.registry);
  const a = await newCtx(t);
  await c.before?.(a, reg);
  const flags = c.flags?.(reg) ?? [];
  const name = `${reg.host}/tsbuild/rt:1`;
  const digest = await busyboxImage(t, a, name, c.randomMiB ? { randomMiB: c.randomMiB } : {});
  const pushed = (await a.ok(['push', name, ...flags, ...(c.pushFlags ?? [])])).trim();
  t.is(pushed, digest, 'push prints the manifest digest');

  const b = await anotherStore(t, a);
  const pulled = (await b.ok(['pull', name, ...flags])).trim();
  t.is(pulled, digest, 'the pulled manifest is byte-identical');
  const before = await manifestOf(a.root, name);
  const after = await manifestOf(b.root, name);
  t.deepEqual(
    after.layers.map((l) => l.digest),
    before.layers.map((l) => l.digest),
    'layer digests are unchanged',
  );
  t.is(after.config.digest, before.config.digest);
  const store = await Store.open(b.root);
  t.deepEqual(await verifyImage(store, await getImage(store, name)), []);
  await c.after?.(t, a, reg);
});

rtest('an image pushed to a registry without auth pulls back unchanged', roundTrip, { registry: {} });

rtest('an image pushed in --chunk-size PATCH chunks pulls back unchanged', roundTrip, {
  registry: {},
  randomMiB: 3,
  pushFlags: ['--chunk-size', '1048576'],
});

rtest('a layer larger than the monolithic limit goes up in one streamed PATCH and pulls back unchanged', roundTrip, {
  registry: {},
  randomMiB: 6,
});

rtest('with htpasswd Basic auth, login then push and pull round-trip', roundTrip, {
  registry: { htpasswd: { alice: 'wonderland' } },
  before: async (ctx, reg) => {
    t_ok(await ctx.ok(['login', reg.host, '-u', 'alice', '--password-stdin'], 'wonderland\n'));
  },
  after: async (t, ctx, reg) => {
    const cfg = JSON.parse(await readFile(join(ctx.dockerConfig, 'config.json'), 'utf8')) as {
      auths: Record<string, { auth: string }>;
    };
    t.is(Buffer.from(cfg.auths[reg.host]?.auth ?? '', 'base64').toString(), 'alice:wonderland');
  },
});

rtest('with token auth and a saved identity token, push and pull use the OAuth2 POST refresh flow', roundTrip, {
  registry: { token: { users: { bob: 'builder' } } },
  before: async (ctx, reg) => {
    t_ok(await ctx.ok(['login', reg.host, '-u', 'bob', '-p', 'builder']));
  },
  after: async (t, ctx, reg) => {
    const cfg = JSON.parse(await readFile(join(ctx.dockerConfig, 'config.json'), 'utf8')) as {
      auths: Record<string, { auth: string; identitytoken?: string }>;
    };
    const entry = cfg.auths[reg.host];
    t.truthy(entry?.identitytoken, 'login saved the refresh token as an identity token');
    t.is(Buffer.from(entry?.auth ?? '', 'base64').toString(), 'bob:', 'the password itself is not saved');
    const reqs = reg.tokenServer?.requests ?? [];
    const afterLogin = reqs.slice(reqs.findIndex((r) => r.offline) + 1);
    t.true(afterLogin.length > 0);
    t.true(
      afterLogin.every((r) => r.method === 'POST' && r.grant === 'refresh_token'),
      JSON.stringify(afterLogin),
    );
    t.true(
      afterLogin.some((r) => r.scopes.includes('repository:tsbuild/rt:pull,push')),
      'push asked for pull,push on the repository',
    );
    t.true(
      afterLogin.some(
        (r) => r.scopes.includes('repository:tsbuild/rt:pull') && !r.scopes.some((s) => s.includes('push')),
      ),
      'pull asked for pull only',
    );
  },
});

rtest('with token auth and a saved password, push and pull get tokens with GET and Basic credentials', roundTrip, {
  registry: { token: { users: { carol: 's3cret' }, refreshTokens: false } },
  before: async (ctx, reg) => {
    t_ok(await ctx.ok(['login', reg.host, '-u', 'carol', '--password-stdin'], 's3cret'));
  },
  after: async (t, _ctx, reg) => {
    const reqs = reg.tokenServer?.requests ?? [];
    t.true(reqs.length >= 3);
    t.true(
      reqs.every((r) => r.method === 'GET' && r.grant === 'basic' && r.user === 'carol'),
      JSON.stringify(reqs),
    );
  },
});

rtest('over TLS, push and pull trust the registry through --ca-cert', roundTrip, {
  registry: { tls: true },
  flags: (reg) => ['--ca-cert', reg.caCert as string],
});

rtest('an image pushed with credentials can be pulled anonymously with an anonymous token', async (t) => {
  const reg = await startRegistry(t, { token: { users: { dave: 'pw' }, anonymousPull: true } });
  const a = await newCtx(t);
  await a.ok(['login', reg.host, '-u', 'dave', '--password-stdin'], 'pw');
  const name = `${reg.host}/public/img:2`;
  const digest = await busyboxImage(t, a, name);
  await a.ok(['push', name]);
  const b = await newCtx(t); // a DOCKER_CONFIG without credentials
  t.is((await b.ok(['pull', name])).trim(), digest);
  t.deepEqual(await imageProblems(b.root, name), []);
  const anon = (reg.tokenServer?.requests ?? []).filter((r) => r.grant === 'anonymous');
  t.true(anon.some((r) => r.scopes.includes('repository:public/img:pull')));
  const push = await b.run(['push', name, `${reg.host}/public/other:1`]);
  t.is(push.code, 1, 'anonymous push is refused');
  t.regex(push.stderr, /error: .*(denied|refused|credentials|log in)/i);
});

rtest('over TLS without --ca-cert the push fails with a TLS error and a hint', async (t) => {
  const reg = await startRegistry(t, { tls: true });
  const a = await newCtx(t);
  const name = `${reg.host}/x:1`;
  await busyboxImage(t, a, name);
  const r = await a.run(['push', name]);
  t.is(r.code, 1);
  t.regex(r.stderr, /error: TLS verification of 127\.0\.0\.1:\d+ failed/);
  t.regex(r.stderr, /hint: .*--ca-cert/);
});

rtest('pulling a tag the registry does not have fails with one clear line and stores nothing', async (t) => {
  const reg = await startRegistry(t, {});
  const a = await newCtx(t);
  const r = await a.run(['pull', `${reg.host}/nothing/here:1`]);
  t.is(r.code, 1);
  t.regex(
    r.stderr,
    /error: pulling manifest 127\.0\.0\.1:\d+\/nothing\/here:1: .*HTTP 404.*(MANIFEST_UNKNOWN|NAME_UNKNOWN)/,
  );
  const index = JSON.parse(await readFile(join(a.root, 'index.json'), 'utf8')) as { manifests: unknown[] };
  t.deepEqual(index.manifests, []);
});

function t_ok(stdout: string): void {
  if (!stdout.includes('Login Succeeded')) throw new Error(`login printed ${JSON.stringify(stdout)}`);
}

rtest('an index is pushed children first, and pull picks the manifest of --platform from it', async (t) => {
  const reg = await startRegistry(t);
  const proxy = await startFaultProxy(t, reg.port);
  const a = await newCtx(t);
  const amdName = `${proxy.host}/multi/img:amd64`;
  const amdDigest = await busyboxImage(t, a, amdName);
  // an arm64 twin (same layer, another config) and an index over both, made with the store API
  const store = await Store.open(a.root);
  const amd = await getImage(store, amdName);
  const armConfig = await store.putJson({ ...amd.config, architecture: 'arm64', variant: 'v8' }, MediaType.OciConfig);
  const arm = await store.putJson({ ...amd.manifest, config: armConfig }, MediaType.OciManifest);
  const index = await store.putJson(
    {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        { ...amd.descriptor, platform: { os: 'linux', architecture: 'amd64' } },
        { ...arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      ],
    },
    MediaType.OciIndex,
  );
  const name = `${proxy.host}/multi/img:1`;
  await tagImage(store, index, name);

  t.is((await a.ok(['push', name])).trim(), index.digest);
  const manifestPuts = proxy.log
    .filter((r) => r.method === 'PUT' && r.path.includes('/manifests/'))
    .map((r) => r.path.split('/').pop());
  t.deepEqual(manifestPuts, [amd.descriptor.digest, arm.digest, '1'], 'children by digest, then the index by tag');

  const b = await anotherStore(t, a);
  t.is((await b.ok(['pull', name, '--platform', 'linux/arm64/v8'])).trim(), arm.digest);
  t.deepEqual(await imageProblems(b.root, name), []);
  const c = await anotherStore(t, a);
  t.is((await c.ok(['pull', name])).trim(), amdDigest, 'linux/amd64 by default');
  t.deepEqual(await imageProblems(c.root, name), []);
  const bad = await c.run(['pull', name, '--platform', 'linux/riscv64']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /linux\/riscv64 manifest .* not found/);
  t.regex(bad.stderr, /hint: it has: linux\/amd64, linux\/arm64\/v8/);
});

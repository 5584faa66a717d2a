// The inline cache (issue 13): runner A builds with --cache-to type=inline, so the image config carries the cache
// records (BuildKit's moby.buildkit.cache.v0), and pushes the image; runner B, another store, builds the same
// Dockerfile with docker's classic `--cache-from IMAGE` and runs no step, the layers coming from the image itself.
// Against Debian's docker-registry on 127.0.0.1.
import test from 'ava';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { INLINE_CACHE_KEY } from '../../layers/cache/index.js';
import { parseCacheSpec } from '../../layers/cache/spec.js';
import { pushImage } from '../../layers/registry/push.js';
import { rootTest } from '../helpers/index.js';
import { haveRegistry, startRegistry } from '../helpers/registry.js';
import { context, run, runners } from './runners.js';

const SINGLE = `FROM busybox:test
WORKDIR /app
COPY a.txt /app/a.txt
RUN cat /app/a.txt > /app/b && echo built >> /app/b
RUN wc -c /app/b > /app/size
`;
const STEPS = [
  'WORKDIR /app',
  'COPY a.txt /app/a.txt',
  'RUN cat /app/a.txt > /app/b && echo built >> /app/b',
  'RUN wc -c /app/b > /app/size',
].sort();

const rtest = haveRegistry ? rootTest : rootTest.skip;

rtest('an image built with --cache-to type=inline and pushed is a cache: runner B runs no step', async (t) => {
  const [storeA, storeB] = await runners(t);
  const reg = await startRegistry(t);
  const image = `${reg.host}/tsbuild/app:1`;
  const ctx = await context(t, { Dockerfile: SINGLE, 'a.txt': 'a\n' });
  const inline = parseCacheSpec('type=inline', 'to');
  const a = await run(t, { store: storeA, context: ctx, tags: [image], cacheTo: [inline] });
  t.deepEqual(a.ran, STEPS);
  t.is(typeof (a.result.config as unknown as Record<string, unknown>)[INLINE_CACHE_KEY], 'string');
  const pushed = await pushImage(storeA, image, undefined);

  const b = await run(t, {
    store: storeB,
    context: ctx,
    cacheFrom: [parseCacheSpec(image, 'from')],
    cacheTo: [inline],
  });
  t.deepEqual(b.ran, [], 'no step runs on runner B');
  t.deepEqual(b.cached, STEPS);
  t.deepEqual(b.warnings, []);
  t.is(b.result.digest, pushed.digest, 'the image A pushed, inline cache included');
  t.is(b.result.configDigest, a.result.configDigest);

  // one context file changes: the COPY and what follows run again, WORKDIR still hits
  await writeFile(join(ctx, 'a.txt'), 'a changed\n');
  const c = await run(t, { store: storeB, context: ctx, cacheFrom: [parseCacheSpec(image, 'from')] });
  t.deepEqual(c.cached, ['WORKDIR /app']);
  t.is(c.ran.length, 3);
});

rtest('--cache-from names an image without an inline cache: one warning, and the build runs its steps', async (t) => {
  const [storeA, storeB] = await runners(t);
  const reg = await startRegistry(t);
  const image = `${reg.host}/tsbuild/plain:1`;
  const ctx = await context(t, { Dockerfile: SINGLE, 'a.txt': 'a\n' });
  await run(t, { store: storeA, context: ctx, tags: [image] });
  await pushImage(storeA, image, undefined);
  const b = await run(t, { store: storeB, context: ctx, cacheFrom: [parseCacheSpec(image, 'from')] });
  t.deepEqual(b.ran, STEPS);
  t.is(b.warnings.length, 1);
  t.regex(b.warnings[0]!, /^--cache-from .*tsbuild\/plain:1: .*carries no inline cache.*building without it$/);
});

test('type=inline is for --cache-to and mode=min only', (t) => {
  t.deepEqual(parseCacheSpec('type=inline', 'to'), { type: 'inline', mode: 'min', ignoreError: false });
  t.throws(() => parseCacheSpec('type=inline,mode=max', 'to'), { message: /type=inline supports mode=min only/ });
  t.throws(() => parseCacheSpec('type=inline', 'from'), { message: /read from the image, give its reference/ });
});

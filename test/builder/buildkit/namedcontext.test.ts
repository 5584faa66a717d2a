// BuildKit's frontend/dockerfile/dockerfile_namedcontext_test.go (named contexts, `--build-context`), replayed
// offline (see harness.ts and README.md), with onbuild testOnBuildNamedContext and what source_date_epoch's
// testSourceDateEpochNamedContext* say about a named context that is not HTTP. BuildKit's `context:NAME` frontend
// attributes are our `buildContexts`; its `local:` mounts are directories, its OCI stores are layout directories,
// and the images it pushes to a registry are built into the test's store (`before`), one of them pushed to a
// registry the file starts. Its alpine is an image of our own with an /etc/alpine-release.
// Then the rules of builder/named-contexts.ts that BuildKit's tests leave implicit (names, values, cache keys).
import test from 'ava';
import { readdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { build, type BuildOptions } from '../../../builder/build.js';
import { contextName, lookupName, splitBuildContexts } from '../../../builder/named-contexts.js';
import { getImage, tagImage } from '../../../layers/store/image.js';
import type { Store } from '../../../layers/store/store.js';
import { isRoot, makeTempDir, removeDir } from '../../helpers/index.js';
import { haveRegistry, startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { busyboxStore } from '../build-harness.js';
import { declareCases, readImageFile, type BkCase } from './harness.js';

const F = 'dockerfile_namedcontext_test.go';

const alpine = { tag: 'alpine:latest', dockerfile: 'FROM busybox\nRUN echo 3.20.0 > /etc/alpine-release\n' };
const envImage = {
  tag: 'bk-nc-env:latest',
  dockerfile: 'FROM alpine:latest\nENV PATH=/foobar:$PATH\nENV FOOBAR=foobar\n',
};
const layoutImage = {
  tag: 'bk-nc-layout:latest',
  dockerfile:
    'FROM busybox:latest\nWORKDIR /test\nRUN sh -c "echo -n first > out"\nRUN sh -c "echo -n second > out2"\nENV foo=bar\n',
};
const fooDir = { dir: { foo: 'foo', bar: 'x'.repeat(4096) } };
const filtered = `FROM scratch AS copy_from
COPY --from=foo /foo /

FROM alpine AS run_mount
RUN --mount=from=foo,src=/foo,target=/in/foo cp /in/foo /foo

FROM foo AS image_source
COPY --from=alpine / /
RUN cat /foo > /bar

FROM scratch AS all
COPY --link --from=copy_from /foo /foo.b
COPY --link --from=run_mount /foo /foo.c
COPY --link --from=image_source /bar /foo.d
`;
const filteredReplace = `FROM scratch AS foo\nCOPY <<EOF /foo\ntest\nEOF\n${filtered}`;

// A registry for the image BuildKit pushes (skipped where docker-registry is missing)
let registry: Promise<TestRegistry> | undefined;
const cleanups: Array<() => unknown> = [];
test.after.always(async () => {
  for (const fn of cleanups.reverse()) await fn();
});
const pushed = (): string => `127.0.0.1:${registryPort}/buildkit/testnamedimagecontext:latest`;
let registryPort = 0;
let alpineDigest = '';

const registryCase: BkCase = {
  from: `${F} testNamedImageContext`,
  title: 'a docker-image context of an image the store lacks is pulled from a registry, as FROM pulls one',
  before: [alpine, envImage],
  setup: async (store) => {
    const r = await (registry ??= startRegistry({ teardown: (fn) => cleanups.push(fn) }));
    registryPort = r.port;
    const { pushImage } = await import('../../../layers/registry/push.js');
    await pushImage(store, 'bk-nc-env:latest', pushed());
  },
  contexts: { busybox: () => `docker-image://${pushed()}` },
  dockerfile:
    'FROM busybox AS base\nRUN env | grep FOOBAR > /env_foobar\nFROM scratch\nCOPY --from=base /env_foobar /\n',
  expect: { files: { env_foobar: 'FOOBAR=foobar\n' } },
};

const filteredCases: BkCase[] = (['copy_from', 'run_mount', 'image_source', 'all'] as const).flatMap(
  (target): BkCase[] => {
    const want: Record<string, Record<string, string>> = {
      copy_from: { foo: 'foo' },
      run_mount: { foo: 'foo' },
      image_source: { bar: 'foo', foo: 'foo' },
      all: { 'foo.b': 'foo', 'foo.c': 'foo', 'foo.d': 'foo' },
    };
    return [
      {
        from: `${F} testNamedFilteredContext`,
        title: `a local context read by COPY --from, RUN --mount from= and FROM: target ${target} (new)`,
        before: [alpine],
        contexts: { foo: fooDir },
        target,
        dockerfile: filtered,
        expect: { files: want[target]! },
      },
      {
        from: `${F} testNamedFilteredContext`,
        title: `a local context replaces the stage foo wherever it is read: target ${target} (replace)`,
        before: [alpine],
        contexts: { foo: fooDir },
        target,
        dockerfile: filteredReplace,
        expect: { files: want[target]! },
      },
    ];
  },
);

// the values buildx refuses, and the ones tsbuild refuses
const valueErrors: BkCase[] = (
  [
    ['target:base', 'a target: context names a bake target'],
    ['https://github.com/moby/buildkit.git', 'remote contexts (git repositories, HTTP(S) URLs) are not supported'],
    ['git@github.com:moby/buildkit.git', 'remote contexts (git repositories, HTTP(S) URLs) are not supported'],
    [
      '/nonexistent-tsbuild/dir',
      'failed to get build context foo: stat /nonexistent-tsbuild/dir: no such file or directory',
    ],
    ['/dev/null', 'failed to get build context path /dev/null: not a directory'],
  ] as const
).map(([value, error]): BkCase => ({
  from: 'buildx build/opt.go (named context values)',
  title: `--build-context foo=${value} fails: ${error}`,
  contexts: { foo: value },
  dockerfile: 'FROM scratch\nCOPY --from=foo / /\n',
  expect: { error },
}));

export const cases: BkCase[] = [
  {
    from: `${F} testNamedImageContext`,
    title: 'a docker-image context named like a FROM image replaces that image',
    before: [alpine],
    contexts: { busybox: 'docker-image://alpine' },
    dockerfile: 'FROM busybox AS base\nRUN cat /etc/alpine-release > /out\nFROM scratch\nCOPY --from=base /out /\n',
    expect: { files: { out: '3.20.0\n' } },
  },
  {
    from: `${F} testNamedImageContext`,
    title: 'the image of a docker-image context keeps its config: ENV reaches RUN',
    before: [alpine, envImage],
    contexts: { busybox: 'docker-image://bk-nc-env:latest' },
    dockerfile: `FROM busybox AS base
RUN cat /etc/alpine-release > /out
RUN env | grep PATH > /env_path
RUN env | grep FOOBAR > /env_foobar
FROM scratch
COPY --from=base /out /
COPY --from=base /env_path /
COPY --from=base /env_foobar /
`,
    expect: { files: { out: '3.20.0\n', env_foobar: 'FOOBAR=foobar\n', env_path: { content: /\/foobar:/ } } },
  },
  {
    from: `${F} testNamedImageContext`,
    title: 'a docker-image context replaces a stage built on another stage (moby/buildkit#5578)',
    before: [alpine, envImage],
    contexts: { base: 'docker-image://bk-nc-env:latest' },
    dockerfile:
      'FROM busybox AS parent\nFROM parent AS base\nRUN echo base > /out\nFROM base\nRUN [ -f /etc/alpine-release ]\nRUN [ ! -f /out ]\n',
    expect: { files: { 'etc/alpine-release': '3.20.0\n', out: 'absent' } },
  },
  {
    from: `${F} testNamedImageContext`,
    title: 'a docker-image context may name its image by digest (REF@sha256:…)',
    before: [alpine],
    setup: async (store) => {
      alpineDigest = (await getImage(store, 'alpine:latest')).descriptor.digest;
    },
    contexts: { busybox: () => `docker-image://alpine@${alpineDigest}` },
    dockerfile: 'FROM busybox\n',
    expect: { files: { 'etc/alpine-release': '3.20.0\n' } },
  },
  {
    from: `${F} testNamedImageContextTimestamps`,
    title: 'an image built FROM a docker-image context gets a created time of its own, not the context image’s',
    before: [
      alpine,
      { tag: 'bk-nc-old:latest', dockerfile: 'ARG SOURCE_DATE_EPOCH=1000\nFROM alpine\nRUN echo foo >> /test\n' },
    ],
    contexts: { alpine: 'docker-image://bk-nc-old:latest' },
    dockerfile: 'FROM alpine\nRUN echo foo >> /test\n',
    expect: {
      files: { test: 'foo\nfoo\n' },
      check: (t, { image }) => {
        t.true(Date.parse(image.config.created!) > 1000 * 1000, image.config.created);
      },
    },
  },
  {
    from: `${F} testNamedImageContextScratch`,
    title: 'docker-image://scratch as a context makes the stage start empty',
    contexts: { busybox: 'docker-image://scratch' },
    dockerfile: 'FROM busybox AS build\nCOPY <<EOF /out\nhello world!\nEOF\n',
    expect: {
      files: { out: 'hello world!\n' },
      check: (t, { root }) => {
        t.deepEqual(readdirSync(root!), ['out']);
      },
    },
  },
  {
    from: `${F} testNamedLocalContext`,
    title: 'a local context replaces a stage of its name, with its own .dockerignore',
    contexts: { base: { dir: { out: 'dummy-result', out2: 'dummy-result', '.dockerignore': 'out2\n' } } },
    dockerfile: 'FROM busybox AS base\nRUN cat /etc/alpine-release > /out\nFROM scratch\nCOPY --from=base /o* /\n',
    expect: { files: { out: 'dummy-result', out2: 'absent' } },
  },
  {
    from: `${F} testNamedLocalContext`,
    title:
      'FROM a local context: its files (its .dockerignore applied, owned by 0:0) and BuildKit’s empty image config',
    contexts: {
      base: {
        dir: {
          out: { content: 'dummy-result', uid: 1234, gid: 4321 },
          out2: 'dummy-result',
          'sub/f': { content: 'x', mode: 0o700 },
          '.dockerignore': 'out2\n',
        },
      },
    },
    dockerfile: 'FROM base\n',
    expect: {
      files: {
        out: { content: 'dummy-result', uid: 0, gid: 0 },
        out2: 'absent',
        'sub/f': { content: 'x', mode: '0700' },
      },
      config: {
        WorkingDir: '/',
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        Cmd: 'absent',
      },
    },
  },
  {
    from: `${F} testNamedOCILayoutContext`,
    title: 'an oci-layout context (by digest) replaces a stage and is a FROM image, its ENV and WORKDIR kept',
    before: [layoutImage],
    contexts: {
      base: { ociLayout: 'bk-nc-layout:latest', by: 'digest' },
      foo: { ociLayout: 'bk-nc-layout:latest', by: 'digest' },
    },
    dockerfile: `FROM busybox AS base
RUN cat /etc/alpine-release > out

FROM foo AS imported
RUN echo -n $foo > outfoo

FROM scratch
COPY --from=base /test/o* /
COPY --from=imported /test/outfoo /
`,
    expect: { files: { out: 'first', out2: 'second', outfoo: 'bar' } },
  },
  {
    from: `${F} testNamedOCILayoutContext`,
    title: 'an oci-layout context named by the tag its layout gives, or by nothing (the only image)',
    before: [layoutImage],
    contexts: {
      base: { ociLayout: 'bk-nc-layout:latest', by: 'tag' },
      foo: { ociLayout: 'bk-nc-layout:latest', by: 'none' },
    },
    dockerfile: 'FROM base AS a\nFROM foo AS b\nFROM scratch\nCOPY --from=a /test/out /\nCOPY --from=b /test/out2 /\n',
    expect: { files: { out: 'first', out2: 'second' } },
  },
  {
    from: `${F} testNamedOCILayoutContextExport`,
    title: 'the config of an oci-layout context is the config of the stage it replaces',
    before: [{ tag: 'bk-nc-layout-export:latest', dockerfile: 'FROM scratch\nWORKDIR /test\nENV foo=bar\n' }],
    contexts: { nonexistent: { ociLayout: 'bk-nc-layout-export:latest', by: 'digest' } },
    dockerfile: 'FROM nonexistent AS base\n',
    expect: {
      config: { WorkingDir: '/test' },
      check: (t, { image }) => {
        t.true((image.config.config?.Env ?? []).includes('foo=bar'));
      },
    },
  },
  ...filteredCases,
  {
    from: `${F} testEagerNamedContextLookup`,
    title: 'named contexts of stages and images the target never reaches are not loaded',
    before: [alpine],
    contexts: {
      notused: 'docker-image://docker.io/library/nosuchimage:latest',
      busybox: 'docker-image://docker.io/library/dontexist:latest',
    },
    dockerfile: `FROM broken AS notused

FROM alpine AS base
RUN echo "base" > /foo

FROM busybox AS otherstage

FROM scratch
COPY --from=base /foo /foo
`,
    expect: { files: { foo: 'base\n' } },
  },
  {
    from: 'dockerfile_onbuild_test.go testOnBuildNamedContext',
    title: 'the ONBUILD triggers of an oci-layout context image run in the stage FROM it',
    before: [
      alpine,
      {
        tag: 'bk-nc-onbuild:latest',
        dockerfile: 'FROM busybox:latest\nONBUILD COPY --from=otherstage /testfile /out/foo\n',
      },
    ],
    contexts: { base: { ociLayout: 'bk-nc-onbuild:latest', by: 'digest' } },
    dockerfile: `FROM alpine AS otherstage
RUN echo -n "hello" > /testfile

FROM base AS inputstage

FROM scratch
COPY --from=inputstage /out/foo /bar
`,
    expect: { files: { bar: 'hello' } },
  },
  {
    from: 'dockerfile2llb/convert.go (a stage replaced by a named context is dispatched already)',
    title: 'a stage replaced by an image context runs neither its instructions nor the image’s ONBUILD triggers',
    before: [{ tag: 'bk-nc-trigger:latest', dockerfile: 'FROM busybox\nONBUILD RUN touch /triggered\n' }],
    contexts: { base: 'docker-image://bk-nc-trigger:latest' },
    dockerfile: 'FROM busybox AS base\nRUN touch /ran\nFROM base AS child\nRUN touch /child\n',
    expect: { files: { triggered: 'absent', ran: 'absent', child: '' } },
  },
  {
    from: 'dockerfile2llb/convert.go (toCommand: --from of an unknown name resolves as a base image)',
    title: 'COPY --from and RUN --mount from= read an image context by name, case-insensitively as stage names are',
    before: [alpine],
    contexts: { 'docker.io/library/src': 'docker-image://alpine:latest' },
    dockerfile:
      'FROM busybox AS Src\nRUN false\nFROM busybox\nCOPY --from=SRC /etc/alpine-release /a\nRUN --mount=from=src,target=/m cp /m/etc/alpine-release /b\n',
    expect: { files: { a: '3.20.0\n', b: '3.20.0\n' } },
  },
  {
    from: 'dockerui/config.go NamedContext (names as familiar references, :latest dropped)',
    title: 'FROM busybox:latest and FROM docker.io/library/busybox look up the context named busybox',
    before: [alpine],
    contexts: { busybox: 'docker-image://alpine' },
    dockerfile:
      'FROM busybox:latest AS a\nFROM docker.io/library/busybox AS b\nFROM scratch\nCOPY --from=a /etc/alpine-release /a\nCOPY --from=b /etc/alpine-release /b\n',
    expect: { files: { a: '3.20.0\n', b: '3.20.0\n' } },
  },
  {
    from: 'dockerfile_source_date_epoch_test.go testSourceDateEpochNamedContextHTTPLastModified (local)',
    title: 'SOURCE_DATE_EPOCH naming a local named context leaves the epoch unset (it has no HTTP or git time)',
    contexts: { mysource: { dir: { foo: 'bar' } } },
    dockerfile: 'ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch\nCOPY Dockerfile .\n',
    expect: {
      check: (t, { image }) => {
        t.true(Date.parse(image.config.created!) > Date.UTC(2020, 0, 1));
      },
    },
  },
  {
    from: 'dockerfile_source_date_epoch_test.go testSourceDateEpochNamedContextHTTPArchive (local)',
    title: 'SOURCE_DATE_EPOCH naming a named context wins over a stage of that name',
    contexts: { mysource: { dir: { foo: 'bar' } } },
    dockerfile:
      'ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nCOPY Dockerfile /x\nFROM scratch\nCOPY Dockerfile .\n',
    expect: {
      check: (t, { image }) => {
        t.true(Date.parse(image.config.created!) > Date.UTC(2020, 0, 1));
      },
    },
  },
  ...valueErrors,
  {
    from: 'buildx util/buildflags/context.go ParseContextNames',
    title: 'an uppercase context name fails with buildx’s message',
    contexts: { Foo: 'docker-image://busybox' },
    dockerfile: 'FROM scratch\n',
    expect: {
      error: 'invalid context name Foo: invalid reference format: repository name (library/Foo) must be lowercase',
    },
  },
  {
    from: 'dockerui/namedcontext.go (oci-layout)',
    title: 'an oci-layout context whose layout is missing fails, naming the value',
    contexts: { foo: 'oci-layout:///nonexistent-tsbuild/nolayout:v2' },
    dockerfile: 'FROM foo\n',
    expect: { error: /oci-layout reference "oci-layout:\/\/.*nolayout:v2" could not be resolved/ },
  },
];

if (haveRegistry) cases.push(registryCase);
declareCases(cases);

// ─── the rules BuildKit's tests leave implicit ───────────────────────────────────────────────────────────────────

test('context names are normalized as buildx does: familiar form, :latest dropped', (t) => {
  t.is(contextName('alpine'), 'alpine');
  t.is(contextName('alpine:latest'), 'alpine');
  t.is(contextName('docker.io/library/alpine:latest'), 'alpine');
  t.is(contextName('alpine:3.20'), 'alpine:3.20');
  t.is(contextName('localhost:5000/app'), 'localhost:5000/app');
  t.throws(() => contextName('Foo'), {
    message: 'invalid context name Foo: invalid reference format: repository name (library/Foo) must be lowercase',
  });
  t.throws(() => contextName(''), { message: 'invalid context name : invalid reference format' });
  t.is(lookupName('scratch'), undefined);
  t.is(lookupName('context'), undefined);
  t.is(lookupName('busybox:latest'), 'busybox');
});

test('--build-context values are NAME=VALUE: a value without = fails with buildx’s message', (t) => {
  t.deepEqual(splitBuildContexts(['foo=./dir', 'docker.io/library/bar:latest=docker-image://busybox', 'foo=x=y']), {
    foo: 'x=y',
    bar: 'docker-image://busybox',
  });
  t.throws(() => splitBuildContexts(['foo']), { message: 'invalid context value: foo, expected key=value' });
  t.throws(() => splitBuildContexts(['=x']), { message: 'invalid context name : invalid reference format' });
});

/** build once with a local named context `foo`; returns the digest and the number of cached steps. */
async function buildNamed(
  store: Store,
  ctx: string,
  foo: string,
  target: string,
): Promise<{ digest: string; cached: number; steps: number }> {
  let cached = 0;
  let steps = 0;
  const r = await build({
    store,
    context: ctx,
    network: 'none',
    target,
    sourceDateEpoch: 1_700_000_000, // the same image digest from the same inputs
    buildContexts: { foo },
    onEvent: (e) => {
      if (e.type === 'cached') cached++;
      if (e.type === 'step' && /\[.* \d+\/\d+\] (RUN|COPY)/.test(e.name)) steps++;
    },
  } satisfies BuildOptions);
  return { digest: r.digest, cached, steps };
}

const cacheDockerfile = `FROM scratch AS copy_from
COPY --from=foo /foo /

FROM busybox AS run_mount
RUN --mount=from=foo,src=/foo,target=/in/foo cp /in/foo /foo

FROM foo AS image_source
COPY --from=busybox / /
RUN cat /foo > /bar
`;

const rootTest = isRoot ? test.serial : test.serial.skip;
rootTest(
  'a rebuild with an unchanged local context is fully cached; a changed file misses only where it is read',
  async (t) => {
    const store = await busyboxStore(t);
    await tagImage(store, (await getImage(store, 'busybox:test')).descriptor, 'busybox:latest');
    const dir = await makeTempDir('tsbuild-nc-cache-');
    t.teardown(() => removeDir(dir));
    await mkdir(join(dir, 'ctx'));
    await mkdir(join(dir, 'foo'));
    await writeFile(join(dir, 'ctx', 'Dockerfile'), cacheDockerfile);
    await writeFile(join(dir, 'foo', 'foo'), 'foo');
    await writeFile(join(dir, 'foo', 'bar'), 'bar');
    const ctx = join(dir, 'ctx');
    const foo = join(dir, 'foo');
    const first: Record<string, string> = {};
    for (const target of ['copy_from', 'run_mount', 'image_source']) {
      const a = await buildNamed(store, ctx, foo, target);
      t.is(a.cached, 0, `${target}: the first build runs every step`);
      const b = await buildNamed(store, ctx, foo, target);
      t.is(b.cached, b.steps, `${target}: the rebuild is fully cached`);
      t.is(b.digest, a.digest, `${target}: the same image`);
      first[target] = a.digest;
    }
    // bar is read only by the stage FROM foo (the whole directory); /foo by the others
    await writeFile(join(dir, 'foo', 'bar'), 'changed');
    for (const target of ['copy_from', 'run_mount']) {
      const c = await buildNamed(store, ctx, foo, target);
      t.is(c.cached, c.steps, `${target}: still fully cached`);
      t.is(c.digest, first[target]!, target);
    }
    const c = await buildNamed(store, ctx, foo, 'image_source');
    t.is(c.cached, 0, 'image_source: the stage FROM foo runs again');
    t.not(c.digest, first.image_source);
    // a changed /foo misses where /foo is read
    await writeFile(join(dir, 'foo', 'foo'), 'foo2');
    const d = await buildNamed(store, ctx, foo, 'copy_from');
    t.is(d.cached, 0, 'copy_from: COPY --from=foo /foo runs again');
    t.is(await readImageFile(store, d.digest, 'foo'), 'foo2');
  },
);

rootTest('an image context’s digest enters the cache key as FROM’s does', async (t) => {
  const store = await busyboxStore(t);
  const dir = await makeTempDir('tsbuild-nc-image-');
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'Dockerfile'), 'FROM base\nRUN echo hi > /hi\n');
  await build({
    store,
    context: dir,
    network: 'none',
    tags: ['bk-nc-other:latest'],
    buildContexts: { base: 'docker-image://busybox:test' },
  });
  let cached = 0;
  const onEvent: BuildOptions['onEvent'] = (e) => {
    if (e.type === 'cached') cached++;
  };
  await build({
    store,
    context: dir,
    network: 'none',
    buildContexts: { base: 'docker-image://busybox:test' },
    onEvent,
  });
  t.is(cached, 1, 'the same image: RUN is cached');
  cached = 0;
  await build({
    store,
    context: dir,
    network: 'none',
    buildContexts: { base: 'docker-image://bk-nc-other:latest' },
    onEvent,
  });
  t.is(cached, 0, 'another image: RUN runs again');
});
if (!haveRegistry)
  test.skip(`${registryCase.title} [${registryCase.from}] (docker-registry is not installed)`, () => {});

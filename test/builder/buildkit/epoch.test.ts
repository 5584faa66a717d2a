// BuildKit's frontend/dockerfile/dockerfile_source_date_epoch_test.go, replayed offline (see harness.ts and
// README.md). BuildKit's tests read the OCI exporter's output (image created time, history times, the layer's
// rewritten-timestamp annotation); here the same times are read from the stored image and the files of its layers.
// A stage's remote ADD (SOURCE_DATE_EPOCH=<stage>) is served from 127.0.0.1 by this file; the rules of epoch.go
// that BuildKit's tests reach only through HTTP contexts (Last-Modified first, then the newest regular file of an
// archive, else no epoch) are checked on that stage's ADD.
// Left out: git and HTTP contexts (testSourceDateEpochContextGit, ContextHTTP*), named contexts (NamedContext*),
// the exporter's own source-date-epoch attribute (DockerfileDefaultReset), and testReproSourceDateEpoch
// (BuildKit's digests of a debian image pushed to a registry).
import test from 'ava';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build, type BuildOptions } from '../../../builder/build.js';
import type { BuildEvent } from '../../../builder/events.js';
import { getImage } from '../../../layers/store/image.js';
import type { Store } from '../../../layers/store/store.js';
import { tarSync } from '../../../fixtures/hostile-layers.js';
import { isRoot, makeTempDir, removeDir } from '../../helpers/index.js';
import { busyboxStore } from '../build-harness.js';
import { declareCases, readImageFile, type BkCase } from './harness.js';

const F = 'dockerfile_source_date_epoch_test.go';

const iso = (s: number): string => new Date(s * 1000).toISOString().replace('.000Z', 'Z');
const at = (s: number): Date => new Date(s * 1000);

/** BuildKit's makeTarContext: regular files (mode 0600) with the given times */
const tarOf = (...files: Array<{ name: string; data: string; mtime: number }>): Buffer =>
  tarSync(files.map((f) => ({ name: f.name, data: f.data, mode: 0o600, mtime: at(f.mtime) })));

/** what the server answers: the body, and Last-Modified when set (seconds) */
const served = new Map<string, { body: Buffer; lastModified?: number }>([
  // testSourceDateEpochStageHTTPArchive
  ['/src.tar', { body: tarOf({ name: 'foo', data: 'bar', mtime: 1_700_000_402 }) }],
  // Last-Modified wins over the archive's times (epoch.go sourceDateEpochFromMetadata; testSourceDateEpoch
  // NamedContextHTTPLastModified serves the archive's file an hour after its Last-Modified)
  ['/lm.tar', { body: tarOf({ name: 'foo', data: 'bar', mtime: 1_700_000_601 + 3600 }), lastModified: 1_700_000_601 }],
  // not an archive, with and without Last-Modified
  ['/note.txt', { body: Buffer.from('just text, no archive\n'), lastModified: 1_700_000_701 }],
  ['/bare.txt', { body: Buffer.from('just text, no archive and no time\n') }],
  // compressed; a newer directory and symlink do not count (only regular files)
  [
    '/src.tar.gz',
    {
      body: gzipSync(
        tarSync([
          { name: 'd/', type: 'directory', mtime: at(1_700_000_899) },
          { name: 'd/a', data: 'a', mtime: at(1_700_000_801) },
          { name: 'd/b', data: 'b', mtime: at(1_700_000_802) },
          { name: 'd/l', type: 'symlink', linkname: 'a', mtime: at(1_700_000_898) },
        ]),
      ),
    },
  ],
  // only a directory: no regular file, no time
  ['/dirs.tar', { body: tarSync([{ name: 'd/', type: 'directory', mtime: at(1_700_000_901) }]) }],
]);
let requests: string[] = [];
const server: Server = createServer((req, res) => {
  requests.push(req.url ?? '');
  const r = served.get(req.url ?? '');
  if (!r) {
    res.writeHead(404).end();
    return;
  }
  const headers: Record<string, string | number> = { 'content-length': r.body.length };
  if (r.lastModified !== undefined) headers['last-modified'] = at(r.lastModified).toUTCString();
  res.writeHead(200, headers).end(req.method === 'HEAD' ? undefined : r.body);
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
test.after.always(() => new Promise<void>((r) => server.close(() => r())));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const url = (): string => base;

/** the image and every history entry it adds were created at `s`, and /Dockerfile has that mtime */
const createdAt = (s: number): BkCase['expect'] => ({
  check: (t, { image, root }) => {
    t.is(image.config.created, iso(s));
    for (const h of image.config.history ?? []) t.is(h.created, iso(s), `history ${h.created_by}`);
    if (root) t.is(statSync(join(root, 'Dockerfile')).mtimeMs / 1000, s, 'the copied file has the epoch as mtime');
  },
  files: { Dockerfile: { type: 'file' } },
});

/**
 * testSourceDateEpochStageHTTPArchive's assertions for epoch `s`: the RUN saw SOURCE_DATE_EPOCH=s, the last layer's
 * file has s as mtime (BuildKit: buildkit/rewritten-timestamp), the image and the entries this build added were
 * created at s
 */
const stageEpoch = (s: number): BkCase['expect'] => ({
  files: { epoch: String(s) },
  check: (t, { image, base: bb, root }) => {
    t.is(image.config.created, iso(s));
    const added = (image.config.history ?? []).slice((bb.config.history ?? []).length);
    t.true(added.length > 0);
    for (const h of added) t.is(h.created, iso(s), `history ${h.created_by}`);
    t.is(statSync(join(root!, 'epoch')).mtimeMs / 1000, s, 'the RUN layer is clamped to the epoch');
  },
});

/** a Dockerfile whose SOURCE_DATE_EPOCH is the stage `mysource` that ADDs `path`, and whose RUN records it */
const stageDockerfile = (add: string): string =>
  `ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\n${add}\nFROM busybox\nARG SOURCE_DATE_EPOCH\nRUN echo -n "$SOURCE_DATE_EPOCH" >/epoch\n`;

export const cases: BkCase[] = [
  {
    from: `${F} testSourceDateEpochWithoutExporter`,
    title: 'SOURCE_DATE_EPOCH from the build arg sets the created time of the image and of every history entry',
    dockerfile: 'FROM scratch\nENTRYPOINT foo bar\nCOPY Dockerfile .\n',
    buildArgs: { SOURCE_DATE_EPOCH: '1700000001' },
    expect: createdAt(1_700_000_001),
  },
  {
    from: `${F} testSourceDateEpochDockerfileDefault`,
    title: 'a global ARG SOURCE_DATE_EPOCH default is the epoch of the build',
    dockerfile: `ARG SOURCE_DATE_EPOCH=${Date.UTC(2015, 9, 21, 7, 28) / 1000}\nFROM scratch\nCOPY Dockerfile .\n`,
    expect: createdAt(Date.UTC(2015, 9, 21, 7, 28) / 1000),
  },
  {
    from: `${F} testSourceDateEpochDockerfileDefaultOverride`,
    title: 'a SOURCE_DATE_EPOCH build arg wins over the Dockerfile default',
    dockerfile: 'ARG SOURCE_DATE_EPOCH=1700000001\nFROM scratch\nCOPY Dockerfile .\n',
    buildArgs: { SOURCE_DATE_EPOCH: '1700000002' },
    expect: createdAt(1_700_000_002),
  },
  {
    from: `${F} testSourceDateEpochDockerfileDefaultInvalid`,
    title: 'an invalid SOURCE_DATE_EPOCH default fails: invalid SOURCE_DATE_EPOCH',
    dockerfile: 'ARG SOURCE_DATE_EPOCH=not-a-timestamp\nFROM scratch\nCOPY Dockerfile .\n',
    expect: { error: 'invalid SOURCE_DATE_EPOCH: not-a-timestamp' },
  },
  {
    from: `${F} testSourceDateEpochContextLocalUnset`,
    title: 'SOURCE_DATE_EPOCH=context with a local context leaves the epoch unset',
    dockerfile: 'FROM scratch\nCOPY Dockerfile /\n',
    buildArgs: { SOURCE_DATE_EPOCH: 'context' },
    expect: {
      check: (t, { image, root }) => {
        t.not(image.config.created, '1970-01-01T00:00:00Z');
        t.is(statSync(join(root!, 'Dockerfile')).mtimeMs, 1_600_000_000_000, 'the file keeps its own mtime');
      },
      files: { Dockerfile: { type: 'file' } },
    },
  },
  {
    from: `${F} testSourceDateEpochStageOverride`,
    title: 'a SOURCE_DATE_EPOCH build arg wins over a Dockerfile default naming a source stage (nothing is fetched)',
    dockerfile:
      'ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nADD http://127.0.0.1:9/src.tar /\nFROM scratch\nCOPY Dockerfile .\n',
    buildArgs: { SOURCE_DATE_EPOCH: '1700000502' },
    expect: createdAt(1_700_000_502),
  },
  {
    from: `${F} testSourceDateEpochStageInvalid`,
    title: 'a SOURCE_DATE_EPOCH stage with a COPY fails: does not meet source-only requirements',
    dockerfile: 'ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nCOPY Dockerfile /Dockerfile\nFROM scratch\n',
    expect: { error: 'SOURCE_DATE_EPOCH stage does not meet source-only requirements' },
  },
  {
    from: `${F} testSourceDateEpochStageHTTPArchive`,
    title: 'a source stage whose remote ADD is a tar gives the epoch: the newest mtime in the archive',
    dockerfile: stageDockerfile('ADD $URL/src.tar /'),
    url,
    expect: { ...stageEpoch(1_700_000_402), step: '[internal] resolve SOURCE_DATE_EPOCH source stage mysource' },
  },
  {
    from: `${F} testSourceDateEpochStageHTTPArchive (named by the build arg)`,
    title: 'SOURCE_DATE_EPOCH=<stage> given as a build arg resolves the same way',
    dockerfile:
      'FROM scratch AS mysource\nADD $URL/src.tar /\nFROM busybox\nARG SOURCE_DATE_EPOCH\nRUN echo -n "$SOURCE_DATE_EPOCH" >/epoch\n',
    url,
    buildArgs: { SOURCE_DATE_EPOCH: 'MySource' },
    expect: stageEpoch(1_700_000_402),
  },
  {
    from: `${F} epoch.go sourceDateEpochFromMetadata (testSourceDateEpochNamedContextHTTPLastModified's rule)`,
    title: "the source's Last-Modified wins over the times inside the archive",
    dockerfile: stageDockerfile('ADD $URL/lm.tar /'),
    url,
    expect: stageEpoch(1_700_000_601),
  },
  {
    from: `${F} epoch.go resolveSourceDateEpochFromState (a file that is not an archive)`,
    title: 'a source that is not an archive gives its Last-Modified as the epoch',
    dockerfile: stageDockerfile('ADD $URL/note.txt /'),
    url,
    expect: stageEpoch(1_700_000_701),
  },
  {
    from: `${F} epoch.go archiveMaxTimeFromRef (compressed; regular files only)`,
    title: 'the newest regular file of a gzip tar is the epoch (newer directories and symlinks do not count)',
    dockerfile: stageDockerfile('ADD $URL/src.tar.gz /'),
    url,
    expect: stageEpoch(1_700_000_802),
  },
  {
    from: `${F} epoch.go archiveMaxTimeFromRef (allowNonArchive)`,
    title: 'a source without Last-Modified that is not an archive leaves SOURCE_DATE_EPOCH unset',
    dockerfile: stageDockerfile('ADD $URL/bare.txt /'),
    url,
    expect: {
      files: { epoch: '' },
      check: (t, { image }) => {
        t.true(Date.parse(image.config.created!) > Date.UTC(2020, 0, 1), 'created is the build time');
      },
    },
  },
  {
    from: `${F} epoch.go archiveMaxTimeFromRef (no regular file)`,
    title: 'an archive without a regular file and without Last-Modified leaves SOURCE_DATE_EPOCH unset',
    dockerfile: stageDockerfile('ADD $URL/dirs.tar /'),
    url,
    expect: { files: { epoch: '' } },
  },
  {
    from: `${F} epoch.go applySourceDateEpochStageArgs`,
    title: "the source stage's ARGs expand its ADD (a default, and a build arg over a default)",
    dockerfile: stageDockerfile('ARG NAME=missing.tar\nARG EXT=tar\nADD $URL/${NAME}.${EXT} /'),
    url,
    buildArgs: { NAME: 'src' },
    expect: stageEpoch(1_700_000_402),
  },
  {
    from: `${F} epoch.go (the source stage is also built)`,
    title: 'a source stage that is also built gets the epoch it gave (its downloaded file has it as mtime)',
    dockerfile:
      'ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nADD $URL/src.tar /\nFROM scratch\nCOPY --from=mysource /src.tar /\n',
    url,
    expect: {
      files: { 'src.tar': { type: 'file' } },
      check: (t, { image, root }) => {
        t.is(image.config.created, iso(1_700_000_402));
        t.is(statSync(join(root!, 'src.tar')).mtimeMs / 1000, 1_700_000_402);
      },
    },
  },
  {
    from: `${F} epoch.go sourceDateEpochStageSource (the base name expanded over the global args)`,
    title: 'a source stage whose FROM names scratch through a global ARG is FROM scratch',
    dockerfile: `ARG BASE=scratch\n${stageDockerfile('ADD $URL/src.tar /').replace('FROM scratch AS', 'FROM $BASE AS')}`,
    url,
    expect: stageEpoch(1_700_000_402),
  },
  {
    from: `${F} epoch.go sourceDateEpochStageSource`,
    title: 'a SOURCE_DATE_EPOCH stage with two ADDs fails: exactly one remote ADD',
    dockerfile: stageDockerfile('ADD $URL/src.tar /\nADD $URL/lm.tar /'),
    url,
    expect: { error: 'SOURCE_DATE_EPOCH stage must contain exactly one remote ADD' },
  },
  {
    from: `${F} epoch.go sourceDateEpochStageSource`,
    title: 'a SOURCE_DATE_EPOCH stage without an ADD fails: exactly one remote ADD',
    dockerfile: stageDockerfile('ARG X=1'),
    expect: { error: 'SOURCE_DATE_EPOCH stage must contain exactly one remote ADD' },
  },
  {
    from: `${F} epoch.go sourceDateEpochAddSource`,
    title: 'a SOURCE_DATE_EPOCH stage whose ADD has two sources fails: exactly one remote ADD source',
    dockerfile: stageDockerfile('ADD $URL/src.tar $URL/lm.tar /'),
    url,
    expect: { error: 'SOURCE_DATE_EPOCH stage must contain exactly one remote ADD source' },
  },
  {
    from: `${F} epoch.go sourceDateEpochAddSource`,
    title: 'a SOURCE_DATE_EPOCH stage whose ADD is local fails: a single HTTP(S) or Git ADD',
    dockerfile: stageDockerfile('ADD Dockerfile /'),
    expect: { error: 'SOURCE_DATE_EPOCH stage source must be a single HTTP(S) or Git ADD' },
  },
  {
    from: `${F} epoch.go sourceDateEpochAddSource (git)`,
    title: 'a SOURCE_DATE_EPOCH stage whose ADD is a Git repository is refused (no Git sources)',
    dockerfile: stageDockerfile('ADD https://github.com/moby/buildkit.git /'),
    expect: { error: /SOURCE_DATE_EPOCH stage source .* is a Git repository, which tsbuild does not fetch/ },
  },
  {
    from: `${F} epoch.go resolveSourceDateEpochFromState (the download fails)`,
    title: 'a SOURCE_DATE_EPOCH source that cannot be downloaded fails on the stage line',
    dockerfile: stageDockerfile('ADD $URL/nosuch.tar /'),
    url,
    expect: { error: /Dockerfile:2: SOURCE_DATE_EPOCH from stage mysource: ADD .*\/nosuch\.tar: HTTP 404/ },
  },
  {
    from: `${F} epoch.go sourceDateEpochAddSource (--checksum)`,
    title: "a SOURCE_DATE_EPOCH source is checked against its ADD's --checksum",
    dockerfile: stageDockerfile(`ADD --checksum=sha256:${'0'.repeat(64)} $URL/src.tar /`),
    url,
    expect: { error: /SOURCE_DATE_EPOCH from stage mysource: .*checksum mismatch/ },
  },
  {
    from: `${F} epoch.go sourceDateEpochAddSource (--checksum)`,
    title: "a SOURCE_DATE_EPOCH source that matches its ADD's --checksum gives the epoch",
    dockerfile: stageDockerfile(
      `ADD --checksum=sha256:${createHash('sha256').update(served.get('/src.tar')!.body).digest('hex')} $URL/src.tar /`,
    ),
    url,
    expect: stageEpoch(1_700_000_402),
  },
];

declareCases(cases);

// The build cache: the epoch is resolved on every build (as ADD of a URL is fetched for its key), so the same
// served content gives the same epoch and every step is a hit; changed content gives a new epoch, new keys, and a
// rebuilt image; --no-cache resolves it too (and, the build being reproducible, gives the same image).
const cacheTitle = `a stage's remote ADD as SOURCE_DATE_EPOCH: the same content is cached, changed content gives a new epoch [${F} testSourceDateEpochStageHTTPArchive, rebuilt]`;
(isRoot ? test.serial : test.serial.skip)(cacheTitle, async (t) => {
  const cleanups: Array<() => unknown> = [];
  t.teardown(async () => {
    for (const fn of cleanups) await fn();
  });
  const store: Store = await busyboxStore({ teardown: (fn) => cleanups.push(fn) });
  const ctx = await makeTempDir('tsbuild-bk-epoch-');
  cleanups.push(() => removeDir(ctx));
  served.set('/cache.tar', { body: tarOf({ name: 'foo', data: 'v1', mtime: 1_700_001_001 }) });
  await writeFile(
    join(ctx, 'Dockerfile'),
    `ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nADD ${base}/cache.tar /\nFROM busybox:test\nCOPY Dockerfile /\nARG SOURCE_DATE_EPOCH\nRUN echo -n "$SOURCE_DATE_EPOCH" >/epoch\n`,
  );
  const run = async (extra: Partial<BuildOptions> = {}): Promise<{ digest: string; cached: number }> => {
    const events: BuildEvent[] = [];
    const r = await build({
      store,
      context: ctx,
      tags: ['epoch-cache:latest'],
      network: 'none',
      onEvent: (e) => events.push(e),
      ...extra,
    });
    return { digest: r.digest, cached: events.filter((e) => e.type === 'cached').length };
  };

  requests = [];
  const first = await run();
  t.is(first.cached, 0, 'the first build runs COPY and RUN');
  t.deepEqual(requests, ['/cache.tar'], 'the source is fetched once, the stage itself is not built');
  t.is(await readImageFile(store, 'epoch-cache:latest', 'epoch'), '1700001001');

  requests = [];
  const again = await run();
  t.deepEqual(requests, ['/cache.tar'], 'the source is fetched again to resolve the epoch');
  t.is(again.cached, 2, 'the same served content: COPY and RUN are cache hits');
  t.is(again.digest, first.digest, 'the same image');

  const fresh = await run({ noCache: true });
  t.is(fresh.cached, 0, '--no-cache runs every step');
  t.is(fresh.digest, first.digest, '--no-cache resolves the same epoch, and the build is reproducible');

  served.set('/cache.tar', { body: tarOf({ name: 'foo', data: 'v2', mtime: 1_700_001_002 }) });
  const changed = await run();
  t.is(changed.cached, 0, 'changed content: a new epoch, so new keys for COPY and RUN');
  t.not(changed.digest, first.digest);
  t.is(await readImageFile(store, 'epoch-cache:latest', 'epoch'), '1700001002');
  t.is((await getImage(store, 'epoch-cache:latest')).config.created, iso(1_700_001_002));
});

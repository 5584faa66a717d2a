// `tsbuild load` through the CLI: every load tags every image of the archive and prints `Loaded image: …` for each,
// or fails with one line and exit 1; what reaches index.json is what tsbuild computed from the verified blobs.
import test, { type ExecutionContext } from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getImage } from '../../../layers/store/image.js';
import { Store } from '../../../layers/store/store.js';
import { verifyImage } from '../../../layers/store/verify.js';
import { makeTempDir, removeDir, runCommand, tsbuild } from '../../helpers/index.js';
import { newStoreRoot } from '../../helpers/images.js';
import {
  type TestImage,
  makeLayer,
  ociImage,
  sha,
  tarOf,
  type TestLayer,
  writeDockerArchive,
  writeOciArchive,
} from './archive-fixtures.js';

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await makeTempDir('tsbuild-archives-');
  t.teardown(() => removeDir(dir));
  return dir;
}

/** sound asserts that verifyImage finds nothing wrong with each image and that skopeo and umoci read the store. */
async function sound(t: ExecutionContext, root: string, names: string[]): Promise<void> {
  const store = await Store.open(root);
  for (const n of names) t.deepEqual(await verifyImage(store, await getImage(store, n)), [], n);
  for (const n of names) {
    const r = await runCommand('skopeo', ['inspect', `oci:${root}:${n}`]);
    t.is(r.code, 0, `skopeo inspect oci:${root}:${n}: ${r.stderr}`);
  }
  const ls = await runCommand('umoci', ['ls', '--layout', root]);
  t.is(ls.code, 0, `umoci ls: ${ls.stderr}`);
}

async function load(root: string, archive: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return tsbuild(['--root', root, 'load', '-i', archive]);
}

/** fails asserts a load that exits 1 with one `error:` line naming `mention`, and leaves index.json as it was. */
async function fails(t: ExecutionContext, root: string, archive: string, mention: RegExp, what: string): Promise<void> {
  await Store.open(root);
  const before = await readFile(join(root, 'index.json'), 'utf8');
  const r = await load(root, archive);
  t.log(`${what}: ${r.stderr.trimEnd()}`);
  t.is(r.code, 1, `${what}: exit ${r.code}, stderr ${r.stderr}`);
  t.is(r.stdout, '', `${what}: nothing is reported loaded`);
  const lines = r.stderr.trimEnd().split('\n');
  t.is(lines.length, 1, `${what}: one line, got ${JSON.stringify(r.stderr)}`);
  t.regex(lines[0] ?? '', /^error: /, what);
  t.notRegex(r.stderr, /internal error/, what);
  t.regex(r.stderr, mention, what);
  t.is(await readFile(join(root, 'index.json'), 'utf8'), before, `${what}: index.json is untouched`);
}

async function twoImagesOnOneBase(): Promise<{ a: TestImage; b: TestImage }> {
  const base = await makeLayer({ 'etc/base': 'base\n' });
  const a = ociImage('a:1', [base, await makeLayer({ 'etc/a': 'a\n' })]);
  const b = ociImage('b:1', [base, await makeLayer({ 'etc/b': 'b\n' })]);
  return { a, b };
}

test('loading the same OCI archive twice tags its image and prints Loaded image both times', async (t) => {
  const root = await newStoreRoot(t);
  const dir = await tempDir(t);
  const { a } = await twoImagesOnOneBase();
  const archive = await writeOciArchive(dir, 'a.tar', [a]);
  for (const round of [1, 2]) {
    const r = await load(root, archive);
    t.is(r.code, 0, `round ${round}: ${r.stderr}`);
    t.is(r.stdout, 'Loaded image: a:1\n', `round ${round}`);
  }
  await sound(t, root, ['a:1']);
});

test('the second of two images that share a base layer loads and is tagged', async (t) => {
  const root = await newStoreRoot(t);
  const dir = await tempDir(t);
  const { a, b } = await twoImagesOnOneBase();
  const r1 = await load(root, await writeOciArchive(dir, 'a.tar', [a]));
  t.is(r1.code, 0, r1.stderr);
  const r2 = await load(root, await writeOciArchive(dir, 'b.tar', [b]));
  t.is(r2.code, 0, r2.stderr);
  t.is(r2.stdout, 'Loaded image: b:1\n');
  const both = await load(root, await writeOciArchive(dir, 'ab.tar', [a, b]));
  t.is(both.code, 0, both.stderr);
  t.is(both.stdout, 'Loaded image: a:1\nLoaded image: b:1\n');
  await sound(t, root, ['a:1', 'b:1']);
});

test('a docker save archive loads twice and tags its images each time', async (t) => {
  const root = await newStoreRoot(t);
  const dir = await tempDir(t);
  const base = await makeLayer({ 'etc/base': 'base\n' });
  const archive = await writeDockerArchive(dir, 'd.tar', [{ tags: ['d:1'], layers: [base] }]);
  for (const round of [1, 2]) {
    const r = await load(root, archive);
    t.is(r.code, 0, `round ${round}: ${r.stderr}`);
    t.is(r.stdout, 'Loaded image: d:1\n', `round ${round}`);
  }
  await sound(t, root, ['d:1']);
});

test('a docker save archive whose repeated layer is a symlinked layer.tar loads every image', async (t) => {
  const root = await newStoreRoot(t);
  const dir = await tempDir(t);
  const base = await makeLayer({ 'etc/base': 'base\n' });
  const archive = await writeDockerArchive(dir, 'd.tar', [
    { tags: ['d:1'], layers: [base, await makeLayer({ 'etc/one': '1\n' })] },
    { tags: ['d:2', 'd:two'], layers: [base, await makeLayer({ 'etc/two': '2\n' })] },
  ]);
  const r = await load(root, archive);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'Loaded image: d:1\nLoaded image: d:2\nLoaded image: d:two\n');
  await sound(t, root, ['d:1', 'd:2', 'd:two']);
});

test('an index.json descriptor that disagrees with its blob fails the load with one line and stores nothing', async (t) => {
  const root = await newStoreRoot(t);
  const dir = await tempDir(t);
  const { a, b } = await twoImagesOnOneBase();
  t.is((await load(root, await writeOciArchive(dir, 'a.tar', [a]))).code, 0);
  const lies: Array<[string, Record<string, unknown>]> = [
    ['a size with a shell command', { size: '582; rm -rf /' }],
    ['a size of 10^18', { size: 1e18 }],
    ['a negative size', { size: -5 }],
    ['a size one byte too large', { size: b.manifest.length + 1 }],
    ['a fractional size', { size: b.manifest.length + 0.5 }],
    ['a manifest labelled as an index', { mediaType: 'application/vnd.oci.image.index.v1+json' }],
    ['a manifest labelled as a layer', { mediaType: 'application/vnd.oci.image.layer.v1.tar' }],
    ['a missing media type and size', { mediaType: undefined, size: undefined }],
    ['a platform that is a string', { platform: 'linux/amd64' }],
    ['a platform that is not the config', { platform: { os: 'linux', architecture: 'arm64' } }],
    ['a name that is a number', { annotations: { 'io.containerd.image.name': 5 } }],
    ['annotations that are a list', { annotations: ['b:1'] }],
  ];
  for (const [what, change] of lies) {
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ ...b.descriptor, ...change }],
    };
    const archive = await writeOciArchive(dir, 'lie.tar', [b], { index });
    await fails(t, root, archive, /index\.json/, what);
  }
  await sound(t, root, ['a:1']);
});

test('a descriptor inside a manifest that disagrees with its blob fails the load with one line', async (t) => {
  const root = await newStoreRoot(t);
  const dir = await tempDir(t);
  const layer = await makeLayer({ 'etc/x': 'x\n' });
  const good = ociImage('x:1', [layer]);
  const doc = JSON.parse(good.manifest.toString()) as {
    config: Record<string, unknown>;
    layers: Array<Record<string, unknown>>;
  };
  const variants: Array<[string, (m: typeof doc) => void]> = [
    ['a config size that is too small', (m) => (m.config.size = 3)],
    ['a layer size that is a string', (m) => ((m.layers[0] as Record<string, unknown>).size = '1; reboot')],
    ['a layer labelled as a config', (m) => ((m.layers[0] as Record<string, unknown>).mediaType = m.config.mediaType)],
    ['a config that is null', (m) => ((m as { config: unknown }).config = null)],
    ['layers that are a string', (m) => ((m as { layers: unknown }).layers = 'abc')],
    [
      'a manifest labelled as a docker manifest',
      (m) => ((m as { mediaType?: string }).mediaType = 'application/vnd.docker.distribution.manifest.v2+json'),
    ],
  ];
  for (const [what, change] of variants) {
    const m = structuredClone(doc);
    change(m);
    const bytes = Buffer.from(JSON.stringify(m));
    const img: TestImage = {
      ...good,
      manifest: bytes,
      blobs: new Map([...good.blobs].filter(([d]) => d !== good.descriptor.digest).concat([[sha(bytes), bytes]])),
      descriptor: { ...good.descriptor, digest: sha(bytes), size: bytes.length },
    };
    const archive = await writeOciArchive(dir, 'lie.tar', [img]);
    await fails(t, root, archive, /blobs\/sha256\/[a-f0-9]{64}|index\.json/, what);
  }
});

test('malformed JSON in an OCI archive is a one-line error with exit 1', async (t) => {
  const root = await newStoreRoot(t);
  const dir = await tempDir(t);
  const { a } = await twoImagesOnOneBase();
  const unnamed = { ...a.descriptor, annotations: undefined };
  const indexes: Array<[string, unknown, string?]> = [
    ['index.json without manifests', { schemaVersion: 2 }],
    ['index.json with an empty manifests list', { schemaVersion: 2, manifests: [] }],
    ['manifests:[null]', { schemaVersion: 2, manifests: [null] }],
    ['manifests that are a string', { schemaVersion: 2, manifests: 'abc' }],
    ['index.json that is null', null],
    ['index.json that is a list', []],
    ['index.json that is not JSON', '{"schemaVersion":'],
    ['a digest that is a number', { schemaVersion: 2, manifests: [{ ...a.descriptor, digest: 5 }] }],
    ['a digest of a blob the archive lacks', { schemaVersion: 2, manifests: [{ ...a.descriptor, digest: sha('x') }] }],
    ['manifest.json [null] beside an unnamed entry', { schemaVersion: 2, manifests: [unnamed] }, '[null]'],
    [
      'manifest.json RepoTags "abc"',
      { schemaVersion: 2, manifests: [unnamed] },
      `[{"Config":"blobs/sha256/${sha(a.config).slice(7)}","RepoTags":"abc"}]`,
    ],
    ['manifest.json that is an object', { schemaVersion: 2, manifests: [unnamed] }, '{"Config":"x"}'],
  ];
  for (const [what, index, manifestJson] of indexes) {
    const archive = await writeOciArchive(dir, 'bad.tar', [a], {
      index: typeof index === 'string' ? index : (index ?? 'null'),
      ...(manifestJson === undefined ? {} : { manifestJson }),
    });
    await fails(t, root, archive, /index\.json|manifest\.json|blobs\/sha256/, what);
  }
});

test('malformed JSON in a docker save archive is a one-line error with exit 1', async (t) => {
  const root = await newStoreRoot(t);
  const dir = await tempDir(t);
  const base = await makeLayer({ 'etc/base': 'base\n' });
  const good = await writeDockerArchive(dir, 'good.tar', [{ tags: ['d:1'], layers: [base] }]);
  t.is((await load(root, good)).code, 0);
  const store = await Store.open(root);
  const cfgName = `${(await getImage(store, 'd:1')).manifest.config.digest.slice(7)}.json`;
  // writeDockerArchive names the first image's first layer directory after this
  const layerPath = `${sha(`0/0/${base.diffId}`).slice(7)}/layer.tar`;
  const manifests: Array<[string, string]> = [
    ['manifest.json [null]', '[null]'],
    ['manifest.json {}', '{}'],
    ['manifest.json that is a number', '5'],
    ['manifest.json that is empty', '[]'],
    ['Layers "abc"', `[{"Config":"${cfgName}","RepoTags":["d:2"],"Layers":"abc"}]`],
    ['Layers [5]', `[{"Config":"${cfgName}","RepoTags":["d:2"],"Layers":[5]}]`],
    ['Config 5', '[{"Config":5,"RepoTags":["d:2"],"Layers":[]}]'],
    ['RepoTags "abc"', `[{"Config":"${cfgName}","RepoTags":"abc","Layers":[]}]`],
    ['RepoTags [5]', `[{"Config":"${cfgName}","RepoTags":[5],"Layers":[]}]`],
    ['a RepoTag that is not a name', `[{"Config":"${cfgName}","RepoTags":["UPPER CASE"],"Layers":["${layerPath}"]}]`],
    ['a layer that is not in the archive', `[{"Config":"${cfgName}","RepoTags":["d:2"],"Layers":["nope/layer.tar"]}]`],
    ['layers that do not match the diff_ids', `[{"Config":"${cfgName}","RepoTags":["d:2"],"Layers":[]}]`],
    ['a config that is missing', '[{"Config":"nope.json","RepoTags":["d:2"],"Layers":[]}]'],
  ];
  for (const [what, manifestJson] of manifests) {
    const archive = await writeDockerArchive(dir, 'bad.tar', [{ tags: ['d:2'], layers: [base] }], { manifestJson });
    await fails(t, root, archive, /manifest\.json|\.json/, what);
  }
  const configs: Array<[string, string]> = [
    ['a config that is null', 'null'],
    ['a config without rootfs', '{"architecture":"amd64","os":"linux"}'],
    [
      'a config whose diff_ids are a string',
      '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":"x"}}',
    ],
  ];
  for (const [what, config] of configs) {
    const archive = await dockerArchiveWithConfig(dir, config, base);
    await fails(t, root, archive, /cfg\.json/, what);
  }
  await sound(t, root, ['d:1']);
});

/** dockerArchiveWithConfig writes a docker save archive whose one config is `config` (raw text), named cfg.json. */
async function dockerArchiveWithConfig(dir: string, config: string, layer: TestLayer): Promise<string> {
  const path = join(dir, 'cfg.tar');
  await writeFile(
    path,
    await tarOf([
      { name: 'l1/layer.tar', body: layer.tar },
      { name: 'cfg.json', body: config },
      { name: 'manifest.json', body: '[{"Config":"cfg.json","RepoTags":["d:3"],"Layers":["l1/layer.tar"]}]' },
    ]),
  );
  return path;
}

test('a docker-archive as skopeo and podman write it (the layer at the top, <id>/layer.tar a symlink) loads', async (t) => {
  const root = await newStoreRoot(t);
  const dir = await tempDir(t);
  const layer = await makeLayer({ 'etc/skopeo': 'from skopeo\n' });
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: [layer.diffId] },
    }),
  );
  const top = `${layer.diffId.slice(7)}.tar`;
  const id = sha(`id/${layer.diffId}`).slice(7);
  const manifest = [{ Config: `${sha(config).slice(7)}.json`, RepoTags: ['docker.io/library/sk:1'], Layers: [top] }];
  const archive = join(dir, 'skopeo.tar');
  await writeFile(
    archive,
    await tarOf([
      { name: top, body: layer.tar },
      { name: `${sha(config).slice(7)}.json`, body: config },
      { name: `${id}/layer.tar`, type: 'symlink', linkname: `../${top}` },
      { name: `${id}/VERSION`, body: '1.0' },
      { name: 'manifest.json', body: JSON.stringify(manifest) },
    ]),
  );
  const r = await load(root, archive);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'Loaded image: sk:1\n');
  await sound(t, root, ['sk:1']);
});

test('an OCI archive whose oci-layout is not version 1.0.0 fails naming the entry', async (t) => {
  const root = await newStoreRoot(t);
  const dir = await tempDir(t);
  const img = ociImage('lay:1', [await makeLayer({ 'etc/a': 'a\n' })]);
  for (const [file, body] of [
    ['garbage.tar', 'garbage\n'],
    ['v2.tar', '{"imageLayoutVersion":"2.0.0"}'],
  ] as const) {
    const archive = await writeOciArchive(dir, file, [img], { extra: [{ name: 'oci-layout', body }] });
    await fails(t, root, archive, new RegExp(`${file}: oci-layout`), file);
  }
});

test('an archive cut between two entries (no end-of-archive blocks) fails as truncated', async (t) => {
  const root = await newStoreRoot(t);
  const dir = await tempDir(t);
  const img = ociImage('cut:1', [await makeLayer({ 'etc/a': 'a\n' })]);
  const whole = await readFile(await writeOciArchive(dir, 'whole.tar', [img]));
  // tar-stream ends a tar with two zero blocks (and pads it to no record): taking them off leaves every entry whole
  t.true(whole.subarray(-1024).every((b) => b === 0));
  await writeFile(join(dir, 'cut.tar'), whole.subarray(0, whole.length - 1024));
  await fails(t, root, join(dir, 'cut.tar'), /ends right after entry oci-layout.*truncated/, 'cut');
});

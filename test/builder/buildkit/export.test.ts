// BuildKit's frontend/dockerfile/dockerfile_export_test.go against `tsbuild build --output` (cli/build-output.ts:
// parseOutput reads the flag, writeOutput writes it). One case runs the CLI itself; the others call build() and
// the same two functions. BuildKit's exporters: ExporterTar (the root filesystem as a tar), ExporterLocal (into a
// directory), ExporterOCI (an OCI layout archive); `type=docker` is buildx's docker archive.
//
// Adapted: only linux/amd64 is built here, so testTarExporterMulti keeps its single-platform build and
// testExportMultiPlatform checks the linux/amd64 result (the whoami file, the platform label, the OCI archive's
// manifest, config and layer). testTarContext sends the context archive on standard input (`build - < ctx.tar`).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { build } from '../../../builder/build.js';
import { parseOutput, writeOutput } from '../../../cli/build-output.js';
import { loadArchive } from '../../../layers/sources/archive-load.js';
import { compressImageLayers } from '../../../layers/store/compress-layers.js';
import { loadImage } from '../../../layers/store/image.js';
import { Store } from '../../../layers/store/store.js';
import { verifyImage } from '../../../layers/store/verify.js';
import { isRoot, makeTempDir, removeDir, tsbuild } from '../../helpers/index.js';

const F = 'dockerfile_export_test.go';
const serial = isRoot ? test.serial : test.serial.skip;

/** ctxDir writes a context (files by path) into a fresh directory. */
async function ctxDir(t: { teardown(fn: () => unknown): void }, files: Record<string, string>): Promise<string> {
  const dir = await makeTempDir('tsbuild-export-ctx-');
  t.teardown(() => removeDir(dir));
  for (const [p, text] of Object.entries(files)) writeFileSync(join(dir, p), text, { mode: 0o600 });
  return dir;
}

async function tempStore(t: { teardown(fn: () => unknown): void }): Promise<Store> {
  const dir = await makeTempDir('tsbuild-export-store-');
  t.teardown(() => removeDir(dir));
  return Store.open(join(dir, 'store'));
}

/** buildTo builds `context` and writes `--output spec` (dest paths relative to `cwd`). */
async function buildTo(
  store: Store,
  context: string | Readable,
  spec: string,
  cwd: string,
  extra: { tags?: string[] } = {},
): Promise<Awaited<ReturnType<typeof build>>> {
  const r = await build({
    store,
    ...(typeof context === 'string' ? { context } : { context: '-', stdin: context }),
    tags: extra.tags ?? [],
    network: 'none',
  });
  await writeOutput(parseOutput(spec), { store, image: r.image, names: extra.tags ?? [], cwd });
  return r;
}

/** tarFile reads one member of a tar archive (file or bytes). */
function tarFile(archive: string, member: string): string {
  return execFileSync('tar', ['-xOf', archive, member]).toString();
}

serial(
  `build -o type=tar,dest=FILE writes the root filesystem as a tar (the CLI) [${F} testTarExporterBasic]`,
  async (t) => {
    const store = await tempStore(t);
    const ctx = await ctxDir(t, { Dockerfile: 'FROM scratch\nCOPY foo foo\n', foo: 'data' });
    const file = join(ctx, 'out.tar');
    const r = await tsbuild(['--root', store.root, 'build', '--progress', 'quiet', '-o', `type=tar,dest=${file}`, ctx]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /^sha256:[0-9a-f]{64}\n$/);
    t.deepEqual(execFileSync('tar', ['-tf', file]).toString().split('\n').filter(Boolean), ['foo']);
    t.is(tarFile(file, 'foo'), 'data');
  },
);

serial(`-o - writes the tar to standard output [${F} testTarExporterBasic]`, async (t) => {
  const store = await tempStore(t);
  const ctx = await ctxDir(t, { Dockerfile: 'FROM scratch\nCOPY foo foo\n', foo: 'data' });
  const r = await build({ store, context: ctx, network: 'none' });
  const chunks: Buffer[] = [];
  const stdout = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  await writeOutput(parseOutput('-'), { store, image: r.image, names: [], stdout });
  const file = join(ctx, 'stdout.tar');
  writeFileSync(file, Buffer.concat(chunks));
  t.is(tarFile(file, 'foo'), 'data');
});

serial(`type=tar,dest=FILE: the stage chosen by $TARGETOS [${F} testTarExporterMulti]`, async (t) => {
  const store = await tempStore(t);
  const ctx = await ctxDir(t, {
    Dockerfile: `
FROM scratch AS stage-linux
COPY foo forlinux

FROM scratch AS stage-darwin
COPY bar fordarwin

FROM stage-$TARGETOS
`,
    foo: 'data',
    bar: 'data2',
  });
  await buildTo(store, ctx, 'type=tar,dest=out/result.tar', ctx);
  const file = join(ctx, 'out/result.tar');
  t.is(tarFile(file, 'forlinux'), 'data');
  t.deepEqual(execFileSync('tar', ['-tf', file]).toString().split('\n').filter(Boolean), ['forlinux']);
});

serial(
  `type=local and type=oci: the linux/amd64 result, its label, manifest, config and layer [${F} testExportMultiPlatform]`,
  async (t) => {
    const store = await tempStore(t);
    const ctx = await ctxDir(t, {
      Dockerfile: `
FROM scratch
ARG TARGETARCH
ARG TARGETPLATFORM
LABEL target=$TARGETPLATFORM
COPY arch-$TARGETARCH whoami
`,
      'arch-arm': 'i am arm',
      'arch-amd64': 'i am amd64',
      'arch-s390x': 'i am s390x',
    });
    await buildTo(store, ctx, 'type=local,dest=local', ctx);
    t.is(readFileSync(join(ctx, 'local/whoami'), 'utf8'), 'i am amd64');

    await buildTo(store, ctx, 'type=oci,dest=out.tar', ctx);
    const file = join(ctx, 'out.tar');
    const blob = (d: string): string => tarFile(file, `blobs/sha256/${d.replace(/^sha256:/, '')}`);
    const index = JSON.parse(tarFile(file, 'index.json')) as { manifests: Array<{ digest: string }> };
    t.is(index.manifests.length, 1);
    const manifest = JSON.parse(blob(index.manifests[0]!.digest)) as {
      config: { digest: string };
      layers: Array<{ digest: string }>;
    };
    t.is(manifest.layers.length, 1);
    const config = JSON.parse(blob(manifest.config.digest)) as {
      os: string;
      architecture: string;
      config: { Labels?: Record<string, string> };
    };
    t.is(config.os, 'linux');
    t.is(config.architecture, 'amd64');
    t.is(config.config.Labels?.target, 'linux/amd64');
    const layer = join(ctx, 'layer.tar');
    writeFileSync(layer, execFileSync('tar', ['-xOf', file, `blobs/sha256/${manifest.layers[0]!.digest.slice(7)}`]));
    t.is(tarFile(layer, 'whoami'), 'i am amd64');
  },
);

serial(
  `type=oci and type=docker archives carry gzip layers by default, as BuildKit's exporters write them; compression=zstd|uncompressed [${F} (exporter compression attribute)]`,
  async (t) => {
    const store = await tempStore(t);
    const ctx = await ctxDir(t, { Dockerfile: 'FROM scratch\nCOPY a /a\n', a: 'x'.repeat(10000) });
    const layerOf = (file: string): { mediaType: string; size: number } => {
      const index = JSON.parse(tarFile(file, 'index.json')) as { manifests: Array<{ digest: string }> };
      const m = JSON.parse(tarFile(file, `blobs/sha256/${index.manifests[0]!.digest.slice(7)}`)) as {
        layers: Array<{ mediaType: string; size: number }>;
      };
      return m.layers[0]!;
    };
    const r = await buildTo(store, ctx, 'type=oci,dest=gz.tar', ctx);
    t.is(r.image.manifest.layers[0]?.mediaType, 'application/vnd.oci.image.layer.v1.tar', 'the store keeps it plain');
    t.is(layerOf(join(ctx, 'gz.tar')).mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    t.true(layerOf(join(ctx, 'gz.tar')).size < 1000, 'compressed');
    await buildTo(store, ctx, 'type=docker,dest=zst.tar,compression=zstd', ctx);
    t.is(layerOf(join(ctx, 'zst.tar')).mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
    await buildTo(store, ctx, 'type=oci,dest=plain.tar,compression=uncompressed', ctx);
    t.is(layerOf(join(ctx, 'plain.tar')).mediaType, 'application/vnd.oci.image.layer.v1.tar');
    // each archive loads into another store and verifies
    for (const name of ['gz.tar', 'zst.tar', 'plain.tar']) {
      const other = await tempStore(t);
      const loaded = await loadArchive(other, { input: join(ctx, name) });
      t.is(loaded.length, 1);
      t.deepEqual(await verifyImage(other, await loadImage(other, loaded[0]!.descriptor)), [], name);
    }
  },
);

serial(`a context archive on standard input (build - < ctx.tar) [${F} testTarContext]`, async (t) => {
  const store = await tempStore(t);
  const src = await ctxDir(t, { Dockerfile: 'FROM scratch\nCOPY foo /\n', foo: 'contents' });
  const archive = execFileSync('tar', ['-cf', '-', '-C', src, 'Dockerfile', 'foo']);
  const out = await makeTempDir('tsbuild-export-out-');
  t.teardown(() => removeDir(out));
  await buildTo(store, Readable.from([archive]), 'type=local,dest=result', out);
  t.is(readFileSync(join(out, 'result/foo'), 'utf8'), 'contents');
});

serial(
  `type=docker: an archive that loads into another store as the same image, with its name [${F} (buildx's docker exporter)]`,
  async (t) => {
    const store = await tempStore(t);
    const ctx = await ctxDir(t, { Dockerfile: 'FROM scratch\nCOPY foo /foo\n', foo: 'data' });
    const r = await buildTo(store, ctx, 'type=docker,dest=img.tar', ctx, { tags: ['exported:1'] });
    const other = await tempStore(t);
    const loaded = await loadArchive(other, { input: join(ctx, 'img.tar') });
    t.is(loaded.length, 1);
    // the archive's layers are gzip-compressed: its manifest is the one `push` would send, the config the build's
    const pushed = await compressImageLayers(store, r.image.descriptor, 'gzip');
    t.is(loaded[0]!.descriptor.digest, pushed.descriptor.digest);
    const image = await loadImage(other, loaded[0]!.descriptor);
    t.is(image.manifest.config.digest, r.image.manifest.config.digest);
    t.deepEqual(loaded[0]!.names, ['exported:1']);
    t.deepEqual(await verifyImage(other, image), []);
  },
);

serial(
  `type=local into a directory with files merges the result in [${F} (session/filesync syncTargetDiffCopy: fsutil Merge)]`,
  async (t) => {
    const store = await tempStore(t);
    const ctx = await ctxDir(t, {
      Dockerfile: 'FROM scratch\nCOPY foo /foo\nCOPY foo /sub/bar\nCOPY foo /etc/tsbuild-merge-probe\n',
      foo: 'new',
    });
    const out = join(ctx, 'out');
    mkdirSync(join(out, 'sub'), { recursive: true });
    writeFileSync(join(out, 'keep'), 'mine');
    writeFileSync(join(out, 'foo'), 'old');
    writeFileSync(join(out, 'sub/other'), 'mine too');
    symlinkSync('/etc', join(out, 'etc'));
    await buildTo(store, ctx, 'type=local,dest=out', ctx);
    t.is(readFileSync(join(out, 'foo'), 'utf8'), 'new');
    t.is(readFileSync(join(out, 'sub/bar'), 'utf8'), 'new');
    t.is(readFileSync(join(out, 'keep'), 'utf8'), 'mine');
    t.is(readFileSync(join(out, 'sub/other'), 'utf8'), 'mine too');
    t.false(existsSync('/etc/tsbuild-merge-probe'), 'a symlink of the directory is replaced, never followed');
    t.true(lstatSync(join(out, 'etc')).isDirectory());
    t.deepEqual(
      readdirSync(ctx).filter((n) => n.startsWith('out.tmp-')),
      [],
      'no scratch directory left',
    );
    // a second build into the same directory (docker build -o out, twice)
    await buildTo(store, ctx, 'type=local,dest=out', ctx);
    t.is(readFileSync(join(out, 'foo'), 'utf8'), 'new');
  },
);

test(`--output values BuildKit refuses or tsbuild cannot honour are errors [${F} (buildx output parsing)]`, (t) => {
  t.throws(() => parseOutput('type=image,name=x'), { message: /type=image is not supported/ });
  t.throws(() => parseOutput('type=tar'), { message: /needs dest=/ });
  t.throws(() => parseOutput('type=local,dest=-'), { message: /needs a directory/ });
  t.throws(() => parseOutput('type=oci,dest=x,compression=lz4'), { message: /compression=lz4: use gzip, zstd or/ });
  t.throws(() => parseOutput('type=tar,dest=x,compression=gzip'), { message: /key compression is not supported/ });
  t.throws(() => parseOutput('type=oci,dest=x,force-compression=true'), { message: /force-compression/ });
  t.deepEqual(parseOutput('type=docker,dest=x'), { type: 'docker', dest: 'x', compression: 'gzip' });
  t.deepEqual(parseOutput('out'), { type: 'local', dest: 'out' });
  t.deepEqual(parseOutput('-'), { type: 'tar', dest: '-' });
});

test('compression=zstd of an image with Docker media types is refused, never ignored (Docker has no zstd layers)', async (t) => {
  const image = { descriptor: { mediaType: 'application/vnd.docker.distribution.manifest.v2+json' } } as never;
  await t.throwsAsync(
    writeOutput(parseOutput('type=docker,dest=x.tar,compression=zstd'), {
      store: {} as never,
      image,
      names: ['old:1'],
    }),
    { message: /compression=zstd: old:1 has Docker media types/ },
  );
});

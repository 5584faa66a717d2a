// A build keeps its layers uncompressed (as buildah and docker's image store do); push compresses them on the way
// out, into exactly the bytes a build that compressed at each commit would have stored, so the pushed digest does not
// depend on when the compression happened. Through a real docker-registry on 127.0.0.1.
import test from 'ava';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxAvailable } from '../../fixtures/busybox.js';
import { MediaType } from '../../layers/model/types.js';
import { busyboxTree } from '../helpers/images.js';
import { isRoot, makeTempDir, removeDir } from '../helpers/index.js';
import { haveRegistry, startRegistry } from '../helpers/registry.js';
import { anotherStore, manifestOf, newCtx } from './util.js';

const rtest = haveRegistry && busyboxAvailable() && isRoot ? test : test.skip;
const SDE = '1700000000';

rtest(
  "push compresses a build's layers into the digest a build with --compression gzip gets, once per layer",
  async (t) => {
    const reg = await startRegistry(t);
    const a = await newCtx(t);
    const b = await anotherStore(t, a);
    const tree = await busyboxTree(t);
    const ctx = await makeTempDir('tsbuild-pushc-');
    t.teardown(() => removeDir(ctx));
    await writeFile(join(ctx, 'Dockerfile'), 'FROM bb:1\nRUN echo made > /made\nCOPY Dockerfile /df\n');
    a.env.SOURCE_DATE_EPOCH = SDE; // b and the pulling store share this environment
    for (const c of [a, b]) await c.ok(['import', tree, 'bb:1']);
    const build = async (c: typeof a, extra: string[]): Promise<string> => {
      const r = await c.run(['build', '--network', 'none', ...extra, '-t', 'app:1', ctx]);
      if (r.code !== 0) throw new Error(r.stderr);
      return r.stdout.trim();
    };
    // the same Dockerfile, the same epoch: one store keeps layers as built, the other compresses at commit
    const kept = await build(a, ['--no-cache']);
    const gzip = await build(b, ['--no-cache', '--compression', 'gzip']);
    t.not(kept, gzip);
    const keptLayers = (await manifestOf(a.root, 'app:1')).layers.map((l) => l.mediaType);
    t.deepEqual(
      keptLayers.slice(1),
      [MediaType.OciLayer, MediaType.OciLayer],
      'the build stores its layers uncompressed',
    );
    t.is((await manifestOf(b.root, 'app:1')).layers[1]?.mediaType, MediaType.OciLayerGzip);

    const dest = `${reg.host}/tsbuild/pushc:1`;
    const first = await a.run(['push', 'app:1', dest]);
    t.is(first.code, 0, first.stderr);
    t.is(first.stdout.trim(), gzip, "the pushed digest is the compressing build's");
    t.is((first.stderr.match(/compressing layer/g) ?? []).length, 2);
    const again = await a.run(['push', 'app:1', dest]);
    t.is(again.stdout.trim(), gzip);
    t.notRegex(again.stderr, /compressing layer/, 'each layer is compressed once per store');
    t.true((await readdir(join(a.root, 'compressed'))).length >= 2);

    const pulled = await anotherStore(t, a);
    t.is((await pulled.ok(['pull', dest])).trim(), gzip);

    // prune removes the copies (no image names them) and their memos; the next push makes the same bytes again
    await a.ok(['prune']);
    t.deepEqual(await readdir(join(a.root, 'compressed')), []);
    const third = await a.run(['push', 'app:1', dest]);
    t.is(third.stdout.trim(), gzip);
    t.is((third.stderr.match(/compressing layer/g) ?? []).length, 2);

    const none = await a.run(['push', '--compression', 'none', 'app:1', `${reg.host}/tsbuild/pushc:none`]);
    t.is(none.stdout.trim(), kept, '--compression none pushes the layers as stored');
    const bad = await a.run(['push', '--compression', 'lz4', 'app:1', dest]);
    t.is(bad.code, 1);
    t.regex(bad.stderr, /--compression must be gzip, zstd or none/);
  },
);

// The Dockerfile case table (fixtures/build/<case>/): each case is built by tsbuild and by `buildah bud`, and the
// two images must have the same rootfs (paths, types, modes, owners, link targets, contents) and the same config
// fields. Where BuildKit's behaviour differs from buildah's, or buildah 1.28 lacks the feature, the case says so
// (case.json `differs`) and asserts BuildKit's behaviour on tsbuild's image (`expect`).
import test, { type ExecutionContext } from 'ava';
import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { build } from '../../builder/build.js';
import { getImage, type Image } from '../../layers/store/image.js';
import { Store } from '../../layers/store/store.js';
import { verifyImage } from '../../layers/store/verify.js';
import { imageLayers } from '../../layers/model/layer.js';
import { flatten } from '../../unionfs/flatten.js';
import { isRoot, makeTempDir, removeDir } from '../helpers/index.js';
import { debianStore } from '../helpers/images.js';
import {
  type Bases,
  Buildah,
  buildahResult,
  type CaseSpec,
  dropBuildahStubs,
  listCases,
  makeBases,
  pickConfig,
  prepareContext,
  readCase,
  treeOf,
} from './build-harness.js';

const names = listCases();
const specs = new Map(names.map((n) => [n, readCase(n)]));
const needsDebian = [...specs.values()].some((s) => s.base === 'debian');
const serial = isRoot ? test.serial : (test.serial.skip as typeof test.serial);

let bases: Bases | undefined;
let buildah: Promise<Buildah> | undefined;
let basesReady: Promise<Bases> | undefined;
const getBases = (): Promise<Bases> => {
  basesReady ??= (async () => {
    bases = await makeBases(needsDebian ? { debianStoreRoot: await debianStore() } : {});
    return bases;
  })();
  return basesReady;
};
const getBuildah = (): Promise<Buildah> => (buildah ??= Buildah.create());

test.after.always(async () => {
  if (buildah) await (await buildah).destroy();
  if (bases) await removeDir(bases.dir);
});

test('the case table has at least 40 cases, each titled', (t) => {
  t.true(names.length >= 40, `only ${names.length} cases`);
  for (const s of specs.values()) t.truthy(s.title, `${s.name} has no title`);
});

const caseMacro = test.macro({
  async exec(t: ExecutionContext, name: string) {
    const spec = specs.get(name)!;
    const b = await getBases();
    const ctx = await makeTempDir(`tsbuild-case-${name}-`);
    t.teardown(() => removeDir(ctx));
    await prepareContext(name, ctx);
    const store = await Store.open(b.storeRoot);
    const baseName = spec.base === 'debian' ? 'debian:bookworm' : 'busybox:test';
    const base = await getImage(store, baseName);
    const log: string[] = [];
    const run = build({
      store,
      context: ctx,
      tags: [`case-${name}:latest`],
      buildArgs: spec.buildArgs ?? {},
      ...(spec.target ? { target: spec.target } : {}),
      onEvent: (e) => {
        if (e.type === 'log') log.push(e.data);
      },
    });

    if (spec.expect?.error) {
      const err = await t.throwsAsync(run);
      t.true(err!.message.includes(spec.expect.error), `error: ${err!.message}`);
      if (spec.buildah === 'fails') {
        const theirs = await buildahResult(getBuildah, ctx, spec, b);
        t.truthy(theirs.error, 'buildah built what BuildKit refuses');
      }
      return;
    }
    const result = await run.catch((err: Error) => {
      throw new Error(`${err.message}\n${log.join('').slice(-3000)}`);
    });
    t.deepEqual(await verifyImage(store, result.image), [], 'the image verifies');
    const image = await getImage(store, `case-${name}:latest`);
    t.is(image.descriptor.digest, result.digest);
    const rootfs = await makeTempDir('tsbuild-case-rootfs-');
    t.teardown(() => removeDir(rootfs));
    await flatten({ store, layers: imageLayers(image), dir: join(rootfs, 'r'), method: 'apply' });
    const root = join(rootfs, 'r');
    const ours = { config: pickConfig(image.config.config), tree: treeOf(root) };

    // Against buildah.
    if (spec.buildah !== 'skip') {
      const theirs = await buildahResult(getBuildah, ctx, spec, b);
      if (spec.buildah === 'fails') {
        t.truthy(theirs.error, 'buildah succeeded where the case says it fails');
      } else {
        t.falsy(theirs.error, `buildah failed: ${theirs.error}`);
        const drop = new Set(spec.ignore?.paths ?? []);
        const noData = new Set(spec.ignore?.content ?? []);
        const strip = (tree: Record<string, string>): Record<string, string> =>
          Object.fromEntries(
            Object.entries(tree)
              .filter(([p]) => !drop.has(p))
              .map(([p, v]) => [p, noData.has(p) ? v.replace(/ [0-9a-f]{16}$/, '') : v]),
          );
        t.deepEqual(
          treeDiff(strip(ours.tree), strip(dropBuildahStubs(theirs.tree, ours.tree))),
          {},
          'rootfs differs from buildah (path: [tsbuild, buildah])',
        );
        const ignored = new Set(spec.ignore?.config ?? []);
        const cfg = (c: Record<string, unknown>): Record<string, unknown> =>
          Object.fromEntries(Object.entries(c).filter(([k]) => !ignored.has(k)));
        t.deepEqual(cfg(ours.config), cfg(theirs.config), 'config differs from buildah');
      }
    }

    // BuildKit's behaviour.
    checkExpect(t, spec, image, base, root);
  },
  title: (_title, name: string) => `${specs.get(name)?.title ?? name} [${name}]`,
});

/** treeDiff lists the paths whose lines differ: path → [tsbuild, buildah] ('-' when missing). */
function treeDiff(ours: Record<string, string>, theirs: Record<string, string>): Record<string, [string, string]> {
  const out: Record<string, [string, string]> = {};
  for (const p of new Set([...Object.keys(ours), ...Object.keys(theirs)])) {
    if (ours[p] !== theirs[p]) out[p] = [ours[p] ?? '-', theirs[p] ?? '-'];
  }
  return out;
}

function checkExpect(t: ExecutionContext, spec: CaseSpec, image: Image, base: Image, root: string): void {
  const e = spec.expect ?? {};
  const config = (image.config.config ?? {}) as Record<string, unknown>;
  for (const [k, want] of Object.entries(e.config ?? {})) {
    const got = config[k];
    if (want === 'absent') {
      t.true(
        got === undefined || got === null || (Array.isArray(got) && got.length === 0),
        `config ${k} should be absent, is ${JSON.stringify(got)}`,
      );
    } else t.deepEqual(got, want, `config ${k}`);
  }
  for (const [p, want] of Object.entries(e.files ?? {})) {
    const abs = join(root, p);
    const st = lstatSync(abs, { throwIfNoEntry: false });
    if (want === 'absent') {
      t.is(st, undefined, `${p} should be absent`);
      continue;
    }
    if (!st) {
      t.fail(`${p} is missing`);
      continue;
    }
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
    if (want.type !== undefined) t.is(type, want.type, `${p} type`);
    if (want.content !== undefined) t.is(readFileSync(abs, 'utf8'), want.content, `${p} content`);
    if (want.mode !== undefined) t.is((st.mode & 0o7777).toString(8).padStart(4, '0'), want.mode, `${p} mode`);
    if (want.uid !== undefined) t.is(st.uid, want.uid, `${p} uid`);
    if (want.gid !== undefined) t.is(st.gid, want.gid, `${p} gid`);
    if (want.link !== undefined) t.is(readlinkSync(abs), want.link, `${p} link`);
  }
  const added = (image.config.history ?? []).slice((base.config.history ?? []).length);
  if (e.history) {
    t.deepEqual(
      added.map((h) => ({ createdBy: h.created_by, ...(h.empty_layer ? { emptyLayer: true } : {}) })),
      e.history,
      'history',
    );
    for (const h of added) t.is(h.comment, 'buildkit.dockerfile.v0');
  }
  if (e.newLayers !== undefined)
    t.is(image.config.rootfs.diff_ids.length - base.config.rootfs.diff_ids.length, e.newLayers, 'new layers');
  if (e.author !== undefined) t.is(image.config.author, e.author);
  // every image: one diffID per history entry with a layer
  t.is(
    (image.config.history ?? []).filter((h) => !h.empty_layer).length,
    image.config.rootfs.diff_ids.length,
    'history rows with a layer = layers',
  );
}

for (const name of names) serial(caseMacro, name);

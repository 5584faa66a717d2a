// Behaviour is pinned by digests: the bundled example and a few Dockerfiles of the case table, built with
// SOURCE_DATE_EPOCH, must give the image digests recorded in golden-digests.json. The record was taken with the code
// before the redesign (issue 10) and must not move when code only moves; a change of behaviour that is meant shows
// up here and is re-recorded on purpose (TSBUILD_GOLDEN_RECORD=1 rewrites the file). The digest compared is the one
// `push` sends (layers compressed with gzip): builds keep their layers uncompressed since issue 15, and the records,
// taken when builds compressed at each commit, must still come out byte for byte.
//
// A digest depends on the base too: busybox:test is made from the host's busybox-static, debian:bookworm is
// bootstrapped once per machine from the Debian archive. Each record names the base digest it was taken on; on a
// machine whose base differs, that case is skipped with the reason (the same inputs are not available).
import test, { type ExecutionContext } from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../layers/store/store.js';
import type { Digest } from '../../layers/model/types.js';
import { compressImageLayers } from '../../layers/store/compress-layers.js';
import { getImage } from '../../layers/store/image.js';
import { verifyImage } from '../../layers/store/verify.js';
import { isRoot, makeTempDir, removeDir, repoRoot, tsbuild } from '../helpers/index.js';
import { copyImage, debianStore, newStoreRoot } from '../helpers/images.js';
import { prepareContext } from '../builder/build-harness.js';
import { makeBusyboxRootfs } from '../../fixtures/busybox.js';
import { importImage } from '../../layers/sources/import.js';

interface Golden {
  base: string;
  digest: string;
}

const GOLDEN_FILE = join(repoRoot, 'test', 'e2e', 'golden-digests.json');
const record = process.env.TSBUILD_GOLDEN_RECORD === '1';
const goldens = JSON.parse(readFileSync(GOLDEN_FILE, 'utf8')) as Record<string, Golden>;
const EPOCH = '1700000000';
const slow = isRoot && process.env.TSBUILD_TEST_SLOW !== '0';

/** CASES are Dockerfiles of fixtures/build: RUN (deletes, heredocs, cache and tmpfs mounts), COPY --chown, --link, --from. */
const CASES = [
  'run-deletes-from-base',
  'copy-chown-names',
  'run-mount-cache-tmpfs',
  'heredoc-run',
  'copy-link',
  'copy-from-stage',
];

/** baseDigest is the manifest digest of `name` in the store at `root`. */
async function baseDigest(root: string, name: string): Promise<Digest> {
  return (await getImage(await Store.open(root), name)).descriptor.digest;
}

/** skipReason says why a case cannot be compared here, or undefined when it can (or is being recorded). */
function skipReason(name: string, base: string): string | undefined {
  if (record) return undefined;
  const g = goldens[name];
  if (!g) return `no golden digest for ${name} (record it with TSBUILD_GOLDEN_RECORD=1)`;
  if (g.base !== base) return `the base here is ${base}, not the recorded ${g.base}: the digest cannot be compared`;
  return undefined;
}

/**
 * makeBase imports busybox:test the way the case table does, but from a fixed directory: the import's history names
 * its source, and that name is part of every digest built on it.
 */
async function makeBase(): Promise<{ dir: string; storeRoot: string }> {
  const dir = await makeTempDir('tsbuild-golden-base-');
  const tree = join(tmpdir(), 'tsbuild-golden-busybox');
  await removeDir(tree);
  await makeBusyboxRootfs(tree);
  const storeRoot = join(dir, 'store');
  await importImage(await Store.open(storeRoot), {
    source: tree,
    name: 'busybox:test',
    sourceDateEpoch: 1_700_000_000,
    config: { Cmd: ['/bin/sh'] },
  });
  await removeDir(tree);
  return { dir, storeRoot };
}

async function checkImage(t: ExecutionContext, root: string, name: string, base: string): Promise<void> {
  const store = await Store.open(root);
  const image = await getImage(store, name === 'example' ? 'app:0.1' : 'golden:1');
  t.deepEqual(await verifyImage(store, image), []);
  const pushed = (await compressImageLayers(store, image.descriptor, 'gzip')).descriptor.digest;
  if (record) {
    goldens[name] = { base, digest: pushed };
    writeFileSync(GOLDEN_FILE, `${JSON.stringify(goldens, null, 2)}\n`);
    t.log(`recorded ${name}: ${pushed}`);
    return;
  }
  t.is<string, string>(pushed, goldens[name]!.digest, `${name} gives the image digest recorded before the redesign`);
}

// The bases are made (or found) first, so that each case knows before it is declared whether it can be compared;
// ava takes declarations only until the module has finished loading.
const bases = isRoot ? await makeBase() : undefined;
const busybox = bases ? await baseDigest(bases.storeRoot, 'busybox:test') : '';
const debianRoot = slow ? await debianStore() : undefined;
const debian = debianRoot ? await baseDigest(debianRoot, 'debian:bookworm') : '';
test.after.always(async () => {
  if (bases) await removeDir(bases.dir);
});

for (const name of CASES) {
  const why = isRoot ? skipReason(name, busybox) : 'needs root (RUN steps)';
  const title = `the ${name} case builds to its recorded digest${why ? ` (skipped: ${why})` : ''}`;
  (why ? test.serial.skip : test.serial)(title, async (t) => {
    const root = await newStoreRoot(t);
    await copyImage(bases!.storeRoot, root, 'busybox:test');
    const ctx = await makeTempDir('tsbuild-golden-');
    t.teardown(() => removeDir(ctx));
    await prepareContext(name, ctx);
    const r = await tsbuild(['--root', root, 'build', '-t', 'golden:1', ctx], { env: { SOURCE_DATE_EPOCH: EPOCH } });
    t.is(r.code, 0, r.stderr.slice(-3000));
    await checkImage(t, root, name, busybox);
  });
}

const exampleWhy = slow
  ? skipReason('example', debian)
  : 'slow (gcc from the Debian archive): needs root and TSBUILD_TEST_SLOW!=0';
(exampleWhy ? test.serial.skip : test.serial)(
  `the bundled example builds to its recorded digest${exampleWhy ? ` (skipped: ${exampleWhy})` : ''}`,
  async (t) => {
    t.timeout(20 * 60_000);
    const root = await newStoreRoot(t);
    await copyImage(debianRoot!, root, 'debian:bookworm');
    const r = await tsbuild(['-f', 'Dockerfile', '-t', 'app:0.1', '.'], {
      cwd: join(repoRoot, 'fixtures', 'example'),
      env: { TSBUILD_ROOT: root, SOURCE_DATE_EPOCH: EPOCH },
    });
    t.is(r.code, 0, r.stderr.slice(-3000));
    await checkImage(t, root, 'example', debian);
  },
);

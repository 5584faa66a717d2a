// Reading the build context ahead of its COPY (builder/context-prefetch.ts): which paths are read, that nothing
// outside the context or ignored is read, and that a COPY takes a digest read early only while the file is
// provably unchanged (builder/context-digests.ts).
import test from 'ava';
import { createHash } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileDigests, RACY_MS } from '../../builder/context-digests.js';
import { makeFilter, type BuildContext } from '../../builder/context.js';
import { prefetchContext, prefetchRoots } from '../../builder/context-prefetch.js';
import { parseDockerfile } from '../../builder/dockerfile/parse.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
/** a moment far enough after the files were written: they are outside the racy window */
const later = (): number => Date.now() + 10 * RACY_MS;

function roots(dockerfile: string): string[] {
  return prefetchRoots(parseDockerfile(dockerfile, { file: 'Dockerfile' }).instructions);
}

test('the roots are the literal context sources of COPY and ADD, cut at the first wildcard, none inside another', (t) => {
  t.deepEqual(roots('FROM scratch\nCOPY src/a.txt src/b/ /x/\nCOPY lib/*.js /y/\nADD ./conf/app.conf /z\n'), [
    'conf/app.conf',
    'lib',
    'src/a.txt',
    'src/b',
  ]);
  t.deepEqual(roots('FROM scratch\nCOPY src/a /x/\nCOPY . /app/\n'), ['']);
  t.deepEqual(roots('FROM scratch\nCOPY *.txt /x/\n'), ['']);
  t.deepEqual(roots('FROM scratch\nCOPY src /x/\nCOPY src/deep/file /y\n'), ['src']);
});

test('sources that are variables, other stages, URLs or outside the context are not read ahead', (t) => {
  t.deepEqual(
    roots(
      'FROM scratch AS a\nARG D=x\nCOPY $D /x/\nCOPY --from=a /etc /e\nADD https://example.com/f /f\nADD git@github.com:o/r.git /r\nCOPY ../up /u\n',
    ),
    ['up'], // a source is always inside the context: `../up` is `up`, as the COPY reads it
  );
  t.deepEqual(roots('FROM scratch\nRUN true\n'), []);
});

async function context(t: { teardown(fn: () => Promise<void>): void }, ignore: string[] = []) {
  const dir = await makeTempDir('tsbuild-prefetch-');
  t.teardown(() => removeDir(dir));
  const root = join(dir, 'ctx');
  mkdirSync(join(root, 'src', 'deep'), { recursive: true });
  mkdirSync(join(root, 'ignored'));
  mkdirSync(join(dir, 'outside'));
  writeFileSync(join(dir, 'outside', 'secret'), 'secret\n');
  for (const f of ['src/a', 'src/deep/b', 'ignored/c', 'top']) writeFileSync(join(root, f), `content of ${f}\n`);
  symlinkSync(join(dir, 'outside'), join(root, 'linkdir'));
  symlinkSync(join(dir, 'outside', 'secret'), join(root, 'src', 'linkfile'));
  const digests = await FileDigests.open(join(dir, 'store'), root, later());
  const ctx: BuildContext = {
    root,
    filter: makeFilter(root, ignore),
    patterns: ignore,
    ignoreFile: ignore.length ? '.dockerignore' : '',
    extracted: false,
    digests,
  };
  return { dir, root, ctx, digests };
}

/** prefetchAll runs a prefetch to its end with the racy window moved, as if the files were old. */
async function prefetchAll(ctx: BuildContext, paths: string[], limits = {}): Promise<number> {
  const d = ctx.digests!;
  const real = d.prefetch.bind(d);
  d.prefetch = (abs, st) => real(abs, st, later());
  const p = prefetchContext(ctx, paths, limits);
  await p.finished;
  return p.counts.files;
}

test('a prefetch reads the files under its roots, skips ignored ones, and never reads through a symlink', async (t) => {
  const { ctx, digests } = await context(t, ['ignored']);
  t.is(await prefetchAll(ctx, ['']), 3); // src/a, src/deep/b, top: not ignored/c, not the links
  t.is(digests.early.read, 3);
  const { ctx: ctx2, digests: d2 } = await context(t);
  t.is(await prefetchAll(ctx2, ['linkdir/secret', 'src/linkfile', 'src/deep']), 1); // only src/deep/b
  t.is(d2.early.read, 1);
});

test('a COPY takes the digest read ahead for an unchanged file, and reads a file changed since', async (t) => {
  const { root, ctx, digests } = await context(t);
  await prefetchAll(ctx, ['src']);
  const a = join(root, 'src', 'a');
  t.is(await digests.digest(a, lstatSync(a)), sha('content of src/a\n'));
  t.is(digests.early.used, 1);
  const b = join(root, 'src', 'deep', 'b');
  writeFileSync(b, 'changed after the prefetch\n');
  t.is(await digests.digest(b, lstatSync(b)), sha('changed after the prefetch\n'));
  t.is(digests.early.used, 1, 'the early digest of a changed file is not used');
  chmodSync(a, 0o600); // ctime moves: a digest is trusted only for the very same lstat
  const again = await FileDigests.open(join(root, '..', 'store2'), root, later());
  t.false(await again.prefetch(a, lstatSync(a)), 'a file whose ctime is in the racy window is not read ahead');
});

test('a prefetch stops at its file limit, and when stopped', async (t) => {
  const { ctx, digests } = await context(t);
  t.is(await prefetchAll(ctx, [''], { maxFiles: 2 }), 2);
  t.is(digests.early.read, 2);
  const { ctx: ctx2 } = await context(t);
  const p = prefetchContext(ctx2, ['']);
  await p.stop();
  t.is(p.counts.files, 0, 'stopped before its first turn');
});

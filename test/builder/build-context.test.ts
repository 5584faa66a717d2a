// The build context (a directory, a tarball, or none), the Dockerfile and ignore file it yields, the .dockerignore
// filter, and COPY source selection against it (pure parts of builder/steps/copy.ts included).
import test from 'ava';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { execFileSync } from 'node:child_process';
import { makeFilter, openContext, readIgnorePatterns } from '../../builder/context.js';
import {
  containsWildcards,
  goMatch,
  hashSelection,
  prefixMatch,
  selectSources,
  splitWildcards,
} from '../../builder/steps/copy-select.js';
import { isTarHeader, parseChmod, resolveChown } from '../../builder/steps/copy-write.js';
import { destPath } from '../../builder/steps/copy.js';
import { runCommandString } from '../../builder/steps/run.js';
import { FileDigests, RACY_MS } from '../../builder/context-digests.js';
import { setXattr } from '../../sys/libc.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

async function tree(t: { teardown(fn: () => unknown): void }, files: Record<string, string>): Promise<string> {
  const dir = await makeTempDir('tsbuild-ctx-');
  t.teardown(() => removeDir(dir));
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  return dir;
}

test('a directory context reads <dir>/Dockerfile and .dockerignore', async (t) => {
  const dir = await tree(t, { Dockerfile: 'FROM scratch\n', '.dockerignore': '# c\n*.log\n', 'a.log': 'x' });
  const c = await openContext({ context: dir, tmpDir: join(dir, '.tmp') });
  t.is(c.dockerfileText, 'FROM scratch\n');
  t.deepEqual(c.context?.patterns, ['*.log']);
  t.true(c.context!.filter.excluded('a.log', false));
  await c.cleanup();
});

test('<Dockerfile>.dockerignore next to the Dockerfile wins over .dockerignore', async (t) => {
  const dir = await tree(t, {
    'build/app.Dockerfile': 'FROM scratch\n',
    'build/app.Dockerfile.dockerignore': 'a\n',
    '.dockerignore': 'b\n',
  });
  const c = await openContext({
    context: dir,
    dockerfile: join(dir, 'build/app.Dockerfile'),
    tmpDir: join(dir, '.tmp'),
  });
  t.deepEqual(c.context?.patterns, ['a']);
  t.is(c.dockerfileName, 'app.Dockerfile');
});

test('- as the context reads the Dockerfile from stdin and has no context', async (t) => {
  const c = await openContext({
    context: '-',
    stdin: Readable.from([Buffer.from('FROM scratch\nCMD ["x"]\n')]),
    tmpDir: '/nonexistent',
  });
  t.is(c.dockerfileText, 'FROM scratch\nCMD ["x"]\n');
  t.is(c.context, null);
});

test('-f - reads the Dockerfile from stdin with a directory context', async (t) => {
  const dir = await tree(t, { 'a.txt': 'a' });
  const c = await openContext({
    context: dir,
    dockerfile: '-',
    stdin: Readable.from([Buffer.from('FROM scratch\n')]),
    tmpDir: join(dir, '.tmp'),
  });
  t.is(c.dockerfileText, 'FROM scratch\n');
  t.is(c.context?.root, dir);
});

test('a tarball context is extracted and -f names a path inside it', async (t) => {
  const src = await tree(t, { 'sub/My.Dockerfile': 'FROM scratch\nCOPY a /\n', a: 'a' });
  const out = await makeTempDir('tsbuild-tarctx-');
  t.teardown(() => removeDir(out));
  const tarball = join(out, 'ctx.tar.gz');
  execFileSync('tar', ['-czf', tarball, '-C', src, '.']);
  const c = await openContext({ context: tarball, dockerfile: 'sub/My.Dockerfile', tmpDir: join(out, 'tmp') });
  t.is(c.dockerfileText, 'FROM scratch\nCOPY a /\n');
  t.is(c.dockerfileName, 'My.Dockerfile');
  await c.cleanup();
});

test('a missing Dockerfile is a clear error', async (t) => {
  const dir = await tree(t, { 'a.txt': 'a' });
  await t.throwsAsync(openContext({ context: dir, tmpDir: join(dir, '.tmp') }), {
    message: /Dockerfile Dockerfile not found/,
  });
});

test('the ignore file reader drops comments and blank lines and refuses a lone !', (t) => {
  t.deepEqual(readIgnorePatterns('\ufeff# x\n\n  *.o  \n!keep.o\n'), ['*.o', '!keep.o']);
  t.throws(() => readIgnorePatterns('!\n'), { message: /illegal exclusion/ });
});

test('an ignored directory is kept as a parent when an exception re-includes something below it', async (t) => {
  const dir = await tree(t, { 'docs/README.md': 'r', 'docs/other.md': 'o', 'logs/a.log': 'a' });
  const f = makeFilter(dir, ['docs', '!docs/README.md', 'logs']);
  t.false(f.excluded('docs', true));
  t.false(f.excluded('docs/README.md', false));
  t.true(f.excluded('docs/other.md', false));
  t.true(f.excluded('logs', true));
  t.false(makeFilter(dir, ['Docs']).excluded('docs', true), 'matching is case-sensitive');
});

test('wildcard helpers follow Go filepath.Match', (t) => {
  t.true(containsWildcards('a/*.txt'));
  t.false(containsWildcards('a/\\*.txt'));
  t.deepEqual(splitWildcards('a/b/*.txt/c'), { base: 'a/b', pattern: '*.txt/c' });
  t.true(goMatch('*.txt', 'a.txt'));
  t.false(goMatch('*.txt', 'd/a.txt'));
  t.true(goMatch('[ab].txt', 'b.txt'));
  t.true(goMatch('[^ab].txt', 'c.txt'));
  t.true(goMatch('a?c', 'abc'));
  t.is(prefixMatch('src/**/deep.txt', 'src'), 'partial');
  t.is(prefixMatch('src/**/deep.txt', 'src/c/d/deep.txt'), 'full');
  t.is(prefixMatch('src/**/deep.txt', 'src/deep.txt'), 'full');
  t.is(prefixMatch('src/a/*.txt', 'lib'), 'none');
});

test('--chmod reads octal and symbolic modes', (t) => {
  t.is(parseChmod('0755').apply(0o644, false), 0o755);
  t.is(parseChmod('u=rwX,go=rX').apply(0o600, true), 0o755);
  t.is(parseChmod('u=rwX,go=rX').apply(0o600, false), 0o644);
  t.is(parseChmod('u=rwX,go=rX').apply(0o700, false), 0o755);
  t.is(parseChmod('+x').apply(0o644, false), 0o755);
  t.is(parseChmod('a-w').apply(0o666, false), 0o444);
  t.is(parseChmod('g=u').apply(0o740, false), 0o770);
  t.throws(() => parseChmod('0888'), { message: /invalid chmod parameter/ });
  t.throws(() => parseChmod('u=q'), { message: /invalid chmod parameter/ });
});

test('destinations follow BuildKit: relative to WORKDIR, a trailing slash or . names a directory', (t) => {
  t.is(destPath('/abs/x', '/w'), '/abs/x');
  t.is(destPath('rel', '/w'), '/w/rel');
  t.is(destPath('.', '/w'), '/w/');
  t.is(destPath('sub/', '/w'), '/w/sub/');
  t.is(destPath('../up', '/w'), '/up');
  t.is(destPath('/', '/w'), '/');
});

test('RUN history strings carry the declared ARGs as |N K=V, with ENV winning', (t) => {
  t.is(runCommandString(['/bin/sh', '-c', 'make'], [], new Map()), '/bin/sh -c make');
  t.is(
    runCommandString(
      ['/bin/sh', '-c', 'make'],
      [{ key: 'A', value: '1' }, { key: 'B' }, { key: 'A', value: '2' }],
      new Map([['A', '2']]),
    ),
    '|2 A=2 B= /bin/sh -c make',
  );
});

test('--chown names resolve in the target root; unknown names and missing files give 0', async (t) => {
  const root = await tree(t, {
    'etc/passwd': 'root:x:0:0::/root:/bin/sh\napp:x:1234:99::/home/app:/bin/sh\n',
    'etc/group': 'root:x:0:\nstaff:x:50:\n',
  });
  t.deepEqual(resolveChown(root, 'app'), { uid: 1234, gid: 99 });
  t.deepEqual(resolveChown(root, 'app:staff'), { uid: 1234, gid: 50 });
  t.deepEqual(resolveChown(root, '1000'), { uid: 1000, gid: 1000 });
  t.deepEqual(resolveChown(root, '1000:7'), { uid: 1000, gid: 7 });
  t.deepEqual(resolveChown(root, 'ghost:ghosts'), { uid: 0, gid: 0 });
  const empty = await tree(t, {});
  t.deepEqual(resolveChown(empty, 'app'), { uid: 0, gid: 0 });
});

test('sources are clamped to the context, top-level symlinks followed inside it, and .dockerignore applies', async (t) => {
  const dir = await tree(t, { 'a.txt': 'a', 'secret.txt': 's', 'd/x': 'x', 'd/y.tmp': 'y' });
  await symlink('/etc/passwd', join(dir, 'escape'));
  await symlink('a.txt', join(dir, 'link'));
  const from = {
    root: dir,
    filter: makeFilter(dir, ['secret.txt', '**/*.tmp']),
    label: 'the build context',
    resetOwner: true,
  };
  t.is(selectSources(from, ['../../a.txt'])[0]!.node.abs, join(dir, 'a.txt'));
  t.is(selectSources(from, ['link'])[0]!.node.abs, join(dir, 'a.txt'));
  t.throws(
    () => selectSources(from, ['escape']),
    { message: /"escape" not found in the build context/ },
    'an absolute link resolves inside the context',
  );
  t.throws(() => selectSources(from, ['secret.txt']), { message: /not found/ });
  t.deepEqual(
    selectSources(from, ['d'])[0]!.node.children?.map((c) => c.name),
    ['x'],
  );
  t.deepEqual(
    selectSources(from, ['*.txt']).map((s) => s.rel),
    ['a.txt'],
  );
  t.deepEqual(selectSources(from, ['nomatch*']), []);
});

test('the content checksum ignores mtimes but not names or contents', async (t) => {
  const a = await tree(t, { 'd/x': 'x' });
  const b = await tree(t, { 'd/x': 'x' });
  const c = await tree(t, { 'd/y': 'x' });
  const hash = (root: string) => hashSelection(selectSources({ root, label: 'ctx', resetOwner: true }, ['d']), true);
  const { utimes } = await import('node:fs/promises');
  await utimes(join(b, 'd/x'), new Date(0), new Date(0));
  t.is(await hash(a), await hash(b));
  t.not(await hash(a), await hash(c));
});

test('the content checksum with the digest memo still sees an xattr set on a file after a build recorded it', async (t) => {
  const a = await tree(t, { 'd/x': 'x' });
  const store = await makeTempDir('tsbuild-memo-store-');
  t.teardown(() => removeDir(store));
  const later = Date.now() + 10 * RACY_MS; // the file is outside the racy window: recorded
  const hash = async (): Promise<string> => {
    const digests = await FileDigests.open(store, a, later);
    const h = await hashSelection(
      selectSources({ root: a, label: 'ctx', resetOwner: true, digests }, ['d']),
      true,
      digests,
    );
    await digests.save();
    return h;
  };
  const before = await hash();
  t.is(await hash(), before, 'unchanged: the same checksum from the memo');
  try {
    setXattr(join(a, 'd/x'), 'user.note', Buffer.from('v'));
  } catch (err) {
    t.log(`user xattrs are not supported here: ${(err as Error).message}`);
    return;
  }
  t.not(await hash(), before);
});

test('a tar header is recognised by its checksum', (t) => {
  const h = Buffer.alloc(512);
  h.write('file.txt', 0);
  h.write('0000644\0', 100);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  t.true(isTarHeader(h));
  h[0] = 0x41;
  t.false(isTarHeader(h));
  t.false(isTarHeader(Buffer.alloc(512)));
});

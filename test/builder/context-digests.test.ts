// The build context's digest memo (builder/context-digests.ts): a rebuild reads only the context files that changed
// since the last build, and never trusts a memo entry it cannot prove current.
import test from 'ava';
import { createHash } from 'node:crypto';
import { lstatSync, statSync } from 'node:fs';
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileDigests, RACY_MS, xattrsLine } from '../../builder/context-digests.js';
import { getXattrs, setXattr } from '../../sys/libc.js';
import { contextDigestsDir, Store } from '../../layers/store/store.js';
import { pruneStore } from '../../unionfs/prune.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
/** hashing "later": the files just written are outside the racy window */
const later = (): number => Date.now() + 10 * RACY_MS;

async function setup(t: { teardown(fn: () => Promise<void>): void }): Promise<{ store: string; ctx: string }> {
  const dir = await makeTempDir('tsbuild-digests-');
  t.teardown(() => removeDir(dir));
  const ctx = join(dir, 'ctx');
  await mkdir(ctx);
  for (let i = 0; i < 5; i++) await writeFile(join(ctx, `f${i}`), `content ${i}\n`);
  return { store: join(dir, 'store'), ctx };
}

async function digestAll(memo: FileDigests, ctx: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(ctx)).sort())
    out.push(await memo.digest(join(ctx, name), lstatSync(join(ctx, name))));
  return out;
}

test('a context file unchanged since the last build is answered from the memo, with the digest of its content', async (t) => {
  const { store, ctx } = await setup(t);
  const first = await FileDigests.open(store, ctx, later());
  const digests = await digestAll(first, ctx);
  t.deepEqual(
    digests,
    [0, 1, 2, 3, 4].map((i) => sha(`content ${i}\n`)),
  );
  t.deepEqual(first.counts, { hashed: 5, reused: 0 });
  await first.save();
  const second = await FileDigests.open(store, ctx, later());
  t.deepEqual(await digestAll(second, ctx), digests);
  t.deepEqual(second.counts, { hashed: 0, reused: 5 });
});

test('a file rewritten with the same size and its old mtime put back is read again (its ctime moved)', async (t) => {
  const { store, ctx } = await setup(t);
  const f = join(ctx, 'f2');
  await utimes(f, 1_700_000_000, 1_700_000_000); // a whole second, so it can be put back exactly
  const first = await FileDigests.open(store, ctx, later());
  await digestAll(first, ctx);
  await first.save();
  const old = statSync(f);
  await new Promise((r) => setTimeout(r, 20)); // past the file system's timestamp tick
  await writeFile(f, 'CONTENT 2\n'); // same size
  await utimes(f, 1_700_000_000, 1_700_000_000);
  t.is(statSync(f).mtimeMs, old.mtimeMs);
  const second = await FileDigests.open(store, ctx, later());
  const digests = await digestAll(second, ctx);
  t.is(digests[2], sha('CONTENT 2\n'));
  t.deepEqual(second.counts, { hashed: 1, reused: 4 });
});

test('a file changed just before the build began is not recorded, so a change in the same tick cannot hide', async (t) => {
  const { store, ctx } = await setup(t);
  const first = await FileDigests.open(store, ctx); // the files were written a moment ago: racily clean
  await digestAll(first, ctx);
  await first.save();
  const second = await FileDigests.open(store, ctx);
  await digestAll(second, ctx);
  t.deepEqual(second.counts, { hashed: 5, reused: 0 });
});

test('a memo that is malformed, of another version or names files outside the context is ignored', async (t) => {
  const { store, ctx } = await setup(t);
  const first = await FileDigests.open(store, ctx, later());
  await digestAll(first, ctx);
  await first.save();
  const [file] = await readdir(contextDigestsDir(store));
  const path = join(contextDigestsDir(store), file!);
  const st = lstatSync(join(ctx, 'f0'));
  const lie = [st.dev, st.ino, st.size, st.mtimeMs, st.ctimeMs, sha('a lie')];
  for (const body of [
    '{"version":1,"entries":',
    JSON.stringify({ version: 2, entries: { [join(ctx, 'f0')]: lie } }),
    JSON.stringify({ version: 1, entries: { [join(ctx, 'f0')]: [...lie.slice(0, 5), 'not hex'] } }),
    JSON.stringify({ version: 1, entries: { [join(ctx, 'f0')]: lie.slice(0, 5) } }),
    JSON.stringify({ version: 1, entries: { [`${ctx}-other/f0`]: lie } }),
  ]) {
    await writeFile(path, body);
    const memo = await FileDigests.open(store, ctx, later());
    t.is(await memo.digest(join(ctx, 'f0'), lstatSync(join(ctx, 'f0'))), sha('content 0\n'), body);
  }
});

test('prune --all removes the context memos; a default prune keeps them', async (t) => {
  const { store: root, ctx } = await setup(t);
  const store = await Store.open(root);
  const memo = await FileDigests.open(root, ctx, later());
  await digestAll(memo, ctx);
  await memo.save();
  await pruneStore(store);
  t.is((await readdir(contextDigestsDir(root))).length, 1);
  await pruneStore(store, { all: true });
  t.deepEqual(await readdir(contextDigestsDir(root)), []);
});

test("a file's xattrs come from the memo while its ctime stands, and are listed again once an xattr changes it", async (t) => {
  const { store, ctx } = await setup(t);
  const file = join(ctx, 'f0');
  let listed = 0;
  const list = (): string => {
    listed++;
    const v = (() => {
      try {
        return getXattrs(file)['user.tag']?.toString();
      } catch {
        return undefined;
      }
    })();
    return v === undefined ? '' : ` x:user.tag=${v}`;
  };
  const first = await FileDigests.open(store, ctx, later());
  t.deepEqual(await first.digestAndXattrs(file, lstatSync(file), list), [sha('content 0\n'), '']);
  await first.save();
  const second = await FileDigests.open(store, ctx, later());
  t.deepEqual(await second.digestAndXattrs(file, lstatSync(file), list), [sha('content 0\n'), '']);
  t.is(listed, 1, 'the no-op lists no xattrs');
  try {
    setXattr(file, 'user.tag', Buffer.from('v1'));
  } catch (err) {
    t.log(`user xattrs not supported here: ${(err as Error).message}`);
    return;
  }
  const third = await FileDigests.open(store, ctx, later());
  t.deepEqual(await third.digestAndXattrs(file, lstatSync(file), list), [sha('content 0\n'), ' x:user.tag=v1']);
  t.is(listed, 2, 'the xattr moved the ctime: listed again');
});

test('a file read ahead brings what its xattrs add to the checksum; an xattr set after the read ahead is read again', async (t) => {
  const { store, ctx } = await setup(t);
  const [f, g] = [join(ctx, 'f1'), join(ctx, 'f2')];
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  try {
    setXattr(f, 'user.tag', Buffer.from('v1'));
  } catch (err) {
    t.log(`user xattrs not supported here: ${(err as Error).message}`);
    t.pass();
    return;
  }
  const memo = await FileDigests.open(store, ctx, later());
  let listed = 0;
  const list = (abs: string) => (): string => {
    listed++;
    return xattrsLine(abs);
  };
  t.true(await memo.prefetch(f, lstatSync(f), later()));
  t.deepEqual(await memo.digestAndXattrs(f, lstatSync(f), list(f)), [sha('content 1\n'), ` x:user.tag=${b64('v1')}`]);
  t.is(listed, 0, 'the read ahead had listed them');
  t.true(await memo.prefetch(g, lstatSync(g), later()));
  await new Promise((resolve) => setTimeout(resolve, 50)); // the next ctime is another clock tick
  setXattr(g, 'user.tag', Buffer.from('v2')); // moves g's ctime: what was read ahead is not used
  t.deepEqual(await memo.digestAndXattrs(g, lstatSync(g), list(g)), [sha('content 2\n'), ` x:user.tag=${b64('v2')}`]);
  t.is(listed, 1);
});

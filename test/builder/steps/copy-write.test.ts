// copyInto writes a source's regular files a few at a time (builder/steps/copy-jobs.ts): these tests check that a
// copy of many files gives the same tree as one file at a time (modes, owners, times, xattrs, hard links), that an
// error among many entries is the first one in walk order and that nothing is written after copyInto rejects, and
// that a symlink in the destination never sends a write outside the root. Owners and fifos need root.
import test from 'ava';
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { type CopyFrom, type Selected, selectSources, type SelNode } from '../../../builder/steps/copy-select.js';
import { copyInto, type CopyIntoOptions, parseChmod } from '../../../builder/steps/copy-write.js';
import { FakeHost } from '../../../sys/fake-host.js';
import { defaultHost } from '../../../sys/host.js';
import { getXattrs, setXattr } from '../../../sys/libc.js';
import { isRoot, makeTempDir, removeDir, rootTest } from '../../helpers/index.js';

const rootOnly = isRoot ? test : test.skip;

/** makeSource writes a tree of `dirs` × `files` files with varied modes, owners, times, xattrs and hard links. */
function makeSource(dir: string, dirs = 6, files = 60): void {
  mkdirSync(dir);
  for (let d = 0; d < dirs; d++) {
    const sub = join(dir, `d${d}`);
    mkdirSync(sub);
    for (let f = 0; f < files; f++) {
      const p = join(sub, `f${String(f).padStart(3, '0')}`);
      writeFileSync(p, `file ${d}/${f}\n`.repeat(f * 7));
      if (isRoot) chownSync(p, 1000 + f, 2000 + d); // before chmod: chown clears setuid
      chmodSync(p, [0o644, 0o600, 0o777, 0o4755, 0o2711, 0o444][f % 6]!);
      if (f % 10 === 3) setXattr(p, 'user.tag', Buffer.from(`x${d}.${f}`));
      utimesSync(p, 1_600_000_000 + f, 1_600_000_100 + d * 1000 + f);
    }
    symlinkSync(`f001`, join(sub, 'link'));
    if (isRoot) execFileSync('mkfifo', [join(sub, 'fifo')]);
    chmodSync(sub, d % 2 ? 0o750 : 0o755);
  }
  // one inode at three paths, the first in walk order is d1/f010
  linkSync(join(dir, 'd1', 'f010'), join(dir, 'd3', 'hard'));
  linkSync(join(dir, 'd1', 'f010'), join(dir, 'd5', 'hard'));
  for (let d = 0; d < dirs; d++) utimesSync(join(dir, `d${d}`), 1_500_000_000, 1_500_000_000 + d);
}

/**
 * listing describes a tree below its top directory: per entry its type and mode, owner, mtime, size, data, link
 * target, xattrs, hard link group. (Not atimes: the first copy reads the source, which moves the source's atimes.)
 */
function listing(root: string): string[] {
  const out: string[] = [];
  const inodes = new Map<number, string>();
  const walk = (abs: string, rel: string): void => {
    for (const name of readdirSync(abs).sort()) {
      const p = join(abs, name);
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = lstatSync(p);
      let line = `${r} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.mtimeMs}`;
      if (st.isFile()) {
        line += ` ${st.size} ${readFileSync(p).toString('base64').slice(0, 16)}`;
        if (st.nlink > 1) {
          line += ` inode=${inodes.get(st.ino) ?? r}`;
          if (!inodes.has(st.ino)) inodes.set(st.ino, r);
        }
      }
      if (st.isSymbolicLink()) line += ` -> ${readlinkSync(p)}`;
      for (const [k, v] of Object.entries(getXattrs(p))) line += ` ${k}=${v.toString()}`;
      out.push(line);
      if (st.isDirectory()) walk(p, r);
    }
  };
  walk(root, '');
  return out;
}

const context = (root: string): CopyFrom => ({ root, label: 'the build context', resetOwner: true });
const stage = (root: string): CopyFrom => ({ root, label: 'stage builder', resetOwner: false });

async function copyBoth(
  t: { teardown(fn: () => Promise<void>): void },
  from: (root: string) => CopyFrom,
  opts: Partial<CopyIntoOptions>,
): Promise<{ one: string[]; many: string[]; dir: string }> {
  const dir = await makeTempDir('tsbuild-copy-write-');
  t.teardown(() => removeDir(dir));
  makeSource(join(dir, 'src'));
  const out: string[][] = [];
  for (const n of [1, 16]) {
    const root = join(dir, `root${n}`);
    mkdirSync(root);
    const f = from(join(dir, 'src'));
    await copyInto(root, f, selectSources(f, ['.']), {
      dest: '/app/',
      tmpDir: dir,
      host: defaultHost(),
      filesInFlight: n,
      ...opts,
    });
    out.push(listing(join(root, 'app')));
  }
  return { one: out[0]!, many: out[1]!, dir };
}

rootOnly(
  'a copy of many files at once gives the tree one file at a time gives: modes, owners, times, xattrs, hard links',
  async (t) => {
    const { one, many, dir } = await copyBoth(t, stage, {});
    t.deepEqual(many, one);
    t.is(many.length, 6 * 63 + 2);
    // the source's own metadata, spot checked
    const f = lstatSync(join(dir, 'root16', 'app', 'd2', 'f009'));
    t.is(f.mode & 0o7777, 0o4755);
    t.is(`${f.uid}:${f.gid}`, '1009:2002');
    t.is(lstatSync(join(dir, 'root16', 'app', 'd2', 'f004')).mode & 0o7777, 0o2711, 'setgid kept after the chown');
    t.is(lstatSync(join(dir, 'root16', 'app', 'd2', 'f002')).mode & 0o7777, 0o777, 'not umasked');
    t.is(f.mtimeMs, (1_600_000_100 + 2000 + 9) * 1000);
    t.is(getXattrs(join(dir, 'root16', 'app', 'd4', 'f013'))['user.tag']?.toString(), 'x4.13');
    const d = lstatSync(join(dir, 'root16', 'app', 'd3'));
    t.is(d.mode & 0o7777, 0o750);
    t.is(d.mtimeMs, (1_500_000_000 + 3) * 1000, 'a directory gets its time after its children are written');
    const first = lstatSync(join(dir, 'root16', 'app', 'd1', 'f010'));
    t.is(first.nlink, 3);
    t.is(lstatSync(join(dir, 'root16', 'app', 'd5', 'hard')).ino, first.ino);
    t.true(lstatSync(join(dir, 'root16', 'app', 'd0', 'fifo')).isFIFO());
  },
);

rootOnly('--chown, --chmod and SOURCE_DATE_EPOCH apply to every entry of a copy of many files', async (t) => {
  const { one, many } = await copyBoth(t, context, {
    chown: { uid: 1234, gid: 5678 },
    chmod: parseChmod('u=rwX,go=rX'),
    mtime: 1_700_000_000,
  });
  t.deepEqual(many, one);
  for (const line of many) {
    const [path, mode, owner, mtime] = line.split(' ');
    t.is(owner, '1234:5678', path);
    if (!line.includes(' -> ')) t.is(mtime, '1700000000000', path);
    if (path === 'd0/f002') t.is(mode, '100755');
    if (path === 'd0/f001') t.is(mode, '100644');
  }
});

test('every entry of a copy of many files gets its owner through the Host', async (t) => {
  const dir = await makeTempDir('tsbuild-copy-write-');
  t.teardown(() => removeDir(dir));
  const src = join(dir, 'src');
  mkdirSync(join(src, 'a'), { recursive: true });
  for (let i = 0; i < 200; i++) writeFileSync(join(src, 'a', `f${i}`), `${i}`);
  const root = join(dir, 'root');
  mkdirSync(root);
  const host = new FakeHost();
  const from = context(src);
  await copyInto(root, from, selectSources(from, ['.']), {
    dest: '/app/',
    tmpDir: dir,
    host,
    chown: { uid: 7, gid: 8 },
  });
  const chowned = new Set(host.callsOf('lchown').map((c) => `${c.path.slice(root.length)} ${c.uid}:${c.gid}`));
  for (let i = 0; i < 200; i++) t.true(chowned.has(`/app/a/f${i} 7:8`), `f${i}`);
  t.true(chowned.has('/app/a 7:8'));
  t.true(chowned.has('/app 7:8'));
});

/** node is a SelNode with explicit children; `abs` may name a missing file (its copy then fails). */
const node = (abs: string, name: string, like: string, children?: SelNode[]): SelNode => ({
  abs,
  name,
  st: lstatSync(like),
  ...(children ? { children } : {}),
});

test('a failing file among many gives the error of the first failing entry in walk order, every time', async (t) => {
  const dir = await makeTempDir('tsbuild-copy-write-');
  t.teardown(() => removeDir(dir));
  const file = join(dir, 'file');
  writeFileSync(file, 'data');
  utimesSync(file, 1_600_000_000, 1_600_000_000);
  // 300 files in walk order; f120 and f121 and f250 name missing sources: their copy fails in the thread pool
  const bad = new Set([120, 121, 250]);
  const kids = Array.from({ length: 300 }, (_, i) => {
    const name = `f${String(i).padStart(3, '0')}`;
    return node(bad.has(i) ? join(dir, `missing-${name}`) : file, name, file);
  });
  const sel: Selected[] = [{ rel: '', node: node(dir, 'src', dir, [node(dir, 'sub', dir, kids)]), parents: false }];
  for (let round = 0; round < 5; round++) {
    const root = join(dir, `root${round}`);
    mkdirSync(root);
    const err = await t.throwsAsync(
      copyInto(root, context(dir), sel, { dest: '/app/', tmpDir: dir, host: defaultHost(), filesInFlight: 16 }),
    );
    t.regex(err?.message ?? '', /missing-f120/, `round ${round}`);
    const written = readdirSync(join(root, 'app', 'sub'));
    // nothing is being written once copyInto has rejected
    await new Promise((resolve) => setTimeout(resolve, 50));
    t.deepEqual(readdirSync(join(root, 'app', 'sub')), written);
    // every entry before the failing one was written with its metadata; the walk stopped soon after it
    for (let i = 0; i < 120; i++) {
      const st = lstatSync(join(root, 'app', 'sub', `f${String(i).padStart(3, '0')}`));
      t.is(st.mtimeMs, lstatSync(file).mtimeMs);
    }
    t.false(existsSync(join(root, 'app', 'sub', 'f200')));
    t.false(existsSync(join(root, 'app', 'sub', 'f299')));
  }
});

test('a file onto a directory among many is reported for the first such entry, with nothing written after it', async (t) => {
  const dir = await makeTempDir('tsbuild-copy-write-');
  t.teardown(() => removeDir(dir));
  const src = join(dir, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  for (let i = 0; i < 300; i++) writeFileSync(join(src, 'sub', `f${String(i).padStart(3, '0')}`), `${i}`);
  const root = join(dir, 'root');
  mkdirSync(join(root, 'app', 'sub', 'f150'), { recursive: true });
  mkdirSync(join(root, 'app', 'sub', 'f230'), { recursive: true });
  const from = context(src);
  await t.throwsAsync(
    copyInto(root, from, selectSources(from, ['.']), { dest: '/app/', tmpDir: dir, host: defaultHost() }),
    { message: 'cannot replace directory /app/sub/f150 with a file' },
  );
  const names = readdirSync(join(root, 'app', 'sub')).sort();
  t.deepEqual(names, [...Array.from({ length: 150 }, (_, i) => `f${String(i).padStart(3, '0')}`), 'f150', 'f230']);
  for (const n of names.slice(0, 150))
    t.is(readFileSync(join(root, 'app', 'sub', n), 'utf8'), String(Number(n.slice(1))));
});

test('a directory onto a file among many files keeps its message', async (t) => {
  const dir = await makeTempDir('tsbuild-copy-write-');
  t.teardown(() => removeDir(dir));
  const src = join(dir, 'src');
  for (const d of ['a', 'b', 'c']) {
    mkdirSync(join(src, d), { recursive: true });
    for (let i = 0; i < 50; i++) writeFileSync(join(src, d, `f${i}`), `${i}`);
  }
  const root = join(dir, 'root');
  mkdirSync(join(root, 'app'), { recursive: true });
  writeFileSync(join(root, 'app', 'b'), 'a file');
  const from = context(src);
  await t.throwsAsync(
    copyInto(root, from, selectSources(from, ['.']), { dest: '/app/', tmpDir: dir, host: defaultHost() }),
    { message: 'cannot copy to non-directory: /app/b' },
  );
  t.is(readdirSync(join(root, 'app', 'a')).length, 50, 'the entries before it are all written');
  t.false(existsSync(join(root, 'app', 'c')));
});

test('symlinks in the destination pointing outside the root are never followed out, whatever the number of files', async (t) => {
  const dir = await makeTempDir('tsbuild-copy-write-');
  t.teardown(() => removeDir(dir));
  const outside = join(dir, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'config.txt'), 'outside');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'lib'), { recursive: true });
  for (let i = 0; i < 100; i++) writeFileSync(join(src, 'lib', `f${i}`), `${i}`);
  writeFileSync(join(src, 'config.txt'), 'inside');
  const root = join(dir, 'root');
  mkdirSync(join(root, 'app'), { recursive: true });
  // the destination itself is a link to the host's directory; a file in it links to a host file
  symlinkSync(outside, join(root, 'dest'));
  symlinkSync(join(outside, 'config.txt'), join(root, 'app', 'config.txt'));
  const from = context(src);
  const opts = { tmpDir: dir, host: defaultHost() };
  await copyInto(root, from, selectSources(from, ['.']), { dest: '/dest/', ...opts });
  await copyInto(root, from, selectSources(from, ['.']), { dest: '/app/', ...opts });
  t.deepEqual(readdirSync(outside), ['config.txt']);
  t.is(readFileSync(join(outside, 'config.txt'), 'utf8'), 'outside');
  // /dest resolved inside the root: the link's absolute target under the root
  t.is(readdirSync(join(root, outside.slice(1), 'lib')).length, 100);
  t.false(lstatSync(join(root, 'app', 'config.txt')).isSymbolicLink());
  t.is(readFileSync(join(root, 'app', 'config.txt'), 'utf8'), 'inside');
  // a directory of the source onto a link to a host directory is refused
  mkdirSync(join(root, 'top'));
  symlinkSync(outside, join(root, 'top', 'lib'));
  await t.throwsAsync(copyInto(root, from, selectSources(from, ['.']), { dest: '/top/', ...opts }), {
    message: 'cannot copy to non-directory: /top/lib',
  });
  t.deepEqual(readdirSync(outside), ['config.txt']);
});

rootTest('a hard link group of a big copy links to the first path in walk order', async (t) => {
  const dir = await makeTempDir('tsbuild-copy-write-');
  t.teardown(() => removeDir(dir));
  const src = join(dir, 'src');
  mkdirSync(join(src, 'z'), { recursive: true });
  mkdirSync(join(src, 'a'));
  for (let i = 0; i < 100; i++) writeFileSync(join(src, 'a', `f${String(i).padStart(3, '0')}`), `${i}`);
  writeFileSync(join(src, 'z', 'orig'), 'shared');
  linkSync(join(src, 'z', 'orig'), join(src, 'a', 'f050-link'));
  linkSync(join(src, 'z', 'orig'), join(src, 'a', 'f099-link'));
  const root = join(dir, 'root');
  mkdirSync(root);
  const from = context(src);
  await copyInto(root, from, selectSources(from, ['.']), { dest: '/app/', tmpDir: dir, host: defaultHost() });
  const first = lstatSync(join(root, 'app', 'a', 'f050-link'));
  t.is(first.nlink, 3);
  t.is(lstatSync(join(root, 'app', 'a', 'f099-link')).ino, first.ino);
  t.is(lstatSync(join(root, 'app', 'z', 'orig')).ino, first.ino);
  t.is(readFileSync(join(root, 'app', 'z', 'orig'), 'utf8'), 'shared');
});

import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, chown, link, lstat, mkdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pack, type Header } from 'tar-stream';
import { tarSync } from '../../../fixtures/hostile-layers.js';
import { TsbuildError } from '../../../sys/errors.js';
import {
  applyEntry,
  applyLayer,
  createApplyState,
  finishApply,
  type ApplyOptions,
  type EntryHeader,
} from '../../../layers/tar/apply.js';
import { installPaxCodec, xattrRecords } from '../../../layers/tar/pax.js';
import { getXattr, getXattrs, majorMinor, mknod } from '../../../sys/libc.js';
import { isRoot, makeTempDir, removeDir, rootTest } from '../../helpers/index.js';

const T = new Date('2021-06-07T08:09:10Z');
const T_SEC = T.getTime() / 1000;

async function tempDir(t: ExecutionContext, prefix = 'tsbuild-apply-'): Promise<string> {
  const d = await makeTempDir(prefix);
  t.teardown(() => removeDir(d));
  return d;
}

/** gnuTar archives `dir`'s contents with GNU tar (the real tool), numeric owners, PAX format and xattrs. */
function gnuTar(dir: string, extra: string[] = []): Buffer {
  return execFileSync(
    'tar',
    ['--format=posix', '--numeric-owner', '--xattrs', '--xattrs-include=*', ...extra, '-cf', '-', '-C', dir, '.'],
    {
      maxBuffer: 1 << 28,
    },
  );
}

interface PackEntry {
  header: Partial<Header> & { name: string; pax?: Record<string, string | Uint8Array> };
  data?: string | Buffer;
}

/** packTar builds a tar with tar-stream's pack(), entries in the given order (for headers GNU tar cannot make). */
async function packTar(entries: PackEntry[]): Promise<Buffer> {
  installPaxCodec();
  const p = pack();
  const out: Buffer[] = [];
  const done = (async () => {
    for await (const c of p) out.push(c as Buffer);
  })();
  for (const e of entries) {
    const header = { mtime: T, ...e.header } as Header;
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
      if ((header.type ?? 'file') === 'file') p.entry(header, Buffer.from(e.data ?? ''), cb);
      else p.entry(header, cb);
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(out);
}

const apply = (tar: Buffer, opts: ApplyOptions) => applyLayer(Readable.from(tar), opts);

interface Manifest {
  /** path → type, mode, owner, content hash or link target, xattrs */
  entries: Record<string, string>;
  /** path → mtime in ns; ours are compared to theirs truncated to the microsecond (all that Node's utimes sets) */
  mtimes: Record<string, bigint>;
}

/** manifest describes a tree the way an image sees it (the root itself left out). */
function manifest(root: string): Manifest {
  const m: Manifest = { entries: {}, mtimes: {} };
  const inodes = new Map<number, string>();
  const walk = (rel: string): void => {
    const abs = rel === '' ? root : join(root, rel);
    const st = lstatSync(abs);
    const ns = lstatSync(abs, { bigint: true }).mtimeNs;
    if (rel !== '') {
      const x = getXattrs(abs);
      const xs = Object.keys(x).length
        ? ` xattrs=${Object.entries(x)
            .map(([k, v]) => `${k}:${v.toString('hex')}`)
            .join(',')}`
        : '';
      let what: string;
      if (st.isDirectory()) what = 'dir';
      else if (st.isSymbolicLink()) what = `symlink->${readlinkSync(abs)}`;
      else if (st.isFile()) {
        const first = inodes.get(st.ino);
        if (first !== undefined) what = `hardlink->${first}`;
        else {
          inodes.set(st.ino, rel);
          what = `file sha=${createHash('sha256').update(readFileSync(abs)).digest('hex').slice(0, 16)}`;
        }
      } else if (st.isFIFO()) what = 'fifo';
      else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const { major, minor } = majorMinor(st.rdev);
        what = `${st.isCharacterDevice() ? 'char' : 'block'} ${major}:${minor}`;
      } else what = 'other';
      m.entries[rel] = `${what} mode=${(st.mode & 0o7777).toString(8)} owner=${st.uid}:${st.gid}${xs}`;
      m.mtimes[rel] = ns;
    }
    if (st.isDirectory()) for (const name of readdirSync(abs).sort()) walk(rel === '' ? name : `${rel}/${name}`);
  };
  walk('');
  return m;
}

/** assertSameTree compares two manifests: everything exactly, mtimes to the microsecond. */
function assertSameTree(t: ExecutionContext, got: Manifest, want: Manifest, what: string): void {
  t.deepEqual(got.entries, want.entries, what);
  const off = Object.keys(want.mtimes).filter((k) => {
    const w = want.mtimes[k] ?? 0n;
    return got.mtimes[k] !== w - (w % 1000n);
  });
  t.deepEqual(
    off.map((k) => `${k}: ${got.mtimes[k]} != ${want.mtimes[k]}`),
    [],
    `${what}: mtimes`,
  );
}

/** makeTree fills dir with one of everything GNU tar can archive, with owners, odd modes and fixed times. */
async function makeTree(dir: string): Promise<void> {
  await mkdir(join(dir, 'etc/app.d'), { recursive: true });
  await writeFile(join(dir, 'etc/app.d/default.cfg'), 'key = value\n');
  await writeFile(join(dir, 'etc/empty'), '');
  await mkdir(join(dir, 'usr/bin'), { recursive: true });
  await writeFile(join(dir, 'usr/bin/tool'), '#!/bin/sh\necho tool\n');
  await chmod(join(dir, 'usr/bin/tool'), 0o4755); // setuid
  await writeFile(join(dir, 'usr/bin/grouped'), 'g\n');
  await chmod(join(dir, 'usr/bin/grouped'), 0o2711); // setgid, unusual bits
  await link(join(dir, 'usr/bin/tool'), join(dir, 'usr/bin/tool-alias'));
  await symlink('tool', join(dir, 'usr/bin/tool-link'));
  await symlink('/etc/app.d/default.cfg', join(dir, 'etc/absolute-link'));
  await symlink('../nowhere', join(dir, 'etc/dangling'));
  await mkdir(join(dir, 'tmp'));
  await chmod(join(dir, 'tmp'), 0o1777); // sticky
  await mkdir(join(dir, 'home/user'), { recursive: true });
  await writeFile(join(dir, 'home/user/notes'), 'owned by a user\n');
  await chmod(join(dir, 'home/user/notes'), 0o600);
  await mkdir(join(dir, 'secret'));
  await chmod(join(dir, 'secret'), 0o500); // no write bit: children must still be extracted
  await writeFile(join(dir, 'secret/key'), 'k\n');
  execFileSync('mkfifo', [join(dir, 'etc/fifo')]);
  const big = Buffer.alloc(3 << 20);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
  await writeFile(join(dir, 'usr/big.bin'), big); // larger than what goes to the worker thread
  await mkdir(join(dir, 'many'));
  for (let i = 0; i < 300; i++) await writeFile(join(dir, 'many', `f${i}`), `file ${i}\n`.repeat(i % 7));
  if (isRoot) {
    mknod(join(dir, 'null'), 0o20666, 1, 3); // char 1:3
    mknod(join(dir, 'loop9'), 0o60660, 7, 9); // block 7:9
    await chown(join(dir, 'home/user'), 1000, 1000);
    await chown(join(dir, 'home/user/notes'), 1000, 1001);
    await chown(join(dir, 'usr/bin/grouped'), 0, 50);
    execFileSync('chown', ['-h', '12345:54321', join(dir, 'etc/dangling')]);
    execFileSync('setcap', ['cap_net_raw,cap_setfcap+ep', join(dir, 'usr/bin/grouped')]);
    execFileSync('chmod', ['2711', join(dir, 'usr/bin/grouped')]); // setcap does not touch the mode; be sure
  }
  // Times last, deepest first, so that GNU tar records them as set here.
  execFileSync('find', [dir, '-depth', '-exec', 'touch', '-h', '-d', T.toISOString(), '{}', '+']);
}

test('a GNU tar layer of every file type applies exactly as GNU tar extracts it', async (t) => {
  const src = await tempDir(t);
  await makeTree(src);
  const tar = gnuTar(src);
  const ours = await tempDir(t);
  const theirs = await tempDir(t);
  const res = await apply(tar, { root: ours });
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xf', '-', '-C', theirs], {
    input: tar,
    maxBuffer: 1 << 28,
  });
  const got = manifest(ours);
  assertSameTree(t, got, manifest(theirs), 'as GNU tar extracts it');
  t.true(res.entries >= 320);
  t.true(res.bytes >= 3 << 20);
  // And the tree is the source tree, not just GNU tar's idea of it.
  assertSameTree(t, got, manifest(src), 'as the source');
});

rootTest('a GNU tar of the host /etc applies exactly as GNU tar extracts it', async (t) => {
  // Real-world names, modes, owners, symlinks and hardlinks; one tar read by both (the host may change meanwhile).
  const r = spawnSync(
    'tar',
    ['--format=posix', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-cf', '-', '-C', '/', 'etc'],
    {
      maxBuffer: 1 << 28,
    },
  );
  t.true(r.stdout.length > 1 << 20);
  const ours = await tempDir(t);
  const theirs = await tempDir(t);
  const res = await apply(r.stdout, { root: ours });
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xf', '-', '-C', theirs], {
    input: r.stdout,
    maxBuffer: 1 << 28,
  });
  const want = manifest(theirs);
  t.true(Object.keys(want.entries).length > 1000);
  assertSameTree(t, manifest(ours), want, 'as GNU tar extracts it');
  t.is(res.entries, Object.keys(want.entries).length);
});

rootTest('owners, setuid/setgid/sticky bits and devices survive (as root)', async (t) => {
  const src = await tempDir(t);
  await makeTree(src);
  const root = await tempDir(t);
  await apply(gnuTar(src), { root });
  const st = (p: string) => lstatSync(join(root, p));
  t.is(st('usr/bin/tool').mode & 0o7777, 0o4755);
  t.is(st('usr/bin/grouped').mode & 0o7777, 0o2711);
  t.is(st('usr/bin/grouped').gid, 50);
  t.is(st('tmp').mode & 0o7777, 0o1777);
  t.is(st('secret').mode & 0o7777, 0o500);
  t.deepEqual([st('home/user/notes').uid, st('home/user/notes').gid], [1000, 1001]);
  t.deepEqual([st('etc/dangling').uid, st('etc/dangling').gid], [12345, 54321]);
  t.true(st('null').isCharacterDevice());
  t.deepEqual(majorMinor(st('null').rdev), { major: 1, minor: 3 });
  t.true(st('loop9').isBlockDevice());
  t.deepEqual(majorMinor(st('loop9').rdev), { major: 7, minor: 9 });
  t.true(st('etc/fifo').isFIFO());
  t.is(st('usr/bin/tool-alias').ino, st('usr/bin/tool').ino);
  t.is(readlinkSync(join(root, 'etc/absolute-link')), '/etc/app.d/default.cfg');
});

rootTest('the security.capability xattr from GNU tar is applied byte for byte', async (t) => {
  const src = await tempDir(t);
  await writeFile(join(src, 'ping'), 'binary\n');
  execFileSync('setcap', ['cap_net_raw,cap_setfcap+ep', join(src, 'ping')]);
  const want = getXattr(join(src, 'ping'), 'security.capability');
  t.truthy(want);
  const root = await tempDir(t);
  await apply(gnuTar(src), { root });
  t.deepEqual(getXattr(join(root, 'ping'), 'security.capability'), want);
  t.regex(execFileSync('getcap', [join(root, 'ping')]).toString(), /cap_net_raw,cap_setfcap[=+]ep/);
});

rootTest('a binary security.capability xattr in a PAX header survives a chown to another owner', async (t) => {
  // vfs_cap_data revision 2, effective: permitted caps 13 (net_raw) and 31 (setfcap), 38 and 39 in the high word.
  // Bytes >= 0x80 would not survive a UTF-8 round trip.
  const cap = Buffer.from('01000002' + '00200080' + '00000000' + 'c0000000' + '00000000', 'hex');
  const tar = await packTar([
    { header: { name: 'bin/', type: 'directory', mode: 0o755 } },
    {
      header: {
        name: 'bin/pinger',
        mode: 0o755,
        uid: 4242,
        gid: 4343,
        pax: xattrRecords({ 'security.capability': cap, 'user.note': Buffer.from([0xff, 0, 0xfe]) }),
      },
      data: 'x',
    },
  ]);
  const root = await tempDir(t);
  await apply(tar, { root });
  const st = lstatSync(join(root, 'bin/pinger'));
  t.deepEqual([st.uid, st.gid, st.mode & 0o7777], [4242, 4343, 0o755]);
  t.deepEqual(getXattr(join(root, 'bin/pinger'), 'security.capability'), cap);
  t.deepEqual(getXattr(join(root, 'bin/pinger'), 'user.note'), Buffer.from([0xff, 0, 0xfe]));
});

test('an xattr the filesystem refuses is a warning, and overlay xattrs in a layer are ignored', async (t) => {
  const tar = await packTar([
    {
      header: {
        name: 'f',
        pax: xattrRecords({ 'bogus.namespace': Buffer.from('x'), 'trusted.overlay.opaque': Buffer.from('y') }),
      },
      data: 'x',
    },
  ]);
  const root = await tempDir(t);
  const warnings: string[] = [];
  await apply(tar, { root, onWarn: (code, msg) => warnings.push(`${code}: ${msg}`) });
  t.is(await readFile(join(root, 'f'), 'utf8'), 'x');
  t.deepEqual(getXattrs(join(root, 'f')), {});
  t.is(warnings.length, 2, warnings.join('\n'));
  t.true(warnings.some((w) => w.startsWith('xattr-refused: ') && w.includes('bogus.namespace') && w.includes(' f ')));
  t.true(warnings.some((w) => w.startsWith('xattr-ignored: ') && w.includes('trusted.overlay.opaque')));
});

test('directory mtimes are set after all their children are written', async (t) => {
  const tar = await packTar([
    { header: { name: 'a/', type: 'directory', mtime: new Date('2000-01-01T00:00:00Z') } },
    { header: { name: 'a/b/', type: 'directory', mtime: new Date('2001-01-01T00:00:00Z') } },
    { header: { name: 'a/b/file', mtime: new Date('2002-01-01T00:00:00Z') }, data: 'x' },
    { header: { name: 'a/later' }, data: 'y' },
    { header: { name: 'a/b/link', type: 'symlink', linkname: 'file', mtime: new Date('2003-01-01T00:00:00Z') } },
  ]);
  const root = await tempDir(t);
  await apply(tar, { root });
  t.is(lstatSync(join(root, 'a')).mtime.toISOString(), '2000-01-01T00:00:00.000Z');
  t.is(lstatSync(join(root, 'a/b')).mtime.toISOString(), '2001-01-01T00:00:00.000Z');
  t.is(lstatSync(join(root, 'a/b/file')).mtime.toISOString(), '2002-01-01T00:00:00.000Z');
  t.is(lstatSync(join(root, 'a/b/link')).mtime.toISOString(), '2003-01-01T00:00:00.000Z');
  t.is(lstatSync(join(root, 'a/later')).mtime.getTime(), T.getTime());
});

test('PAX sub-second times are kept to the microsecond', async (t) => {
  const tar = await packTar([
    { header: { name: 'f', pax: { mtime: '1600000000.25' } }, data: 'x' },
    // The nearest double to this time is below it: the microsecond must still be ...169, not ...168.
    { header: { name: 'd/', type: 'directory', pax: { mtime: '1795421668.580169077', atime: '1795425877.21701699' } } },
    { header: { name: 'l', type: 'symlink', linkname: 'f', pax: { mtime: '1700000000.999999999' } } },
  ]);
  const root = await tempDir(t);
  await apply(tar, { root });
  const st = (p: string) => lstatSync(join(root, p), { bigint: true });
  t.is(st('f').mtimeNs, 1600000000250000000n);
  t.is(st('d').mtimeNs, 1795421668580169000n);
  t.is(st('d').atimeNs, 1795425877217016000n);
  t.is(st('l').mtimeNs, 1700000000999999000n);
});

/** lowerTree is a lower layer made with GNU tar: files, a directory tree and a symlink to a directory. */
async function lowerTree(t: ExecutionContext): Promise<Buffer> {
  const src = await tempDir(t);
  await mkdir(join(src, 'a/deep'), { recursive: true });
  await writeFile(join(src, 'file1'), '1');
  await writeFile(join(src, 'a/file2'), '2');
  await writeFile(join(src, 'a/deep/file3'), '3');
  await mkdir(join(src, 'b/c'), { recursive: true });
  await writeFile(join(src, 'b/c/file4'), '4');
  await mkdir(join(src, 'target'));
  await writeFile(join(src, 'target/kept'), 'kept');
  await symlink('target', join(src, 'link'));
  await mkdir(join(src, 'bin/tools'), { recursive: true });
  await writeFile(join(src, 'bin/my-app-binary'), 'bin');
  await writeFile(join(src, 'bin/tools/one'), 'one');
  await mkdir(join(src, 'bin/keepdir'));
  await writeFile(join(src, 'bin/keepdir/lowerchild'), 'lower');
  return gnuTar(src);
}

test('whiteouts delete files, directories and symlinks of a lower layer, never what a symlink points to', async (t) => {
  const root = await tempDir(t);
  await apply(await lowerTree(t), { root });
  // The upper layer, made with GNU tar too: whiteouts are plain empty files named .wh.<name>.
  const up = await tempDir(t);
  await mkdir(join(up, 'a'));
  await writeFile(join(up, '.wh.file1'), '');
  await writeFile(join(up, 'a/.wh.file2'), '');
  await writeFile(join(up, '.wh.b'), '');
  await writeFile(join(up, '.wh.link'), '');
  await writeFile(join(up, '.wh.never-existed'), '');
  await writeFile(join(up, 'file5'), '5');
  execFileSync('touch', ['-d', T.toISOString(), join(up, 'a')]);
  const res = await apply(gnuTar(up), { root });
  t.is(res.entries, 8);
  const names = (p: string) => readdirSync(join(root, p)).sort();
  t.deepEqual(names(''), ['a', 'bin', 'file5', 'target']);
  t.deepEqual(names('a'), ['deep']);
  t.deepEqual(names('target'), ['kept']);
  t.false(
    names('').some((n) => n.startsWith('.wh.')),
    'whiteouts are not materialized',
  );
});

const opaqueOrders: Record<string, PackEntry[]> = {
  'marker first': [
    { header: { name: 'bin/', type: 'directory' } },
    { header: { name: 'bin/.wh..wh..opq' } },
    { header: { name: 'bin/new' }, data: 'new' },
    { header: { name: 'bin/keepdir/', type: 'directory' } },
    { header: { name: 'bin/keepdir/newchild' }, data: 'n' },
    { header: { name: 'bin/sub/x' }, data: 'x' },
  ],
  'marker in the middle': [
    { header: { name: 'bin/', type: 'directory' } },
    { header: { name: 'bin/new' }, data: 'new' },
    { header: { name: 'bin/keepdir/', type: 'directory' } },
    { header: { name: 'bin/.wh..wh..opq' } },
    { header: { name: 'bin/keepdir/newchild' }, data: 'n' },
    { header: { name: 'bin/sub/x' }, data: 'x' },
  ],
  'marker last': [
    { header: { name: 'bin/', type: 'directory' } },
    { header: { name: 'bin/new' }, data: 'new' },
    { header: { name: 'bin/keepdir/', type: 'directory' } },
    { header: { name: 'bin/keepdir/newchild' }, data: 'n' },
    { header: { name: 'bin/sub/x' }, data: 'x' },
    { header: { name: 'bin/.wh..wh..opq' } },
  ],
};

const opaqueMacro = test.macro({
  async exec(t, entries: PackEntry[]) {
    const root = await tempDir(t);
    await apply(await lowerTree(t), { root });
    await apply(await packTar(entries), { root });
    const names = (p: string) => readdirSync(join(root, p)).sort();
    t.deepEqual(names('bin'), ['keepdir', 'new', 'sub']);
    t.deepEqual(names('bin/keepdir'), ['newchild']);
    t.deepEqual(names('bin/sub'), ['x']);
    t.is(await readFile(join(root, 'bin/new'), 'utf8'), 'new');
    t.deepEqual(names('a'), ['deep', 'file2'], 'directories beside the opaque one are untouched');
  },
  title: (order) => `an opaque directory hides every lower child and keeps the layer's own (${order})`,
});
for (const [order, entries] of Object.entries(opaqueOrders)) test(order, opaqueMacro, entries);

rootTest(
  "'overlay' whiteouts become char 0/0 devices and the opaque xattr, which a kernel overlay mount honours",
  async (t) => {
    const lower = await tempDir(t);
    await apply(await lowerTree(t), { root: lower, whiteouts: 'overlay' });
    const upper = await tempDir(t);
    const tar = await packTar([
      { header: { name: '.wh.file1' } },
      { header: { name: 'a/', type: 'directory' } },
      { header: { name: 'a/.wh.file2' } },
      { header: { name: '.wh.b' } },
      { header: { name: 'bin/', type: 'directory' } },
      { header: { name: 'bin/new' }, data: 'new' },
      { header: { name: 'bin/.wh..wh..opq' } },
    ]);
    await apply(tar, { root: upper, whiteouts: 'overlay' });
    for (const p of ['file1', 'a/file2', 'b']) {
      const st = lstatSync(join(upper, p));
      t.true(st.isCharacterDevice(), p);
      t.is(st.rdev, 0, p);
    }
    t.deepEqual(getXattr(join(upper, 'bin'), 'trusted.overlay.opaque'), Buffer.from('y'));
    t.deepEqual(readdirSync(join(upper, 'bin')), ['new'], 'overlay mode leaves lower content to the mount');

    const merged = await tempDir(t);
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${upper}:${lower}`, merged]);
    t.teardown(() => {
      spawnSync('umount', [merged]);
    });
    const names = (p: string) => readdirSync(join(merged, p)).sort();
    t.deepEqual(names(''), ['a', 'bin', 'link', 'target']);
    t.deepEqual(names('a'), ['deep']);
    t.deepEqual(names('bin'), ['new']);
    execFileSync('umount', [merged]);
  },
);

test('a lower-layer symlink parent is followed inside the root: relative and absolute targets', async (t) => {
  const root = await tempDir(t);
  const lower = await tempDir(t);
  await mkdir(join(lower, 'usr/bin'), { recursive: true });
  await mkdir(join(lower, 'usr/lib'), { recursive: true });
  await symlink('usr/bin', join(lower, 'bin'));
  await symlink('/usr/lib', join(lower, 'lib'));
  await symlink('../../usr/lib', join(lower, 'usr/bin/up')); // relative, climbs but stays inside
  await apply(gnuTar(lower), { root });
  const tar = await packTar([
    { header: { name: 'bin/sh' }, data: 'sh' },
    { header: { name: 'lib/libc.so' }, data: 'libc' },
    { header: { name: 'lib/x86/', type: 'directory' } },
    { header: { name: 'lib/x86/ld.so' }, data: 'ld' },
    { header: { name: 'bin/up/via-up' }, data: 'up' },
  ]);
  await apply(tar, { root });
  t.is(await readFile(join(root, 'usr/bin/sh'), 'utf8'), 'sh');
  t.is(await readFile(join(root, 'usr/lib/libc.so'), 'utf8'), 'libc');
  t.is(await readFile(join(root, 'usr/lib/x86/ld.so'), 'utf8'), 'ld');
  t.is(await readFile(join(root, 'usr/lib/via-up'), 'utf8'), 'up');
  t.is(await readlink(join(root, 'bin')), 'usr/bin');
  t.is(await readlink(join(root, 'lib')), '/usr/lib');
});

test('a layer replaces a directory by a file and a file by a directory', async (t) => {
  const root = await tempDir(t);
  await apply(await lowerTree(t), { root });
  const tar = await packTar([
    { header: { name: 'a', mode: 0o600 }, data: 'now a file' },
    { header: { name: 'file1/', type: 'directory', mode: 0o750 } },
    { header: { name: 'file1/inside' }, data: 'inside' },
    { header: { name: 'link/', type: 'directory' } }, // a lower symlink to a directory becomes a directory
  ]);
  await apply(tar, { root });
  t.is(await readFile(join(root, 'a'), 'utf8'), 'now a file');
  t.is(lstatSync(join(root, 'a')).mode & 0o7777, 0o600);
  t.true(lstatSync(join(root, 'file1')).isDirectory());
  t.is(lstatSync(join(root, 'file1')).mode & 0o7777, 0o750);
  t.is(await readFile(join(root, 'file1/inside'), 'utf8'), 'inside');
  t.true(lstatSync(join(root, 'link')).isDirectory());
  t.deepEqual(readdirSync(join(root, 'target')), ['kept'], 'the old symlink target is untouched');
});

test('a file entry over a lower-layer symlink replaces the link and never writes through it', async (t) => {
  const base = await tempDir(t);
  await chmod(base, 0o755);
  const root = join(base, 'root');
  await mkdir(root);
  await writeFile(join(base, 'outside'), 'outside\n');
  await apply(
    tarSync([
      { name: 'x', type: 'symlink', linkname: join(base, 'outside') },
      { name: 'd', type: 'symlink', linkname: base },
    ]),
    { root },
  );
  await apply(
    tarSync([
      { name: 'x', data: 'inside\n', mode: 0o600 },
      { name: 'd', type: 'directory', mode: 0o700 },
    ]),
    { root },
  );
  t.true(lstatSync(join(root, 'x')).isFile());
  t.is(await readFile(join(root, 'x'), 'utf8'), 'inside\n');
  t.is(await readFile(join(base, 'outside'), 'utf8'), 'outside\n');
  t.true(lstatSync(join(root, 'd')).isDirectory());
  t.is(lstatSync(base).mode & 0o7777, 0o755, 'the directory entry did not chmod the old link target');
  t.deepEqual(readdirSync(base).sort(), ['outside', 'root']);
});

test('files queued for the writer thread exist before a hardlink, a whiteout or a duplicate touches them', async (t) => {
  const entries = [];
  for (let i = 0; i < 200; i++) entries.push({ name: `d/f${i}`, data: `content ${i}\n` });
  entries.push({ name: 'hard', type: 'link' as const, linkname: 'd/f199' });
  entries.push({ name: 'e/g', data: 'g\n' });
  for (let i = 0; i < 100; i++) entries.push({ name: `e/h${i}`, data: 'h\n' });
  entries.push({ name: '.wh.e' }); // hides nothing of a lower layer (there is none) but removes e here
  entries.push({ name: 'd/f5', type: 'symlink' as const, linkname: 'f6' }); // a duplicate path
  const root = await tempDir(t);
  const res = await apply(tarSync(entries), { root, writerThread: true });
  t.is(res.entries, entries.length);
  t.is(await readFile(join(root, 'hard'), 'utf8'), 'content 199\n');
  t.is(lstatSync(join(root, 'hard')).ino, lstatSync(join(root, 'd/f199')).ino);
  t.false(readdirSync(root).includes('e'));
  t.is(await readlink(join(root, 'd/f5')), 'f6');
  t.is(readdirSync(join(root, 'd')).length, 200);
  t.is(await readFile(join(root, 'd/f150'), 'utf8'), 'content 150\n');
});

test('hardlinks to files still with the writer thread are made after them: chains, duplicates, whiteouts', async (t) => {
  const entries = [];
  for (let i = 0; i < 300; i++) {
    entries.push({ name: `d/f${i}`, data: `content ${i}\n` });
    if (i % 7 === 0) entries.push({ name: `d/l${i}`, type: 'link' as const, linkname: `d/f${i}` });
    if (i % 21 === 0) entries.push({ name: `d/ll${i}`, type: 'link' as const, linkname: `d/l${i}` }); // to a link
  }
  entries.push({ name: 'd/l7', data: 'replaced\n' }); // a duplicate of a queued link
  entries.push({ name: 'd/.wh.f14' }); // removes a file that a queued link shares
  const root = await tempDir(t);
  const res = await apply(tarSync(entries), { root, writerThread: true });
  t.is(res.entries, entries.length);
  for (const i of [0, 21, 294]) {
    const ino = lstatSync(join(root, `d/f${i}`)).ino;
    t.is(lstatSync(join(root, `d/l${i}`)).ino, ino);
    t.is(lstatSync(join(root, `d/ll${i}`)).ino, ino);
    t.is(lstatSync(join(root, `d/f${i}`)).nlink, 3);
  }
  t.is(await readFile(join(root, 'd/l7'), 'utf8'), 'replaced\n');
  t.is(lstatSync(join(root, 'd/f7')).nlink, 1);
  t.false(readdirSync(join(root, 'd')).includes('f14'));
  t.is(await readFile(join(root, 'd/l14'), 'utf8'), 'content 14\n');
});

test('a truncated tar stream rejects with E_INVALID and nothing is left running', async (t) => {
  const src = await tempDir(t);
  for (let i = 0; i < 100; i++) await writeFile(join(src, `f${i}`), Buffer.alloc(3000, i));
  const tar = gnuTar(src);
  for (const cut of [tar.length >> 1, 512 * 3 + 100, tar.length - 1024 - 700]) {
    const root = await tempDir(t);
    const input = Readable.from(tar.subarray(0, cut));
    const err = await t.throwsAsync(applyLayer(input, { root }));
    t.is((err as TsbuildError).code, 'E_INVALID', `cut at ${cut}`);
    t.regex(err?.message ?? '', /^layer tar is truncated or corrupt: /);
    t.true(input.destroyed);
  }
});

test('an error of the input stream rejects with that error and destroys the stream', async (t) => {
  const root = await tempDir(t);
  const input = new PassThrough();
  const p = applyLayer(input, { root });
  input.write(tarSync([{ name: 'a', data: 'x'.repeat(600) }]).subarray(0, 700));
  input.destroy(new TsbuildError('E_DIGEST_MISMATCH', 'blob sha256:abc is corrupt'));
  const err = await t.throwsAsync(p);
  t.is((err as TsbuildError).code, 'E_DIGEST_MISMATCH');
  t.true(input.destroyed);
});

test('not a tar at all is E_INVALID', async (t) => {
  const root = await tempDir(t);
  const err = await t.throwsAsync(apply(Buffer.alloc(2048, 'not a tar '), { root }));
  t.is((err as TsbuildError).code, 'E_INVALID');
});

test('applyEntry applies hand-made headers; finishApply sets directory times', async (t) => {
  const root = await tempDir(t);
  const state = createApplyState({ root });
  const none = Readable.from([]);
  await applyEntry(state, { name: 'dir/', type: 'directory', mode: 0o710, mtime: T }, none);
  await applyEntry(
    state,
    { name: 'dir/file', type: 'file', mode: 0o640, mtime: T, size: 5 },
    Readable.from([Buffer.from('hello')]),
  );
  await applyEntry(state, { name: 'dir/fifo', type: 'fifo', mode: 0o600, mtime: T }, none);
  await applyEntry(state, { name: 'dir/.wh..wh.plnk', type: 'file' }, none); // AUFS metadata: skipped
  t.deepEqual(finishApply(state), { entries: 4, bytes: 5 });
  t.is(await readFile(join(root, 'dir/file'), 'utf8'), 'hello');
  t.is(lstatSync(join(root, 'dir/file')).mode & 0o7777, 0o640);
  t.true(lstatSync(join(root, 'dir/fifo')).isFIFO());
  t.is(lstatSync(join(root, 'dir')).mode & 0o7777, 0o710);
  t.is(lstatSync(join(root, 'dir')).mtimeMs / 1000, T_SEC);
  t.deepEqual(readdirSync(join(root, 'dir')).sort(), ['fifo', 'file']);
});

const invalidEntry = test.macro({
  async exec(t, header: EntryHeader, code: string, message: RegExp) {
    const root = await tempDir(t);
    const state = createApplyState({ root });
    const err = await t.throwsAsync(applyEntry(state, header, Readable.from([])));
    t.is((err as TsbuildError).code, code);
    t.regex(err?.message ?? '', message);
  },
  title: (what) => `applyEntry refuses ${what}`,
});
test(
  'a whiteout that names nothing',
  invalidEntry,
  { name: 'a/.wh.' },
  'E_INVALID',
  /"a\/\.wh\." is a whiteout that names nothing/,
);
test(
  'an entry of an unknown type',
  invalidEntry,
  { name: 'sparse', type: null },
  'E_INVALID',
  /"sparse" has an unsupported type/,
);
test(
  'a hardlink to a missing file',
  invalidEntry,
  { name: 'l', type: 'link', linkname: 'missing' },
  'E_UNSAFE_ENTRY',
  /"l": hardlink target "missing" does not exist/,
);
test(
  'a hardlink to a directory',
  invalidEntry,
  { name: 'l', type: 'link', linkname: '.' },
  'E_UNSAFE_ENTRY',
  /"l": hardlink target is the root/,
);

test('an entry under a lower-layer file is an error naming the entry', async (t) => {
  const root = await tempDir(t);
  await writeFile(join(root, 'f'), 'file');
  const err = await t.throwsAsync(apply(tarSync([{ name: 'f/child', data: 'x' }]), { root }));
  t.is((err as TsbuildError).code, 'E_INVALID');
  t.regex(err?.message ?? '', /"f\/child": f is not a directory/);
});

test('as non-root, a device entry is skipped with a warning and the rest applies', async (t) => {
  // Run in a child process under uid/gid 65534 when we are root; as non-root, run here.
  const tar = tarSync([
    { name: 'dev/', type: 'directory' },
    { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'dev/ok', data: 'ok' },
  ]);
  const base = await tempDir(t);
  await chmod(base, 0o777);
  const root = join(base, 'root');
  await mkdir(root);
  await writeFile(join(base, 'layer.tar'), tar);
  if (isRoot) await chown(root, 65534, 65534);
  const script = `
    import { createReadStream } from 'node:fs';
    import { applyLayer } from ${JSON.stringify(new URL('../../../layers/tar/apply.ts', import.meta.url).href)};
    const warnings = [];
    await applyLayer(createReadStream(${JSON.stringify(join(base, 'layer.tar'))}), { root: ${JSON.stringify(root)}, onWarn: (c, m) => warnings.push(c + ': ' + m) });
    console.log(JSON.stringify(warnings));`;
  const r = spawnSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], {
    ...(isRoot ? { uid: 65534, gid: 65534 } : {}),
    env: { ...process.env, HOME: base, TMPDIR: base },
    cwd: new URL('../../..', import.meta.url).pathname,
    encoding: 'utf8',
  });
  t.is(r.status, 0, r.stderr);
  const warnings = JSON.parse(r.stdout.trim().split('\n').pop() ?? '[]') as string[];
  t.deepEqual(warnings, ['device-skipped: skipped character-device 1:3 at dev/null: creating devices needs root']);
  t.deepEqual(readdirSync(join(root, 'dev')), ['ok']);
});

test('an entry whose mode lacks write permission on a directory still gets its children (as any user)', async (t) => {
  const tar = tarSync([
    { name: 'ro/', type: 'directory', mode: 0o555 },
    { name: 'ro/sub/', type: 'directory', mode: 0o500 },
    { name: 'ro/sub/file', data: 'x', mode: 0o400 },
  ]);
  const root = await tempDir(t);
  await apply(tar, { root });
  t.is(lstatSync(join(root, 'ro')).mode & 0o7777, 0o555);
  t.is(lstatSync(join(root, 'ro/sub')).mode & 0o7777, 0o500);
  t.is(await readFile(join(root, 'ro/sub/file'), 'utf8'), 'x');
  t.teardown(() => chmod(join(root, 'ro'), 0o755).then(() => chmod(join(root, 'ro/sub'), 0o755)));
});

test('a dir entry for the root updates the root itself', async (t) => {
  const root = await tempDir(t);
  await apply(
    tarSync([
      { name: './', type: 'directory', mode: 0o751, mtime: T },
      { name: './x', data: 'x' },
    ]),
    { root },
  );
  t.is(lstatSync(root).mode & 0o7777, 0o751);
  t.is(lstatSync(root).mtimeMs / 1000, T_SEC);
  const st = await lstat(join(root, 'x'));
  t.true(st.isFile());
});

test("a symlink's own mtime and owner come from the tar, its target is never touched", async (t) => {
  const root = await tempDir(t);
  await apply(tarSync([{ name: 's', type: 'symlink', linkname: '/etc/passwd', mtime: T }]), { root });
  t.is(lstatSync(join(root, 's')).mtimeMs / 1000, T_SEC);
  t.not(lstatSync('/etc/passwd').mtimeMs / 1000, T_SEC);
});

test('a file used as a directory is an error naming the entry, also when the file is still with the writer thread', async (t) => {
  const entries = [];
  for (let i = 0; i < 150; i++) entries.push({ name: `f${i}`, data: 'x' });
  entries.push({ name: 'f149/child', data: 'y' });
  const root = await tempDir(t);
  const err = await t.throwsAsync(apply(tarSync(entries), { root, writerThread: true }));
  t.is((err as TsbuildError).code, 'E_INVALID');
  t.regex(err?.message ?? '', /"f149\/child": f149 is not a directory/);
});

rootTest(
  'a write error in the writer thread rejects naming the entry, and nothing is written afterwards',
  async (t) => {
    const base = await tempDir(t);
    const root = join(base, 'small');
    await mkdir(root);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', root]);
    t.teardown(() => {
      spawnSync('umount', [root]);
    });
    const entries = [];
    // The first files are empty (no pages): the space runs out after the thread has taken over.
    for (let i = 0; i < 400; i++)
      entries.push({ name: `f${String(i).padStart(3, '0')}`, data: i < 100 ? '' : 'z'.repeat(2000) });
    const err = await t.throwsAsync(apply(tarSync(entries), { root, writerThread: true }));
    t.is((err as NodeJS.ErrnoException).code, 'ENOSPC', err?.message);
    t.regex(err?.message ?? '', /^applying layer entry "f\d{3}": /);
    const count = readdirSync(root).length;
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.is(readdirSync(root).length, count, 'the writer thread stopped when the promise settled');
    execFileSync('umount', [root]);
  },
);

import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import {
  appendFile,
  chmod,
  lstat,
  link,
  mkdir,
  readFile,
  readlink,
  symlink,
  truncate,
  utimes,
  writeFile,
  chown,
  lchown,
  lutimes,
} from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import type { Change } from '../../../layers/model/changeset.js';
import { InvalidInputError } from '../../../sys/errors.js';
import { installPaxCodec, xattrsFromPax } from '../../../layers/tar/pax.js';
import {
  FileChangedError,
  tarFromChanges,
  tarFromDirectory,
  WARN,
  writeTarFromChanges,
  type TarWriteOptions,
} from '../../../layers/tar/create.js';
import { busyboxAvailable, makeBusyboxRootfs } from '../../../fixtures/busybox.js';
import { getXattr, mknod, setXattr } from '../../../sys/libc.js';
import { makeTempDir, removeDir, rootTest } from '../../helpers/index.js';

installPaxCodec();

interface Entry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string | null;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  pax: Record<string, string> | null;
  body: Buffer;
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of stream) parts.push(b as Buffer);
  return Buffer.concat(parts);
}

/** parse reads a tar with tar-stream's extract (PAX records decoded by our codec). */
async function parse(tar: Buffer): Promise<Entry[]> {
  const out: Entry[] = [];
  const ex = extract();
  const done = (async () => {
    for await (const e of ex) {
      const parts: Buffer[] = [];
      for await (const b of e) parts.push(b as Buffer);
      const h = e.header;
      // tar-stream applies PAX path, linkpath and size; a reader must apply uid, gid and mtime itself.
      const pax = (h.pax as Record<string, string> | null) ?? {};
      if (pax.uid) h.uid = Number(pax.uid);
      if (pax.gid) h.gid = Number(pax.gid);
      if (pax.mtime) h.mtime = new Date(Number(pax.mtime) * 1000);
      out.push({
        name: h.name,
        type: h.type,
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
        size: h.size,
        mtime: h.mtime.getTime() / 1000,
        linkname: h.linkname,
        uname: h.uname,
        gname: h.gname,
        devmajor: h.devmajor,
        devminor: h.devminor,
        pax: (h.pax as Record<string, string> | null) ?? null,
        body: Buffer.concat(parts),
      });
    }
  })();
  ex.end(tar);
  await done;
  return out;
}

async function tempDir(t: ExecutionContext): Promise<string> {
  const d = await makeTempDir('tsbuild-tar-create-');
  t.teardown(() => removeDir(d));
  return d;
}

function byName(entries: Entry[], name: string): Entry {
  const e = entries.find((x) => x.name === name);
  if (!e) throw new Error(`no entry ${name} in ${entries.map((x) => x.name).join(', ')}`);
  return e;
}

const T_OLD = 946684800; // 2000-01-01
const T_MID = 1262304000; // 2010-01-01

/** makeTree writes a small tree with fixed modes and mtimes; `reverse` creates the same tree in the other order. */
async function makeTree(root: string, reverse = false): Promise<void> {
  const steps: Array<() => Promise<void>> = [
    async () => void (await mkdir(join(root, 'etc/app.d'), { recursive: true })),
    async () => void (await mkdir(join(root, 'usr/bin'), { recursive: true })),
    async () => void (await mkdir(join(root, 'a'), { recursive: true })),
  ];
  const files: Array<[string, string, number]> = [
    ['etc/app.d/default.cfg', 'x=1\n', 0o644],
    ['etc/passwd', 'root:x:0:0::/root:/bin/sh\n', 0o644],
    ['usr/bin/tool', '#!/bin/sh\necho hi\n', 0o755],
    ['a-b', 'dash', 0o600],
    ['a.txt', 'dot', 0o640],
    ['a/inner', 'inner', 0o644],
    ['B', 'upper', 0o644],
  ];
  for (const s of reverse ? [...steps].reverse() : steps) await s();
  for (const [p, body, mode] of reverse ? [...files].reverse() : files) {
    await writeFile(join(root, p), body);
    await chmod(join(root, p), mode);
  }
  await symlink('../usr/bin/tool', join(root, 'etc/tool-link'));
  await lutimes(join(root, 'etc/tool-link'), T_MID, T_MID);
  for (const p of [...files.map((f) => f[0]), 'etc/app.d', 'etc', 'usr/bin', 'usr', 'a'])
    await utimes(join(root, p), T_MID, T_MID);
}

// ─── determinism ────────────────────────────────────────────────────────────────────────────────────────────────

test('the same tree gives the same bytes, whatever order it was created in', async (t) => {
  const d1 = await tempDir(t);
  const d2 = await tempDir(t);
  await makeTree(d1);
  await makeTree(d2, true);
  const a = await collect(tarFromDirectory(d1));
  const b = await collect(tarFromDirectory(d1));
  const c = await collect(tarFromDirectory(d2));
  t.true(a.equals(b));
  t.true(a.equals(c));
  t.is(a.length % 512, 0);
});

test('mtimes later than SOURCE_DATE_EPOCH are clamped, so touching files does not change the bytes', async (t) => {
  const d = await tempDir(t);
  await makeTree(d);
  await utimes(join(d, 'B'), T_OLD, T_OLD);
  const sde = T_MID - 100;
  const opts: TarWriteOptions = { sourceDateEpoch: sde };
  const before = await collect(tarFromDirectory(d, opts));
  const now = Date.now() / 1000;
  for (const p of ['etc/passwd', 'usr/bin/tool', 'a', 'etc']) await utimes(join(d, p), now, now);
  const after = await collect(tarFromDirectory(d, opts));
  t.true(before.equals(after));
  const entries = await parse(after);
  t.is(byName(entries, 'B').mtime, T_OLD, 'an older mtime is kept');
  t.is(byName(entries, 'etc/passwd').mtime, sde);
  t.true(entries.every((e) => e.mtime <= sde));
  // Without the clamp the touch shows.
  const unclamped = await parse(await collect(tarFromDirectory(d)));
  t.is(byName(unclamped, 'etc/passwd').mtime, Math.floor(now));
});

test('an invalid SOURCE_DATE_EPOCH is refused', (t) => {
  t.throws(() => tarFromDirectory('/nonexistent', { sourceDateEpoch: -1 }), { instanceOf: InvalidInputError });
  t.throws(() => tarFromDirectory('/nonexistent', { sourceDateEpoch: 1.5 }), { instanceOf: InvalidInputError });
});

test('entries are sorted bytewise by name, parents first, names relative without ./', async (t) => {
  const d = await tempDir(t);
  await makeTree(d);
  await mkdir(join(d, '.cache'));
  await writeFile(join(d, 'é'), '');
  await writeFile(join(d, 'Z'), '');
  const names = (await parse(await collect(tarFromDirectory(d)))).map((e) => e.name);
  t.deepEqual(names, [
    '.cache/',
    'B',
    'Z',
    'a-b',
    'a.txt',
    'a/',
    'a/inner',
    'etc/',
    'etc/app.d/',
    'etc/app.d/default.cfg',
    'etc/passwd',
    'etc/tool-link',
    'usr/',
    'usr/bin/',
    'usr/bin/tool',
    'é',
  ]);
});

// ─── entry types and header fields ──────────────────────────────────────────────────────────────────────────────

test('regular files, directories and symlinks carry mode, size, mtime, target and empty owner names', async (t) => {
  const d = await tempDir(t);
  await makeTree(d);
  await chmod(join(d, 'usr/bin/tool'), 0o4755);
  await chmod(join(d, 'etc/app.d'), 0o2750);
  await mkdir(join(d, 'tmp'));
  await chmod(join(d, 'tmp'), 0o1777);
  await symlink('/abs/../odd//target', join(d, 'odd-link'));
  const tar = await collect(tarFromDirectory(d));
  const entries = await parse(tar);
  const tool = byName(entries, 'usr/bin/tool');
  t.like(tool, {
    type: 'file',
    mode: 0o4755,
    size: 18,
    mtime: T_MID,
    uname: '',
    gname: '',
    uid: process.getuid?.(),
    gid: process.getgid?.(),
  });
  t.is(tool.body.toString(), '#!/bin/sh\necho hi\n');
  t.like(byName(entries, 'etc/app.d/'), { type: 'directory', mode: 0o2750, size: 0 });
  t.like(byName(entries, 'tmp/'), { type: 'directory', mode: 0o1777 });
  t.like(byName(entries, 'etc/tool-link'), { type: 'symlink', linkname: '../usr/bin/tool', size: 0 });
  t.like(byName(entries, 'odd-link'), { type: 'symlink', linkname: '/abs/../odd//target' });
  // No atime/ctime records anywhere, no uname/gname bytes.
  t.false(tar.includes('atime='));
  t.false(tar.includes('ctime='));
  t.true(entries.every((e) => e.pax === null || (!('atime' in e.pax) && !('ctime' in e.pax))));
});

test('a fifo is written and a socket is skipped with a warning', async (t) => {
  const d = await tempDir(t);
  execFileSync('mkfifo', ['-m', '0620', join(d, 'pipe')]);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(join(d, 'sock'), resolve));
  t.teardown(() => server.close());
  const warnings: string[] = [];
  const entries = await parse(
    await collect(tarFromDirectory(d, { onWarn: (code, msg) => warnings.push(`${code} ${msg}`) })),
  );
  t.deepEqual(
    entries.map((e) => [e.name, e.type, e.mode]),
    [['pipe', 'fifo', 0o620]],
  );
  t.is(warnings.length, 1);
  t.regex(warnings[0] as string, new RegExp(`^${WARN.SKIPPED} .*/sock: socket`));
});

rootTest('devices and owners are recorded, and GNU tar lists and extracts every type as it was', async (t) => {
  const d = await tempDir(t);
  const src = join(d, 'src');
  await mkdir(src);
  await makeTree(src);
  mknod(join(src, 'null'), 0o020666, 1, 3);
  mknod(join(src, 'loop9'), 0o060640, 7, 9);
  mknod(join(src, 'bigdev'), 0o020600, 259, 70000);
  await chmod(join(src, 'null'), 0o666); // mknod applied the umask
  execFileSync('mkfifo', ['-m', '0600', join(src, 'fifo')]);
  await link(join(src, 'usr/bin/tool'), join(src, 'usr/bin/tool-hard'));
  await chown(join(src, 'etc/passwd'), 1234, 5678);
  await lchown(join(src, 'etc/tool-link'), 42, 43);
  await chown(join(src, 'a'), 1000, 1000);
  await chmod(join(src, 'usr/bin/tool'), 0o6755);
  await utimes(join(src, 'a'), T_MID, T_MID);
  const tarFile = join(d, 'layer.tar');
  const tar = await collect(tarFromDirectory(src));
  await writeFile(tarFile, tar);

  const entries = await parse(tar);
  t.like(byName(entries, 'null'), { type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 });
  t.like(byName(entries, 'loop9'), { type: 'block-device', devmajor: 7, devminor: 9, mode: 0o640 });
  t.like(byName(entries, 'bigdev'), { type: 'character-device', devmajor: 259, devminor: 70000 });
  t.like(byName(entries, 'fifo'), { type: 'fifo', mode: 0o600 });
  t.like(byName(entries, 'etc/passwd'), { uid: 1234, gid: 5678, uname: '', gname: '' });
  t.like(byName(entries, 'a/'), { uid: 1000, gid: 1000 });
  t.like(byName(entries, 'usr/bin/tool-hard'), { type: 'link', linkname: 'usr/bin/tool', size: 0 });

  const listing = execFileSync('tar', ['--numeric-owner', '-tvf', tarFile]).toString();
  t.regex(listing, /^crw-rw-rw- 0\/0 +1,3 .* null$/m);
  t.regex(listing, /^brw-r----- 0\/0 +7,9 .* loop9$/m);
  t.regex(listing, /^prw------- 0\/0 .* fifo$/m);
  t.regex(listing, /^-rw-r--r-- 1234\/5678 .* etc\/passwd$/m);
  t.regex(listing, /^lrwxrwxrwx 42\/43 .* etc\/tool-link -> \.\.\/usr\/bin\/tool$/m);
  t.regex(listing, /^hrwsr-sr-x 0\/0 .* usr\/bin\/tool-hard link to usr\/bin\/tool$/m);
  t.regex(listing, /^drwxr-xr-x 1000\/1000 .* a\/$/m);

  const out = join(d, 'out');
  await mkdir(out);
  execFileSync('tar', ['--numeric-owner', '--same-permissions', '--same-owner', '-xf', tarFile, '-C', out]);
  for (const p of [
    'null',
    'loop9',
    'bigdev',
    'fifo',
    'etc/passwd',
    'etc/tool-link',
    'usr/bin/tool',
    'a',
    'etc/app.d/default.cfg',
  ]) {
    const [want, got] = [await lstat(join(src, p)), await lstat(join(out, p))];
    t.deepEqual(
      [got.mode, got.uid, got.gid, got.rdev, got.size],
      [want.mode, want.uid, want.gid, want.rdev, want.size],
      p,
    );
    if (!want.isDirectory()) t.is(got.mtimeMs, Math.floor(want.mtimeMs / 1000) * 1000, p);
  }
  t.is(await readlink(join(out, 'etc/tool-link')), '../usr/bin/tool');
  const [h1, h2] = [await lstat(join(out, 'usr/bin/tool')), await lstat(join(out, 'usr/bin/tool-hard'))];
  t.is(h1.ino, h2.ino);
  t.is(h1.nlink, 2);
  t.is((await readFile(join(out, 'usr/bin/tool-hard'))).toString(), '#!/bin/sh\necho hi\n');
});

rootTest('ids and times too big for ustar fields go to PAX records that GNU tar reads', async (t) => {
  const d = await tempDir(t);
  const src = join(d, 'src');
  await mkdir(src);
  await writeFile(join(src, 'f'), 'x');
  await chown(join(src, 'f'), 3_000_000, 4_000_000);
  const y2100 = 4102444800;
  await utimes(join(src, 'f'), y2100, y2100);
  const tar = await collect(tarFromDirectory(src));
  const [e] = await parse(tar);
  t.like(e, { uid: 3_000_000, gid: 4_000_000, mtime: y2100 });
  await writeFile(join(d, 'l.tar'), tar);
  t.regex(
    execFileSync('tar', ['--numeric-owner', '--full-time', '-tvf', join(d, 'l.tar')]).toString(),
    /3000000\/4000000 +1 2100-01-01 00:00:00 f/,
  );
});

// ─── xattrs ─────────────────────────────────────────────────────────────────────────────────────────────────────

/** A file capability (VFS_CAP_REVISION_2, cap_net_raw effective+permitted) as the kernel stores it. */
const CAP_NET_RAW_EP = Buffer.from('0100000200200000000000000000000000000000', 'hex');

async function setCapNetRaw(path: string): Promise<void> {
  try {
    execFileSync('setcap', ['cap_net_raw+ep', path], { stdio: 'ignore' });
  } catch {
    setXattr(path, 'security.capability', CAP_NET_RAW_EP);
  }
}

rootTest('a binary security.capability xattr round-trips byte for byte through our reader and GNU tar', async (t) => {
  const d = await tempDir(t);
  const src = join(d, 'src');
  await mkdir(join(src, 'bin'), { recursive: true });
  await writeFile(join(src, 'bin/ping'), 'not really ping');
  await setCapNetRaw(join(src, 'bin/ping'));
  const cap = getXattr(join(src, 'bin/ping'), 'security.capability') as Buffer;
  t.truthy(cap);
  const binary = Buffer.from([0, 0xff, 0xfe, 0x80, 0x0a, 0x3d, 0x20, 0xc3]);
  setXattr(join(src, 'bin/ping'), 'user.blob', binary);
  setXattr(join(src, 'bin/ping'), 'trusted.overlay.origin', Buffer.from('x'));
  setXattr(join(src, 'bin'), 'trusted.overlay.opaque', Buffer.from('y'));

  const tar = await collect(tarFromDirectory(src));
  const entries = await parse(tar);
  const x = xattrsFromPax(byName(entries, 'bin/ping').pax ?? undefined);
  t.deepEqual(Object.keys(x), ['security.capability', 'user.blob']);
  t.true((x['security.capability'] as Buffer).equals(cap));
  t.true((x['user.blob'] as Buffer).equals(binary));
  t.deepEqual(xattrsFromPax(byName(entries, 'bin/').pax ?? undefined), {}, 'overlay bookkeeping is left out');
  // The raw record is what Go's archive/tar reads: `SCHILY.xattr.<name>=<bytes>`.
  t.true(tar.includes(Buffer.concat([Buffer.from(' SCHILY.xattr.security.capability='), cap, Buffer.from('\n')])));

  const out = join(d, 'out');
  await mkdir(out);
  await writeFile(join(d, 'l.tar'), tar);
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-xpf', join(d, 'l.tar'), '-C', out]);
  t.true((getXattr(join(out, 'bin/ping'), 'security.capability') as Buffer).equals(cap));
  t.true((getXattr(join(out, 'bin/ping'), 'user.blob') as Buffer).equals(binary));
  if (existsSync('/usr/sbin/getcap'))
    t.regex(execFileSync('getcap', [join(out, 'bin/ping')]).toString(), /cap_net_raw[=+]ep/);
  if (existsSync('/usr/bin/getfattr')) {
    const fattr = execFileSync('getfattr', [
      '--absolute-names',
      '-e',
      'hex',
      '-n',
      'security.capability',
      join(out, 'bin/ping'),
    ]).toString();
    t.true(fattr.includes(`security.capability=0x${cap.toString('hex')}`));
  }
});

rootTest('umoci (Go archive/tar) unpacks the layer with its capability intact', async (t) => {
  if (!existsSync('/usr/bin/umoci')) return t.pass('umoci is not installed');
  const d = await tempDir(t);
  const src = join(d, 'src');
  await mkdir(join(src, 'bin'), { recursive: true });
  await writeFile(join(src, 'bin/ping'), 'not really ping');
  await setCapNetRaw(join(src, 'bin/ping'));
  const cap = getXattr(join(src, 'bin/ping'), 'security.capability') as Buffer;
  const longName = `${'d'.repeat(120)}/${'ü'.repeat(80)}`;
  await mkdir(join(src, 'd'.repeat(120)));
  await writeFile(join(src, longName), 'long');
  const tar = await collect(tarFromDirectory(src));
  const layout = join(d, 'layout');
  await writeOciLayout(layout, tar);
  const rootfs = join(d, 'rootfs');
  execFileSync('umoci', ['raw', 'unpack', '--image', `${layout}:latest`, rootfs], { stdio: 'pipe' });
  t.true((getXattr(join(rootfs, 'bin/ping'), 'security.capability') as Buffer).equals(cap));
  t.is((await readFile(join(rootfs, longName))).toString(), 'long');
});

/** writeOciLayout stores one uncompressed layer as a minimal OCI image tagged `latest`. */
async function writeOciLayout(dir: string, layer: Buffer): Promise<void> {
  const blobs = join(dir, 'blobs/sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (b: Buffer): Promise<{ digest: string; size: number }> => {
    const hex = createHash('sha256').update(b).digest('hex');
    await writeFile(join(blobs, hex), b);
    return { digest: `sha256:${hex}`, size: b.length };
  };
  const l = await put(layer);
  const config = await put(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: {},
        rootfs: { type: 'layers', diff_ids: [l.digest] },
      }),
    ),
  );
  const manifest = await put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l }],
      }),
    ),
  );
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': 'latest' },
        },
      ],
    }),
  );
}

// ─── hardlinks ──────────────────────────────────────────────────────────────────────────────────────────────────

test('hardlinks inside the tree become link entries pointing at the first path in order', async (t) => {
  const d = await tempDir(t);
  const src = join(d, 'src');
  await mkdir(join(src, 'b'), { recursive: true });
  await mkdir(join(src, 'a'));
  await writeFile(join(src, 'b/y'), 'shared');
  await link(join(src, 'b/y'), join(src, 'c'));
  await link(join(src, 'b/y'), join(src, 'a/x'));
  // A file linked to a path outside the tree is written in full.
  await writeFile(join(src, 'lonely'), 'outside too');
  await link(join(src, 'lonely'), join(d, 'outside'));
  const entries = await parse(await collect(tarFromDirectory(src)));
  t.like(byName(entries, 'a/x'), { type: 'file', size: 6 });
  t.is(byName(entries, 'a/x').body.toString(), 'shared');
  t.like(byName(entries, 'b/y'), { type: 'link', linkname: 'a/x', size: 0 });
  t.like(byName(entries, 'c'), { type: 'link', linkname: 'a/x', size: 0 });
  t.like(byName(entries, 'lonely'), { type: 'file', size: 11 });
});

// ─── names ──────────────────────────────────────────────────────────────────────────────────────────────────────

test('long names and link targets and non-ASCII names round-trip through our reader and GNU tar', async (t) => {
  const d = await tempDir(t);
  const src = join(d, 'src');
  const deep = ['α'.repeat(60), 'b'.repeat(150), 'c'.repeat(200)].join('/'); // > 255 bytes in all
  await mkdir(join(src, deep), { recursive: true });
  const names = [`${deep}/file-${'z'.repeat(100)}`, '日本語.txt', 'emoji-😀', 'spaces and\nnewline', 'x'.repeat(101)];
  for (const n of names) await writeFile(join(src, n), n);
  const target = `${'../'.repeat(10)}${'t'.repeat(150)}/ü`;
  await symlink(target, join(src, 'long-link'));
  await link(join(src, names[0] as string), join(src, 'hard-to-long'));
  const tar = await collect(tarFromDirectory(src));
  const entries = await parse(tar);
  for (const n of names.slice(1)) t.is(byName(entries, n).body.toString(), n);
  t.is(byName(entries, 'long-link').linkname, target);
  // 'hard-to-long' sorts before the α… directory, so it holds the content and the long name links to it.
  t.is(byName(entries, 'hard-to-long').body.toString(), names[0] as string);
  t.like(byName(entries, names[0] as string), { type: 'link', linkname: 'hard-to-long' });
  t.truthy(byName(entries, `${deep}/`));

  const out = join(d, 'out');
  await mkdir(out);
  await writeFile(join(d, 'l.tar'), tar);
  execFileSync('tar', ['-xf', join(d, 'l.tar'), '-C', out]);
  for (const n of names) t.is(await readFile(join(out, n), 'utf8'), n);
  t.is(await readlink(join(out, 'long-link')), target);
  t.is((await lstat(join(out, 'hard-to-long'))).ino, (await lstat(join(out, names[0] as string))).ino);
});

test('a file name that is not UTF-8 fails the stream with E_INVALID naming the directory', async (t) => {
  const d = await tempDir(t);
  await writeFile(Buffer.concat([Buffer.from(`${d}/bad-`), Buffer.from([0xff, 0xfe])]), 'x');
  const err = await t.throwsAsync(collect(tarFromDirectory(d)), { instanceOf: InvalidInputError });
  t.true(err?.message.includes(d));
});

test('a file named .wh.* in a directory is written first among its siblings, with a warning that it reads as a whiteout', async (t) => {
  const d = await tempDir(t);
  await writeFile(join(d, '.wh.gone'), '');
  await mkdir(join(d, '.cache'));
  await writeFile(join(d, '-dash'), '');
  const warnings: string[] = [];
  const entries = await parse(await collect(tarFromDirectory(d, { onWarn: (code) => warnings.push(code) })));
  t.deepEqual(
    entries.map((e) => e.name),
    ['.wh.gone', '-dash', '.cache/'],
  );
  t.deepEqual(warnings, [WARN.WHITEOUT_NAME]);
});

// ─── change sets ────────────────────────────────────────────────────────────────────────────────────────────────

async function makeChangedRoot(root: string): Promise<void> {
  await mkdir(join(root, 'etc/my-app.d'), { recursive: true });
  await mkdir(join(root, 'bin'));
  await mkdir(join(root, 'a/b'), { recursive: true });
  await writeFile(join(root, 'etc/my-app.d/default.cfg'), 'cfg');
  await writeFile(join(root, 'etc/untouched'), 'same as before');
  await writeFile(join(root, 'bin/my-app-tools'), 'tools');
  await writeFile(join(root, 'a/b/-early'), 'sorts before the markers bytewise');
  await mkdir(join(root, '.cache'));
  await chmod(join(root, 'etc'), 0o750);
  for (const p of ['etc/my-app.d/default.cfg', 'bin/my-app-tools', 'etc/my-app.d', 'etc', 'bin', 'a/b', 'a'])
    await utimes(join(root, p), T_MID, T_MID);
}

const CHANGES: Change[] = [
  { path: 'etc/my-app.d/default.cfg', kind: 'add' },
  { path: 'x', kind: 'delete' },
  { path: 'etc/my-app.d', kind: 'add' },
  { path: 'bin/my-app-tools', kind: 'modify' },
  { path: 'etc/my-app-config', kind: 'delete' },
  { path: 'a/b', kind: 'add', opaque: true },
  { path: 'a/b/gone/deeper', kind: 'delete' },
  { path: 'a/b/gone', kind: 'delete' },
  { path: 'a/b/-early', kind: 'add' },
  { path: '.cache', kind: 'add' },
];

test('a change set gives whiteouts, opaque markers and each parent once, markers first in their directory', async (t) => {
  const root = await tempDir(t);
  await makeChangedRoot(root);
  const entries = await parse(await collect(tarFromChanges(root, CHANGES)));
  t.deepEqual(
    entries.map((e) => e.name),
    [
      '.wh.x',
      '.cache/',
      'a/',
      'a/b/',
      'a/b/.wh..wh..opq',
      'a/b/.wh.gone',
      'a/b/-early',
      'bin/',
      'bin/my-app-tools',
      'etc/',
      'etc/.wh.my-app-config',
      'etc/my-app.d/',
      'etc/my-app.d/default.cfg',
    ],
  );
  for (const n of ['.wh.x', 'a/b/.wh..wh..opq', 'etc/.wh.my-app-config']) {
    t.like(byName(entries, n), { type: 'file', size: 0, mode: 0, uid: 0, gid: 0, mtime: 0 }, n);
  }
  t.like(byName(entries, 'etc/'), { type: 'directory', mode: 0o750, mtime: T_MID });
  t.is(byName(entries, 'bin/my-app-tools').body.toString(), 'tools');
});

test('markers keep mtime 0 under SOURCE_DATE_EPOCH while other entries are clamped', async (t) => {
  const root = await tempDir(t);
  await makeChangedRoot(root);
  const entries = await parse(await collect(tarFromChanges(root, CHANGES, { sourceDateEpoch: T_OLD })));
  t.is(byName(entries, '.wh.x').mtime, 0);
  t.is(byName(entries, 'etc/').mtime, T_OLD);
});

test('a change set that adds every path gives the same bytes as the directory', async (t) => {
  const root = await tempDir(t);
  await makeTree(root);
  await link(join(root, 'B'), join(root, 'a/B-again'));
  const all: Change[] = [];
  const walk = (rel: string): void => {
    for (const ent of readdirSync(join(root, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${ent.name}` : ent.name;
      all.push({ path: p, kind: 'add' });
      if (ent.isDirectory()) walk(p);
    }
  };
  walk('');
  const fromDir = await collect(tarFromDirectory(root, { sourceDateEpoch: T_MID }));
  const fromChanges = await collect(tarFromChanges(root, all.reverse(), { sourceDateEpoch: T_MID }));
  t.true(fromDir.equals(fromChanges));
});

const rejectsChange = test.macro({
  exec(t, change: Change) {
    t.throws(() => tarFromChanges('/nonexistent', [change]), { instanceOf: InvalidInputError });
  },
  title: (_given, change: Change) =>
    `a change of ${JSON.stringify(change.path)} (${change.kind}${change.opaque ? ', opaque' : ''}) is refused at once`,
});

test(rejectsChange, { path: '../etc/passwd', kind: 'add' });
test(rejectsChange, { path: 'a/../../x', kind: 'delete' });
test(rejectsChange, { path: '/etc/passwd', kind: 'modify' });
test(rejectsChange, { path: '', kind: 'add' });
test(rejectsChange, { path: 'a//b', kind: 'add' });
test(rejectsChange, { path: './a', kind: 'add' });
test(rejectsChange, { path: 'a/', kind: 'add' });
test(rejectsChange, { path: 'a/.wh.b', kind: 'add' });
test(rejectsChange, { path: 'a', kind: 'delete', opaque: true });

test('a change set that both deletes a path and adds below it is refused', (t) => {
  t.throws(
    () =>
      tarFromChanges('/nonexistent', [
        { path: 'a', kind: 'delete' },
        { path: 'a/b', kind: 'add' },
      ]),
    { instanceOf: InvalidInputError, message: /"a" is deleted/ },
  );
  t.throws(
    () =>
      tarFromChanges('/nonexistent', [
        { path: 'a', kind: 'delete' },
        { path: 'a', kind: 'modify' },
      ]),
    { instanceOf: InvalidInputError },
  );
});

test('a changed path missing from the root fails the stream with an error naming it', async (t) => {
  const root = await tempDir(t);
  const err = await t.throwsAsync(collect(tarFromChanges(root, [{ path: 'nope/file', kind: 'add' }])));
  t.true(err?.message.includes(join(root, 'nope')));
});

test('a change below a symlinked parent is refused rather than followed out of the root', async (t) => {
  const root = await tempDir(t);
  await symlink('/etc', join(root, 'etc'));
  await t.throwsAsync(collect(tarFromChanges(root, [{ path: 'etc/passwd', kind: 'modify' }])), {
    instanceOf: InvalidInputError,
    message: /is not a directory/,
  });
});

test('a dir hint that the tree contradicts fails the stream with E_FILE_CHANGED', async (t) => {
  const root = await tempDir(t);
  await writeFile(join(root, 'f'), 'x');
  await mkdir(join(root, 'd'));
  for (const c of [
    { path: 'f', kind: 'modify', dir: true },
    { path: 'd', kind: 'add', dir: false },
  ] as Change[]) {
    const err = await t.throwsAsync(collect(tarFromChanges(root, [c])), { message: /changed type/ });
    t.is((err as { code?: string }).code, 'E_FILE_CHANGED');
  }
});

test('opaque on a path that is not a directory in the root fails the stream', async (t) => {
  const root = await tempDir(t);
  await writeFile(join(root, 'f'), '');
  await t.throwsAsync(collect(tarFromChanges(root, [{ path: 'f', kind: 'modify', opaque: true }])), {
    instanceOf: InvalidInputError,
  });
});

test('hardlinks in a change set link only among the files of the layer', async (t) => {
  const root = await tempDir(t);
  await writeFile(join(root, 'a'), 'same');
  await link(join(root, 'a'), join(root, 'b'));
  await link(join(root, 'a'), join(root, 'c'));
  const entries = await parse(
    await collect(
      tarFromChanges(root, [
        { path: 'c', kind: 'add' },
        { path: 'b', kind: 'modify' },
      ]),
    ),
  );
  t.deepEqual(
    entries.map((e) => [e.name, e.type, e.linkname, e.body.toString()]),
    [
      ['b', 'file', null, 'same'],
      ['c', 'link', 'b', ''],
    ],
  );
});

// ─── writing into a sink ─────────────────────────────────────────────────────────────────────────────────────────

test('writeTarFromChanges hands on the bytes tarFromChanges streams, in chunks that reuse one buffer', async (t) => {
  const root = await tempDir(t);
  await mkdir(join(root, 'app'));
  for (let i = 0; i < 40; i++) await writeFile(join(root, 'app', `f${i}`), Buffer.alloc(100_000 + i, i));
  await writeFile(join(root, 'app', 'big'), Buffer.alloc((3 << 20) + 5, 7));
  const changes: Change[] = [
    { path: 'app', kind: 'add' },
    ...readdirSync(join(root, 'app')).map((name): Change => ({ path: `app/${name}`, kind: 'add' })),
  ];
  const streamed = await collect(tarFromChanges(root, changes));
  const parts: Buffer[] = [];
  const memory = new Set<ArrayBufferLike>();
  await writeTarFromChanges(root, changes, (chunk) => {
    parts.push(Buffer.from(chunk)); // a copy: the chunk is the sink's only until it returns
    memory.add(chunk.buffer);
  });
  t.true(Buffer.concat(parts).equals(streamed));
  t.true(parts.length > 4, `${parts.length} chunks`);
  t.is(memory.size, 1);
});

test('writeTarFromChanges rejects as the stream fails, and when its sink throws it stops there', async (t) => {
  const root = await tempDir(t);
  const missing = await t.throwsAsync(writeTarFromChanges(root, [{ path: 'nope/file', kind: 'add' }], () => {}));
  t.true(missing?.message.includes(join(root, 'nope')));
  await t.throwsAsync(
    writeTarFromChanges(root, [{ path: '../x', kind: 'add' }], () => {}),
    {
      instanceOf: InvalidInputError,
    },
  );

  for (let i = 0; i < 3; i++) await writeFile(join(root, `f${i}`), Buffer.alloc(1 << 20, i));
  let calls = 0;
  await t.throwsAsync(
    writeTarFromChanges(
      root,
      [0, 1, 2].map((i): Change => ({ path: `f${i}`, kind: 'add' })),
      () => {
        calls++;
        throw new Error('disk full');
      },
    ),
    { message: 'disk full' },
  );
  t.is(calls, 1);
});

// ─── streaming and errors ───────────────────────────────────────────────────────────────────────────────────────

test('a missing directory fails the stream with an error naming it', async (t) => {
  const err = await t.throwsAsync(collect(tarFromDirectory('/nonexistent/tsbuild-dir')));
  t.regex(err?.message ?? '', /\/nonexistent\/tsbuild-dir/);
});

test('big files are streamed in order and byte for byte', async (t) => {
  const d = await tempDir(t);
  const sizes = { big: 5 * 1024 * 1024 + 17, mid: 300 * 1024, small: 1000, empty: 0 };
  const bodies: Record<string, Buffer> = {};
  let seed = 1;
  for (const [name, size] of Object.entries(sizes)) {
    const b = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) b.writeUInt32LE((seed = (seed * 1103515245 + 12345) >>> 0), i);
    bodies[name] = b;
    await writeFile(join(d, name), b);
  }
  const entries = await parse(await collect(tarFromDirectory(d)));
  t.deepEqual(
    entries.map((e) => e.name),
    ['big', 'empty', 'mid', 'small'],
  );
  for (const e of entries) t.true(e.body.equals(bodies[e.name] as Buffer), e.name);
});

async function pullFirstChunk(stream: Readable): Promise<AsyncIterator<Buffer>> {
  const it = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  await it.next();
  await new Promise((r) => setTimeout(r, 50));
  return it;
}

async function drain(it: AsyncIterator<Buffer>): Promise<void> {
  for (;;) if ((await it.next()).done) return;
}

test('a file that grows after it was looked up fails the stream with E_FILE_CHANGED', async (t) => {
  const d = await tempDir(t);
  await writeFile(join(d, 'a-big'), Buffer.alloc(16 << 20, 1));
  await writeFile(join(d, 'b-small'), 'small');
  const it = await pullFirstChunk(tarFromDirectory(d));
  await appendFile(join(d, 'b-small'), ' and more');
  const err = await t.throwsAsync(drain(it), { instanceOf: FileChangedError });
  t.true(err?.message.includes(join(d, 'b-small')));
});

test('a big file that shrinks while it is streamed fails the stream with E_FILE_CHANGED', async (t) => {
  const d = await tempDir(t);
  await writeFile(join(d, 'big'), Buffer.alloc(32 << 20, 1));
  const it = await pullFirstChunk(tarFromDirectory(d));
  await truncate(join(d, 'big'), 100);
  const err = await t.throwsAsync(drain(it), { instanceOf: FileChangedError });
  t.is(err?.code, 'E_FILE_CHANGED');
  t.true(err?.message.includes(join(d, 'big')));
});

// Serial: counting this process's open files must not see other tests' files.
test.serial('destroying the stream early stops reading and closes every file', async (t) => {
  const d = await tempDir(t);
  // Stopped while the big file is streamed and the mid-sized ones after it are being read ahead.
  await writeFile(join(d, 'a-big'), Buffer.alloc(8 << 20, 7));
  for (let i = 0; i < 100; i++) await writeFile(join(d, `f${String(i).padStart(3, '0')}`), Buffer.alloc(200 * 1024, i));
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const before = fds();
  const stream = tarFromDirectory(d);
  await pullFirstChunk(stream);
  stream.destroy();
  await new Promise((r) => setTimeout(r, 200));
  t.is(fds(), before);
  t.true(stream.destroyed);
});

test('a busybox rootfs lists the same paths in GNU tar as find does', async (t) => {
  if (!busyboxAvailable()) return t.pass('busybox-static is not installed');
  const d = await tempDir(t);
  const root = join(d, 'rootfs');
  await mkdir(root);
  await makeBusyboxRootfs(root);
  await writeFile(join(d, 'l.tar'), await collect(tarFromDirectory(root)));
  const listed = execFileSync('tar', ['-tf', join(d, 'l.tar')])
    .toString()
    .trim()
    .split('\n');
  const found = execFileSync('find', ['.', '-mindepth', '1', '-printf', '%P%y\\n'], { cwd: root })
    .toString()
    .trim()
    .split('\n')
    .map((l) => (l.endsWith('d') ? `${l.slice(0, -1)}/` : l.slice(0, -1)));
  t.deepEqual([...listed].sort(), [...found].sort());
  t.true(listed.length > 100);
});

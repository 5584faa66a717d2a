// convert/identity.ts and convert/reproducible.ts: the derived ids (stable, v4-shaped, label- and input-dependent),
// --uuid and SOURCE_DATE_EPOCH validation, the used-inode list from dumpe2fs, the staging tree's clamped times and
// the VMDK CID patch.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { link, lstat, mkdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  applyDiskIds,
  canonicalJson,
  derivedSerial,
  derivedUuid,
  diskIdentity,
  diskOptions,
  parseUuid,
  passwordSalt,
  sourceDateEpoch,
} from '../../convert/identity.js';
import { clampTree, patchVmdkCid, usedInodes } from '../../convert/reproducible.js';
import { haveTool } from '../helpers/images.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const opts = diskOptions({ boot: 'bios', bootloader: 'grub', network: 'dhcp', service: 'auto', kernel: 'auto' });

test('with SOURCE_DATE_EPOCH the identity is derived from the image digest and the disk options only', (t) => {
  const a = diskIdentity({ imageDigest: 'sha256:aa', options: opts, time: 1 });
  const b = diskIdentity({ imageDigest: 'sha256:aa', options: { ...opts }, time: 1 });
  t.deepEqual(a, b);
  t.regex(a.rootUuid, V4);
  t.is(a.time, 1);
  t.not(diskIdentity({ imageDigest: 'sha256:ab', options: opts, time: 1 }).rootUuid, a.rootUuid);
  t.not(diskIdentity({ imageDigest: 'sha256:aa', options: { ...opts, boot: 'uefi' }, time: 1 }).rootUuid, a.rootUuid);
  // the time itself is not an input: another SOURCE_DATE_EPOCH, same ids
  t.is(diskIdentity({ imageDigest: 'sha256:aa', options: opts, time: 2 }).rootUuid, a.rootUuid);
  // --uuid: the given UUID, and the other ids change with it
  const u = diskIdentity({
    imageDigest: 'sha256:aa',
    options: opts,
    time: 1,
    uuid: '0f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5b',
  });
  t.is(u.rootUuid, '0f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5b');
  t.not(derivedSerial(u.seed, 'mbr-signature'), derivedSerial(a.seed, 'mbr-signature'));
});

test('the derivation is the documented one: sha256 over the domain, digest and canonical options', (t) => {
  const seed = createHash('sha256')
    .update(`tsbuild-disk-v1\0sha256:aa\0${canonicalJson(opts)}`)
    .digest();
  t.deepEqual(diskIdentity({ imageDigest: 'sha256:aa', options: opts, time: 5 }).seed, seed);
  const id = createHash('sha256').update(seed).update('\0root-uuid').digest('hex');
  const u = derivedUuid(seed, 'root-uuid');
  t.is(u.replace(/-/g, '').slice(0, 12), id.slice(0, 12));
  t.is(u[14], '4');
});

test('without SOURCE_DATE_EPOCH every export gets fresh ids', (t) => {
  const a = diskIdentity({ imageDigest: 'sha256:aa', options: opts });
  const b = diskIdentity({ imageDigest: 'sha256:aa', options: opts });
  t.not(a.rootUuid, b.rootUuid);
  t.is(a.time, undefined);
  t.regex(a.rootUuid, V4);
});

test('labels give independent ids; serials are never 0; the salt is crypt-safe', (t) => {
  const seed = Buffer.alloc(32, 7);
  t.not(derivedUuid(seed, 'gpt-partition-1'), derivedUuid(seed, 'gpt-partition-2'));
  t.true(derivedSerial(seed, 'esp-serial') > 0);
  t.regex(passwordSalt(seed), /^[./0-9A-Za-z]{16}$/);
  const gpt = { table: 'gpt', partitions: [{ index: 1 }, { index: 2 }] as Array<{ index: number; uuid?: string }> };
  applyDiskIds(gpt, seed);
  t.regex((gpt as { diskGuid?: string }).diskGuid ?? '', V4);
  t.is(gpt.partitions[1]?.uuid, derivedUuid(seed, 'gpt-partition-2'));
  const mbr = { table: 'mbr', partitions: [] as Array<{ index: number }> } as {
    table: string;
    diskSignature?: number;
    partitions: Array<{ index: number }>;
  };
  applyDiskIds(mbr, seed);
  t.is(mbr.diskSignature, derivedSerial(seed, 'mbr-signature'));
});

test('--uuid: the 8-4-4-4-12 form is accepted (lower-cased), anything else refused with a clear message', (t) => {
  t.is(parseUuid('0F1E2D3C-4B5A-4978-8A9B-0C1D2E3F4A5B'), '0f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5b');
  for (const bad of ['', 'abc', '0f1e2d3c4b5a49788a9b0c1d2e3f4a5b', '0f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5g'])
    t.throws(() => parseUuid(bad), { message: /is not a UUID/ });
  t.throws(() => parseUuid('00000000-0000-0000-0000-000000000000'), { message: /nil UUID/ });
});

test('SOURCE_DATE_EPOCH: unset or empty is undefined, a number is taken, anything else refused', (t) => {
  t.is(sourceDateEpoch({}), undefined);
  t.is(sourceDateEpoch({ SOURCE_DATE_EPOCH: '' }), undefined);
  t.is(sourceDateEpoch({ SOURCE_DATE_EPOCH: '1700000000' }), 1700000000);
  t.throws(() => sourceDateEpoch({ SOURCE_DATE_EPOCH: 'yesterday' }), { message: /SOURCE_DATE_EPOCH/ });
  t.throws(() => sourceDateEpoch({ SOURCE_DATE_EPOCH: '-1' }));
});

test('usedInodes reads the free-inode ranges of dumpe2fs', (t) => {
  const text =
    'Inode count:              32\n\nGroup 0:\n  Free inodes: 3-10, 14-16\nGroup 1:\n  Free inodes: 17-30, 32\n';
  t.deepEqual(usedInodes(text), [2, 11, 12, 13, 31]);
});

test('clampTree clamps mtimes, sets atimes, and copies a hard-linked file instead of touching the shared inode', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'etc'), { recursive: true });
  await writeFile(join(dir, 'snapshot-file'), 'shared');
  await link(join(dir, 'snapshot-file'), join(tree, 'etc', 'shared'));
  await link(join(dir, 'snapshot-file'), join(tree, 'etc', 'shared2'));
  await writeFile(join(tree, 'old'), 'old');
  await utimes(join(tree, 'old'), 1000, 1000);
  await symlink('old', join(tree, 'link'));
  const T = 1_600_000_000;
  await clampTree(tree, T);
  for (const p of ['', 'etc', 'etc/shared', 'etc/shared2', 'link']) {
    const st = await lstat(join(tree, p));
    t.is(st.mtimeMs, T * 1000, p);
    t.is(st.atimeMs, T * 1000, p);
  }
  t.is((await stat(join(tree, 'old'))).mtimeMs, 1_000_000, 'older times are kept');
  t.not((await stat(join(dir, 'snapshot-file'))).mtimeMs, T * 1000, 'the snapshot file keeps its time');
  const a = await stat(join(tree, 'etc', 'shared'));
  t.is((await stat(join(tree, 'etc', 'shared2'))).ino, a.ino, 'the two names in the tree still share one inode');
  t.not((await stat(join(dir, 'snapshot-file'))).ino, a.ino);
  t.is(await readFile(join(tree, 'etc', 'shared'), 'utf8'), 'shared');
});

const vmdkTest = haveTool('/usr/bin/qemu-img') ? test : test.skip;
vmdkTest('patchVmdkCid replaces the random CID of qemu-img, and two conversions become identical', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const raw = join(dir, 'disk.raw');
  await writeFile(raw, Buffer.alloc(1 << 20, 1));
  const outs = [join(dir, 'a', 'disk.vmdk'), join(dir, 'b', 'disk.vmdk')];
  for (const o of outs) {
    await mkdir(join(o, '..'));
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicSparse', raw, o]);
    await patchVmdkCid(o, 0x1234abcd);
  }
  const [a, b] = [await readFile(outs[0] as string), await readFile(outs[1] as string)];
  t.true(a.equals(b));
  t.regex(a.toString('latin1'), /\nCID=1234abcd\n/);
  execFileSync('qemu-img', ['check', outs[0] as string], { stdio: 'ignore' });
});

vmdkTest('patchVmdkCid also replaces a CID that qemu-img wrote with fewer than 8 digits', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const raw = join(dir, 'disk.raw');
  const vmdk = join(dir, 'disk.vmdk');
  await writeFile(raw, Buffer.alloc(1 << 20, 1));
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicSparse', raw, vmdk]);
  // qemu-img prints the CID with %x: about one conversion in sixteen has a shorter one; make it so
  const bytes = await readFile(vmdk);
  const text = bytes.toString('latin1');
  const at = text.search(/\nCID=[0-9a-f]{1,8}\n/);
  const line = /\nCID=[0-9a-f]{1,8}\n/.exec(text)![0];
  const end = bytes.indexOf(0, at);
  const shorter = Buffer.from(text.slice(at, end).replace(line, '\nCID=abc12\n'), 'latin1');
  bytes.fill(0, at, end);
  shorter.copy(bytes, at);
  await writeFile(vmdk, bytes);
  execFileSync('qemu-img', ['check', vmdk], { stdio: 'ignore' });
  await patchVmdkCid(vmdk, 0x1234abcd);
  const after = (await readFile(vmdk)).toString('latin1');
  t.regex(after, /\nCID=1234abcd\n/);
  t.notRegex(after, /CID=abc12/);
  execFileSync('qemu-img', ['check', vmdk], { stdio: 'ignore' });
});

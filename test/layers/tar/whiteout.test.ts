import test from 'ava';
import {
  isComparedXattr,
  isOciOpaqueName,
  isOciWhiteoutName,
  isOpaqueValue,
  isOverlayWhiteout,
  isOverlayXattr,
  ociOpaquePath,
  ociWhiteoutPath,
  ociWhiteoutTarget,
} from '../../../layers/tar/whiteout.js';

const S_IFCHR = 0o020000;
const S_IFREG = 0o100000;
const S_IFBLK = 0o060000;

test('isOverlayWhiteout is true for a char device 0/0 only', (t) => {
  t.true(isOverlayWhiteout({ mode: S_IFCHR, rdev: 0 }));
  t.true(isOverlayWhiteout({ mode: BigInt(S_IFCHR | 0o644), rdev: 0n }));
  t.false(isOverlayWhiteout({ mode: S_IFCHR, rdev: 0x103 }), 'a real device (/dev/null is 1/3)');
  t.false(isOverlayWhiteout({ mode: S_IFBLK, rdev: 0 }));
  t.false(isOverlayWhiteout({ mode: S_IFREG, rdev: 0 }));
});

test('isOpaqueValue accepts y and nothing else', (t) => {
  t.true(isOpaqueValue(Buffer.from('y')));
  t.false(isOpaqueValue(Buffer.from('x')), 'kernel 6.7+ marks dirs holding xattr whiteouts with x');
  t.false(isOpaqueValue(Buffer.from('yes')));
  t.false(isOpaqueValue(undefined));
});

test('overlay xattrs are bookkeeping; SELinux labels are not compared either', (t) => {
  t.true(isOverlayXattr('trusted.overlay.origin'));
  t.true(isOverlayXattr('user.overlay.opaque'));
  t.false(isOverlayXattr('user.overlayish'));
  t.false(isComparedXattr('trusted.overlay.impure'));
  t.false(isComparedXattr('security.selinux'));
  t.true(isComparedXattr('security.capability'));
  t.true(isComparedXattr('user.color'));
});

const target = test.macro({
  exec(t, name: string, expected: string | undefined) {
    t.is(ociWhiteoutTarget(name), expected);
  },
  title: (_p, name: string, expected: string | undefined) =>
    `ociWhiteoutTarget(${JSON.stringify(name)}) is ${JSON.stringify(expected)}`,
});
test(target, '.wh.foo', 'foo');
test(target, '.wh..hidden', '.hidden');
test(target, '.wh..wh..opq', undefined);
test(target, '.wh..wh.plnk', undefined);
test(target, '.wh.', undefined);
test(target, '.wh..', undefined);
test(target, '.wh...', undefined);
test(target, 'foo', undefined);
test(target, 'x.wh.foo', undefined);

test('OCI marker names and paths', (t) => {
  t.true(isOciWhiteoutName('.wh.x'));
  t.true(isOciWhiteoutName('.wh..wh..opq'));
  t.false(isOciWhiteoutName('wh.x'));
  t.true(isOciOpaqueName('.wh..wh..opq'));
  t.false(isOciOpaqueName('.wh.x'));
  t.is(ociWhiteoutPath('a'), '.wh.a');
  t.is(ociWhiteoutPath('usr/lib/x.so'), 'usr/lib/.wh.x.so');
  t.is(ociOpaquePath('etc/conf.d'), 'etc/conf.d/.wh..wh..opq');
});

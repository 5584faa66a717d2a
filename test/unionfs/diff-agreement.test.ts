// The userspace fallback must commit what the overlay path commits: each case runs one shell script (a) in an
// overlay mount of two lower layers and (b) in a plain copy of the same merged tree, then compares
// diffUpperdir(a) with diffManifest(b) and both with the change set the script should produce.
import test from 'ava';
import { join } from 'node:path';
import type { Change } from '../../layers/model/changeset.js';
import { which } from '../../sys/exec.js';
import { diffManifest } from '../../unionfs/diff-manifest.js';
import { diffUpperdir } from '../../unionfs/diff-upper.js';
import { recordManifest } from '../../unionfs/manifest.js';
import { rootTest } from '../helpers/index.js';
import { LOWER_FIXTURE, mountForTest, mountsUnder, sh, tempDir, typed } from './helpers.js';

const PREFIX = 'tsbuild-unionfs-agree-';

const m = (path: string, opaque?: true): Change =>
  opaque ? { path, kind: 'modify', opaque } : { path, kind: 'modify' };
const a = (path: string): Change => ({ path, kind: 'add' });
const d = (path: string): Change => ({ path, kind: 'delete' });

const agree = test.macro({
  async exec(t, script: string, expected: Change[]) {
    if (!which('setfattr')) t.fail('setfattr is missing: apt-get install -y attr');
    const base = await tempDir(t, PREFIX);
    await sh(LOWER_FIXTURE, base);
    const lowerdirs = [join(base, 'top'), join(base, 'bottom')];

    // (a) the overlay path
    const upperdir = join(base, 'upper');
    const mounted = await mountForTest(t, {
      lowerdirs,
      upperdir,
      workdir: join(base, 'work'),
      target: join(base, 'merged'),
    });
    await sh(script, mounted.target);
    await mounted.unmount();
    const viaOverlay = typed(t, upperdir, await diffUpperdir({ upperdir, lowerdirs }));

    // (b) the userspace path: a plain copy of the merged tree, a manifest, the same script
    const view = await mountForTest(t, {
      lowerdirs,
      upperdir: join(base, 'u2'),
      workdir: join(base, 'w2'),
      target: join(base, 'view'),
    });
    const copy = join(base, 'copy');
    await sh(`cp -a ${view.target} ${copy}`, base);
    await view.unmount();
    const before = await recordManifest(copy);
    await sh(script, copy);
    const viaManifest = typed(t, copy, await diffManifest({ root: copy, before }));

    t.deepEqual(viaOverlay, expected, 'overlay upperdir diff');
    t.deepEqual(viaManifest, viaOverlay, 'manifest diff agrees with the overlay diff');
  },
  title: (what = '') => `after ${what}, the overlay diff and the manifest diff give the same change set`,
});

rootTest('creating a file', agree, 'echo new > etc/new.conf', [m('etc'), a('etc/new.conf')]);
rootTest('rewriting a file', agree, "echo 'root:x:0:0:root' > etc/passwd", [m('etc/passwd')]);
rootTest('appending to a file deep down (parents are not listed)', agree, 'echo more >> data/sub/three', [
  m('data/sub/three'),
]);
rootTest('chmod of a file', agree, 'chmod 600 etc/hosts', [m('etc/hosts')]);
rootTest('chmod of a file there and back', agree, 'chmod 600 etc/hosts && chmod 644 etc/hosts', [m('etc/hosts')]);
rootTest('chmod of a directory', agree, 'chmod 700 var/log', [m('var/log')]);
rootTest('chown of a file', agree, 'chown 1000:1000 usr/bin/tool', [m('usr/bin/tool')]);
rootTest('deleting a file', agree, 'rm data/one', [m('data'), d('data/one')]);
rootTest('deleting a directory', agree, 'rm -r data', [d('data')]);
rootTest('replacing a directory by a file', agree, 'rm -r etc/conf.d && echo x > etc/conf.d', [
  m('etc'),
  m('etc/conf.d'),
]);
rootTest('replacing a file by a directory', agree, 'rm etc/hosts && mkdir etc/hosts && echo h > etc/hosts/h', [
  m('etc'),
  m('etc/hosts'),
  a('etc/hosts/h'),
]);
rootTest(
  'replacing a file by a directory and back',
  agree,
  'rm etc/hosts && mkdir etc/hosts && rmdir etc/hosts && echo h > etc/hosts',
  [m('etc'), m('etc/hosts')],
);
rootTest('renaming a file', agree, 'mv data/one data/uno', [m('data'), d('data/one'), a('data/uno')]);
rootTest('renaming a directory (EXDEV on overlay: mv copies)', agree, 'mv data/sub data/sub2', [
  m('data'),
  d('data/sub'),
  a('data/sub2'),
  a('data/sub2/three'),
]);
rootTest('moving a file into a new directory', agree, 'mkdir newdir && mv etc/passwd newdir/', [
  m('etc'),
  d('etc/passwd'),
  a('newdir'),
  a('newdir/passwd'),
]);
rootTest('hard-linking a file', agree, 'ln usr/lib/libx.so usr/lib/libx.so.1', [
  m('usr/lib'),
  m('usr/lib/libx.so'),
  a('usr/lib/libx.so.1'),
]);
rootTest('making a symlink', agree, 'ln -s ../lib/libx.so usr/bin/libx', [m('usr/bin'), a('usr/bin/libx')]);
rootTest('making a fifo', agree, 'mkfifo var/log/pipe', [m('var/log'), a('var/log/pipe')]);
rootTest('setting a user xattr', agree, 'setfattr -n user.color -v blue etc/passwd', [m('etc/passwd')]);
const RECREATE = 'rm -r etc/conf.d && mkdir etc/conf.d && echo c > etc/conf.d/c.conf && echo a=2 > etc/conf.d/a.conf';
rootTest('deleting a directory and making it again', agree, RECREATE, [
  m('etc'),
  m('etc/conf.d', true),
  m('etc/conf.d/a.conf'),
  a('etc/conf.d/c.conf'),
]);
rootTest('deleting an empty directory and making it again', agree, 'rmdir var/log && mkdir var/log', [
  m('var'),
  m('var/log', true),
]);
rootTest('deleting a file and writing it again', agree, 'rm etc/motd && echo hello > etc/motd', [
  m('etc'),
  m('etc/motd'),
]);
rootTest('touching a file (mtime only)', agree, 'touch etc/hosts', [m('etc/hosts')]);
rootTest('setting an old mtime (same size)', agree, "touch -d '2001-02-03 04:05:06' usr/bin/tool", [m('usr/bin/tool')]);
rootTest('writing a path a lower layer whited out', agree, 'echo back > hidden', [a('hidden')]);
rootTest('adding to a directory a lower layer made opaque', agree, 'echo n2 > opq/new2', [m('opq'), a('opq/new2')]);
rootTest('only reading', agree, 'cat etc/passwd usr/bin/tool > /dev/null && ls -R > /dev/null', []);

rootTest('no overlay mount of these tests is left behind', (t) => {
  t.deepEqual(mountsUnder(PREFIX), []);
});

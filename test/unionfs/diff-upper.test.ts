// diffUpperdir on upperdirs made by hand (mknod and trusted.* xattrs need root) and on a real overlay mount.
import test from 'ava';
import { join } from 'node:path';
import type { Change } from '../../layers/model/changeset.js';
import { getXattrs } from '../../sys/libc.js';
import { diffUpperdir } from '../../unionfs/diff-upper.js';
import { LowerView } from '../../unionfs/lower-view.js';
import { rootTest } from '../helpers/index.js';
import { LOWER_FIXTURE, mountForTest, mountsUnder, sh, tempDir, typed } from './helpers.js';

const PREFIX = 'tsbuild-unionfs-upper-';

/** Lowers: `top` whites out `hidden`, makes `opq` opaque (hiding bottom's opq/old) and has a file `f`. */
const LOWERS = `
mkdir -p bottom/dir/sub bottom/opq top/opq bottom/filedir
echo x > bottom/dir/file && echo x > bottom/hidden && echo x > bottom/opq/old && echo x > bottom/filedir/f
mknod top/hidden c 0 0
setfattr -n trusted.overlay.opaque -v y top/opq
echo x > top/f
touch -d @1577836800 bottom/dir top/opq bottom/opq
`;

const upperMacro = test.macro({
  async exec(t, script: string, expected: Change[]) {
    const base = await tempDir(t, PREFIX);
    await sh(`${LOWERS}\nmkdir upper && cd upper\n${script}`, base);
    const lowerdirs = [join(base, 'top'), join(base, 'bottom')];
    t.deepEqual(
      typed(t, join(base, 'upper'), await diffUpperdir({ upperdir: join(base, 'upper'), lowerdirs })),
      expected,
    );
  },
  title: (what = '') => `diffUpperdir: ${what}`,
});

const WHITEOUTS = 'mknod f c 0 0 && mkdir dir && mknod dir/file c 0 0 && touch -d @1577836800 dir';
rootTest('a whiteout of a lower path is a delete', upperMacro, WHITEOUTS, [
  { path: 'dir/file', kind: 'delete' },
  { path: 'f', kind: 'delete' },
]);
rootTest(
  'a whiteout of a path no lower shows is left out',
  upperMacro,
  'mknod nothing c 0 0 && mknod hidden c 0 0 && mkdir opq2 && mknod opq2/x c 0 0',
  [{ path: 'opq2', kind: 'add' }],
);
rootTest(
  'a whiteout below an opaque directory is left out',
  upperMacro,
  'mkdir dir && setfattr -n trusted.overlay.opaque -v y dir && mknod dir/file c 0 0',
  [{ path: 'dir', kind: 'modify', opaque: true }],
);
rootTest(
  'an opaque directory is opaque only where the lowers have a directory',
  upperMacro,
  'for d in dir f new; do mkdir $d; setfattr -n trusted.overlay.opaque -v y $d; done',
  [
    { path: 'dir', kind: 'modify', opaque: true },
    { path: 'f', kind: 'modify' },
    { path: 'new', kind: 'add' },
  ],
);
rootTest(
  'a path a higher lower whited out or hid under an opaque dir is an add',
  upperMacro,
  'echo y > hidden && mkdir opq && echo y > opq/old && touch -d @1577836800 opq',
  [
    { path: 'hidden', kind: 'add' },
    { path: 'opq/old', kind: 'add' },
  ],
);
rootTest('a path below a lower non-directory is an add', upperMacro, 'mkdir f && echo y > f/g', [
  { path: 'f', kind: 'modify' },
  { path: 'f/g', kind: 'add' },
]);
rootTest(
  'a copied-up parent with its lower metadata is not listed, a changed one is',
  upperMacro,
  [
    'mkdir -p dir/sub opq && echo y > dir/file && touch -d @1577836800 dir opq',
    'setfattr -n trusted.overlay.origin -v 0x00fb dir && setfattr -n trusted.overlay.impure -v y dir',
    'chmod 700 dir/sub',
  ].join('\n'),
  [
    { path: 'dir/file', kind: 'modify' },
    { path: 'dir/sub', kind: 'modify' },
  ],
);
rootTest(
  'a parent whose only change is a user xattr is listed',
  upperMacro,
  'mkdir dir && touch -d @1577836800 dir && setfattr -n user.k -v v dir',
  [{ path: 'dir', kind: 'modify' }],
);
const NEW_TREE = 'mkdir -p n/b n/a && echo > n/b/z && echo > n/a/y && ln -s x n/s';
rootTest('everything below a new directory is listed, sorted', upperMacro, NEW_TREE, [
  { path: 'n', kind: 'add' },
  { path: 'n/a', kind: 'add' },
  { path: 'n/a/y', kind: 'add' },
  { path: 'n/b', kind: 'add' },
  { path: 'n/b/z', kind: 'add' },
  { path: 'n/s', kind: 'add' },
]);

rootTest('diffUpperdir refuses an upperdir with redirects or metacopy', async (t) => {
  const base = await tempDir(t, PREFIX);
  await sh(`${LOWERS}\nmkdir -p upper/dir && setfattr -n trusted.overlay.redirect -v /x upper/dir`, base);
  await t.throwsAsync(
    diffUpperdir({ upperdir: join(base, 'upper'), lowerdirs: [join(base, 'top'), join(base, 'bottom')] }),
    {
      code: 'E_UPPER_NOT_DIFF',
    },
  );
});

rootTest('LowerView looks paths up the way overlayfs merges them', async (t) => {
  const base = await tempDir(t, PREFIX);
  await sh(LOWERS, base);
  const view = new LowerView([join(base, 'top'), join(base, 'bottom')]);
  t.is(view.lookup('dir/file')?.layer, join(base, 'bottom'));
  t.is(view.lookup('f')?.layer, join(base, 'top'));
  t.is(view.lookup('hidden'), undefined);
  t.is(view.lookup('opq/old'), undefined);
  t.true(view.lookup('opq')?.st.isDirectory());
  t.is(view.lookup('f/x'), undefined);
  t.is(view.lookup('missing/x'), undefined);
});

rootTest('after a real copy-up the upperdir carries overlay xattrs that never make a parent a change', async (t) => {
  const base = await tempDir(t, PREFIX);
  await sh(LOWER_FIXTURE, base);
  const lowerdirs = [join(base, 'top'), join(base, 'bottom')];
  const upperdir = join(base, 'upper');
  const m = await mountForTest(t, { lowerdirs, upperdir, workdir: join(base, 'work'), target: join(base, 'merged') });
  await sh('echo more >> etc/conf.d/a.conf && chmod 600 data/sub/three', m.target);
  await m.unmount();
  const marks = Object.keys(getXattrs(join(upperdir, 'etc', 'conf.d')));
  t.true(
    marks.some((k) => k.startsWith('trusted.overlay.')),
    'overlay marked the copied-up dir',
  );
  t.deepEqual(typed(t, upperdir, await diffUpperdir({ upperdir, lowerdirs })), [
    { path: 'data/sub/three', kind: 'modify' },
    { path: 'etc/conf.d/a.conf', kind: 'modify' },
  ]);
  t.deepEqual(mountsUnder(base), []);
});

rootTest('no overlay mount of these tests is left behind', (t) => {
  t.deepEqual(mountsUnder(PREFIX), []);
});

// The pure parts of rootless mode: which ids a user owns, which commands enter the namespace, where a rootless run
// may make cgroups, and the overlay options of a user namespace.
import test from 'ava';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCgroup } from '../../sys/cgroups.js';
import { commandOf, subordinateRange, usernsInfo, wantsUserNamespace } from '../../sys/userns.js';
import { overlayData, planOverlayMount } from '../../unionfs/overlay.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

test('a subordinate range is found by user name or by uid, the first one wins, and junk lines are skipped', (t) => {
  const text = '# comment\nalice:100000:65536\nbob:x:1\n1001:200000:1000\nalice:500000:10\n';
  t.deepEqual(subordinateRange(text, 'alice', 1000), { start: 100000, count: 65536 });
  t.deepEqual(subordinateRange(text, 'carol', 1001), { start: 200000, count: 1000 });
  t.is(subordinateRange(text, 'bob', 1002), undefined, 'a malformed line is no range');
  t.is(subordinateRange('', 'alice', 1000), undefined);
});

test('the command word is found after the global flags; build is the default and help needs no namespace', (t) => {
  t.is(commandOf(['--root', '/s', '--debug', 'images']), 'images');
  t.is(commandOf(['--root=/s', 'run', 'x']), 'run');
  t.is(commandOf(['-t', 'app', '.']), '', 'flags first: the default build');
  t.is(commandOf(['--help']), 'help');
  t.is(commandOf([]), 'help');
});

test('only an ordinary user outside the namespace re-executes, and never for login, logout, boot or help', (t) => {
  const asUser = process.geteuid?.() !== 0;
  t.is(wantsUserNamespace(['build', '.'], {}), asUser);
  t.false(wantsUserNamespace(['build', '.'], { TSBUILD_USERNS_INNER: '1000:1000' }), 'already inside');
  t.false(wantsUserNamespace(['build', '.'], { TSBUILD_USERNS: 'off' }), 'turned off');
  for (const c of ['login', 'logout', 'boot', '--help']) t.false(wantsUserNamespace([c, 'x'], {}), c);
});

test('the inner CLI learns how its namespace was mapped from the outer one', (t) => {
  t.deepEqual(usernsInfo({ TSBUILD_USERNS_INNER: '1000:1001:100000:65536:200000:65536' }), {
    hostUid: 1000,
    hostGid: 1001,
    subuid: { start: 100000, count: 65536 },
    subgid: { start: 200000, count: 65536 },
  });
  t.deepEqual(usernsInfo({ TSBUILD_USERNS_INNER: '1000:1000' }), { hostUid: 1000, hostGid: 1000 });
  t.is(usernsInfo({}), undefined);
});

test('a user namespace mounts its overlays with userxattr, root does not', (t) => {
  t.false(overlayData({ lowers: ['/l'], upper: '/u', work: '/w' }).includes('userxattr'));
  t.true(overlayData({ lowers: ['/l'], upper: '/u', work: '/w', userxattr: true }).endsWith(',userxattr'));
  const steps = planOverlayMount({
    lowerdirs: Array.from({ length: 600 }, (_, i) => `/s/${i}`),
    upperdir: '/u',
    workdir: '/w',
    target: '/m',
    userxattr: true,
  });
  const mounts = steps.filter((s) => s.op === 'mount');
  t.is(mounts.length, 2, 'stacked');
  t.true(
    mounts.every((m) => m.op === 'mount' && m.data.endsWith(',userxattr')),
    'both levels',
  );
});

async function fakeV2(t: { teardown(fn: () => unknown): void }, controllers: string): Promise<string> {
  const root = await makeTempDir('tsbuild-cg2-');
  t.teardown(() => removeDir(root));
  const base = join(root, 'user.slice', 'user@1000.service', 'app.slice');
  await mkdir(join(base, 'me.scope'), { recursive: true });
  await writeFile(join(base, 'cgroup.controllers'), controllers);
  await writeFile(join(base, 'cgroup.subtree_control'), '');
  return root;
}

const SELF = '0::/user.slice/user@1000.service/app.slice/me.scope\n';

test('a rootless run makes its cgroup in the delegated subtree that holds its own cgroup', async (t) => {
  const root = await fakeV2(t, 'cpu memory pids');
  const mountinfo = `30 20 0:26 / ${root} rw - cgroup2 cgroup2 rw\n`;
  const cg = createCgroup({ limits: { pids: 10 }, rootless: true, mountinfo, selfCgroup: SELF, name: 'run1' });
  const dir = join(root, 'user.slice', 'user@1000.service', 'app.slice', 'tsbuild', 'run1');
  t.deepEqual(cg.dirs, [dir]);
  t.deepEqual(cg.procsFiles, [join(dir, 'cgroup.procs')]);
});

test('a rootless run without a delegated controller or without cgroup v2 fails with a clear error', async (t) => {
  const root = await fakeV2(t, 'cpu');
  const mountinfo = `30 20 0:26 / ${root} rw - cgroup2 cgroup2 rw\n`;
  const e1 = t.throws(() => createCgroup({ limits: { memory: 1 << 26 }, rootless: true, mountinfo, selfCgroup: SELF }));
  t.regex(e1?.message ?? '', /does not delegate the memory controller/);
  const v1 = '25 20 0:22 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n';
  const e2 = t.throws(() =>
    createCgroup({ limits: { memory: 1 << 26 }, rootless: true, mountinfo: v1, selfCgroup: SELF }),
  );
  t.regex(e2?.message ?? '', /need cgroup v2/);
  if (process.geteuid?.() !== 0) {
    const ro = await fakeV2(t, 'memory');
    await chmod(join(ro, 'user.slice', 'user@1000.service', 'app.slice'), 0o555);
    const info = `30 20 0:26 / ${ro} rw - cgroup2 cgroup2 rw\n`;
    const e3 = t.throws(() =>
      createCgroup({ limits: { memory: 1 }, rootless: true, mountinfo: info, selfCgroup: SELF }),
    );
    t.regex(e3?.message ?? '', /is not yours/);
  }
});

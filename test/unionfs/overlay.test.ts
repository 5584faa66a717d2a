import test from 'ava';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mknod } from '../../sys/libc.js';
import { FakeHost } from '../../sys/fake-host.js';
import {
  MAX_LAYERS,
  MAX_LOWERS_PER_MOUNT,
  MOUNT_DATA_MAX,
  mountOverlay,
  overlayData,
  planOverlayMount,
  volatileKnown,
  TooManyLayersError,
  type MountedOverlay,
  type MountStep,
  type OverlayPlan,
} from '../../unionfs/overlay.js';
import { rootTest } from '../helpers/index.js';
import { mountForTest, mountsUnder, tempDir } from './helpers.js';

const PREFIX = 'tsbuild-unionfs-overlay-';
const OPTS = 'index=off,redirect_dir=off,metacopy=off';

const mounts = (steps: MountStep[]) => steps.filter((s): s is Extract<MountStep, { op: 'mount' }> => s.op === 'mount');
const lowerCount = (data: string) => (/lowerdir=([^,]*)/.exec(data)?.[1] ?? '').split(':').length;

function plan(lowerdirs: string[], base = '/var/lib/tsbuild/run/1'): OverlayPlan {
  return { lowerdirs, upperdir: `${base}/upper`, workdir: `${base}/work`, target: `${base}/merged` };
}

test('planOverlayMount with short paths is one mount with absolute paths and the diff-friendly options', (t) => {
  t.deepEqual(planOverlayMount(plan(['/s/b', '/s/a'])), [
    {
      op: 'mount',
      target: '/var/lib/tsbuild/run/1/merged',
      data: `lowerdir=/s/b:/s/a,upperdir=/var/lib/tsbuild/run/1/upper,workdir=/var/lib/tsbuild/run/1/work,${OPTS}`,
      readonly: false,
    },
  ]);
});

test('planOverlayMount escapes backslashes, commas and colons in paths', (t) => {
  const [step] = mounts(planOverlayMount(plan(['/s/a:b', '/s/c,d\\e'])));
  t.is(step?.data.split(',upperdir=')[0], 'lowerdir=/s/a\\:b:/s/c\\,d\\\\e');
});

test('planOverlayMount refuses relative paths, no lowerdirs and more layers than it can stack', (t) => {
  t.throws(() => planOverlayMount(plan(['rel/a'])), { code: 'E_INVALID' });
  t.throws(() => planOverlayMount(plan([])), { code: 'E_INVALID' });
  const many = Array.from({ length: MAX_LAYERS + 1 }, (_, i) => `/s/${i}`);
  t.throws(() => planOverlayMount(plan(many)), { instanceOf: TooManyLayersError });
  t.notThrows(() => planOverlayMount(plan(many.slice(1))));
});

test('planOverlayMount uses paths relative to the shared base dir when absolute ones exceed a page', (t) => {
  const base = `/tmp/${'deep/'.repeat(40)}store`;
  const lowers = Array.from({ length: 130 }, (_, i) => `${base}/snapshots/${String(i).padStart(3, '0')}`);
  const steps = planOverlayMount(plan(lowers, `${base}/run`));
  t.is(steps.length, 1);
  const [step] = mounts(steps);
  t.is(step?.cwd, base);
  t.true(step?.data.startsWith('lowerdir=snapshots/000:snapshots/001:'));
  t.true(step?.data.includes(',upperdir=run/upper,workdir=run/work,'));
  t.true(Buffer.byteLength(step?.data ?? '') < MOUNT_DATA_MAX);
});

test('planOverlayMount falls back to short symlinks in a scratch dir, removed once mounted', (t) => {
  const lowers = Array.from({ length: 130 }, (_, i) => `/tmp/x/${i}/${'h'.repeat(64)}`);
  const steps = planOverlayMount({ ...plan(lowers), scratchDir: '/scratch' });
  t.deepEqual(steps[0], { op: 'mkdir', path: '/scratch' });
  t.deepEqual(steps[1], { op: 'mkdir', path: '/scratch/links' });
  t.deepEqual(steps[2], { op: 'symlink', path: '/scratch/links/0', target: lowers[0] });
  t.deepEqual(steps[2 + 35], { op: 'symlink', path: '/scratch/links/z', target: lowers[35] });
  const [step] = mounts(steps);
  t.is(step?.cwd, '/scratch/links');
  t.true(step?.data.startsWith('lowerdir=0:1:2:'));
  t.true(step?.data.includes(':3l,upperdir=/var/lib/tsbuild/run/1/upper,'));
  t.deepEqual(steps.at(-1), { op: 'remove-links', path: '/scratch/links' });
});

test('planOverlayMount stacks the bottom layers as a read-only overlay past the per-mount limit', (t) => {
  const lowers = Array.from({ length: 700 }, (_, i) => `/tmp/x/${i}/${'h'.repeat(64)}`);
  const steps = planOverlayMount({ ...plan(lowers), scratchDir: '/scratch' });
  const [inner, outer] = mounts(steps);
  t.is(inner?.target, '/scratch/lower');
  t.true(inner?.readonly);
  t.false(inner?.data.includes('upperdir='));
  t.is(lowerCount(inner?.data ?? ''), 700 - (MAX_LOWERS_PER_MOUNT - 1));
  t.is(outer?.target, '/var/lib/tsbuild/run/1/merged');
  t.false(outer?.readonly);
  t.is(lowerCount(outer?.data ?? ''), MAX_LOWERS_PER_MOUNT);
  // the stacked overlay is the lowest layer of the top mount: upper groups keep hiding what it has
  const links = steps.filter((s) => s.op === 'symlink' && s.path.startsWith('/scratch/links/'));
  t.is(links.at(-1)?.op === 'symlink' ? (links.at(-1) as { target: string }).target : '', '/scratch/lower');
  t.is(steps.findIndex((s) => s === inner) < steps.findIndex((s) => s === outer), true);
});

test('volatile ends the options of a writable overlay, never of a read-only one', (t) => {
  const [rw] = mounts(planOverlayMount({ ...plan(['/l1', '/l0']), volatile: true }));
  t.is(
    rw?.data,
    `lowerdir=/l1:/l0,upperdir=/var/lib/tsbuild/run/1/upper,workdir=/var/lib/tsbuild/run/1/work,${OPTS},volatile`,
  );
  t.is(overlayData({ lowers: ['/l'], volatile: true }), `lowerdir=/l,${OPTS}`);
});

for (const [kernel, known] of [
  ['5.9.16', false],
  ['5.10.0-28-amd64', true],
  ['5.15.0', true],
  ['6.1.0-18-cloud-amd64', true],
  ['4.19.0', false],
  ['', false],
] as const) {
  test(`volatileKnown: ${kernel || 'an unreadable release'} ${known ? 'knows' : 'does not know'} volatile`, (t) => {
    t.is(volatileKnown(kernel), known);
  });
}

test('mountOverlay: a volatile mount refused with EINVAL (a kernel before 5.10) is made again without the option', async (t) => {
  const base = await tempDir(t, PREFIX);
  const refuse = Object.assign(new Error('mount: EINVAL'), { code: 'EINVAL' });
  const host = new FakeHost({
    caps: { mount: true },
    mountError: (_target, _fstype, data) => (data?.endsWith(',volatile') ? refuse : undefined),
  });
  const m = await mountOverlay({ ...plan([join(base, 'l')], join(base, 'c')), volatile: true }, host);
  const mounts = host.callsOf('mount');
  t.is(mounts.length, 1);
  t.false(mounts[0]!.data!.includes('volatile'));
  await m.unmount();
});

test('mountOverlay: a volatile mount refused otherwise fails as any mount does', async (t) => {
  const base = await tempDir(t, PREFIX);
  const host = new FakeHost({
    caps: { mount: true },
    mountError: () => Object.assign(new Error('mount: EPERM'), { code: 'EPERM' }),
  });
  await t.throwsAsync(mountOverlay({ ...plan([join(base, 'l')], join(base, 'c')), volatile: true }, host), {
    code: 'E_OVERLAY_MOUNT',
    message: /: EPERM$/,
  });
});

const fitsInAPage = test.macro({
  exec(t, layers: number, nameLength: number) {
    const lowers = Array.from(
      { length: layers },
      (_, i) => `/${'p'.repeat(nameLength)}/${i}/${'q'.repeat(nameLength)}`,
    );
    for (const step of mounts(planOverlayMount(plan(lowers)))) {
      t.true(Buffer.byteLength(step.data) + 1 <= MOUNT_DATA_MAX, `${step.data.length} bytes`);
      t.true(lowerCount(step.data) <= MAX_LOWERS_PER_MOUNT);
    }
  },
  title: (_p, layers: number, nameLength: number) =>
    `planOverlayMount of ${layers} layers with ${nameLength}-byte names fits each mount in a page`,
});
for (const [layers, len] of [
  [1, 2000],
  [10, 150],
  [128, 64],
  [499, 100],
  [501, 100],
  [MAX_LAYERS, 200],
] as const) {
  test(fitsInAPage, layers, len);
}

// ─── real mounts ───────────────────────────────────────────────────────────────────────────────────────────

rootTest('mountOverlay shows the lowers merged, hides whiteouts, writes to the upperdir and unmounts', async (t) => {
  const base = await tempDir(t, PREFIX);
  const [top, bottom] = [join(base, 'top'), join(base, 'bottom')];
  await mkdir(top);
  await mkdir(bottom);
  await writeFile(join(bottom, 'a'), 'bottom a');
  await writeFile(join(bottom, 'gone'), 'x');
  await writeFile(join(top, 'a'), 'top a');
  mknod(join(top, 'gone'), 0o020000, 0, 0);
  const plan = {
    lowerdirs: [top, bottom],
    upperdir: join(base, 'upper'),
    workdir: join(base, 'work'),
    target: join(base, 'merged'),
  };
  const m = await mountForTest(t, plan);
  t.is(readFileSync(join(m.target, 'a'), 'utf8'), 'top a');
  t.false(existsSync(join(m.target, 'gone')));
  await writeFile(join(m.target, 'new'), 'n');
  t.is(readFileSync(join(base, 'upper', 'new'), 'utf8'), 'n');
  t.deepEqual(mountsUnder(base), [plan.target]);
  await m.unmount();
  await m.unmount(); // idempotent
  t.deepEqual(mountsUnder(base), []);
  t.true(existsSync(plan.target));
});

async function makeLayers(root: string, count: number, dirOf: (i: number) => string): Promise<string[]> {
  const dirs: string[] = [];
  for (let i = 0; i < count; i++) {
    const dir = join(root, dirOf(i));
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `f${i}`), `layer ${i}`);
    dirs.push(dir);
  }
  return dirs.reverse(); // top first
}

rootTest('mountOverlay mounts 130 lowerdirs with long absolute paths', async (t) => {
  const base = await tempDir(t, PREFIX);
  const deep = join(base, ...Array.from({ length: 12 }, (_, i) => `level-${i}-${'d'.repeat(20)}`));
  const lowers = await makeLayers(deep, 130, (i) => join(`layer-${i}`, 'x'.repeat(60))); // layer 0 at the bottom
  await writeFile(join(lowers[129] as string, 'doomed'), 'bottom file');
  mknod(join(lowers[70] as string, 'doomed'), 0o020000, 0, 0); // layer 59 deletes it
  const plan = {
    lowerdirs: lowers,
    upperdir: join(base, 'upper'),
    workdir: join(base, 'work'),
    target: join(base, 'merged'),
  };
  t.true(
    planOverlayMount(plan).some((s) => s.op === 'symlink'),
    'needs the short-link encoding',
  );
  const m = await mountForTest(t, plan);
  t.is(readFileSync(join(m.target, 'f0'), 'utf8'), 'layer 0');
  t.is(readFileSync(join(m.target, 'f129'), 'utf8'), 'layer 129');
  t.false(existsSync(join(m.target, 'doomed')));
  await writeFile(join(m.target, 'written'), 'w');
  t.is(readFileSync(join(plan.upperdir, 'written'), 'utf8'), 'w');
  t.false(existsSync(`${plan.workdir}.ovl/links`), 'the links are gone once mounted');
  await m.unmount();
  t.deepEqual(mountsUnder(base), []);
  t.false(existsSync(`${plan.workdir}.ovl`));
});

rootTest('mountOverlay mounts 130 layers under one deep dir with relative paths', async (t) => {
  const base = await tempDir(t, PREFIX);
  const deep = join(base, ...Array.from({ length: 12 }, (_, i) => `level-${i}-${'d'.repeat(20)}`));
  const lowers = await makeLayers(deep, 130, (i) => `l${i}`);
  const plan = {
    lowerdirs: lowers,
    upperdir: join(deep, 'upper'),
    workdir: join(deep, 'work'),
    target: join(base, 'merged'),
  };
  t.truthy(mounts(planOverlayMount(plan))[0]?.cwd);
  const cwd = process.cwd();
  const m = await mountForTest(t, plan);
  t.is(process.cwd(), cwd, 'the working directory is restored');
  t.is(readFileSync(join(m.target, 'f0'), 'utf8'), 'layer 0');
  t.is(readFileSync(join(m.target, 'f129'), 'utf8'), 'layer 129');
  await m.unmount();
  t.deepEqual(mountsUnder(base), []);
});

rootTest('mountOverlay stacks 600 layers and whiteouts of upper layers still hide the stacked ones', async (t) => {
  const base = await tempDir(t, PREFIX);
  const lowers = await makeLayers(base, 600, (i) => join('layers', `${i}`, 'h'.repeat(30)));
  const bottom = lowers[599] as string;
  const topGroup = lowers[10] as string; // layer 589: in the top mount's own lowers
  await writeFile(join(bottom, 'doomed'), 'x');
  await mkdir(join(bottom, 'dir'));
  await writeFile(join(bottom, 'dir', 'old'), 'x');
  mknod(join(topGroup, 'doomed'), 0o020000, 0, 0);
  await mkdir(join(topGroup, 'dir'));
  await writeFile(join(topGroup, 'dir', 'new'), 'y');
  const { setXattr } = await import('../../sys/libc.js');
  setXattr(join(topGroup, 'dir'), 'trusted.overlay.opaque', Buffer.from('y'));
  const plan = {
    lowerdirs: lowers,
    upperdir: join(base, 'upper'),
    workdir: join(base, 'work'),
    target: join(base, 'merged'),
  };
  t.is(mounts(planOverlayMount(plan)).length, 2);
  const m = await mountForTest(t, plan);
  t.is(mountsUnder(base).length, 2);
  t.is(readFileSync(join(m.target, 'f0'), 'utf8'), 'layer 0');
  t.is(readFileSync(join(m.target, 'f599'), 'utf8'), 'layer 599');
  t.false(existsSync(join(m.target, 'doomed')));
  t.deepEqual(existsSync(join(m.target, 'dir', 'old')), false);
  t.true(existsSync(join(m.target, 'dir', 'new')));
  await writeFile(join(m.target, 'written'), 'w');
  t.true(lstatSync(join(plan.upperdir, 'written')).isFile());
  await m.unmount();
  t.deepEqual(mountsUnder(base), []);
  t.false(existsSync(`${plan.workdir}.ovl`));
});

rootTest('a failed mount undoes its steps and says why', async (t) => {
  const base = await tempDir(t, PREFIX);
  const lowers = await makeLayers(base, 130, (i) => join('layers', `${i}`, 'h'.repeat(40)));
  lowers.splice(5, 0, join(base, 'missing', 'h'.repeat(40)));
  const plan = {
    lowerdirs: lowers,
    upperdir: join(base, 'upper'),
    workdir: join(base, 'work'),
    target: join(base, 'merged'),
  };
  let mounted: MountedOverlay | undefined; // should the mount wrongly succeed, it is still unmounted
  t.teardown(() => mounted?.unmount());
  const attempt = mountOverlay(plan).then((m) => {
    mounted = m;
  });
  await t.throwsAsync(attempt, { code: 'E_OVERLAY_MOUNT', message: /mounting overlay at .*merged: ENOENT/ });
  t.deepEqual(mountsUnder(base), []);
  t.false(existsSync(`${plan.workdir}.ovl`));
});

rootTest('unmount detaches a busy mount instead of leaving it behind', async (t) => {
  const base = await tempDir(t, PREFIX);
  const lowers = await makeLayers(base, 2, (i) => `l${i}`);
  const m = await mountForTest(t, {
    lowerdirs: lowers,
    upperdir: join(base, 'u'),
    workdir: join(base, 'w'),
    target: join(base, 'm'),
  });
  const fh = await open(join(m.target, 'f0'), 'r');
  t.teardown(() => fh.close());
  await m.unmount();
  t.deepEqual(mountsUnder(base), []);
  t.is((await fh.readFile('utf8')).toString(), 'layer 0');
});

rootTest('no overlay mount of these tests is left behind', (t) => {
  t.deepEqual(mountsUnder(PREFIX), []);
});

import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeExt4, measureTree } from '../../convert/ext4.js';
import {
  applyHeaders,
  fixOwnership,
  makeTreeReadable,
  ownershipCommands,
  type OwnerMap,
} from '../../convert/owners.js';
import { isRoot, makeTempDir, removeDir } from '../helpers/index.js';

const h = (
  name: string,
  extra: Partial<{ type: string; uid: number; gid: number; mode: number; devmajor: number; devminor: number }> = {},
) => ({ name, type: 'file', uid: 0, gid: 0, mode: 0o644, ...extra }) as Parameters<typeof applyHeaders>[1][number];

test('later layers replace owners, whiteouts and opaque directories remove what is below', (t) => {
  const map: OwnerMap = new Map();
  applyHeaders(map, [
    h('etc/', { type: 'directory', mode: 0o755 }),
    h('etc/shadow', { gid: 42, mode: 0o640 }),
    h('opt/', { type: 'directory' }),
    h('opt/a'),
    h('opt/b'),
    h('var/x/', { type: 'directory' }),
    h('var/x/y'),
  ]);
  applyHeaders(map, [
    h('./etc/shadow', { gid: 42, mode: 0o600 }),
    h('opt/.wh..wh..opq'),
    h('opt/c', { uid: 7 }),
    h('var/.wh.x'),
  ]);
  t.deepEqual(map.get('etc/shadow'), { uid: 0, gid: 42, mode: 0o600, type: 'file' });
  t.false(map.has('opt/a'));
  t.true(map.has('opt'));
  t.is(map.get('opt/c')?.uid, 7);
  t.false(map.has('var/x'));
  t.false(map.has('var/x/y'));
});

async function tree(t: { teardown(f: () => unknown): void }): Promise<string> {
  const root = await makeTempDir();
  t.teardown(() => removeDir(root));
  await mkdir(join(root, 'etc'));
  await mkdir(join(root, 'dev'));
  await mkdir(join(root, 'home/u'), { recursive: true });
  await writeFile(join(root, 'etc/shadow'), 'root:*:1::::::\n');
  await chmod(join(root, 'etc/shadow'), 0o644);
  await writeFile(join(root, 'home/u/notes'), 'x');
  await writeFile(join(root, 'etc/fstab'), 'generated\n');
  return root;
}

const owners = (): OwnerMap =>
  new Map([
    ['etc', { uid: 0, gid: 0, mode: 0o755, type: 'directory' }],
    ['etc/shadow', { uid: 0, gid: 42, mode: 0o640, type: 'file' }],
    ['home/u', { uid: 1000, gid: 1000, mode: 0o700, type: 'directory' }],
    ['home/u/notes', { uid: 1000, gid: 1000, mode: 0o600, type: 'file' }],
    ['dev/null', { uid: 0, gid: 0, mode: 0o666, type: 'character-device', devmajor: 1, devminor: 3 }],
  ] as Array<[string, OwnerMap extends Map<string, infer V> ? V : never]>);

test("debugfs commands give each path the image's owner and mode, root for added files, and make missing devices", async (t) => {
  const root = await tree(t);
  // pretend an unprivileged user (uid 4242) extracted the tree
  const { lchown } = await import('node:fs/promises');
  if (isRoot)
    for (const p of ['', 'etc', 'dev', 'home', 'home/u', 'etc/shadow', 'home/u/notes', 'etc/fstab'])
      await lchown(join(root, p), 4242, 4242);
  const { commands, skipped } = await ownershipCommands(root, owners());
  t.deepEqual(skipped, []);
  if (isRoot) {
    t.true(commands.includes('sif "/etc/shadow" gid 42'));
    t.true(commands.includes('sif "/etc/fstab" uid 0'), 'files the export added belong to root');
    t.true(commands.includes('sif "/home/u/notes" uid 1000'));
  }
  t.true(commands.includes('sif "/etc/shadow" mode 0100640'));
  t.true(commands.includes('sif "/home/u" mode 040700'));
  const i = commands.indexOf('cd "/dev"');
  t.true(i >= 0);
  t.deepEqual(commands.slice(i + 1, i + 3), ['mknod "null" c 1 3', 'sif "/dev/null" mode 020666']);
});

test('fixOwnership patches a finished filesystem in the image file without mounting it', async (t) => {
  const root = await tree(t);
  const work = await makeTempDir();
  t.teardown(() => removeDir(work));
  const image = join(work, 'disk.img');
  execFileSync('truncate', ['-s', '40M', image]);
  const uuid = '11111111-2222-4333-8444-555555555555';
  await makeExt4({ image, offset: 1 << 20, bytes: 32 << 20, dir: root, uuid, usage: await measureTree(root) });
  const { commands } = await ownershipCommands(root, owners());
  t.true((await fixOwnership({ image, offset: 1 << 20, commands, workDir: work })) > 0);
  const stat = (p: string): string =>
    execFileSync('debugfs', ['-R', `stat ${p}`, `${image}?offset=${1 << 20}`], {
      stdio: ['ignore', 'pipe', 'ignore'],
    }).toString();
  t.regex(stat('/etc/shadow'), /Mode:\s+0640/);
  t.regex(stat('/etc/shadow'), /Group:\s+42/);
  t.regex(stat('/home/u/notes'), /User:\s+1000/);
  t.regex(stat('/dev/null'), /Type: character special/);
  execFileSync('e2fsck', ['-fn', `${image}?offset=${1 << 20}`], { stdio: 'ignore' });
});

test('unreadable files are made readable for mkfs (their modes come back from the layers)', async (t) => {
  const root = await tree(t);
  await chmod(join(root, 'home/u/notes'), 0o000);
  await chmod(join(root, 'home/u'), 0o000);
  t.is(await makeTreeReadable(root), 2);
  const { statSync } = await import('node:fs');
  t.is(statSync(join(root, 'home/u')).mode & 0o700, 0o700);
  t.is(statSync(join(root, 'home/u/notes')).mode & 0o400, 0o400);
});

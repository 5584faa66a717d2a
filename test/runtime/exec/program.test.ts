import test, { type ExecutionContext } from 'ava';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MS } from '../../../sys/libc.js';
import { encodeOps, type Op } from '../../../sys/namespaces.js';
import { MASKED_PATHS, MOUNT_ATTR, READONLY_PATHS } from '../../../runtime/exec/mounts.js';
import { capabilityMask, executorOps } from '../../../runtime/exec/program.js';
import { processSpec, type ProcessSpecOptions, type RunSpec } from '../../../runtime/spec.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

async function makeSpec(t: ExecutionContext, opts: Partial<ProcessSpecOptions> = {}): Promise<RunSpec> {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await mkdir(join(dir, 'etc'));
  await writeFile(join(dir, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n');
  return processSpec({ config: { Cmd: ['sh', '-c', 'true'] }, rootfs: dir, hostname: 'box', ...opts });
}

const names = (ops: Op[]): string[] => ops.map((o) => o.op);
const index = (ops: Op[], op: Op['op']): number => ops.findIndex((o) => o.op === op);

test('the program joins the cgroups first and execs last', async (t) => {
  const spec = await makeSpec(t);
  const ops = executorOps(spec, { cgroupProcs: ['/cg/a/cgroup.procs', '/cg/b/cgroup.procs'] });
  t.deepEqual(ops.slice(0, 2), [
    { op: 'cgroup', procs: '/cg/a/cgroup.procs' },
    { op: 'cgroup', procs: '/cg/b/cgroup.procs' },
  ]);
  t.deepEqual(ops.at(-1), { op: 'exec', init: false, args: ['sh', '-c', 'true'] });
});

test('the rootfs is made private and bound onto itself before anything is mounted in it', async (t) => {
  const spec = await makeSpec(t);
  const ops = executorOps(spec);
  t.deepEqual(ops.slice(0, 2), [
    { op: 'mount', source: '', target: '/', fstype: '', flags: MS.REC | MS.PRIVATE, data: '' },
    { op: 'mount', source: spec.rootfs, target: spec.rootfs, fstype: '', flags: MS.BIND | MS.REC, data: '' },
  ]);
});

test('every host-path mount comes before pivot_root and every mask after it', async (t) => {
  const spec = await makeSpec(t);
  const ops = executorOps(spec);
  const pivot = index(ops, 'pivot');
  t.deepEqual(ops[pivot], { op: 'pivot', root: spec.rootfs });
  for (const o of ops.slice(0, pivot))
    if (o.op === 'mount' && o.target !== '/') t.true(o.target.startsWith(spec.rootfs), o.target);
  const masks = ops.filter((o): o is Extract<Op, { op: 'mask' }> => o.op === 'mask').map((o) => o.path);
  const ro = ops.filter((o): o is Extract<Op, { op: 'ro' }> => o.op === 'ro').map((o) => o.path);
  t.deepEqual(masks, [...MASKED_PATHS]);
  t.deepEqual(ro, [...READONLY_PATHS]);
  t.true(index(ops, 'mask') > pivot);
  t.true(masks.includes('/proc/kcore') && ro.includes('/proc/sys'));
});

test('/proc, /dev and /sys are mounted with runc flags', async (t) => {
  const spec = await makeSpec(t);
  const mounts = executorOps(spec).filter((o): o is Extract<Op, { op: 'mount' }> => o.op === 'mount');
  const at = (p: string) => mounts.find((m) => m.target === join(spec.rootfs, p));
  t.like(at('proc'), { fstype: 'proc', flags: MS.NOSUID | MS.NOEXEC | MS.NODEV });
  t.like(at('dev'), { fstype: 'tmpfs', flags: MS.NOSUID | MS.STRICTATIME, data: 'mode=755,size=65536k' });
  t.like(at('dev/pts'), { fstype: 'devpts', data: 'newinstance,ptmxmode=0666,mode=0620,gid=5' });
  t.like(at('dev/shm'), { fstype: 'tmpfs', flags: MS.NOSUID | MS.NOEXEC | MS.NODEV });
  t.like(at('dev/mqueue'), { fstype: 'mqueue' });
  t.like(at('sys'), { fstype: 'sysfs', flags: MS.NOSUID | MS.NOEXEC | MS.NODEV | MS.RDONLY });
});

test('a symlinked /proc in the image is mounted inside the rootfs, not where the link points on the host', async (t) => {
  const spec = await makeSpec(t);
  await symlink('/etc', join(spec.rootfs, 'proc'));
  const ops = executorOps(spec);
  t.true(ops.some((o) => o.op === 'mount' && o.fstype === 'proc' && o.target === join(spec.rootfs, 'etc')));
});

test('the device nodes are the runc set, world-writable character devices', async (t) => {
  const spec = await makeSpec(t);
  const nodes = executorOps(spec).filter((o): o is Extract<Op, { op: 'mknod' }> => o.op === 'mknod');
  t.deepEqual(
    nodes.map((n) => [n.path.slice(spec.rootfs.length), n.major, n.minor, n.mode]),
    [
      ['/dev/null', 1, 3, 0o20666],
      ['/dev/zero', 1, 5, 0o20666],
      ['/dev/full', 1, 7, 0o20666],
      ['/dev/random', 1, 8, 0o20666],
      ['/dev/urandom', 1, 9, 0o20666],
      ['/dev/tty', 5, 0, 0o20666],
    ],
  );
});

test('the loopback interface is brought up only in a new network namespace', async (t) => {
  t.true(names(executorOps(await makeSpec(t))).includes('loup'));
  t.false(names(executorOps(await makeSpec(t, { network: 'host' }))).includes('loup'));
});

test('a terminal becomes /dev/console and the controlling terminal', async (t) => {
  const spec = await makeSpec(t, { tty: true });
  const ops = executorOps(spec, { console: '/dev/pts/9' });
  t.true(
    ops.some((o) => o.op === 'mount' && o.source === '/dev/pts/9' && o.target === join(spec.rootfs, 'dev/console')),
  );
  t.true(index(ops, 'ctty') > index(ops, 'pivot'));
  t.false(names(executorOps(await makeSpec(t))).includes('ctty'));
});

test('root keeps the configured capabilities; another user gets none but the same bounding set', async (t) => {
  const root = executorOps(await makeSpec(t));
  const user = executorOps(await makeSpec(t, { user: 'user' }));
  const mask = capabilityMask([
    'CAP_CHOWN',
    'CAP_DAC_OVERRIDE',
    'CAP_FSETID',
    'CAP_FOWNER',
    'CAP_MKNOD',
    'CAP_NET_RAW',
    'CAP_SETGID',
    'CAP_SETUID',
    'CAP_SETFCAP',
    'CAP_SETPCAP',
    'CAP_NET_BIND_SERVICE',
    'CAP_SYS_CHROOT',
    'CAP_KILL',
    'CAP_AUDIT_WRITE',
  ]);
  t.is(mask, 0xa80425fbn);
  t.deepEqual(
    root.find((o) => o.op === 'capbset'),
    { op: 'capbset', caps: mask },
  );
  t.deepEqual(
    root.find((o) => o.op === 'capset'),
    { op: 'capset', caps: mask },
  );
  t.deepEqual(
    user.find((o) => o.op === 'capbset'),
    { op: 'capbset', caps: mask },
  );
  t.deepEqual(
    user.find((o) => o.op === 'capset'),
    { op: 'capset', caps: 0n },
  );
  t.deepEqual(
    user.find((o) => o.op === 'user'),
    { op: 'user', uid: 1000, gid: 1000, groups: [] },
  );
});

test('the process set-up runs in runc order: bounding set, user, capabilities, no_new_privs, parent-death signal, cwd', async (t) => {
  const ops = names(executorOps(await makeSpec(t)));
  const order = ['pivot', 'hostname', 'capbset', 'user', 'capset', 'nnp', 'pdeathsig', 'chdir', 'env', 'exec'].map(
    (o) => ops.indexOf(o),
  );
  t.deepEqual(
    order,
    [...order].sort((a, b) => a - b),
  );
  t.false(order.includes(-1));
});

test('bind mounts are made parents first, read-only ones remounted, files touched and directories made', async (t) => {
  const host = await makeTempDir();
  t.teardown(() => removeDir(host));
  await writeFile(join(host, 'file'), 'x');
  const spec = await makeSpec(t, {
    volumes: [`${host}:/a/b:ro`, `${host}:/a`],
    extraFiles: { '/etc/hosts': join(host, 'file') },
  });
  const ops = executorOps(spec);
  const r = (p: string) => join(spec.rootfs, p);
  const binds = ops.filter(
    (o) => (o.op === 'mount' && o.source === host) || (o.op === 'mount' && o.source === join(host, 'file')),
  );
  t.deepEqual(
    binds.map((o) => (o as Extract<Op, { op: 'mount' }>).target),
    [r('a'), r('a/b'), r('etc/hosts')],
  );
  t.true(ops.some((o) => o.op === 'touch' && o.path === r('etc/hosts')));
  t.true(ops.some((o) => o.op === 'mkdir' && o.path === r('a/b')));
  // Every bind is nodev (the device allow-list), recursively; read-only ones read-only too.
  t.true(
    ops.some((o) => o.op === 'mountattr' && o.path === r('a/b') && o.set === (MOUNT_ATTR.RDONLY | MOUNT_ATTR.NODEV)),
  );
  t.true(ops.some((o) => o.op === 'mountattr' && o.path === r('a') && o.set === MOUNT_ATTR.NODEV));
  t.false(ops.some((o) => o.op === 'mount' && o.target === r('a') && (o.flags & MS.RDONLY) !== 0));
});

test('a bind mount of a missing host path is refused before anything runs', async (t) => {
  const spec = await makeSpec(t, { volumes: ['/nonexistent/tsbuild-test:/x'] });
  t.throws(() => executorOps(spec), { message: /bind mount source \/nonexistent\/tsbuild-test: ENOENT/ });
});

test('a read-only rootfs is remounted read-only after pivot_root', async (t) => {
  const ops = executorOps(await makeSpec(t, { readonlyRootfs: true }));
  const i = ops.findIndex((o) => o.op === 'mount' && o.target === '/' && (o.flags & MS.RDONLY) !== 0);
  t.true(i > index(ops, 'pivot'));
});

test('operations encode to the executor words', (t) => {
  t.deepEqual(
    encodeOps([
      { op: 'mount', source: 'proc', target: '/r/proc', fstype: 'proc', flags: 14, data: '' },
      { op: 'mkdir', path: '/r/dev/shm', mode: 0o1777 },
      { op: 'capbset', caps: 0xa80425fbn },
      { op: 'user', uid: 1000, gid: 50, groups: [10, 20] },
      { op: 'loup' },
      { op: 'exec', init: true, args: ['sh', '-c', 'x'] },
    ]),
    [
      'mount',
      'proc',
      '/r/proc',
      'proc',
      '14',
      '',
      'mkdir',
      '/r/dev/shm',
      '1777',
      'capbset',
      'a80425fb',
      'user',
      '1000',
      '50',
      '10,20',
      'loup',
      'exec',
      '1',
      '3',
      'sh',
      '-c',
      'x',
    ],
  );
});

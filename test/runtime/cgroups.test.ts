import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCgroup, limitWrites, oomKillsOf, parseCgroupMounts } from '../../sys/cgroups.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';

const MOUNTINFO = [
  '25 30 0:22 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755',
  '26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate',
  '28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory',
  '29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct',
  '30 25 0:27 / /sys/fs/cgroup/with\\040space rw shared:14 - cgroup cgroup rw,pids',
  '31 25 0:28 / /sys/fs/cgroup/systemd rw shared:15 - cgroup cgroup rw,xattr,name=systemd',
].join('\n');

test('cgroup hierarchies are read from mountinfo, v1 with their controllers', (t) => {
  t.deepEqual(parseCgroupMounts(MOUNTINFO), [
    { version: 2, mountPoint: '/sys/fs/cgroup/unified', controllers: [] },
    { version: 1, mountPoint: '/sys/fs/cgroup/memory', controllers: ['memory'] },
    { version: 1, mountPoint: '/sys/fs/cgroup/cpu,cpuacct', controllers: ['cpu', 'cpuacct'] },
    { version: 1, mountPoint: '/sys/fs/cgroup/with space', controllers: ['pids'] },
    { version: 1, mountPoint: '/sys/fs/cgroup/systemd', controllers: [] },
  ]);
});

test('limits become v1 files', (t) => {
  t.deepEqual(
    limitWrites(1, { memory: 64 << 20, pids: 20, cpus: 1.5 }).map((w) => [w.file, w.value]),
    [
      ['memory.limit_in_bytes', '67108864'],
      ['memory.memsw.limit_in_bytes', '67108864'],
      ['pids.max', '20'],
      ['cpu.cfs_period_us', '100000'],
      ['cpu.cfs_quota_us', '150000'],
    ],
  );
});

test('limits become v2 files', (t) => {
  t.deepEqual(
    limitWrites(2, { memory: 64 << 20, pids: 20, cpus: 0.5 }).map((w) => [w.file, w.value]),
    [
      ['memory.max', '67108864'],
      ['memory.swap.max', '0'],
      ['pids.max', '20'],
      ['cpu.max', '50000 100000'],
    ],
  );
});

test('the OOM-kill counter is read from memory.oom_control and memory.events', (t) => {
  t.is(oomKillsOf('oom_kill_disable 0\nunder_oom 0\noom_kill 3\n'), 3);
  t.is(oomKillsOf('low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n'), 1);
  t.is(oomKillsOf('oom_kill_disable 0\nunder_oom 0\n'), 0);
});

test('on a v2 hierarchy the controllers are enabled down to the run cgroup and the limits written', async (t) => {
  const root = await makeTempDir();
  t.teardown(() => removeDir(root));
  writeFileSync(join(root, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb pids rdma\n');
  const mountinfo = `26 25 0:23 / ${root} rw - cgroup2 cgroup2 rw`;
  const cg = createCgroup({ limits: { memory: 1 << 20, pids: 5 }, mountinfo, name: 'run1' });
  const dir = join(root, 'tsbuild', 'run1');
  t.deepEqual(cg.dirs, [dir]);
  t.deepEqual(cg.procsFiles, [join(dir, 'cgroup.procs')]);
  t.is(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8'), '+memory +pids');
  t.is(readFileSync(join(root, 'tsbuild', 'cgroup.subtree_control'), 'utf8'), '+memory +pids');
  t.is(readFileSync(join(dir, 'memory.max'), 'utf8'), '1048576');
  t.is(readFileSync(join(dir, 'pids.max'), 'utf8'), '5');
  t.false(existsSync(join(dir, 'memory.swap.max')), 'swap limit only where swap is accounted');
  writeFileSync(join(dir, 'memory.events'), 'oom 1\noom_kill 1\n');
  t.true(cg.oomKilled());
});

test('a limit no hierarchy can enforce is an error', async (t) => {
  t.throws(() => createCgroup({ limits: { cpus: 1 }, mountinfo: '28 25 0:25 / /x rw - cgroup cgroup rw,memory' }), {
    message: /no cgroup hierarchy offers the cpu controller/,
  });
});

rootTest('a v1 run cgroup carries the limits and is removed afterwards', async (t) => {
  const cg = createCgroup({ limits: { memory: 64 << 20, pids: 20, cpus: 0.5 } });
  t.teardown(() => cg.remove());
  const mem = cg.dirs.find((d) => d.includes('/memory/'));
  const pids = cg.dirs.find((d) => d.includes('/pids/'));
  t.truthy(mem && pids);
  t.is(readFileSync(join(mem as string, 'memory.limit_in_bytes'), 'utf8').trim(), String(64 << 20));
  t.is(readFileSync(join(pids as string, 'pids.max'), 'utf8').trim(), '20');
  t.false(cg.oomKilled());
  await cg.remove();
  for (const d of cg.dirs) t.false(existsSync(d));
});

rootTest('the next run removes the empty cgroup of a run whose owner died', async (t) => {
  const dead = spawnSync('true').pid as number;
  const first = createCgroup({ limits: { pids: 10 } });
  await first.remove();
  const parent = join(first.dirs[0] as string, '..');
  const stale = join(parent, `${dead}-deadbeef`);
  mkdirSync(stale, { recursive: true });
  t.teardown(() => {
    if (existsSync(stale)) rmdirSync(stale);
    if (existsSync(parent)) rmdirSync(parent);
  });
  const next = createCgroup({ limits: { pids: 10 } });
  t.teardown(() => next.remove());
  t.false(existsSync(stale));
});

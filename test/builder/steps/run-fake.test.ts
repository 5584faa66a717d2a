// The RUN step on a recording FakeHost (sys/fake-host.ts), without root: the process spec BuildKit's executor would
// give it (argv through /bin/sh -c, env, cwd, user, hostname, the host's network by default), the executor program
// that reaches the host (mounts including /proc, the pivot into the step root, the command), and a non-zero exit
// becoming the step's failure with its exit code and output.
import test, { type ExecutionContext } from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunInstruction } from '../../../builder/dockerfile/instructions.js';
import { parseDockerfile } from '../../../builder/dockerfile/parse.js';
import { RunFailedError, runStep } from '../../../builder/steps/run.js';
import type { StageState, StepEnv } from '../../../builder/steps/step.js';
import { Store } from '../../../layers/store/store.js';
import { defaultRunLimits } from '../../../builder/build.js';
import { CgroupError } from '../../../sys/cgroups.js';
import { FakeHost, type FakeHostOptions } from '../../../sys/fake-host.js';
import type { Op } from '../../../sys/namespaces.js';
import type { Stub } from '../../../unionfs/rootfs.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

interface Setup {
  host: FakeHost;
  env: StepEnv;
  root: string;
  opened: Array<readonly Stub[]>;
  outcome: string[];
}

async function setup(t: ExecutionContext, opts: FakeHostOptions = {}): Promise<Setup> {
  const dir = await makeTempDir('tsbuild-run-fake-');
  t.teardown(() => removeDir(dir));
  const root = join(dir, 'root');
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n');
  await writeFile(join(root, 'etc/group'), 'root:x:0:\nuser:x:1000:\n');
  await mkdir(join(dir, 'tmp'));
  const host = new FakeHost(opts);
  const opened: Array<readonly Stub[]> = [];
  const outcome: string[] = [];
  const env: StepEnv = {
    store: await Store.open(join(dir, 'store')),
    host,
    rootfs: {
      openStep: async (_layers, stubs = []) => {
        opened.push(stubs);
        return {
          dir: root,
          commit: async () => {
            outcome.push('commit');
            return null;
          },
          discard: async () => void outcome.push('discard'),
        };
      },
      view: async () => {
        throw new Error('no views in this test');
      },
    },
    compression: 'gzip',
    tmpDir: join(dir, 'tmp'),
    signal: new AbortController().signal,
    file: 'Dockerfile',
    source: async () => {
      throw new Error('no sources in this test');
    },
  };
  return { host, env, root, opened, outcome };
}

function runIns(dockerfile: string): RunInstruction {
  const ins = parseDockerfile(dockerfile, { file: 'Dockerfile' }).instructions.find((i) => i.kind === 'run');
  if (!ins || ins.kind !== 'run') throw new Error('no RUN');
  return ins;
}

function stage(over: Partial<StageState> = {}): StageState {
  return {
    layers: [],
    pending: [],
    fsKey: `sha256:${'0'.repeat(64)}`,
    config: { Env: ['PATH=/usr/bin:/bin'], WorkingDir: '/work' },
    env: new Map([['PATH', '/usr/bin:/bin']]),
    buildArgs: [],
    ...over,
  };
}

const OPTS = { network: 'default', secrets: new Map(), buildArgs: new Map(), escape: '\\' } as const;

test('RUN runs /bin/sh -c through the host: /proc and /dev mounted, pivot into the step root, env, cwd, user, command', async (t) => {
  const s = await setup(t, { onStart: () => ({ stdout: 'hello\n' }) });
  const step = runStep(s.env, stage(), runIns('FROM scratch\nRUN echo hello\n'), OPTS);
  t.is(step.createdBy, 'RUN /bin/sh -c echo hello # buildkit');
  t.regex(await step.cacheKey(), /^sha256:[a-f0-9]{64}$/);
  const output: string[] = [];
  try {
    t.is(await step.apply((_stream, chunk) => output.push(chunk.toString())), null);
  } finally {
    await step.release();
  }
  t.deepEqual(s.outcome, ['commit', 'discard']);
  t.is(output.join(''), 'hello\n', 'the process output reaches the step');
  t.deepEqual(
    s.opened[0]?.map((x) => x.path),
    ['/proc', '/dev', '/sys', '/etc/hosts', '/etc/resolv.conf'],
    'the runtime mount points are stubs of the step root',
  );

  const starts = s.host.callsOf('start');
  t.is(starts.length, 1);
  const { ops, newNetwork, userNetwork } = starts[0]!;
  t.true(newNetwork, "network default is the step's own network namespace (as BuildKit)");
  t.true(userNetwork, 'with outbound access through the user-mode stack');
  const mounts = ops.filter((o): o is Extract<Op, { op: 'mount' }> => o.op === 'mount');
  t.truthy(
    mounts.find((m) => m.fstype === 'proc' && m.target === join(s.root, 'proc')),
    '/proc is mounted in the step root',
  );
  t.truthy(mounts.find((m) => m.fstype === 'tmpfs' && m.target === join(s.root, 'dev')));
  t.truthy(
    mounts.find((m) => m.target === join(s.root, 'etc/hosts')),
    '/etc/hosts is bound from a build file',
  );
  const pivot = ops.findIndex((o) => o.op === 'pivot');
  t.deepEqual(ops[pivot], { op: 'pivot', root: s.root });
  t.true(
    mounts.every((m) => ops.indexOf(m) < pivot),
    'every mount happens before the pivot',
  );
  t.deepEqual(
    ops.find((o) => o.op === 'hostname'),
    { op: 'hostname', name: 'buildkitsandbox' },
  );
  t.deepEqual(
    ops.find((o) => o.op === 'chdir'),
    { op: 'chdir', path: '/work' },
  );
  t.like(
    ops.find((o) => o.op === 'user'),
    { uid: 0, gid: 0 },
  );
  t.true(ops.some((o) => o.op === 'nnp'));
  const env = ops.filter((o): o is Extract<Op, { op: 'env' }> => o.op === 'env').map((o) => o.entry);
  t.deepEqual(env, ['PATH=/usr/bin:/bin', 'HOME=/root']);
  t.deepEqual(ops.at(-1), { op: 'exec', init: false, args: ['/bin/sh', '-c', 'echo hello'] });
  t.deepEqual(s.host.callsOf('mount'), [], 'nothing is mounted on the host itself');
});

test('RUN --network=none asks for a new network namespace and brings up lo; USER resolves in the root', async (t) => {
  const s = await setup(t);
  const st = stage({ config: { Env: ['PATH=/bin'], User: 'user', WorkingDir: '/' } });
  const step = runStep(s.env, st, runIns('FROM scratch\nRUN --network=none ["/bin/true"]\n'), OPTS);
  await step.cacheKey();
  try {
    await step.apply(() => {});
  } finally {
    await step.release();
  }
  const { ops, newNetwork } = s.host.callsOf('start')[0]!;
  t.true(newNetwork);
  t.true(ops.some((o) => o.op === 'loup'));
  t.like(
    ops.find((o) => o.op === 'user'),
    { uid: 1000, gid: 1000 },
  );
  t.deepEqual(ops.at(-1), { op: 'exec', init: false, args: ['/bin/true'] });
});

test('a non-zero exit from the process is the step failure, with the exit code and output; nothing is committed', async (t) => {
  const s = await setup(t, { onStart: () => ({ stdout: 'working\n', stderr: 'boom\n', code: 3 }) });
  const step = runStep(s.env, stage(), runIns('FROM scratch\nRUN make all\n'), OPTS);
  await step.cacheKey();
  const err = await t.throwsAsync(
    step.apply(() => {}),
    { instanceOf: RunFailedError },
  );
  await step.release();
  const failed = err as RunFailedError;
  t.is(failed.exitCode, 3);
  t.deepEqual(failed.command, ['/bin/sh', '-c', 'make all']);
  t.regex(failed.output, /working/);
  t.regex(failed.output, /boom/);
  t.regex(
    failed.message,
    /^Dockerfile:2: RUN failed: process "\/bin\/sh -c make all" did not complete successfully: exit code: 3$/,
  );
  t.deepEqual(s.outcome, ['discard']);
});

test('RUN refuses what tsbuild does not run, before the step is shown', async (t) => {
  const s = await setup(t);
  t.throws(() => runStep(s.env, stage(), runIns('FROM scratch\nRUN --security=insecure true\n'), OPTS), {
    message: /security\.insecure is not allowed/,
  });
  t.deepEqual(s.host.calls, []);
});

async function runOnce(s: Setup, o: Parameters<typeof runStep>[3]): Promise<void> {
  const step = runStep(s.env, stage(), runIns('FROM scratch\nRUN true\n'), o);
  await step.cacheKey();
  try {
    await step.apply(() => {});
  } finally {
    await step.release();
  }
}

test('RUN runs in a cgroup with the build limits, under the default seccomp filter and the asked ulimits', async (t) => {
  const s = await setup(t);
  const limits = defaultRunLimits();
  await runOnce(s, {
    ...OPTS,
    sandbox: { limits, bestEffort: true, rlimits: [{ name: 'nofile', resource: 7, soft: 64n, hard: 128n }] },
  });
  t.deepEqual(s.host.callsOf('cgroup'), [{ op: 'cgroup', limits }]);
  t.is(limits.pids, 8192);
  t.true((limits.memory ?? 0) > 0);
  const { ops } = s.host.callsOf('start')[0]!;
  t.deepEqual(
    ops.find((o) => o.op === 'rlimit'),
    { op: 'rlimit', resource: 7, soft: 64n, hard: 128n },
  );
  const seccomp = ops.findIndex((o) => o.op === 'seccomp');
  t.true(seccomp > ops.findIndex((o) => o.op === 'nnp'), 'the filter is loaded after no_new_privs');
  t.true(ops.findIndex((o) => o.op === 'rlimit') < ops.findIndex((o) => o.op === 'capset'), 'ulimits before caps go');
});

test('default limits that no cgroup can carry are skipped with one warning; asked-for limits fail the step', async (t) => {
  const s = await setup(t, { cgroupError: new CgroupError('no cgroup hierarchy offers the pids controller') });
  const warnings: string[] = [];
  const sandbox = {
    limits: defaultRunLimits(),
    bestEffort: true,
    rlimits: [],
    onLimitsSkipped: (r: string) => void warnings.push(r),
  };
  await runOnce(s, { ...OPTS, sandbox });
  t.deepEqual(warnings, ['no cgroup hierarchy offers the pids controller']);
  t.is(s.host.callsOf('start').length, 1, 'the step ran');
  await t.throwsAsync(runOnce(s, { ...OPTS, sandbox: { ...sandbox, limits: { pids: 10 }, bestEffort: false } }), {
    message: /no cgroup hierarchy offers the pids controller/,
  });
});

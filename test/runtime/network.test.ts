// runContainer with the sandboxed network (`default`): both executors wait for the user-mode stack before the
// command runs, the host's loopback and interfaces stay out of reach, and the stack is gone when the run ends.
// With deferNetworkTeardown (a build's RUN steps) the run returns once the stack is killed, and networkStacksGone
// waits for it to have exited. Also the rootless preparation of /dev: the host's nodes bound instead of made (forced here, as root).
import { createServer } from 'node:net';
import { PassThrough } from 'node:stream';
import { makeBusyboxRootfs } from '../../fixtures/busybox.js';
import { executorOps } from '../../runtime/exec/program.js';
import { runContainer } from '../../runtime/run.js';
import { processSpec, type ProcessSpecOptions } from '../../runtime/spec.js';
import { networkStacksGone, type Executor } from '../../sys/namespaces.js';
import { userNetTool, UserNetUnavailableError } from '../../sys/usernet.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';
import { processesWith } from '../helpers/procs.js';
import test from 'ava';

async function rootfs(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await makeTempDir('tsbuild-net-rootfs-');
  t.teardown(() => removeDir(dir));
  await makeBusyboxRootfs(dir);
  return dir;
}

async function run(
  root: string,
  executor: Executor,
  cmd: string[],
  opts: Partial<ProcessSpecOptions> = {},
): Promise<{ exitCode: number; out: string }> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (b: Buffer) => chunks.push(b));
  const spec = processSpec({ config: {}, rootfs: root, cmd, network: 'default', ...opts });
  const r = await runContainer(spec, { stdout: out, stderr: out }, { executor });
  return { exitCode: r.exitCode, out: Buffer.concat(chunks).toString() };
}

for (const executor of ['native', 'node'] as const) {
  rootTest(`${executor}: the interface is configured before the command runs; no host loopback, no eth0`, async (t) => {
    const root = await rootfs(t);
    const server = createServer((s) => s.end('host-secret\n'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => server.close());
    const port = (server.address() as { port: number }).port;
    const before = new Set(processesWith('slirp4netns'));
    const r = await run(root, executor, [
      'sh',
      '-c',
      `ip route; ls /sys/class/net; nc -w 2 127.0.0.1 ${port} </dev/null; nc -w 2 10.0.2.2 ${port} </dev/null; true`,
    ]);
    t.is(r.exitCode, 0);
    t.regex(r.out, /^default via 10\.0\.2\.2 dev tap0/m, 'routed from the first instruction');
    t.regex(r.out, /^tap0$/m);
    t.notRegex(r.out, /^eth0$/m);
    t.notRegex(r.out, /host-secret/);
    t.deepEqual(
      processesWith('slirp4netns').filter((p) => !before.has(p)),
      [],
      'the stack is gone when the run ends',
    );
  });
}

rootTest('without CAP_MKNOD the host device nodes are bound onto /dev (forced as root)', async (t) => {
  const root = await rootfs(t);
  const spec = processSpec({ config: {}, rootfs: root, cmd: ['true'], network: 'none' });
  const ops = executorOps(spec, { bindDevices: true });
  t.false(
    ops.some((o) => o.op === 'mknod'),
    'no mknod',
  );
  t.true(ops.some((o) => o.op === 'mount' && o.source === '/dev/null' && o.target.endsWith('/dev/null')));
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (b: Buffer) => chunks.push(b));
  // run it for real: the nodes work
  const { startInNamespaces } = await import('../../sys/namespaces.js');
  const ns = await startInNamespaces({
    ops: executorOps(
      processSpec({
        config: {},
        rootfs: root,
        cmd: ['sh', '-c', 'head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; ls -l /dev/urandom'],
        network: 'none',
      }),
      { bindDevices: true },
    ),
    newNetwork: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  ns.child.stdout?.pipe(out);
  ns.child.stderr?.pipe(out);
  t.is((await ns.exited).code, 0);
  const text = Buffer.concat(chunks).toString();
  t.regex(text, /^4$/m);
  t.regex(text, /^null-ok$/m);
  t.regex(text, /^crw-rw-rw-\s+1\s+\S+\s+\S+\s+1,\s+9 /m);
});

rootTest(
  'with deferNetworkTeardown the run returns once the stack is killed; networkStacksGone waits until it has exited',
  async (t) => {
    const root = await rootfs(t);
    const before = new Set(processesWith('slirp4netns'));
    const spec = processSpec({ config: {}, rootfs: root, cmd: ['ip', 'addr', 'show', 'tap0'], network: 'default' });
    const out = new PassThrough();
    const r = await runContainer(spec, { stdout: out, stderr: out }, { deferNetworkTeardown: true });
    t.is(r.exitCode, 0, 'the interface was there');
    await networkStacksGone();
    t.deepEqual(
      processesWith('slirp4netns').filter((p) => !before.has(p)),
      [],
      'no stack left once networkStacksGone resolves',
    );
  },
);

test('without slirp4netns, the sandboxed network fails with one line naming the package', (t) => {
  t.is(
    userNetTool((tool) => (tool === 'slirp4netns' ? '/usr/bin/slirp4netns' : undefined)),
    'slirp4netns',
  );
  const err = t.throws(() => userNetTool(() => undefined), { instanceOf: UserNetUnavailableError });
  t.regex(err!.message, /apt-get install -y slirp4netns/);
  t.regex(err!.message, /--network none or --network host/);
  t.notRegex(err!.message, /\n/);
});

// runContainer on the recording FakeHost: the executor program it hands the host, the cgroup it asks for, and the
// exit status and output passed through. Nothing is started in namespaces, so these run without root (and as root).
import test from 'ava';
import { PassThrough } from 'node:stream';
import { runContainer } from '../../runtime/run.js';
import { processSpec } from '../../runtime/spec.js';
import { FakeHost } from '../../sys/fake-host.js';
import type { Op } from '../../sys/namespaces.js';

function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (b: Buffer) => chunks.push(b));
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

test('runContainer starts the executor program once through the host and passes its exit code through', async (t) => {
  let seen: Op[] = [];
  const host = new FakeHost({
    onStart: (ops) => {
      seen = ops;
      return { stdout: 'hello', stderr: 'oops', code: 3 };
    },
  });
  const out = collect();
  const err = collect();
  const spec = processSpec({ config: {}, rootfs: '/nonexistent/rootfs', cmd: ['sh', '-c', 'exit 3'] });
  const r = await runContainer(spec, { stdout: out.stream, stderr: err.stream }, { host, forwardSignals: false });
  t.is(r.exitCode, 3);
  t.is(out.text(), 'hello');
  t.is(err.text(), 'oops');
  const starts = host.callsOf('start');
  t.is(starts.length, 1);
  t.is(starts[0]!.ops, seen);
  t.true(starts[0]!.newNetwork, 'network none: a new network namespace');
  const ops = starts[0]!.ops;
  t.true(
    ops.some((o) => o.op === 'pivot'),
    'pivot_root into the rootfs',
  );
  t.true(
    ops.some((o) => o.op === 'mount' && o.fstype === 'proc'),
    '/proc is mounted',
  );
  t.true(
    ops.some((o) => o.op === 'mount' && o.source === '/nonexistent/rootfs'),
    'the rootfs is bound onto itself',
  );
  t.deepEqual(ops.at(-1), { op: 'exec', init: false, args: ['sh', '-c', 'exit 3'] });
  t.deepEqual(host.callsOf('cgroup'), [], 'no limits, no cgroup');
});

test('runContainer asks the host for a cgroup when a limit is set', async (t) => {
  const host = new FakeHost();
  const spec = processSpec({ config: {}, rootfs: '/nonexistent/rootfs', cmd: ['true'], limits: { pids: 10 } });
  const r = await runContainer(spec, { stdout: 'ignore', stderr: 'ignore' }, { host, forwardSignals: false });
  t.is(r.exitCode, 0);
  t.deepEqual(host.callsOf('cgroup'), [{ op: 'cgroup', limits: { pids: 10 } }]);
  t.is(host.callsOf('start').length, 1);
});

test.serial('a SIGTERM that arrives while the container starts is passed on to it once it has started', async (t) => {
  const host = new FakeHost({ onStart: () => ({ code: 0 }) });
  const forwarded: NodeJS.Signals[] = [];
  const start = host.startInNamespaces.bind(host);
  host.startInNamespaces = async (opts) => {
    // the container runs (and may say it is ready) before the start resolves in this process
    process.emit('SIGTERM', 'SIGTERM');
    const ns = await start(opts);
    return { ...ns, kill: (s) => void forwarded.push(s) };
  };
  const before = process.listenerCount('SIGTERM');
  const spec = processSpec({ config: {}, rootfs: '/nonexistent/rootfs', cmd: ['true'] });
  const r = await runContainer(spec, { stdout: 'ignore', stderr: 'ignore' }, { host });
  t.is(r.exitCode, 0);
  t.deepEqual(forwarded, ['SIGTERM']);
  t.is(process.listenerCount('SIGTERM'), before, 'the handlers go with the container');
});

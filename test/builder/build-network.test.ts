// The sandboxed network of RUN steps (issue 11): `--network default` gives each RUN a network namespace of its own
// with outbound access through a user-mode stack (slirp4netns), and nothing of the host's: neither its
// loopback services nor its interfaces. As root, on a busybox base; the stack processes must all be gone after.
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from '../../builder/build.js';
import { RunFailedError } from '../../builder/steps/run.js';
import { DockerfileError } from '../../builder/dockerfile/errors.js';
import { FakeHost } from '../../sys/fake-host.js';
import { which } from '../../sys/exec.js';
import { makeTempDir, removeDir, repoRoot, rootTest } from '../helpers/index.js';
import { processesWith } from '../helpers/procs.js';
import { busyboxStore } from './build-harness.js';

async function context(t: { teardown(fn: () => unknown): void }, dockerfile: string): Promise<string> {
  const dir = await makeTempDir('tsbuild-net-ctx-');
  t.teardown(() => removeDir(dir));
  writeFileSync(join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

async function listen(t: { teardown(fn: () => unknown): void }): Promise<number> {
  const server: Server = createServer((s) => s.end('host-secret\n'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as { port: number }).port;
}

/** parentOf reads a process's parent pid (undefined once it is gone). */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** the user-mode stacks this test process started (directly or through a CLI it spawned) still running; other test
 * files run builds at the same time, so theirs do not count */
function stacks(): number[] {
  const ours = (pid: number): boolean => {
    for (let p = parentOf(pid), depth = 0; p !== undefined && p > 1 && depth < 8; p = parentOf(p), depth++)
      if (p === process.pid) return true;
    return false;
  };
  return processesWith('slirp4netns').filter((p) => p !== process.pid && ours(p));
}

/** alive tells whether a process still exists (and is not a zombie). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

// Reachability of the Debian archive decides, before declaring, whether the outbound test can run.
const archive = await fetch('http://deb.debian.org/debian/dists/bookworm/Release', {
  method: 'HEAD',
  signal: AbortSignal.timeout(10_000),
})
  .then((r) => r.ok)
  .catch(() => false);
const tools = ['slirp4netns'].filter((tool) => which(tool));

for (const tool of tools) {
  const outbound = archive ? rootTest : rootTest.skip;
  outbound(
    `${tool}: a RUN step reaches the Debian archive by name but not the host's 127.0.0.1 service, and sees no eth0` +
      (archive ? '' : ' (skipped: deb.debian.org is unreachable from this host)'),
    async (t) => {
      const store = await busyboxStore(t);
      const port = await listen(t);
      const ctx = await context(
        t,
        [
          'FROM busybox:test',
          `RUN (nc -w 3 127.0.0.1 ${port} </dev/null; nc -w 3 10.0.2.2 ${port} </dev/null) > /host.txt 2>&1; true`,
          'RUN ls /sys/class/net > /ifaces',
          'RUN wget -q -O /release http://deb.debian.org/debian/dists/bookworm/Release',
          'RUN cat /host.txt /ifaces; head -3 /release',
          '',
        ].join('\n'),
      );
      let out = '';
      const before = new Set(stacks());
      await build({
        store,
        context: ctx,
        onEvent: (e) => {
          if (e.type === 'log') out += e.data;
        },
      });
      t.notRegex(out, /host-secret/, "the host's loopback service is out of reach");
      t.regex(out, /^Origin: Debian$/m, 'the archive answered');
      t.regex(out, /^tap0$/m);
      t.notRegex(out, /^eth0$/m, "the host's interfaces are not there");
      t.deepEqual(
        stacks().filter((p) => !before.has(p)),
        [],
        'no stack process is left',
      );
    },
  );
}

rootTest('a failed RUN and a kill -9 of tsbuild leave no user-mode stack behind', async (t) => {
  const store = await busyboxStore(t);
  const before = new Set(stacks());
  const failing = await context(t, 'FROM busybox:test\nRUN ip addr show tap0 && exit 3\n');
  const err = await t.throwsAsync(build({ store, context: failing }), { instanceOf: RunFailedError });
  t.is((err as RunFailedError).exitCode, 3, 'the step ran with its interface configured');
  t.deepEqual(
    stacks().filter((p) => !before.has(p)),
    [],
  );

  // The CLI, killed while a step sleeps: slirp4netns watches its exit fd.
  const sleeping = await context(t, 'FROM busybox:test\nRUN touch /tmp/started; sleep 600\n');
  const cli = spawn(
    process.execPath,
    ['--', join(repoRoot, 'bin', 'tsbuild.js'), '--root', store.root, 'build', sleeping],
    {
      stdio: 'ignore',
    },
  );
  const gone = new Promise((resolve) => cli.on('exit', resolve));
  let mine: number[] = [];
  for (let i = 0; i < 600 && mine.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    mine = stacks().filter((p) => !before.has(p));
  }
  t.true(mine.length > 0, 'the step got a stack');
  for (const p of processesWith(sleeping)) process.kill(p, 'SIGKILL');
  await gone;
  // the killed CLI's stack is no longer our descendant (re-parented): follow the pids seen while it ran
  for (let i = 0; i < 100 && mine.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
  t.deepEqual(mine.filter(alive), [], 'the stack exited with tsbuild');
  // the killed build's step root stays mounted until the store's next build sweeps it: detach it for the teardown
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const at = line.split(' ')[4];
    if (at?.startsWith(`${store.root}/`)) spawnSync('umount', ['-l', at]);
  }
});

rootTest('RUN --network=host needs root or --allow network.host, in BuildKit words', async (t) => {
  const store = await busyboxStore(t);
  const ctx = await context(t, 'FROM busybox:test\nRUN --network=host ls /sys/class/net > /ifaces\n');
  const user = new FakeHost({ caps: { root: false } });
  const err = await t.throwsAsync(build({ store, context: ctx, host: user }), { instanceOf: DockerfileError });
  t.regex(err!.message, /network\.host is not allowed/);
  t.regex(err!.message, /:2\b/, 'names the line');
  await t.throwsAsync(build({ store, context: ctx, network: 'host', host: user }), {
    message: /network\.host is not allowed/,
  });
  await t.throwsAsync(build({ store, context: ctx, allow: ['bogus'] }), {
    message: /--allow bogus: unknown entitlement/,
  });
  // as root it runs (host network: eth0 is there)
  let out = '';
  await build({
    store,
    context: await context(t, 'FROM busybox:test\nRUN --network=host ls /sys/class/net\n'),
    onEvent: (e) => {
      if (e.type === 'log') out += e.data;
    },
  });
  t.regex(out, /^eth0$/m);
});

// What a RUN step sees inside its sandbox (issue 11): BuildKit's hostname, /etc/hosts and /etc/resolv.conf, a real
// tmpfs for RUN --mount=type=tmpfs and /dev/shm (sized by --shm-size), the primary group in the groups list
// (CVE-2023-25173), and cache mounts that start empty with --no-cache. As root, on a busybox base.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, type BuildOptions } from '../../builder/build.js';
import { resolvConfText } from '../../builder/steps/run.js';
import { makeTempDir, removeDir, rootTest } from '../helpers/index.js';
import { busyboxStore } from './build-harness.js';
import test from 'ava';

async function output(
  t: { teardown(fn: () => unknown): void },
  dockerfile: string,
  opts: Partial<BuildOptions> = {},
): Promise<string> {
  const ctx = await makeTempDir('tsbuild-sbx-ctx-');
  t.teardown(() => removeDir(ctx));
  writeFileSync(join(ctx, 'Dockerfile'), dockerfile);
  const store = opts.store ?? (await busyboxStore(t));
  let out = '';
  await build({
    ...opts,
    store,
    context: ctx,
    onEvent: (e) => {
      if (e.type === 'log') out += e.data;
    },
  });
  return out;
}

rootTest('the hostname is buildkitsandbox, or BUILDKIT_SANDBOX_HOSTNAME, in /etc/hosts too', async (t) => {
  const df = 'FROM busybox:test\nRUN hostname; cat /etc/hosts\n';
  t.regex(
    await output(t, df),
    /^buildkitsandbox\n127\.0\.0\.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost/,
  );
  const named = await output(t, df, {
    buildArgs: { BUILDKIT_SANDBOX_HOSTNAME: 'box1' },
    addHosts: [{ host: 'extra', ip: '10.1.2.3' }],
  });
  t.regex(named, /^box1\n127\.0\.0\.1\tlocalhost box1\n::1\t[^\n]*\n10\.1\.2\.3\textra\n/);
});

test("resolv.conf is the host's without loopback nameservers, else Google's (BuildKit's rules)", (t) => {
  const files: Record<string, string> = {
    '/etc/resolv.conf': 'nameserver 127.0.0.1\nnameserver 10.9.9.9\nsearch a.example\noptions ndots:2\n',
  };
  const read = (p: string): string | undefined => files[p];
  t.is(resolvConfText('default', read), 'nameserver 10.9.9.9\nsearch a.example\noptions ndots:2\n');
  t.is(resolvConfText('host', read), 'nameserver 127.0.0.1\nnameserver 10.9.9.9\nsearch a.example\noptions ndots:2\n');
  files['/etc/resolv.conf'] = 'nameserver 127.0.0.53\n';
  files['/run/systemd/resolve/resolv.conf'] = 'nameserver 192.0.2.53\n';
  t.is(resolvConfText('none', read), 'nameserver 192.0.2.53\n');
  delete files['/run/systemd/resolve/resolv.conf'];
  t.regex(resolvConfText('default', read), /^nameserver 8\.8\.8\.8\nnameserver 8\.8\.4\.4\n/);
});

rootTest('RUN --mount=type=tmpfs and /dev/shm are real tmpfs mounts; --shm-size sizes /dev/shm', async (t) => {
  const out = await output(
    t,
    'FROM busybox:test\nRUN --mount=type=tmpfs,target=/scratch,size=8m grep -E " /(scratch|dev/shm) " /proc/mounts | sort\n',
    { shmSize: 32 << 20 },
  );
  t.regex(out, /^shm \/dev\/shm tmpfs [^\n]*size=32768k/m);
  t.regex(out, /^tmpfs \/scratch tmpfs [^\n]*size=8192k/m);
});

rootTest('a RUN without USER, or with a USER without group, has its primary group in its groups', async (t) => {
  const out = await output(
    t,
    [
      'FROM busybox:test',
      'RUN echo "app:x:1000:1000::/home/app:/bin/sh" >> /etc/passwd && echo "app:x:1000:" >> /etc/group',
      'RUN grep ^Groups: /proc/self/status',
      'USER app',
      'RUN grep ^Groups: /proc/self/status',
      'USER 1000:2000',
      'RUN grep ^Groups: /proc/self/status',
      '',
    ].join('\n'),
  );
  t.deepEqual(
    out.match(/^Groups:.*$/gm)?.map((l) => l.split(/\s+/).slice(1).filter(Boolean).join(',')),
    ['0', '1000', '2000'],
  );
});

rootTest('--no-cache starts cache mounts empty', async (t) => {
  const store = await busyboxStore(t);
  const df = (n: number): string => `FROM busybox:test\nRUN --mount=type=cache,target=/c ls /c; touch /c/mark${n}\n`;
  await output(t, df(1), { store });
  t.regex(await output(t, df(2), { store }), /mark1/, 'the cache persists between builds');
  t.notRegex(await output(t, df(3), { store, noCache: true }), /mark/, 'but --no-cache starts it empty');
});

// Rootless mode (issue 11): an ordinary user, made here with a subordinate id range, builds, runs and cleans up
// with the same results as root. The user's commands re-execute inside a user namespace of their own
// (sys/userns.ts); what they write must be what root writes: the layer digests of fixtures/rootless are compared.
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { hostileLayers, tarSync } from '../../fixtures/hostile-layers.js';
import { debianStore } from '../helpers/images.js';
import { type CliResult, makeTempDir, removeDir, repoRoot, rootTest, tsbuild } from '../helpers/index.js';
import { makeUser, type TestUser } from '../helpers/users.js';

const SDE = { SOURCE_DATE_EPOCH: '1700000000' };
const CONTEXT = join(repoRoot, 'fixtures', 'rootless');

function output(r: CliResult): string {
  return `exit ${r.code}\n${r.stdout}\n${r.stderr}`.slice(-4000);
}

/** A directory every user may read (the temp dirs of the tests are 0700). */
async function sharedDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await makeTempDir('tsbuild-rootless-');
  t.teardown(() => removeDir(dir));
  await chmod(dir, 0o755);
  return dir;
}

/** The Debian base as a rootfs tar that root and the user both import (so both start from the same layer). */
async function debianTar(dir: string): Promise<string> {
  const store = await debianStore();
  const tree = join(dir, 'tree');
  const u = await tsbuild(['--root', store, 'unpack', 'debian:bookworm', tree]);
  if (u.code !== 0) throw new Error(`unpack: ${output(u)}`);
  const tar = join(dir, 'debian.tar');
  execFileSync('tar', ['-C', tree, '--numeric-owner', '--xattrs', '-cf', tar, '.']);
  await removeDir(tree);
  await chmod(tar, 0o644);
  return tar;
}

interface Inspected {
  digest: string;
  manifest: { layers: Array<{ digest: string }> };
  config: { rootfs: { diff_ids: string[] }; config: { User?: string } };
}

async function inspect(run: (args: string[]) => Promise<CliResult>, name: string): Promise<Inspected> {
  const r = await run(['inspect', name]);
  if (r.code !== 0) throw new Error(`inspect: ${output(r)}`);
  const parsed = JSON.parse(r.stdout) as Inspected | Inspected[];
  return Array.isArray(parsed) ? (parsed[0] as Inspected) : parsed;
}

/** processesOf lists the processes whose real uid is the user's or in its subordinate range (uid, pid, command). */
function processesOf(user: TestUser): string[] {
  const mine = (uid: number): boolean =>
    uid === user.uid ||
    (user.subuid !== undefined && uid >= user.subuid.start && uid < user.subuid.start + user.subuid.count);
  return execFileSync('ps', ['-e', '-o', 'uid=,pid=,args='])
    .toString()
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && mine(Number(l.split(/\s+/)[0])));
}

/** leftovers lists what a finished command may not leave in the user's store: temp dirs and containers. */
async function leftovers(user: TestUser): Promise<string[]> {
  const found: string[] = [];
  for (const d of ['tmp', 'containers']) {
    const names = await readdir(join(user.store, d)).catch(() => [] as string[]);
    found.push(...names.map((n) => `${d}/${n}`));
  }
  return found;
}

let user: TestUser | undefined;
let baseDir: string | undefined;
let baseTar = '';
rootTest.before(async () => {
  user = makeUser('tsbuild-rl');
  // every test starts from debian:rootless in the user's store, imported from a tar that root imports too
  baseDir = await makeTempDir('tsbuild-rootless-base-');
  await chmod(baseDir, 0o755);
  baseTar = await debianTar(baseDir);
  const i = await user.tsbuild(['import', baseTar, 'debian:rootless'], { env: SDE });
  if (i.code !== 0) throw new Error(`import: ${output(i)}`);
});
rootTest.after.always(async () => {
  user?.remove();
  if (baseDir) await removeDir(baseDir);
});

rootTest(
  'an ordinary user builds layers byte-identical to the ones root builds: chown to other ids, fifos, setuid bits, useradd, COPY --chown, whiteouts and opaque directories',
  async (t) => {
    const u = user as TestUser;
    const dir = await sharedDir(t);
    const tar = baseTar;

    const rootStore = join(dir, 'root-store');
    await mkdir(rootStore);
    const asRoot = (args: string[]): Promise<CliResult> => tsbuild(['--root', rootStore, ...args], { env: SDE });
    const asUser = (args: string[]): Promise<CliResult> => u.tsbuild(args, { env: SDE });

    for (const run of [asRoot, asUser]) {
      const i = await run(['import', tar, 'debian:rootless']);
      t.is(i.code, 0, output(i));
      const b = await run(['build', '--progress', 'plain', '-t', 'rl:1', CONTEXT]);
      t.is(b.code, 0, output(b));
      if (b.code !== 0) return;
    }
    const r = await inspect(asRoot, 'rl:1');
    const ur = await inspect(asUser, 'rl:1');
    t.deepEqual(ur.config.rootfs.diff_ids, r.config.rootfs.diff_ids, 'the same uncompressed layers');
    t.deepEqual(
      ur.manifest.layers.map((l) => l.digest),
      r.manifest.layers.map((l) => l.digest),
      'the same blobs',
    );
    t.is(ur.digest, r.digest, 'the same image');

    // what the image's processes see: its USER and the owners it recorded, never host ids
    const shown = await asUser([
      'run',
      '--rm',
      'rl:1',
      'sh',
      '-c',
      'id; stat -c "%n %u:%g %a %F" /data /data/sub /data/fifo /usr/local/bin/suid /usr/local/bin/sgid /opt/owned.txt /opt/nobody.txt',
    ]);
    t.is(shown.code, 0, output(shown));
    t.regex(shown.stdout, /^uid=2000\(app\) gid=2000\(app\) groups=2000\(app\)/m);
    t.regex(shown.stdout, /^\/data 2000:2000 755 directory$/m);
    t.regex(shown.stdout, /^\/data\/sub 4242:4343 1777 directory$/m);
    t.regex(shown.stdout, /^\/data\/fifo 65534:65534 640 fifo$/m);
    t.regex(shown.stdout, /^\/usr\/local\/bin\/suid 0:0 4755 regular file$/m);
    t.regex(shown.stdout, /^\/usr\/local\/bin\/sgid 0:2000 2755 regular file$/m);
    t.regex(shown.stdout, /^\/opt\/owned.txt 1234:5678 644 regular file$/m);
    t.regex(shown.stdout, /^\/opt\/nobody.txt 65534:65534 644 regular file$/m);

    t.deepEqual(await leftovers(u), [], 'no temp dir or container left in the store');
    t.deepEqual(processesOf(u), [], 'no process left');
  },
);

rootTest('a rootless RUN step is the user namespace root, never the host root, and cannot make devices', async (t) => {
  const u = user as TestUser;
  const dir = await sharedDir(t);
  await writeFile(
    join(dir, 'Dockerfile'),
    'FROM debian:rootless\nRUN cat /proc/self/uid_map && (mknod /kvm c 10 232 && echo MADE || echo REFUSED)\n',
  );
  const b = await u.tsbuild(['build', '--progress', 'plain', '--no-cache', dir]);
  t.is(b.code, 0, output(b));
  t.regex(b.stderr, /\s0\s+[1-9]\d*\s+1\s*$/m, 'root in the container is the user, nothing else');
  t.notRegex(b.stderr, /\s0\s+0\s+4294967295/, 'not the host identity map');
  t.regex(b.stderr, /REFUSED/);
});

rootTest(
  "a rootless RUN step cannot reach the host's 127.0.0.1 service, while apt-get update works in the same build",
  async (t) => {
    const u = user as TestUser;
    const server = createServer((c) => c.end('host-secret\n'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const port = (server.address() as AddressInfo).port;
    const dir = await sharedDir(t);
    await writeFile(
      join(dir, 'Dockerfile'),
      [
        'FROM debian:rootless',
        `RUN for h in 127.0.0.1 10.0.2.2; do (timeout 3 bash -c "cat < /dev/tcp/$h/${port}" && echo "REACHED $h") || echo "BLOCKED $h"; done`,
        'RUN apt-get update -q && echo APT-OK',
        '',
      ].join('\n'),
    );
    const b = await u.tsbuild(['build', '--progress', 'plain', '--no-cache', dir]);
    t.is(b.code, 0, output(b));
    t.notRegex(b.stderr, /host-secret|REACHED \d/);
    t.regex(b.stderr, /BLOCKED 127\.0\.0\.1/);
    t.regex(b.stderr, /BLOCKED 10\.0\.2\.2/);
    t.regex(b.stderr, /APT-OK/);
  },
);

rootTest(
  'tsbuild unshare gives a shell in the namespace, where tsbuild mount views stay mounted; outside it, mount says so',
  async (t) => {
    const u = user as TestUser;
    const outside = await u.tsbuild(['mount', 'debian:rootless']);
    t.is(outside.code, 1, output(outside));
    t.regex(outside.stderr, /^error: tsbuild mount as an ordinary user works inside `tsbuild unshare`/m);
    const cli = `${process.execPath} -- ${join(repoRoot, 'bin', 'tsbuild.js')}`;
    const inside = await u.tsbuild([
      'unshare',
      'sh',
      '-c',
      `id -u; p=$(${cli} mount debian:rootless) && cat "$p/etc/debian_version" && ${cli} umount "$p" && echo UMOUNTED`,
    ]);
    t.is(inside.code, 0, output(inside));
    t.regex(inside.stdout, /^0$/m, 'root in the namespace');
    t.regex(inside.stdout, /^12\.\d+$/m, 'the view shows the image');
    t.regex(inside.stdout, /^UMOUNTED$/m);
    const status = await u.tsbuild(['unshare', 'sh', '-c', 'exit 7']);
    t.is(status.code, 7, 'the exit status passes through');
  },
);

rootTest('resource limits as an ordinary user are applied or refused with a clear error, never ignored', async (t) => {
  const u = user as TestUser;
  const dir = await sharedDir(t);
  await writeFile(
    join(dir, 'Dockerfile'),
    'FROM debian:rootless\nRUN cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes\n',
  );
  const b = await u.tsbuild(['build', '--progress', 'plain', '--no-cache', '--memory', '64m', dir]);
  if (b.code === 0) t.regex(b.stderr, /\b67108864\b/, 'the limit is in force');
  else {
    t.is(b.code, 1, output(b));
    t.regex(b.stderr, /^error: .*(delegated cgroup v2|cgroup v2)/m);
  }
});

rootTest('a store another user owns gives "permission denied" at once to a rootless user', async (t) => {
  const u = user as TestUser;
  const dir = await sharedDir(t);
  const store = join(dir, 'root-store');
  const i = await tsbuild(['--root', store, 'images']);
  t.is(i.code, 0, output(i));
  const r = await u.tsbuild(['--root', store, 'images']);
  t.is(r.code, 1, output(r));
  t.regex(r.stderr, /^error: .*permission denied.*root-store/im);
  t.notRegex(r.stderr, /lock/i);
});

rootTest('hostile layers stay contained when a rootless user applies them', async (t) => {
  const u = user as TestUser;
  const dir = await sharedDir(t);
  const target = join(dir, 'host');
  await mkdir(target);
  await writeFile(join(target, 'canary'), 'canary\n');
  await chmod(target, 0o777); // even a directory the user could write to stays untouched
  for (const [name, make] of Object.entries(hostileLayers)) {
    const tar = join(dir, `${name}.tar`);
    await writeFile(tar, make(target));
    await chmod(tar, 0o644);
    const imported = await u.tsbuild(['import', tar, `hostile:${name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`]);
    if (imported.code === 0) {
      const out = join(u.home, `unpacked-${name.replace(/[^a-zA-Z0-9]+/g, '-')}`);
      const unpacked = await u.tsbuild(['unpack', imported.stdout.trim(), out]);
      t.not(unpacked.code, 0, `${name}: applying must fail\n${output(unpacked)}`);
      t.regex(unpacked.stderr, /^error: /m, name);
    } else {
      t.is(imported.code, 1, `${name}: ${output(imported)}`);
    }
    t.deepEqual(await readdir(target), ['canary'], `${name}: nothing written next to the canary`);
  }
  t.deepEqual(await leftovers(u), []);
});

rootTest(
  'a layer that carries a device node applies rootless with a warning naming it, and nothing else is lost',
  async (t) => {
    const u = user as TestUser;
    const dir = await sharedDir(t);
    const tar = join(dir, 'dev.tar');
    await writeFile(
      tar,
      tarSync([
        { name: 'bin/', type: 'directory', mode: 0o755 },
        { name: 'bin/busybox', data: await readFile('/bin/busybox'), mode: 0o755 },
        { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
        { name: 'dev/', type: 'directory', mode: 0o755 },
        { name: 'dev/kvm', type: 'character-device', devmajor: 10, devminor: 232, mode: 0o666 },
        { name: 'etc/', type: 'directory', mode: 0o755 },
        { name: 'etc/kept', data: 'kept\n', mode: 0o640, uid: 7, gid: 8 },
      ]),
    );
    await chmod(tar, 0o644);
    const i = await u.tsbuild(['import', tar, 'devices:1']);
    t.is(i.code, 0, output(i));
    // the layer is applied when the image enters the store (its snapshot), so import says it
    t.regex(i.stderr, /^warning: skipped character-device 10:232 at dev\/kvm: creating devices needs root/m);
    const r = await u.tsbuild(['run', '--rm', 'devices:1', '/bin/busybox', 'ls', '-ln', '/etc/kept', '/dev']);
    t.is(r.code, 0, output(r));
    t.regex(r.stdout, /^-rw-r-----\s+1 7\s+8\s+5 .*\/etc\/kept$/m, 'the rest of the layer is there, owners too');
  },
);

for (const kind of ['build', 'run', 'export'] as const) {
  rootTest(`kill -9 of a rootless ${kind} leaves no process, and the next command leaves no temp dir`, async (t) => {
    const u = user as TestUser;
    const dir = await sharedDir(t);
    await writeFile(join(dir, 'Dockerfile'), 'FROM debian:rootless\nRUN echo STARTED && sleep 300\n');
    const pidFile = join(dir, 'pid');
    await chmod(dir, 0o777);
    const cli = `${process.execPath} -- ${join(repoRoot, 'bin', 'tsbuild.js')}`;
    // export: the image has no kernel, so the export installs one with apt in a rootless container
    const command =
      kind === 'build'
        ? `build --progress plain --no-cache ${dir}`
        : kind === 'run'
          ? 'run --rm debian:rootless sleep 300'
          : `export debian:rootless -o ${join(dir, 'disk.qcow2')}`;
    const marker = kind === 'export' ? /\s(apt-get|\/usr\/bin\/dpkg|\/usr\/lib\/apt\/methods\/http)\b/ : /\ssleep 300$/;
    const started = u.run(['sh', '-c', `echo $$ > ${pidFile}; exec ${cli} ${command}`]);
    // wait for the step (or the container) to run, then kill the command the user started
    const deadline = Date.now() + 120_000;
    let seen = false;
    while (!seen && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      seen = processesOf(u).some((l) => marker.test(l));
    }
    t.true(seen, 'the process started');
    const pid = Number(execFileSync('cat', [pidFile]).toString());
    process.kill(pid, 'SIGKILL');
    // checked before waiting for runuser: a process that outlived the kill would still be sleeping
    let left = processesOf(u);
    for (let i = 0; i < 40 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 250));
      left = processesOf(u);
    }
    t.deepEqual(left, [], 'the inner CLI, the executor, the network stack and the process are gone');
    await started;
    const next = await u.tsbuild(['prune', '-f']);
    t.is(next.code, 0, output(next));
    t.deepEqual(await leftovers(u), [], 'the next command removed what the killed one left');
  });
}

// The container sandbox like docker's default (issue 14, part 2): the device allow-list, the seccomp filter and
// ulimits, through both namespace executors and through runc with a bundle, as root.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { busyboxAvailable, makeBusyboxRootfs } from '../../fixtures/busybox.js';
import { runtimeConfig, runtimeConfigJson } from '../../runtime/bundle.js';
import { runContainer } from '../../runtime/run.js';
import { parseSeccompProfile } from '../../runtime/seccomp.js';
import { processSpec, type ProcessSpecOptions } from '../../runtime/spec.js';
import type { Executor } from '../../sys/namespaces.js';
import { isRoot, makeTempDir, removeDir, rootTest } from '../helpers/index.js';

const EXECUTORS: Executor[] = ['native', 'node'];
const enabled = isRoot && busyboxAvailable();
const serial = busyboxAvailable() ? rootTest : (test.serial.skip as typeof test.serial);
const which = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

let rootfs = '';
test.before(async () => {
  if (!enabled) return;
  rootfs = await makeTempDir('tsbuild-sandbox-');
  chmodSync(rootfs, 0o755);
  await makeBusyboxRootfs(rootfs);
});
test.after.always(async () => {
  if (rootfs) await removeDir(rootfs);
});

async function run(
  executor: Executor,
  script: string,
  opts: Partial<ProcessSpecOptions> = {},
): Promise<{ exitCode: number; out: string }> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (b: Buffer) => chunks.push(b));
  const spec = processSpec({ config: {}, rootfs, cmd: ['sh', '-c', script], hostname: 'sandbox-test', ...opts });
  const r = await runContainer(spec, { stdout: out, stderr: out }, { executor });
  return { exitCode: r.exitCode, out: Buffer.concat(chunks).toString() };
}

function both(title: string, fn: (t: ExecutionContext, executor: Executor) => Promise<void>): void {
  for (const executor of EXECUTORS) serial(`${title} (${executor} executor)`, (t) => fn(t, executor));
}

// `cat` of a node that mknod made: "OPEN" when it could be read, the shell's error otherwise.
const probe = (path: string): string =>
  `if head -c 1 ${path} >/dev/null 2>&1; then echo OPEN ${path}; else echo DENIED ${path}; fi`;

both('device nodes made in the container are created but cannot be opened, the default ones can', async (t, ex) => {
  const r = await run(
    ex,
    [
      'rm -f /made-null /tmp/kvm', // the rootfs is shared by both executors' runs
      'mknod /made-null c 1 3 && echo made',
      probe('/made-null'),
      'mknod /dev/made-zero c 1 5 && echo made',
      probe('/dev/made-zero'),
      'mknod /tmp/kvm c 10 232 && echo made',
      probe('/tmp/kvm'),
      probe('/dev/null'),
      probe('/dev/zero'),
      probe('/dev/urandom'),
      'echo x > /dev/null && echo wrote /dev/null',
    ].join('; '),
  );
  t.is(r.exitCode, 0, r.out);
  t.is(
    r.out,
    [
      'made',
      'DENIED /made-null',
      'made',
      'DENIED /dev/made-zero',
      'made',
      'DENIED /tmp/kvm',
      'OPEN /dev/null',
      'OPEN /dev/zero',
      'OPEN /dev/urandom',
      'wrote /dev/null',
      '',
    ].join('\n'),
  );
});

both("a volume does not carry the host's devices into the container", async (t, ex) => {
  const r = await run(ex, [probe('/hostdev/zero'), probe('/hostdev/null')].join('; '), {
    volumes: ['/dev:/hostdev:ro'],
  });
  t.is(r.out, 'DENIED /hostdev/zero\nDENIED /hostdev/null\n');
});

both('--device gives the container one host device, under the name asked for', async (t, ex) => {
  const r = await run(ex, `${probe('/dev/myzero')}; ls -l /dev/myzero | cut -c1`, {
    devices: ['/dev/zero:/dev/myzero'],
  });
  t.is(r.out, 'OPEN /dev/myzero\nc\n');
});

both('the default seccomp filter refuses new user namespaces, mounts and the keyring', async (t, ex) => {
  const r = await run(
    ex,
    [
      'grep "^Seccomp:" /proc/self/status',
      'unshare -U true; echo unshare=$?',
      'unshare -r true; echo unshare-root=$?',
      'mount -t tmpfs none /mnt; echo mount=$?',
    ].join('; '),
  );
  t.regex(r.out, /^Seccomp:\s+2$/m);
  t.regex(r.out, /unshare\(0x10000000\): Operation not permitted/);
  t.regex(r.out, /^unshare=1$/m);
  t.regex(r.out, /^unshare-root=1$/m);
  t.regex(r.out, /^mount=\d+$/m);
  t.notRegex(r.out, /^mount=0$/m);
});

both('--security-opt seccomp=unconfined runs without a filter', async (t, ex) => {
  const r = await run(ex, 'grep "^Seccomp:" /proc/self/status', { seccomp: 'unconfined' });
  t.regex(r.out, /^Seccomp:\s+0$/m);
});

both('a profile file replaces the default one', async (t, ex) => {
  const profile = parseSeccompProfile(
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }],
    }),
    'test.json',
  );
  const r = await run(ex, 'mkdir /tmp/x; echo mkdir=$?; unshare -U true; echo unshare=$?', { seccomp: profile });
  t.regex(r.out, /Permission denied/);
  t.regex(r.out, /^mkdir=1$/m);
  t.regex(r.out, /^unshare=0$/m); // this profile allows it (the host allows unprivileged user namespaces)
});

both('--ulimit sets soft and hard limits', async (t, ex) => {
  const r = await run(ex, 'ulimit -n; ulimit -Hn; ulimit -c', { ulimits: ['nofile=123:456', 'core=0'] });
  t.is(r.out, '123\n456\n0\n');
});

const runcTest = enabled && which('runc') ? test.serial : (test.serial.skip as typeof test.serial);

runcTest("runc accepts the bundle's seccomp section, device list and rlimits, and enforces them", async (t) => {
  const bundle = await makeTempDir('tsbuild-bundle-');
  t.teardown(() => removeDir(bundle));
  const root = join(bundle, 'rootfs');
  await makeBusyboxRootfs(root);
  chmodSync(bundle, 0o755);
  const spec = processSpec({
    config: {},
    rootfs: root,
    cmd: ['sh', '-c', 'grep "^Seccomp:" /proc/self/status; unshare -U true; echo unshare=$?; ulimit -n'],
    ulimits: ['nofile=321:654'],
  });
  const config = runtimeConfig(spec) as { linux: { seccomp?: { syscalls: unknown[] } } };
  t.truthy(config.linux.seccomp?.syscalls.length);
  writeFileSync(join(bundle, 'config.json'), runtimeConfigJson(config));
  const id = `tsbuild-sandbox-${process.pid}`;
  t.teardown(() => {
    spawnSync('runc', ['delete', '--force', id], { stdio: 'ignore' });
  });
  const r = spawnSync('runc', ['run', '--bundle', bundle, id], { encoding: 'utf8', timeout: 60_000 });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^Seccomp:\s+2$/m);
  t.regex(r.stdout, /^unshare=1$/m);
  t.regex(r.stdout, /^321$/m);
  t.true(existsSync(join(bundle, 'config.json')));
});

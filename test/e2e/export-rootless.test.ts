// The unprivileged export: a system user who is not root and has no /etc/subuid range (made here with useradd, no
// sudo) exports an image that already holds its kernel, from a store it owns. Its user namespace maps only its own
// id (rootless mode's fallback, with a warning), so nothing can be chowned: no loop devices or chown, mkfs.ext4 -d
// at an offset, owners patched with debugfs from the layer headers, GRUB written with plain file writes. The disk
// must boot. (test/rootless/ covers a user with a subordinate range.)
//
// The image is built from fixtures/export/kernel.Dockerfile: app:0.1 (debian.Dockerfile) + ADD of the kernel layer
// that a root export of app:0.1 installed and cached in the shared export store (so no extra download).
import { execFileSync } from 'node:child_process';
import { chmod, chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { bootDisk } from '../../convert/boot.js';
import { copyImage } from '../helpers/images.js';
import { type CliResult, makeTempDir, removeDir, repoRoot, rootTest, runCommand, tsbuild } from '../helpers/index.js';
import { APP_EXPECT, buildOutput, exportStore, withKernelLayer } from '../convert/export-fixtures.js';

const USER = 'tsbuild-export-u';

/** runAs runs argv as `user` (runuser, no sudo), with a minimal environment. */
function runAs(user: string, argv: string[]): Promise<CliResult> {
  return runCommand('runuser', ['-u', user, '--', ...argv], {
    cwd: '/',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/tmp' },
  });
}

rootTest(
  'an unprivileged user exports an image that has its kernel, and the disk boots with the right owners',
  async (t) => {
    const shared = await exportStore();
    const image = `app-kernel:${process.pid}`;
    t.teardown(() => tsbuild(['--root', shared, 'rm', image]).then(() => undefined));
    const k = await withKernelLayer(shared, 'app:0.1', image);
    t.is(k.code, 0, buildOutput(k));
    if (k.code !== 0) return;

    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', USER], {
      stdio: 'ignore',
    });
    t.teardown(() => void execFileSync('userdel', [USER], { stdio: 'ignore' }));
    const uid = Number(execFileSync('id', ['-u', USER]).toString());
    const work = await makeTempDir('tsbuild-rootless-');
    t.teardown(() => removeDir(work));
    await chmod(work, 0o755);
    const store = join(work, 'store');
    const out = join(work, 'out');
    await mkdir(store);
    await mkdir(out);
    await copyImage(shared, store, image);
    execFileSync('chown', ['-R', `${uid}:${uid}`, store]);
    await chown(out, uid, uid);

    const disk = join(out, 'app.qcow2');
    const r = await runAs(USER, [
      process.execPath,
      join(repoRoot, 'bin/tsbuild.js'),
      '--root',
      store,
      'export',
      image,
      '-o',
      disk,
    ]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stderr, /kernel: \/boot\/vmlinuz-\S+ .*\(image\)/);
    t.regex(r.stderr, /owners: set owners from the image layers/);

    const raw = join(work, 'check.raw');
    execFileSync('qemu-img', ['convert', '-O', 'raw', disk, raw]);
    execFileSync('sfdisk', ['--verify', raw], { stdio: 'ignore' });
    const part = `${raw}?offset=${1 << 20}`;
    execFileSync('e2fsck', ['-fn', part], { stdio: 'ignore' });
    const stat = (p: string): string =>
      execFileSync('debugfs', ['-R', `stat ${p}`, part], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    t.regex(stat('/etc/shadow'), /User:\s+0\s+Group:\s+42\s/, '/etc/shadow is root:shadow');
    t.regex(stat('/etc/shadow'), /Mode:\s+0640/);
    t.regex(stat('/usr/bin/passwd'), /Mode:\s+04755/, 'setuid kept');
    t.regex(stat('/etc/fstab'), /User:\s+0\s+Group:\s+0\s/, 'files the export wrote belong to root');
    t.regex(stat('/boot/grub/grub.cfg'), /User:\s+0\s/);
    execFileSync('rm', ['-f', raw]);

    const b = await bootDisk({ disk, expect: new RegExp(APP_EXPECT), timeoutMs: 420_000 });
    t.is(b.outcome, 'matched', b.output.slice(-3000));
    t.log(`marker after ${b.seconds.toFixed(1)}s (${b.accel})`);
  },
);

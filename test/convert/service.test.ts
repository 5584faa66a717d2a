import test from 'ava';
import { chmod, lstat, mkdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  detectInit,
  installService,
  openrcScript,
  SERVICE_DESCRIPTION,
  serviceSpec,
  systemdQuote,
  systemdUnit,
  type ServiceSpec,
} from '../../convert/service.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

async function rootfsWith(
  t: { teardown(f: () => unknown): void },
  files: Record<string, string> = {},
): Promise<string> {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  for (const [p, content] of Object.entries(files)) {
    await mkdir(join(dir, p, '..'), { recursive: true });
    await writeFile(join(dir, p), content);
    await chmod(join(dir, p), 0o755);
  }
  return dir;
}

test('ENTRYPOINT + CMD become argv, with a bare program name found along the image PATH', async (t) => {
  const root = await rootfsWith(t, { 'opt/app/bin/server': '#!/bin/sh\n' });
  const spec = serviceSpec(
    { Entrypoint: ['server', '--port'], Cmd: ['8080'], Env: ['PATH=/opt/app/bin:/usr/bin', 'MODE=prod'] },
    root,
  );
  t.false('skip' in spec);
  t.like(spec, {
    argv: ['/opt/app/bin/server', '--port', '8080'],
    env: ['PATH=/opt/app/bin:/usr/bin', 'MODE=prod'],
    workingDir: '/',
  });
});

test('an image without PATH gets the default one, and WorkingDir and USER user:group are kept', async (t) => {
  const root = await rootfsWith(t);
  const spec = serviceSpec({ Cmd: ['/app/run'], WorkingDir: 'srv/app', User: 'www:web' }, root) as ServiceSpec;
  t.true(spec.env[0]?.startsWith('PATH=/usr/local/sbin'));
  t.like(spec, { workingDir: '/srv/app', user: 'www', group: 'web' });
});

const skipped = test.macro({
  exec(t, cmd: string[] | undefined) {
    const spec = serviceSpec(cmd ? { Cmd: cmd } : {}, '/nonexistent');
    t.true('skip' in spec);
  },
  title: (_, cmd: string[] | undefined) => `--service auto makes no service for CMD ${JSON.stringify(cmd ?? null)}`,
});
test(skipped, undefined);
test(skipped, ['bash']);
test(skipped, ['/bin/sh']);
test(skipped, ['/sbin/init']);

test('a shell that runs a script is a service', (t) => {
  t.false('skip' in serviceSpec({ Cmd: ['/bin/sh', '-c', 'echo hi'] }, '/nonexistent'));
});

test('systemd words keep % and $ literal and quote spaces', (t) => {
  t.is(systemdQuote('/usr/bin/app'), '/usr/bin/app');
  t.is(systemdQuote('a b'), '"a b"');
  t.is(systemdQuote('100%'), '100%%');
  t.is(systemdQuote('$HOME'), '"$$HOME"');
  t.is(systemdQuote('say "hi"'), '"say \\"hi\\""');
});

const spec: ServiceSpec = {
  name: 'tsbuild-app',
  argv: ['/bin/sh', '-c', 'echo "$GREETING" 100%'],
  env: ['PATH=/usr/bin:/bin', 'GREETING=hello world'],
  workingDir: '/srv/app',
  user: 'appuser',
  group: 'app',
};

test('the systemd unit runs the command with the image environment, directory and user, output on the console', (t) => {
  const unit = systemdUnit(spec);
  t.regex(unit, /^ExecStart=\/bin\/sh -c "echo \\"\$\$GREETING\\" 100%%"$/m);
  t.regex(unit, /^Environment="GREETING=hello world"$/m);
  t.regex(unit, /^WorkingDirectory=\/srv\/app$/m);
  t.regex(unit, /^User=appuser$/m);
  t.regex(unit, /^Group=app$/m);
  t.regex(unit, /^StandardOutput=journal\+console$/m);
  t.regex(unit, /^WantedBy=multi-user.target$/m);
});

const echo: ServiceSpec = {
  name: 'tsbuild-app',
  argv: ['/usr/bin/echo', 'hello-from-argv'],
  env: ['PATH=/usr/bin:/bin'],
  workingDir: '/',
};

test('the unit text names the command only in ExecStart= (systemd prints the Description before the program runs)', (t) => {
  const unit = systemdUnit(echo);
  t.regex(unit, /^Description=tsbuild app \(the image's ENTRYPOINT and CMD\)$/m);
  t.is(/^Description=(.*)$/m.exec(unit)?.[1], SERVICE_DESCRIPTION);
  const mentions = unit.split('\n').filter((l) => /hello-from-argv|\/usr\/bin\/echo/.test(l));
  t.deepEqual(mentions, ['ExecStart=/usr/bin/echo hello-from-argv']);
});

test('the OpenRC description does not hold the command either', (t) => {
  const s = openrcScript(echo);
  t.regex(s, /^description='tsbuild app \(the image'\\''s ENTRYPOINT and CMD\)'$/m);
  const mentions = s.split('\n').filter((l) => /hello-from-argv|\/usr\/bin\/echo/.test(l));
  t.deepEqual(mentions, ['command=/usr/bin/echo', 'command_args=hello-from-argv']);
});

test('the OpenRC script quotes the command for openrc-run and sends output to the console', (t) => {
  const s = openrcScript(spec);
  t.true(s.startsWith('#!/sbin/openrc-run\n'));
  t.regex(s, /^command=\/bin\/sh$/m);
  t.regex(s, /^command_args=.*echo/m);
  t.regex(s, /^export GREETING='hello world'$/m);
  t.regex(s, /^output_log=\/dev\/console$/m);
  t.regex(s, /^command_user=appuser:app$/m);
  t.regex(s, /^command_background=yes$/m);
});

test('the OpenRC command line survives the eval openrc-run does', async (t) => {
  const s = openrcScript({ ...spec, argv: ['/bin/echo', "it's", 'a b', '$HOME'] });
  const args = /^command_args=(.*)$/m.exec(s)?.[1] ?? '';
  // what start-stop-daemon receives after `eval ... -- $command_args`
  const { execFileSync } = await import('node:child_process');
  const out = execFileSync('/bin/sh', ['-c', `command_args=${args}; eval "printf '[%s]' $command_args"`]).toString();
  t.is(out, "[it's][a b][$HOME]");
});

test('installService enables the systemd unit for multi-user.target', async (t) => {
  const root = await rootfsWith(t, { 'lib/systemd/systemd': '' });
  t.is(detectInit(root), 'systemd');
  const paths = await installService(root, spec, 'systemd');
  t.deepEqual(paths, [
    '/etc/systemd/system/tsbuild-app.service',
    '/etc/systemd/system/multi-user.target.wants/tsbuild-app.service',
  ]);
  t.is(await readlink(join(root, paths[1] as string)), '/etc/systemd/system/tsbuild-app.service');
  t.regex(await readFile(join(root, paths[0] as string), 'utf8'), /ExecStart=/);
});

test('installService adds the OpenRC script to the default runlevel', async (t) => {
  const root = await rootfsWith(t, { 'sbin/openrc-run': '' });
  t.is(detectInit(root), 'openrc');
  await installService(root, spec, 'openrc');
  t.is(await readlink(join(root, 'etc/runlevels/default/tsbuild-app')), '/etc/init.d/tsbuild-app');
  t.is((await lstat(join(root, 'etc/init.d/tsbuild-app'))).mode & 0o777, 0o755);
});

import test, { type ExecutionContext } from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerConfig } from '../../layers/model/types.js';
import {
  capabilitySet,
  DEFAULT_CAPABILITIES,
  DEFAULT_PATH,
  parseBytes,
  parseVolume,
  processSpec,
  resolveUser,
  type ProcessSpecOptions,
} from '../../runtime/spec.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const PASSWD =
  'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n';
const GROUP = 'root:x:0:\nuser:x:1000:\nstaff:x:50:user\nwheel:x:10:root,user\nnogroup:x:65534:\n';

async function rootfs(t: ExecutionContext): Promise<string> {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await mkdir(join(dir, 'etc'));
  await writeFile(join(dir, 'etc/passwd'), PASSWD);
  await writeFile(join(dir, 'etc/group'), GROUP);
  return dir;
}

async function spec(t: ExecutionContext, config: ContainerConfig, opts: Partial<ProcessSpecOptions> = {}) {
  return processSpec({ config, rootfs: await rootfs(t), hostname: 'box', ...opts });
}

const argsMacro = test.macro(
  async (t, config: ContainerConfig, opts: Partial<ProcessSpecOptions>, expected: string[]) => {
    t.deepEqual((await spec(t, config, opts)).args, expected);
  },
);

test('the image Cmd runs when no command is given', argsMacro, { Cmd: ['sh'] }, {}, ['sh']);
test('a command replaces the image Cmd', argsMacro, { Cmd: ['sh'] }, { cmd: ['echo', 'hi'] }, ['echo', 'hi']);
test(
  'the command is appended to the Entrypoint',
  argsMacro,
  { Entrypoint: ['/init'], Cmd: ['--help'] },
  { cmd: ['run'] },
  ['/init', 'run'],
);
test('Entrypoint and Cmd combine when no command is given', argsMacro, { Entrypoint: ['/init'], Cmd: ['--help'] }, {}, [
  '/init',
  '--help',
]);
test(
  '--entrypoint replaces the Entrypoint and drops the image Cmd',
  argsMacro,
  { Entrypoint: ['/init'], Cmd: ['--help'] },
  { entrypoint: 'sh' },
  ['sh'],
);
test(
  'an empty --entrypoint clears the Entrypoint',
  argsMacro,
  { Entrypoint: ['/init'] },
  { entrypoint: '', cmd: ['ls'] },
  ['ls'],
);

test('a spec without any command is refused', async (t) => {
  await t.throwsAsync(spec(t, {}), { message: /no command specified/ });
});

test('-e overrides the image Env by key and keeps its order', async (t) => {
  const s = await spec(t, { Env: ['A=1', 'PATH=/bin', 'B=2'], Cmd: ['sh'] }, { env: ['B=3', 'C=4'] });
  t.deepEqual(s.env, ['HOSTNAME=box', 'A=1', 'PATH=/bin', 'B=3', 'C=4', 'HOME=/root']);
});

test('-e NAME copies the host value, and is dropped when the host has none', async (t) => {
  const s = await spec(t, { Cmd: ['sh'] }, { env: ['FROM_HOST', 'MISSING'], hostEnv: { FROM_HOST: 'yes' } });
  t.true(s.env.includes('FROM_HOST=yes'));
  t.false(s.env.some((e) => e.startsWith('MISSING')));
});

test('PATH, HOSTNAME and HOME get defaults, and TERM is set with a terminal', async (t) => {
  const s = await spec(t, { Cmd: ['sh'] }, { user: 'user', tty: true });
  t.deepEqual(s.env, [`PATH=${DEFAULT_PATH}`, 'HOSTNAME=box', 'TERM=xterm', 'HOME=/home/user']);
});

test('the working directory comes from -w, else the image, else /', async (t) => {
  t.is((await spec(t, { Cmd: ['sh'], WorkingDir: '/srv' })).cwd, '/srv');
  t.is((await spec(t, { Cmd: ['sh'], WorkingDir: '/srv' }, { workdir: '/tmp/x' })).cwd, '/tmp/x');
  t.is((await spec(t, { Cmd: ['sh'] })).cwd, '/');
  t.is((await spec(t, { Cmd: ['sh'], WorkingDir: 'rel' })).cwd, '/rel');
});

test('a relative -w is refused', async (t) => {
  await t.throwsAsync(spec(t, { Cmd: ['sh'] }, { workdir: 'x' }), { message: /not an absolute path/ });
});

test('the runtime defaults are docker run defaults', async (t) => {
  const s = await spec(t, { Cmd: ['sh'] });
  t.is(s.network, 'none');
  t.false(s.tty);
  t.false(s.init);
  t.true(s.noNewPrivileges);
  t.deepEqual(s.user, { uid: 0, gid: 0, additionalGids: [10] }); // root is listed in wheel
  t.deepEqual([...s.capabilities].sort(), [...DEFAULT_CAPABILITIES].sort());
});

test('the default hostname is 12 hex digits', async (t) => {
  const s = processSpec({ config: { Cmd: ['sh'] }, rootfs: await rootfs(t) });
  t.regex(s.hostname, /^[0-9a-f]{12}$/);
});

test('the image User applies unless -u is given', async (t) => {
  t.is((await spec(t, { Cmd: ['sh'], User: 'user' })).user.uid, 1000);
  t.is((await spec(t, { Cmd: ['sh'], User: 'user' }, { user: 'root' })).user.uid, 0);
});

const userMacro = test.macro({
  async exec(t, user: string, expected: { uid: number; gid: number; additionalGids: number[] }) {
    t.deepEqual(resolveUser(await rootfs(t), user), expected);
  },
  title: (provided, user: string) => provided ?? `-u ${JSON.stringify(user)} resolves from /etc/passwd and /etc/group`,
});

test(userMacro, '', { uid: 0, gid: 0, additionalGids: [10] });
test(userMacro, 'root', { uid: 0, gid: 0, additionalGids: [10] });
test(userMacro, 'user', { uid: 1000, gid: 1000, additionalGids: [50, 10] });
test(userMacro, '1000', { uid: 1000, gid: 1000, additionalGids: [50, 10] });
test(userMacro, 'nobody', { uid: 65534, gid: 65534, additionalGids: [] });
test(userMacro, 'user:staff', { uid: 1000, gid: 50, additionalGids: [] });
test(userMacro, '1000:50', { uid: 1000, gid: 50, additionalGids: [] });
test(userMacro, '4242', { uid: 4242, gid: 0, additionalGids: [] });
test(userMacro, '4242:77', { uid: 4242, gid: 77, additionalGids: [] });

const badUser = test.macro({
  async exec(t, user: string, message: RegExp) {
    const dir = await rootfs(t);
    t.throws(() => resolveUser(dir, user), { message });
  },
  title: (provided, user: string) => provided ?? `-u ${JSON.stringify(user)} is refused`,
});
test(badUser, 'ghost', /unable to find user ghost/);
test(badUser, 'user:ghosts', /unable to find group ghosts/);
test(badUser, 'a:b:c', /invalid user/);
test(badUser, 'user:', /invalid user/);

test('a numeric user works in a rootfs without /etc/passwd, a name does not', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  t.deepEqual(resolveUser(dir, '1000:1000'), { uid: 1000, gid: 1000, additionalGids: [] });
  t.throws(() => resolveUser(dir, 'user'), { message: /unable to find user/ });
});

test('--cap-add and --cap-drop edit the default set, with or without CAP_ and ALL', (t) => {
  t.true(capabilitySet(['sys_admin'], []).includes('CAP_SYS_ADMIN'));
  t.false(capabilitySet([], ['CAP_CHOWN']).includes('CAP_CHOWN'));
  t.deepEqual(capabilitySet(['NET_ADMIN'], ['ALL']), ['CAP_NET_ADMIN']);
  t.true(capabilitySet(['ALL'], []).length > 38);
  t.throws(() => capabilitySet(['FLY'], []), { message: /unknown capability/ });
});

test('-v parses host:container[:ro]', (t) => {
  t.deepEqual(parseVolume('/a:/b'), { source: '/a', destination: '/b', readonly: false });
  t.deepEqual(parseVolume('/a:/b/../c:ro'), { source: '/a', destination: '/c', readonly: true });
  t.throws(() => parseVolume('named:/b'), { message: /not an absolute host path/ });
  t.throws(() => parseVolume('/a:/b:zz'), { message: /invalid volume/ });
});

test('sizes use binary units', (t) => {
  t.is(parseBytes('64m'), 64 * 1024 * 1024);
  t.is(parseBytes('1.5g'), 1.5 * 1024 ** 3);
  t.is(parseBytes('512'), 512);
  t.is(parseBytes('10KB'), 10240);
  t.throws(() => parseBytes('lots'), { message: /invalid size/ });
});

test('-v mounts and extra files reach the spec', async (t) => {
  const s = await spec(
    t,
    { Cmd: ['sh'] },
    { volumes: ['/srv:/data:ro'], extraFiles: { '/etc/hosts': '/tmp/hosts' }, limits: { memory: 1 } },
  );
  t.deepEqual(s.mounts, [{ source: '/srv', destination: '/data', readonly: true }]);
  t.deepEqual(s.extraFiles, { '/etc/hosts': '/tmp/hosts' });
  t.deepEqual(s.limits, { memory: 1 });
});

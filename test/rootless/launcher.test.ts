// The launcher bin/tsbuild (issue 11): for an ordinary user with a subordinate id range it enters the user
// namespace with util-linux's `unshare` and starts Node once. It must give the namespace that `node bin/tsbuild.js`
// gives (which maps the ids from a first Node process), and fall back to that path whenever it cannot be sure.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type CliResult, repoRoot, rootTest } from '../helpers/index.js';
import { makeUser, type TestUser } from '../helpers/users.js';

const LAUNCHER = join(repoRoot, 'bin', 'tsbuild');
const NODE_PATH = [process.execPath, '--', join(repoRoot, 'bin', 'tsbuild.js')];

let user: TestUser | undefined;
let bare: TestUser | undefined;
rootTest.before(() => {
  user = makeUser('tsbuild-launch');
  bare = makeUser('tsbuild-launch0', { subids: false });
});
rootTest.after.always(() => {
  user?.remove();
  bare?.remove();
});

const out = (r: CliResult): string => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;
/** NAMESPACE prints what defines the namespace a command runs in, and the name of the CLI's parent. */
const NAMESPACE = [
  'unshare',
  'sh',
  '-c',
  'cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; echo "$TSBUILD_USERNS_INNER"; ' +
    // ps pads the ppid to the column's width (" 6429" for a 4-digit pid), which -p refuses: strip it
    'ps -o comm= -p "$(ps -o ppid= -p "$PPID" | tr -d \' \')"',
];

rootTest('the launcher gives the namespace that node bin/tsbuild.js gives, with one Node process', async (t) => {
  const u = user as TestUser;
  const viaLauncher = await u.run([LAUNCHER, ...NAMESPACE]);
  const viaNode = await u.run([...NODE_PATH, ...NAMESPACE]);
  t.is(viaLauncher.code, 0, out(viaLauncher));
  t.is(viaNode.code, 0, out(viaNode));
  const lines = (r: CliResult): string[] => r.stdout.trim().split('\n');
  // uid_map (2 lines), gid_map (2 lines), setgroups, the inner marker: the same; the parent differs
  t.deepEqual(lines(viaLauncher).slice(0, 6), lines(viaNode).slice(0, 6));
  const [own, sub] = lines(viaLauncher);
  t.deepEqual(own?.trim().split(/\s+/), ['0', String(u.uid), '1']);
  t.deepEqual(sub?.trim().split(/\s+/), ['1', String(u.subuid?.start), String(u.subuid?.count)]);
  t.is(lines(viaLauncher)[4], 'allow');
  t.is(
    lines(viaLauncher)[5],
    `${u.uid}:${u.gid}:${u.subuid?.start}:${u.subuid?.count}:${u.subuid?.start}:${u.subuid?.count}`,
  );
  // the CLI's parent: the process that started the command (runuser here), not a first Node process
  t.not(lines(viaLauncher)[6], 'node');
  t.is(lines(viaNode)[6], 'node');
  t.is(viaLauncher.stderr, '');
});

rootTest('a command the launcher started goes on when the shell that started it exits', async (t) => {
  const u = user as TestUser;
  const started = join(u.home, 'started');
  const mark = join(u.home, 'still-running');
  // the shell backgrounds the command, waits until the CLI runs it, and exits; the CLI must not die with it (no
  // parent-death signal when there is no outer tsbuild process)
  const inner = `touch ${started}; sleep 2; kill -0 $PPID && touch ${mark}`;
  const r = await u.run([
    'sh',
    '-c',
    `${LAUNCHER} unshare sh -c '${inner}' >/dev/null 2>&1 & while [ ! -e ${started} ]; do sleep 0.1; done; exit 0`,
  ]);
  t.is(r.code, 0, out(r));
  let seen = false;
  for (let i = 0; i < 100 && !seen; i++) {
    await new Promise((res) => setTimeout(res, 200));
    seen = existsSync(mark);
  }
  t.true(seen, 'the backgrounded command was killed when its shell exited');
});

rootTest(
  'without a subordinate id range the launcher takes the Node path: the warning, then one mapped id',
  async (t) => {
    const u = bare as TestUser;
    const r = await u.run([LAUNCHER, 'unshare', 'cat', '/proc/self/uid_map']);
    t.is(r.code, 0, out(r));
    t.regex(r.stderr, /^warning: rootless with only your own id mapped: .*usermod --add-subuids/m);
    t.deepEqual(r.stdout.trim().split(/\s+/), ['0', String(u.uid), '1']);
  },
);

rootTest('TSBUILD_USERNS=off and the commands that need no namespace run as the user', async (t) => {
  const u = user as TestUser;
  const off = await u.run([LAUNCHER, 'unshare', 'cat', '/proc/self/uid_map'], { env: { TSBUILD_USERNS: 'off' } });
  // `unshare` outside a namespace is refused by the CLI itself; what matters is that no namespace was made for it
  t.notRegex(off.stdout, new RegExp(`^\\s*0\\s+${u.uid}\\s+1`, 'm'), out(off));
  const version = await u.run([LAUNCHER, '--version']);
  t.is(version.code, 0, out(version));
  t.regex(version.stdout, /^tsbuild, \d+\.\d+\.\d+\n$/);
  const help = await u.run([LAUNCHER, '--help']);
  t.is(help.code, 0, out(help));
  t.regex(help.stdout, /Usage/);
});

rootTest('the launcher works through a symlink, as npm link installs it', async (t) => {
  const u = user as TestUser;
  const link = join(u.home, 'bin-tsbuild');
  const r = await u.run(['sh', '-c', `ln -s ${LAUNCHER} ${link} && ${link} --root ${u.home}/s images`]);
  t.is(r.code, 0, out(r));
  t.regex(r.stdout, /^NAME\s+TAG\s+DIGEST/);
});

// The CLI bundle (scripts/bundle.mjs writes dist/bundle/, bin/tsbuild.js loads it): commands run from it, a bundle
// older than dist/ is never run, this user's code cache is written once per command and a damaged one is harmless,
// and the Node executor found next to the bundle still runs containers. Each test works on a private copy of bin/,
// dist/ and the bundle script (the checkout's own dist/ may be rewritten by a concurrent tsc).
import test from 'ava';
import { chmodSync, cpSync, existsSync, readdirSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxAvailable, makeBusyboxRootfs } from '../../fixtures/busybox.js';
import { type CliResult, makeTempDir, removeDir, repoRoot, rootTest, runCommand } from '../helpers/index.js';

interface Copy {
  dir: string;
  cache: string;
  cli(args: string[], env?: NodeJS.ProcessEnv): Promise<CliResult>;
}

/** copyOfCli copies the built CLI (without its bundle) into a temp dir and bundles it there as `npm run build` does. */
async function copyOfCli(t: { teardown(fn: () => Promise<void>): void }): Promise<Copy> {
  const dir = await makeTempDir('tsbuild-bundle-');
  t.teardown(() => removeDir(dir));
  chmodSync(dir, 0o755);
  cpSync(join(repoRoot, 'dist'), join(dir, 'dist'), {
    recursive: true,
    filter: (src) => !src.startsWith(join(repoRoot, 'dist', 'bundle')),
  });
  for (const f of ['bin/tsbuild.js', 'package.json', 'scripts/bundle.mjs', 'sys/nsexec.c'])
    cpSync(join(repoRoot, f), join(dir, f));
  symlinkSync(join(repoRoot, 'node_modules'), join(dir, 'node_modules'));
  const made = await runCommand(process.execPath, [join(dir, 'scripts', 'bundle.mjs')], { cwd: dir });
  if (made.code !== 0) throw new Error(`scripts/bundle.mjs: ${made.stderr}`);
  const cache = join(dir, 'cache');
  return {
    dir,
    cache,
    cli: (args, env = {}) =>
      runCommand(process.execPath, ['--', join(dir, 'bin', 'tsbuild.js'), ...args], {
        env: { ...process.env, XDG_CACHE_HOME: cache, ...env },
      }),
  };
}

/** stackOf is the `--debug` stack of a failing command: it names the files the code ran from. */
async function stackOf(copy: Copy): Promise<string> {
  const r = await copy.cli(['--debug', '--root', join(copy.dir, 'store'), 'inspect', 'nosuch:latest']);
  if (r.code !== 1) throw new Error(`inspect of a missing image exited ${r.code}: ${r.stderr}`);
  return r.stderr;
}

test('npm run build bundles the CLI, the code cache of the bundle and the Node executor into dist/bundle/', async (t) => {
  const copy = await copyOfCli(t);
  const names = readdirSync(join(copy.dir, 'dist', 'bundle'));
  t.true(names.includes('cli.js'));
  t.true(names.includes('nsexec.js'));
  t.is(names.filter((n) => /^cli-[0-9a-f]{32}\.cache$/.test(n)).length, 1, names.join(' '));
});

test('a command runs from the bundle: its --debug stack names dist/bundle/cli.js, not the modules of dist/', async (t) => {
  const copy = await copyOfCli(t);
  const stack = await stackOf(copy);
  t.regex(stack, /dist\/bundle\/cli\.js:\d+/);
  t.notRegex(stack, /\/dist\/(layers|cli)\/[^ ]*\.js:\d+/);
});

test('a bundle older than dist/cli/main.js (tsc ran after it) is never run: the modules of dist/ are', async (t) => {
  const copy = await copyOfCli(t);
  const later = new Date(Date.now() + 60_000);
  utimesSync(join(copy.dir, 'dist', 'cli', 'main.js'), later, later);
  const stack = await stackOf(copy);
  t.notRegex(stack, /dist\/bundle\//);
  t.regex(stack, /dist\/layers\/store\/image\.js/);
  t.false(existsSync(join(copy.cache, 'tsbuild')), 'no code cache is written for the modules of dist/');
});

test("a command's first run writes this user's code cache for it (0600, once); the newest 24 caches stay", async (t) => {
  const copy = await copyOfCli(t);
  const dir = join(copy.cache, 'tsbuild');
  await runCommand('mkdir', ['-p', '-m', '700', dir]);
  // 30 caches of other builds of the bundle, older than the one the command writes
  const others = Array.from({ length: 30 }, (_, i) => join(dir, `cli-${String(i).padStart(32, '0')}-v0-images.cache`));
  others.forEach((path, i) => {
    writeFileSync(path, 'from another build of the bundle', { mode: 0o600 });
    const at = new Date(Date.now() - (i + 1) * 60_000);
    utimesSync(path, at, at);
  });
  const store = join(copy.dir, 'store');
  const first = await copy.cli(['--root', store, 'images', '-q']);
  t.is(first.code, 0, first.stderr);
  const mine = readdirSync(dir).filter((n) => n.endsWith(`-${process.version}-images.cache`));
  t.is(mine.length, 1);
  const file = join(dir, mine[0] as string);
  t.is(statSync(file).mode & 0o777, 0o600);
  t.deepEqual(
    others.map((path) => existsSync(path)),
    others.map((_, i) => i < 23),
    'the 23 newest of the others stay',
  );
  const before = statSync(file).mtimeMs;
  const second = await copy.cli(['--root', store, 'images', '-q']);
  t.is(second.code, 0, second.stderr);
  t.is(statSync(file).mtimeMs, before, 'read, not written again');
});

test('a damaged code cache is rejected by V8 and the command runs as without it', async (t) => {
  const copy = await copyOfCli(t);
  const store = join(copy.dir, 'store');
  t.is((await copy.cli(['--root', store, 'images'])).code, 0);
  const dir = join(copy.cache, 'tsbuild');
  const [name] = readdirSync(dir).filter((n) => n.endsWith('-images.cache'));
  t.truthy(name);
  writeFileSync(join(dir, name as string), Buffer.alloc(4096, 0x5a), { mode: 0o600 });
  const r = await copy.cli(['--root', store, 'images']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^NAME\s+TAG\s+DIGEST/);
});

const busybox = busyboxAvailable();
(busybox ? rootTest : test.serial.skip)(
  `the Node executor next to the bundle (dist/bundle/nsexec.js) runs a container and passes its status through${busybox ? '' : ' (skipped: busybox-static is not installed)'}`,
  async (t) => {
    const copy = await copyOfCli(t);
    const store = join(copy.dir, 'store');
    const tree = join(copy.dir, 'tree');
    await makeBusyboxRootfs(tree);
    const imported = await copy.cli(['--root', store, 'import', tree, 'bb:latest']);
    t.is(imported.code, 0, imported.stderr);
    for (const executor of ['node', 'native']) {
      const r = await copy.cli(['--root', store, 'run', '--rm', 'bb:latest', 'sh', '-c', 'echo ran; exit 3'], {
        TSBUILD_NSEXEC: executor,
      });
      t.is(r.code, 3, `${executor}: ${r.stderr}`);
      t.is(r.stdout, 'ran\n', executor);
    }
  },
);

// docker's command-line contract, through the built CLI and through cli/flags.ts: every command refuses an unknown
// flag (`unknown flag: --bogus`, `See 'tsbuild images --help'.`, exit 1; `run` exits 125 like docker run), a flag
// without its value, and a value given to a flag that takes none; an unknown command is an error with a
// suggestion, while `tsbuild DIR` still builds DIR; docker build flags tsbuild lacks are refused with the reason.
import test, { type ExecutionContext } from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sade from 'sade';
import { commandTable, parseCommandLine } from '../../cli/flags.js';
import { makeTempDir, removeDir, tsbuild } from '../helpers/index.js';

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await makeTempDir('tsbuild-flags-');
  t.teardown(() => removeDir(dir));
  return dir;
}

/** refused runs `tsbuild --root R ...args` in an empty directory and checks the message, the hint and the code. */
const refused = test.macro({
  async exec(t, args: string[], message: string, hint: RegExp, code = 1) {
    const dir = await tempDir(t);
    const r = await tsbuild(['--root', join(dir, 'store'), ...args], { cwd: dir });
    t.is(r.code, code, r.stderr);
    t.is(r.stdout, '');
    const [first, second] = r.stderr.split('\n');
    t.is(first, `error: ${message}`);
    t.regex(second ?? '', hint);
  },
  title: (_provided, args: string[], message: string) => `tsbuild ${args.join(' ')} fails: ${message}`,
});

const see = (cmd: string): RegExp => new RegExp(`^hint: See 'tsbuild ${cmd} --help'\\.$`);

// unknown flags, on every kind of command
test(refused, ['images', '--bogus'], 'unknown flag: --bogus', see('images'));
test(refused, ['build', '--bogus', '.'], 'unknown flag: --bogus', see('build'));
test(refused, ['--bogus', '.'], 'unknown flag: --bogus', see('build'));
test(refused, ['history', 'x', '--bogus=1'], 'unknown flag: --bogus', see('history'));
test(refused, ['inspect', '-x', 'img'], 'unknown flag: -x', see('inspect'));
test(refused, ['images', '-qZ'], "unknown shorthand flag: 'Z' in -qZ", see('images'));
test(refused, ['export', 'img', '--bogus'], 'unknown flag: --bogus', see('export'));
test(refused, ['push', 'img', '--bogus'], 'unknown flag: --bogus', see('push'));
test(refused, ['load', '--bogus'], 'unknown flag: --bogus', see('load'));
test(refused, ['tag', 'a', 'b', '--bogus'], 'unknown flag: --bogus', see('tag'));
test(refused, ['prune', '--bogus'], 'unknown flag: --bogus', see('prune'));
test(refused, ['rmi', 'x', '--bogus'], 'unknown flag: --bogus', see('rm'));
test(refused, ['run', '--bogus', 'img'], 'unknown flag: --bogus', see('run'), 125);
test(refused, ['run', '-Z', 'img'], 'unknown flag: -Z', see('run'), 125);
// -v is --version only for the program, never on a command
test(refused, ['images', '-v'], 'unknown flag: -v', see('images'));
test(refused, ['images', '--version'], 'unknown flag: --version', see('images'));
// a flag without its value is an error, not the default
test(refused, ['build', '-t'], "flag needs an argument: 't' in -t", see('build'));
test(refused, ['build', '.', '--tag'], 'flag needs an argument: --tag', see('build'));
test(refused, ['export', 'img', '--size'], 'flag needs an argument: --size', see('export'));
test(refused, ['images', '--format='], 'flag needs an argument: --format', see('images'));
test(refused, ['build', '-f', '--no-cache', '.'], "flag needs an argument: 'f' in -f", see('build'));
test(refused, ['build', '-tq', 'x', '.'], "flag needs an argument: 't' in -tq", see('build'));
// a flag that takes no value refuses one
test(
  refused,
  ['build', '--squash=yes', '.'],
  'invalid argument "yes" for "--squash" flag: it takes no value (or true, false)',
  see('build'),
);
test(refused, ['history', '--no-trunc=1', 'x'], 'flag --no-trunc takes no value', see('history'));
// unknown commands
test(refused, ['frob'], "'frob' is not a tsbuild command", /^hint: See 'tsbuild --help'\.$/);
test(refused, ['ps'], "'ps' is not a tsbuild command", /^hint: did you mean push\? See 'tsbuild --help'\.$/);
test(refused, ['imgaes', '-q'], "'imgaes' is not a tsbuild command", /did you mean images\?/);
// docker build flags that tsbuild does not implement say so
// --cache-to/--cache-from are implemented (layers/cache/); what of them is not says so (test/cache/)
test(
  refused,
  ['build', '--cache-to=type=inline,mode=max', '.'],
  '--cache-to type=inline,mode=max: type=inline supports mode=min only (the image holds only its own layers)',
  /^hint: use type=registry,ref=REG\/REPO:cache,mode=max for intermediate stages$/,
);
test(
  refused,
  ['build', '--push', '.'],
  '--push is not supported: build with -t NAME, then `tsbuild push NAME`',
  see('build'),
);
test(refused, ['build', '--build-context', 'a', '.'], 'invalid context value: a, expected key=value', /^$/);
test(refused, ['build', '--shm-size', 'lots', '.'], 'invalid size "lots"', /^hint: use a number with an optional unit/);
// build flag values
test(refused, ['build', '--add-host', 'nohost', '.'], 'invalid --add-host "nohost": give NAME:IP', /^$/);
test(
  refused,
  ['build', '--add-host', 'db:300.1.1.1', '.'],
  'invalid --add-host "db:300.1.1.1": 300.1.1.1 is not an IP address',
  /^$/,
);
test(
  refused,
  ['build', '--output', 'type=image,name=x', '.'],
  '--output type=image is not supported (local, tar, oci or docker)',
  /^hint: every build is stored/,
);
test(refused, ['build', '-o', 'type=tar', '.'], '--output type=tar needs dest=FILE or dest=-', /^$/);
test(refused, ['build', '--label', '=v', '.'], 'invalid --label "=v": the name is empty', /^$/);

test('tsbuild alone prints the usage and exits 0', async (t) => {
  const r = await tsbuild([]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /Usage\n\s+\$ tsbuild <command> \[options\]/);
  t.regex(r.stdout, /Available Commands/);
});

test('a first word that names a directory is the build context of the default command, even one named frob', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'frob'));
  for (const args of [['frob'], ['-t', 'x:1', 'frob'], ['--root', join(dir, 'store'), '.']]) {
    const r = await tsbuild(args[0] === '--root' ? args : ['--root', join(dir, 'store'), ...args], { cwd: dir });
    t.is(r.code, 1, r.stderr);
    // it got as far as reading the context: the build's own error, not a command-line one
    t.regex(r.stderr, /error: Dockerfile Dockerfile not found/, args.join(' '));
  }
});

test('flags before the command word are read for that command: --root R -q images', async (t) => {
  const dir = await tempDir(t);
  const r = await tsbuild(['--root', join(dir, 'store'), '-q', 'images']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '');
  const j = await tsbuild(['--debug', '--root', join(dir, 'store'), 'images', '--format=json']);
  t.is(j.code, 0, j.stderr);
  t.deepEqual(JSON.parse(j.stdout), []);
});

test('the container command of run is not read as tsbuild flags: run IMAGE ls --bogus gets as far as the image', async (t) => {
  const dir = await tempDir(t);
  const r = await tsbuild(['--root', join(dir, 'store'), 'run', '--rm', 'nosuch:1', 'ls', '-la', '--bogus']);
  t.is(r.code, 125);
  t.regex(r.stderr, /^error: image "nosuch:1" not found/);
});

// cli/flags.ts on a table of its own: a flag declared on the sade program is known, whoever declares it

/** program is a small sade table in main.ts's style; `buildFlag` is one more flag declared on build. */
function program(buildFlag?: string): ReturnType<typeof sade> {
  const prog = sade('tsbuild').option('--root', 'Store').option('--debug', 'Stacks', false);
  prog.command('build [context]', 'Build', { default: true }).option('-t, --tag', 'Name').option('--no-cache', 'x');
  if (buildFlag) prog.option(buildFlag, 'Added');
  prog
    .command('run <image>')
    .option('--rm', 'Remove', false)
    .option('-e, --env', 'Env')
    .option('-t, --tty', 'Tty', false);
  prog.command('rm <name>').alias('rmi');
  return prog;
}

test('a flag declared on the sade table is accepted, with no other list to update', (t) => {
  const line = ['build', '--ulimit', 'nofile=10', '.'];
  t.throws(() => parseCommandLine(commandTable(program()), line), { message: 'unknown flag: --ulimit' });
  t.deepEqual(parseCommandLine(commandTable(program('--ulimit')), line).args, line);
  t.throws(() => parseCommandLine(commandTable(program('--ulimit')), ['build', '--ulimit']), {
    message: 'flag needs an argument: --ulimit',
  });
});

test('the command line comes back with the command word first and every flag spelled long', (t) => {
  const table = commandTable(program());
  t.deepEqual(parseCommandLine(table, ['--root', 'R', '-t', 'a:1', './ctx']).args, [
    'build',
    '--root',
    'R',
    '--tag',
    'a:1',
    './ctx',
  ]);
  t.deepEqual(parseCommandLine(table, ['rmi', 'x']).args, ['rm', 'x']);
  t.deepEqual(parseCommandLine(table, ['run', '-t', '--rm', 'img', 'ls', '-la'], { argsAfter: { run: 1 } }).args, [
    'run',
    '--tty',
    '--rm',
    'img',
    '--',
    'ls',
    '-la',
  ]);
  t.deepEqual(parseCommandLine(table, ['run', '-te', 'A=1', 'img'], { argsAfter: { run: 1 } }).args, [
    'run',
    '--tty',
    '--env',
    'A=1',
    'img',
    '--',
  ]);
  t.deepEqual(parseCommandLine(table, ['run', '--rm=false', 'img']).args.slice(0, 2), ['run', '--rm=false']);
});

test('a word that is neither a command nor a path is refused; one that looks like a path goes to build', async (t) => {
  const table = commandTable(program());
  const dir = await tempDir(t);
  t.throws(() => parseCommandLine(table, ['rn', 'img'], { cwd: dir }), { message: "'rn' is not a tsbuild command" });
  for (const word of ['./frob', 'a/b', '.', '-'])
    t.is(parseCommandLine(table, [word], { cwd: dir }).command, 'build', word);
  await writeFile(join(dir, 'ctx.tar'), '');
  t.is(parseCommandLine(table, ['ctx.tar'], { cwd: dir }).command, 'build');
});

// Node 20 reads `--env-file` anywhere in its argv, even after the script, unless a `--` ends its own options: the
// executable's shebang (`env -S node --`) puts one there, so docker's flags reach tsbuild, which refuses them.
test('run --env-file reaches tsbuild (refused as an unknown flag), not Node', async (t) => {
  const { runCommand, repoRoot } = await import('../helpers/index.js');
  const r = await runCommand(join(repoRoot, 'bin', 'tsbuild.js'), ['run', '--env-file', 'x', 'img', 'true']);
  t.is(r.code, 125, r.stderr);
  t.regex(r.stderr, /^error: unknown flag: --env-file$/m);
  t.notRegex(r.stderr, /node:/);
});

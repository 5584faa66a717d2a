// Positional arguments and the smaller read commands, as docker has them (issue 12): too many or too few arguments
// are errors in docker's words (`"tsbuild tag" requires exactly 2 arguments.`), never sade's "Insufficient
// arguments!" nor an extra word silently dropped; `inspect A B` prints both as a JSON array; `images REPO[:TAG]`
// lists only those; `history` takes --no-trunc (whole digests), -q and --format json.
import test from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir, removeDir, tsbuild } from '../helpers/index.js';

interface Fixture {
  dir: string;
  root: string;
  layer: string;
  digest: string;
}

/** made once: a store with one image under three names (`one:1`, `one:2`, `example.com/two:1`). */
let made: Promise<Fixture> | undefined;
function fixture(): Promise<Fixture> {
  made ??= (async () => {
    const dir = await makeTempDir('tsbuild-args-');
    const tree = join(dir, 'tree');
    await mkdir(tree);
    await writeFile(join(tree, 'hello'), 'hello\n');
    const root = join(dir, 'store');
    const run = async (args: string[]): Promise<string> => {
      const r = await tsbuild(['--root', root, ...args]);
      if (r.code !== 0) throw new Error(`tsbuild ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const digest = (await run(['import', tree, 'one:1', '-m', 'a comment'])).trim();
    await run(['tag', 'one:1', 'one:2']);
    await run(['tag', 'one:1', 'example.com/two:1']);
    const info = JSON.parse(await run(['inspect', 'one:1'])) as { manifest: { layers: Array<{ digest: string }> } };
    return { dir, root, digest, layer: info.manifest.layers[0]!.digest };
  })();
  return made;
}
test.after.always(async () => {
  if (made) await removeDir((await made).dir);
});

async function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return tsbuild(['--root', (await fixture()).root, ...args]);
}

const arity = test.macro({
  async exec(t, args: string[], message: string, usage: string, code = 1) {
    const r = await cli(args);
    t.is(r.code, code, r.stderr);
    t.is(r.stdout, '');
    const [first, second] = r.stderr.split('\n');
    t.is(first, `error: ${message}`);
    t.is(second, `hint: See 'tsbuild ${args[0]} --help'. Usage: ${usage}`);
    t.notRegex(r.stderr, /Insufficient arguments/);
  },
  title: (_p, args: string[], message: string) => `tsbuild ${args.join(' ')} fails: ${message}`,
});

test(arity, ['images', 'a', 'b'], '"tsbuild images" requires at most 1 argument.', 'tsbuild images [repository]');
test(arity, ['prune', 'extra'], '"tsbuild prune" accepts no arguments.', 'tsbuild prune');
test(arity, ['load', 'x.tar'], '"tsbuild load" accepts no arguments.', 'tsbuild load');
test(arity, ['tag', 'one:1'], '"tsbuild tag" requires exactly 2 arguments.', 'tsbuild tag <source> <target>');
test(arity, ['tag', 'a', 'b', 'c'], '"tsbuild tag" requires exactly 2 arguments.', 'tsbuild tag <source> <target>');
test(arity, ['history'], '"tsbuild history" requires exactly 1 argument.', 'tsbuild history <name>');
test(arity, ['history', 'one:1', 'one:2'], '"tsbuild history" requires exactly 1 argument.', 'tsbuild history <name>');
test(arity, ['inspect'], '"tsbuild inspect" requires at least 1 argument.', 'tsbuild inspect <name> [name...]');
test(arity, ['rm'], '"tsbuild rm" requires at least 1 argument.', 'tsbuild rm <name> [name...]');
test(
  arity,
  ['import', 'a', 'b', 'c'],
  '"tsbuild import" requires at least 1 and at most 2 arguments.',
  'tsbuild import <source> [name]',
);
test(arity, ['unpack', 'one:1'], '"tsbuild unpack" requires exactly 2 arguments.', 'tsbuild unpack <name> <dir>');
test(arity, ['build', '.', 'extra'], '"tsbuild build" requires at most 1 argument.', 'tsbuild build [context]');
// run reports its own failures with docker run's 125, a bad command line included
test(arity, ['run'], '"tsbuild run" requires at least 1 argument.', 'tsbuild run <image> [ARG...]', 125);

test('a flag value is not counted as an argument, nor are the command words after run IMAGE', async (t) => {
  const r = await cli(['images', '--format', 'json', 'one']);
  t.is(r.code, 0, r.stderr);
  t.is((JSON.parse(r.stdout) as unknown[]).length, 2, 'the word after --format json is the repository');
  const run = await cli(['run', '--rm', 'nosuch:1', 'echo', 'a', 'b']);
  t.notRegex(run.stderr, /requires|accepts/);
});

test('inspect A B prints both images as a JSON array, in the order given', async (t) => {
  const f = await fixture();
  const r = await cli(['inspect', 'example.com/two:1', 'one:2']);
  t.is(r.code, 0, r.stderr);
  const docs = JSON.parse(r.stdout) as Array<{ name: string; digest: string }>;
  t.true(Array.isArray(docs));
  t.deepEqual(
    docs.map((d) => [d.name, d.digest]),
    [
      ['example.com/two:1', f.digest],
      ['one:2', f.digest],
    ],
  );
  const missing = await cli(['inspect', 'one:1', 'nosuch:1']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /^error: .*nosuch/m);
});

test('images REPOSITORY lists that repository, and REPOSITORY:TAG that one name', async (t) => {
  const names = async (args: string[]): Promise<string[]> => {
    const r = await cli(['images', '--format', 'json', ...args]);
    t.is(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as Array<{ name: string }>).map((x) => x.name).sort();
  };
  t.deepEqual(await names([]), ['example.com/two:1', 'one:1', 'one:2']);
  t.deepEqual(await names(['one']), ['one:1', 'one:2']);
  t.deepEqual(await names(['docker.io/library/one']), ['one:1', 'one:2']);
  t.deepEqual(await names(['one:2']), ['one:2']);
  t.deepEqual(await names(['example.com/two']), ['example.com/two:1']);
  t.deepEqual(await names(['two']), []);
  const table = await cli(['images', 'one:1']);
  t.is(table.stdout.trim().split('\n').length, 2, table.stdout);
});

test('history --no-trunc prints whole layer digests, -q only them, --format json one object per line', async (t) => {
  const f = await fixture();
  const short = await cli(['history', 'one:1']);
  t.is(short.code, 0, short.stderr);
  t.false(short.stdout.includes(f.layer));
  t.true(short.stdout.includes(f.layer.slice(7, 19)));
  const full = await cli(['history', '--no-trunc', 'one:1']);
  t.true(full.stdout.includes(f.layer), full.stdout);
  const quiet = await cli(['history', '-q', 'one:1']);
  t.is(quiet.stdout, `${f.layer.slice(7, 19)}\n`);
  const quietFull = await cli(['history', '-q', '--no-trunc', 'one:1']);
  t.is(quietFull.stdout, `${f.layer}\n`);
  const json = await cli(['history', '--format', 'json', 'one:1']);
  t.is(json.code, 0, json.stderr);
  const rows = json.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, string>);
  t.is(rows.length, 1);
  t.is(rows[0]?.ID, f.layer);
  t.is(rows[0]?.Comment, 'a comment');
  t.regex(rows[0]?.CreatedBy ?? '', /^tsbuild import /);
  const bad = await cli(['history', '--format', 'yaml', 'one:1']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /^error: --format must be table or json/);
});

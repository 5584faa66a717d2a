// Errors on bad input (issue 12), through the built CLI: each bad input gives exit 1 and one `error:` line that
// names the file, the blob or the path at fault; never a stack trace, never "internal error" (exit 70), never a
// hang. One row per input: truncated and corrupt tars to `import` (file and stdin), truncated archives to `load`
// (also when the store already holds every blob), a corrupt `oci-layout` (archive and store), a corrupt layer to
// `unpack`, `--root` where no directory can be made, a store this user may not write, a base image that is neither
// stored nor pullable; and a corrupt ~/.docker/config.json, which a pull reads past with a warning (as docker does).
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { isRoot, makeTempDir, removeDir, repoRoot, runCommand, tsbuild, type CliResult } from '../helpers/index.js';
import { haveRegistry, startRegistry } from '../helpers/registry.js';
import { getCredentials } from '../../layers/registry/credentials.js';

const CLI = join(repoRoot, 'bin', 'tsbuild.js');
/** a command that hangs is killed after this long (then its exit is 124, and the row fails); not a speed target */
const HANG_GUARD = '120';

interface Fixture {
  dir: string;
  /** a store holding `img:1` (a one-file layer), and the `tsbuild save` archive of it */
  store: string;
  archive: string;
  layer: string;
  tar: Buffer;
}

/** fixture is made once: a small rootfs tar, a store with it imported, and the saved archive. */
let made: Promise<Fixture> | undefined;
function fixture(): Promise<Fixture> {
  made ??= (async () => {
    const dir = await makeTempDir('tsbuild-bad-input-');
    await chmod(dir, 0o755); // the unprivileged row must reach the store inside
    const tree = join(dir, 'tree');
    await mkdir(join(tree, 'etc'), { recursive: true });
    await writeFile(join(tree, 'etc', 'hello'), 'hello\n'.repeat(2000));
    const tar = execFileSync('tar', ['-C', tree, '--sort=name', '-cf', '-', '.']);
    const store = join(dir, 'store');
    const archive = join(dir, 'img.tar');
    for (const args of [
      ['import', tree, 'img:1'],
      ['save', 'img:1', '-o', archive],
    ]) {
      const r = await tsbuild(['--root', store, ...args]);
      if (r.code !== 0) throw new Error(`tsbuild ${args.join(' ')}: ${r.stderr}`);
    }
    const info = JSON.parse((await tsbuild(['--root', store, 'inspect', 'img:1'])).stdout) as {
      manifest: { layers: Array<{ digest: string }> };
    };
    return { dir, store, archive, layer: info.manifest.layers[0]!.digest, tar };
  })();
  return made;
}
test.after.always(async () => {
  if (made) await removeDir((await made).dir);
});

/** entries lists the entries of a plain tar: name, header offset, and where the entry's data ends (padded). */
function entries(tar: Buffer): Array<{ name: string; header: number; end: number }> {
  const out = [];
  for (let at = 0; at + 512 <= tar.length;) {
    const h = tar.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    const name = h.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(h.subarray(124, 136).toString('ascii').replace(/\0.*$/s, '').trim() || '0', 8);
    const end = at + 512 + Math.ceil(size / 512) * 512;
    out.push({ name, header: at, end });
    at = end;
  }
  return out;
}

/** entry finds an entry of a plain tar by its name (`./` and trailing slashes aside). */
function entry(tar: Buffer, pred: (name: string) => boolean): { name: string; header: number; end: number } {
  const e = entries(tar).find((x) => pred(x.name.replace(/^\.\//, '')));
  if (!e) throw new Error('no such entry in the fixture');
  return e;
}

/** cli runs the built CLI under a guard against hangs, optionally as another user (`setpriv` argv prefix). */
function cli(args: string[], o: { input?: Buffer; as?: string[] } = {}): Promise<CliResult> {
  return runCommand('timeout', [HANG_GUARD, ...(o.as ?? []), process.execPath, CLI, ...args], {
    ...(o.input ? { input: o.input } : {}),
  });
}

interface Row {
  /** runs the command; `dir` is a fresh directory of this row */
  run(f: Fixture, dir: string): Promise<CliResult>;
  /** what the error line must name (a file, a blob, a path), beyond "error: " */
  names: (f: Fixture, dir: string) => string;
  /** more that the line must say */
  says?: RegExp;
}

/** refused checks the contract of a bad input: exit 1, one `error:` line naming the culprit, no stack, no 70. */
const refused = test.macro({
  async exec(t: ExecutionContext, row: Row) {
    const f = await fixture();
    const dir = await makeTempDir('tsbuild-bad-row-');
    t.teardown(() => removeDir(dir));
    await chmod(dir, 0o755);
    const r = await row.run(f, dir);
    t.not(r.code, 124, 'the command hung (killed by the guard)');
    t.is(r.code, 1, r.stderr);
    const lines = r.stderr.split('\n').filter((l) => /^error: /.test(l));
    t.is(lines.length, 1, r.stderr);
    const line = lines[0] ?? '';
    t.true(line.includes(row.names(f, dir)), `"${line}" names ${row.names(f, dir)}`);
    if (row.says) t.regex(line, row.says);
    t.notRegex(r.stderr, /^\s+at /m, 'no stack trace');
    t.notRegex(r.stderr, /internal error/);
  },
  title: (title = '') => title,
});

const cut = (b: Buffer, n: number): Buffer => b.subarray(0, n);

// import: a rootfs tar cut short or garbled, from a file and from stdin
test('import of a tar cut inside an entry names the file', refused, {
  async run(f, dir) {
    await writeFile(join(dir, 'cut.tar'), cut(f.tar, entry(f.tar, (n) => n === 'etc/hello').header + 512 + 700));
    return cli(['--root', join(dir, 's'), 'import', join(dir, 'cut.tar'), 'x:1']);
  },
  names: (_f, dir) => join(dir, 'cut.tar'),
  says: /not a valid tar archive/,
});
test('import of a tar cut inside an entry, from stdin, names standard input', refused, {
  run: (f, dir) =>
    cli(['--root', join(dir, 's'), 'import', '-', 'x:1'], {
      input: cut(f.tar, entry(f.tar, (n) => n === 'etc/hello').header + 512 + 700),
    }),
  names: () => 'standard input',
  says: /not a valid tar archive/,
});
test('import of a tar whose header is garbage names the file', refused, {
  async run(f, dir) {
    const bad = Buffer.from(f.tar);
    bad.fill(0x5a, 0, 512);
    await writeFile(join(dir, 'bad.tar'), bad);
    return cli(['--root', join(dir, 's'), 'import', join(dir, 'bad.tar'), 'x:1']);
  },
  names: (_f, dir) => join(dir, 'bad.tar'),
});
test('import of a tar whose header is garbage, from stdin, names standard input', refused, {
  run: (f, dir) => {
    const bad = Buffer.from(f.tar);
    bad.fill(0x5a, 0, 512);
    return cli(['--root', join(dir, 's'), 'import', '-', 'x:1'], { input: bad });
  },
  names: () => 'standard input',
});
test('import of a truncated gzip, from stdin, names standard input', refused, {
  run: (f, dir) => {
    const gz = gzipSync(f.tar);
    return cli(['--root', join(dir, 's'), 'import', '-', 'x:1'], { input: cut(gz, gz.length >> 1) });
  },
  names: () => 'standard input',
});

// load: archives cut short, into a store that already holds every blob they carry (nothing would be missing)
test('load of an archive cut between two entries, into a store holding its blobs, names it as truncated', refused, {
  async run(f, dir) {
    const whole = await readFile(f.archive);
    const at = entry(whole, (n) => n === 'oci-layout').header;
    await writeFile(join(dir, 'cut.tar'), cut(whole, at));
    return cli(['--root', f.store, 'load', '-i', join(dir, 'cut.tar')]);
  },
  names: (_f, dir) => join(dir, 'cut.tar'),
  says: /truncated/,
});
test('load from stdin of an archive cut after its index, into a store holding its blobs, fails', refused, {
  async run(f) {
    const whole = await readFile(f.archive);
    return cli(['--root', f.store, 'load'], { input: cut(whole, entry(whole, (n) => n === 'index.json').end) });
  },
  names: () => 'standard input',
  says: /truncated/,
});
test('load of an archive cut right after the header of a blob the store holds names it', refused, {
  async run(f, dir) {
    const whole = await readFile(f.archive);
    const at = entry(whole, (n) => n === `blobs/sha256/${f.layer.slice(7)}`).header + 512;
    await writeFile(join(dir, 'cut.tar'), cut(whole, at));
    return cli(['--root', f.store, 'load', '-i', join(dir, 'cut.tar')]);
  },
  names: (_f, dir) => join(dir, 'cut.tar'),
});

// a corrupt oci-layout: in an archive, and in the store itself
test('load of an archive whose oci-layout is not JSON names the archive and the entry', refused, {
  async run(f, dir) {
    const x = join(dir, 'x');
    await mkdir(x);
    execFileSync('tar', ['-C', x, '-xf', f.archive]);
    await writeFile(join(x, 'oci-layout'), 'garbage\n');
    execFileSync('tar', ['-C', x, '-cf', join(dir, 'bad.tar'), '.']);
    return cli(['--root', join(dir, 's'), 'load', '-i', join(dir, 'bad.tar')]);
  },
  names: (_f, dir) => `${join(dir, 'bad.tar')}: oci-layout`,
});
test('a store whose oci-layout is not JSON is named, not an internal error', refused, {
  async run(_f, dir) {
    const s = join(dir, 's');
    await cli(['--root', s, 'images']);
    await writeFile(join(s, 'oci-layout'), 'garbage\n{');
    return cli(['--root', s, 'images']);
  },
  names: (_f, dir) => join(dir, 's', 'oci-layout'),
});

// unpack of a layer whose gzip stream is corrupt names the blob
test('unpack of a corrupt layer names the blob', refused, {
  async run(f, dir) {
    const s = join(dir, 's');
    const r = await cli(['--root', s, 'load', '-i', f.archive]);
    if (r.code !== 0) return r;
    const blob = join(s, 'blobs', 'sha256', f.layer.slice(7));
    await chmod(blob, 0o644);
    const fh = await open(blob, 'r+');
    await fh.write(Buffer.from('XXXXXXXX'), 0, 8, 20);
    await fh.close();
    return cli(['--root', s, 'unpack', 'img:1', join(dir, 'out')]);
  },
  names: (f) => f.layer,
});

// --root where no directory can be made: an error, not Node's recursive mkdir retrying at full CPU
test('--root /proc/foo is an error naming it', refused, {
  run: () => cli(['--root', '/proc/tsbuild-no-such-dir', 'images']),
  names: () => '/proc/tsbuild-no-such-dir',
});

// a store this user may not write: "permission denied: PATH" at once, not a lock timeout
(isRoot ? test : test.skip)(
  `a store another user owns gives permission denied naming it${isRoot ? '' : ' (skipped: needs root for setpriv)'}`,
  refused,
  {
    async run(f, dir) {
      // a store others may read (as an older tsbuild left them, or one shared on purpose) but not write
      const s = join(dir, 's');
      const r = await cli(['--root', s, 'load', '-i', f.archive]);
      if (r.code !== 0) return r;
      execFileSync('chmod', ['-R', 'go+rX', s]);
      return cli(['--root', s, 'tag', 'img:1', 'img:2'], {
        as: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'],
      });
    },
    names: (_f, dir) => join(dir, 's'),
    says: /permission denied/,
  },
);

// a base image neither in the store nor pullable: one sentence, not "… not found (…) not found"
test('a FROM image that is neither stored nor pullable reads as one sentence', refused, {
  async run(_f, dir) {
    await writeFile(join(dir, 'Dockerfile'), 'FROM 127.0.0.1:1/nosuch:latest\n');
    return cli(['--root', join(dir, 's'), 'build', '--progress', 'plain', dir]);
  },
  names: () => '127.0.0.1:1/nosuch:latest',
  says: /^(?!.*not found.*not found)/,
});

// a corrupt ~/.docker/config.json: docker warns and pulls anonymously; so does tsbuild
async function pushedImage(t: ExecutionContext): Promise<{ name: string; dockerConfig: string; dir: string }> {
  const f = await fixture();
  const reg = await startRegistry(t);
  const dir = await makeTempDir('tsbuild-bad-config-');
  t.teardown(() => removeDir(dir));
  const name = `${reg.host}/bad-input/img:1`;
  const dockerConfig = join(dir, 'docker');
  await mkdir(dockerConfig);
  const env = { DOCKER_CONFIG: dockerConfig };
  for (const args of [
    ['tag', 'img:1', name],
    ['push', name],
  ]) {
    const r = await tsbuild(['--root', f.store, ...args], { env });
    if (r.code !== 0) throw new Error(`tsbuild ${args.join(' ')}: ${r.stderr}`);
  }
  await writeFile(join(dockerConfig, 'config.json'), '{"auths": {');
  return { name, dockerConfig, dir };
}
test('getCredentials, given onWarning, skips a corrupt config.json with a warning naming it', async (t) => {
  const dir = await makeTempDir('tsbuild-bad-config-');
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'config.json'), '{"auths": {');
  const warnings: string[] = [];
  const got = await getCredentials('r.example', {
    env: { DOCKER_CONFIG: dir },
    onWarning: (m) => warnings.push(m),
  });
  t.is(got, undefined);
  t.is(warnings.length, 1);
  t.true(warnings[0]?.includes(join(dir, 'config.json')), warnings[0]);
});
(haveRegistry ? test : test.skip)(
  `a corrupt docker config.json warns and the pull goes on anonymously${haveRegistry ? '' : ' (skipped: no docker-registry)'}`,
  async (t) => {
    const { name, dockerConfig, dir } = await pushedImage(t);
    const r = await tsbuild(['--root', join(dir, 's'), 'pull', name], { env: { DOCKER_CONFIG: dockerConfig } });
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /^sha256:[a-f0-9]{64}$/m);
    t.true(r.stderr.includes(join(dockerConfig, 'config.json')), r.stderr);
  },
);

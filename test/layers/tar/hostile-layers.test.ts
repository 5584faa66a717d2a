import test, { type ExecutionContext } from 'ava';
import { mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import { hostileLayers, hostileLayerStacks } from '../../../fixtures/hostile-layers.js';
import { TsbuildError } from '../../../sys/errors.js';
import { applyLayer } from '../../../layers/tar/apply.js';
import { installPaxCodec } from '../../../layers/tar/pax.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

const CANARY = 'canary: the host file that no layer may touch\n';
const CANARY_TIME = new Date('2001-02-03T04:05:06Z');

interface Sandbox {
  base: string;
  root: string;
  host: string;
}

/** sandbox makes base/{root,host} with host/canary; the layer is applied to root, host is what it attacks. */
async function sandbox(t: ExecutionContext): Promise<Sandbox> {
  const base = await makeTempDir('tsbuild-hostile-');
  t.teardown(() => removeDir(base));
  const root = join(base, 'root');
  const host = join(base, 'host');
  await mkdir(root);
  await mkdir(host);
  await writeFile(join(host, 'canary'), CANARY);
  await utimes(join(host, 'canary'), CANARY_TIME, CANARY_TIME);
  await utimes(host, CANARY_TIME, CANARY_TIME);
  return { base, root, host };
}

/** entryNames lists a tar's entry names as tar-stream reads them (PAX paths applied). */
async function entryNames(tar: Buffer): Promise<string[]> {
  installPaxCodec();
  const names: string[] = [];
  const ex = extract();
  Readable.from(tar).pipe(ex as unknown as NodeJS.WritableStream);
  for await (const e of ex) {
    names.push(e.header.name);
    e.resume();
  }
  return names;
}

/** assertHostUntouched checks that the host dir, its canary and the sandbox are as sandbox() left them. */
async function assertHostUntouched(t: ExecutionContext, s: Sandbox): Promise<void> {
  t.deepEqual(await readdir(s.host), ['canary'], 'no new file in the host directory');
  t.is(await readFile(join(s.host, 'canary'), 'utf8'), CANARY, 'canary content');
  const st = await stat(join(s.host, 'canary'));
  t.is(st.mtime.getTime(), CANARY_TIME.getTime(), 'canary mtime');
  t.is(st.nlink, 1, 'no hardlink to the canary');
  t.is(st.mode & 0o7777, 0o644, 'canary mode');
  const hostSt = await stat(s.host);
  t.is(hostSt.mtime.getTime(), CANARY_TIME.getTime(), 'host directory mtime (nothing added or removed)');
  t.is(hostSt.mode & 0o7777, 0o755, 'host directory mode');
  t.deepEqual((await readdir(s.base)).sort(), ['host', 'root'], 'nothing created next to the root');
}

async function expectRefused(t: ExecutionContext, tar: Buffer, root: string): Promise<void> {
  const err = await t.throwsAsync(applyLayer(Readable.from(tar), { root }));
  t.true(err instanceof TsbuildError);
  t.is((err as TsbuildError).code, 'E_UNSAFE_ENTRY');
  t.false(err?.message.includes('\n'), 'one line');
  const m = /^refusing layer entry ("(?:[^"\\]|\\.)*"): ./.exec(err?.message ?? '');
  t.truthy(m, err?.message);
  const named = JSON.parse(m?.[1] ?? '""') as string;
  t.true((await entryNames(tar)).includes(named), `the message names an entry of the layer: ${named}`);
}

const refusesLayer = test.macro({
  async exec(t, make: (host: string) => Buffer) {
    const s = await sandbox(t);
    await expectRefused(t, make(s.host), s.root);
    await assertHostUntouched(t, s);
  },
  title: (name) => `applyLayer refuses the hostile layer ${name} and leaves the host alone`,
});

for (const [name, make] of Object.entries(hostileLayers)) test(name, refusesLayer, make);

const refusesTopLayer = test.macro({
  async exec(t, make: (host: string) => Buffer[]) {
    const s = await sandbox(t);
    const layers = make(s.host);
    const top = layers.pop() as Buffer;
    for (const lower of layers) await applyLayer(Readable.from(lower), { root: s.root });
    await expectRefused(t, top, s.root);
    await assertHostUntouched(t, s);
  },
  title: (name) => `applyLayer refuses the top layer of the hostile stack ${name} and leaves the host alone`,
});

for (const [name, make] of Object.entries(hostileLayerStacks)) test(name, refusesTopLayer, make);

test('every hostile fixture is a tar that GNU tar reads too', async (t) => {
  const { execFileSync } = await import('node:child_process');
  const s = await sandbox(t);
  const tars = [
    ...Object.values(hostileLayers).map((m) => m(s.host)),
    ...Object.values(hostileLayerStacks).flatMap((m) => m(s.host)),
  ];
  for (const tar of tars) {
    const listed = execFileSync('tar', ['-tf', '-'], { input: tar, stdio: ['pipe', 'pipe', 'ignore'] })
      .toString()
      .trim()
      .split('\n');
    t.is(listed.length, (await entryNames(tar)).length);
  }
});

test('a lower-layer symlink to an absolute path is followed inside the root, never to the host', async (t) => {
  const s = await sandbox(t);
  const { tarSync } = await import('../../../fixtures/hostile-layers.js');
  await applyLayer(Readable.from(tarSync([{ name: 'a', type: 'symlink', linkname: s.host }])), { root: s.root });
  await applyLayer(Readable.from(tarSync([{ name: 'a/pwned', data: 'inside\n' }, { name: 'a/.wh.canary' }])), {
    root: s.root,
  });
  t.is(await readFile(join(s.root, s.host, 'pwned'), 'utf8'), 'inside\n');
  await assertHostUntouched(t, s);
});

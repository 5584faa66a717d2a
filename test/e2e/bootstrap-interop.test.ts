// A Debian base from `tsbuild bootstrap`, read back by skopeo and umoci: umoci's rootfs equals tsbuild unpack's.
import test from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { getImage } from '../../layers/store/image.js';
import { Store } from '../../layers/store/store.js';
import { verifyImage } from '../../layers/store/verify.js';
import { makeTempDir, removeDir, rootTest, tsbuild } from '../helpers/index.js';
import { debianStore } from '../helpers/images.js';

const exec = promisify(execFile);

interface Entry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  link?: string;
  sha256?: string;
  rdev?: number;
}

async function hashFile(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  return h.digest('hex');
}

/** walk records every path below root with what the acceptance compares: type, mode, owner, link target, content. */
async function walk(root: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const visit = async (rel: string): Promise<void> => {
    for (const name of await readdir(join(root, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(root, r);
      const st = await lstat(p);
      const e: Entry = { type: '', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      if (st.isDirectory()) e.type = 'dir';
      else if (st.isSymbolicLink()) {
        e.type = 'symlink';
        e.link = await readlink(p);
      } else if (st.isFile()) {
        e.type = 'file';
        e.sha256 = await hashFile(p);
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        e.type = st.isCharacterDevice() ? 'char' : 'block';
        e.rdev = st.rdev;
      } else if (st.isFIFO()) e.type = 'fifo';
      else e.type = 'other';
      out.set(r, e);
      if (st.isDirectory()) await visit(r);
    }
  };
  await visit('');
  return out;
}

rootTest(
  'bootstrap debian:bookworm gives an image that skopeo inspects and umoci unpacks to the same rootfs as tsbuild unpack',
  async (t) => {
    const root = await debianStore();
    const { stdout } = await exec('skopeo', ['inspect', `oci:${root}:debian:bookworm`]);
    const info = JSON.parse(stdout) as { Os: string; Architecture: string; Layers: string[] };
    t.is(info.Os, 'linux');
    t.is(info.Architecture, 'amd64');
    t.is(info.Layers.length, 1);

    const dir = await makeTempDir();
    t.teardown(() => removeDir(dir));
    await exec('umoci', ['unpack', '--image', `${root}:debian:bookworm`, join(dir, 'bundle')], { maxBuffer: 64 << 20 });
    const r = await tsbuild(['--root', root, 'unpack', 'debian:bookworm', join(dir, 'ours')]);
    t.is(r.code, 0, r.stderr);

    const theirs = await walk(join(dir, 'bundle', 'rootfs'));
    const ours = await walk(join(dir, 'ours'));
    t.true(ours.size > 3000, `a minbase rootfs has thousands of paths (got ${ours.size})`);
    const onlyTheirs = [...theirs.keys()].filter((k) => !ours.has(k));
    const onlyOurs = [...ours.keys()].filter((k) => !theirs.has(k));
    t.deepEqual(onlyTheirs, []);
    t.deepEqual(onlyOurs, []);
    const differ = [...ours].filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(theirs.get(k))).map(([k]) => k);
    t.deepEqual(differ.slice(0, 10), [], `${differ.length} paths differ`);
    const osRelease = ours.get('etc/os-release');
    t.is(osRelease?.type, 'symlink');
  },
);

rootTest('bootstrap records a reproducible image: created from SOURCE_DATE_EPOCH and a bash CMD', async (t) => {
  const root = await debianStore();
  const r = await tsbuild(['--root', root, 'inspect', 'debian:bookworm']);
  t.is(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  t.is(info.config.created, '2023-11-14T22:13:20Z');
  t.deepEqual(info.config.config.Cmd, ['bash']);
  t.regex(info.config.history[0].created_by, /^tsbuild bootstrap debian:bookworm --variant minbase/);
  const store = await Store.open(root);
  t.deepEqual(await verifyImage(store, await getImage(store, 'debian:bookworm')), []);
});

test('bootstrap of an unknown distribution fails with the list of supported ones', async (t) => {
  const r = await tsbuild(['--root', '/nonexistent-store-not-created', 'bootstrap', 'fedora:40']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^error: cannot bootstrap "fedora:40"\nhint: supported: debian:<suite>/);
});

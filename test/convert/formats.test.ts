import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdir, open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { extract } from 'tar-stream';
import { createReadStream } from 'node:fs';
import { copySparse, outputFormat, placeOutput, writeRootfsTar } from '../../convert/formats.js';
import type { OwnerMap } from '../../convert/owners.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const formats = test.macro({
  exec(t, file: string, explicit: string | undefined, want: string) {
    t.is<string, string>(outputFormat(file, explicit), want);
  },
  title: (_, file: string, explicit: string | undefined, want: string) =>
    `${file}${explicit ? ` --format ${explicit}` : ''} is ${want}`,
});
test(formats, 'app.qcow2', undefined, 'qcow2');
test(formats, 'app.img', undefined, 'raw');
test(formats, 'APP.RAW', undefined, 'raw');
test(formats, 'app.vmdk', undefined, 'vmdk');
test(formats, 'app.vhdx', undefined, 'vhdx');
test(formats, 'rootfs.tar', undefined, 'tar');
test(formats, 'disk.bin', 'qcow2', 'qcow2');

test('an unknown extension without --format is an error that names the extensions', (t) => {
  t.throws(() => outputFormat('app.iso'), { message: /cannot tell the format/ });
  t.throws(() => outputFormat('app.qcow2', 'vdi'), { message: /--format must be one of/ });
});

async function sparseFile(dir: string): Promise<string> {
  const f = join(dir, 'sparse.raw');
  const fh = await open(f, 'w');
  await fh.truncate(64 << 20);
  await fh.write(Buffer.alloc(4096, 7), 0, 4096, 10 << 20);
  await fh.close();
  return f;
}

test('copySparse keeps the holes and the bytes', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const src = await sparseFile(dir);
  await copySparse(src, join(dir, 'copy.raw'));
  const st = statSync(join(dir, 'copy.raw'));
  t.is(st.size, 64 << 20);
  t.true(st.blocks * 512 < 1 << 20, `copy allocates ${st.blocks * 512} bytes`);
  execFileSync('cmp', [src, join(dir, 'copy.raw')]);
});

test('placeOutput moves the file over the output and removes temp files of dead exports', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await mkdir(join(dir, 'out'));
  const stale = join(dir, 'out', '.app.raw.tsbuild-export-999999999-abcd');
  await writeFile(stale, 'partial');
  await writeFile(join(dir, 'out', 'app.raw'), 'old');
  const src = await sparseFile(dir);
  t.is(await placeOutput(src, join(dir, 'out', 'app.raw')), 64 << 20);
  t.false(existsSync(src));
  t.deepEqual(await readdir(join(dir, 'out')), ['app.raw']);
});

async function tarEntries(file: string): Promise<Map<string, { uid: number; gid: number; mode: number }>> {
  const out = new Map<string, { uid: number; gid: number; mode: number }>();
  const ex = extract();
  ex.on('entry', (h, s, next) => {
    out.set(h.name.replace(/\/$/, ''), { uid: h.uid ?? 0, gid: h.gid ?? 0, mode: h.mode ?? 0 });
    s.on('end', next);
    s.resume();
  });
  await new Promise<void>((resolve, reject) => {
    ex.on('finish', () => resolve());
    ex.on('error', reject);
    createReadStream(file).pipe(ex);
  });
  return out;
}

test('the rootfs tar of an unprivileged export carries the owners the image layers say', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await mkdir(join(dir, 'root/etc'), { recursive: true });
  await writeFile(join(dir, 'root/etc/shadow'), 'x');
  await writeFile(join(dir, 'root/etc/fstab'), 'y');
  const owners: OwnerMap = new Map([['etc/shadow', { uid: 0, gid: 42, mode: 0o640, type: 'file' }]]);
  await writeRootfsTar({ rootfs: join(dir, 'root'), file: join(dir, 'rootfs.tar'), owners });
  const entries = await tarEntries(join(dir, 'rootfs.tar'));
  t.deepEqual(entries.get('etc/shadow'), { uid: 0, gid: 42, mode: 0o640 });
  t.is(entries.get('etc/fstab')?.uid, 0);
});

// Bit-for-bit reproducible disks (issue 16): with SOURCE_DATE_EPOCH set, the same image exported from two stores
// (each loaded from one `tsbuild save` archive) to two output paths gives byte-identical qcow2, raw and vmdk files,
// for MBR + GRUB, MBR + extlinux and GPT + UEFI; and the same small Dockerfile built FROM that image in both stores
// gives byte-identical disks too; and so does one store whether the raw disk was made in memory, in the store, or
// in memory that filled up. The image already holds its kernel (withKernelLayer), so no export installs one.
// Booting is left to export-debian.test.ts.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isRoot, makeTempDir, removeDir, repoRoot, rootTest, runCommand, tsbuild } from '../helpers/index.js';
import { buildOutput, exportStore, withKernelLayer } from '../convert/export-fixtures.js';

const SOURCE_DATE_EPOCH = '1700000000';
const env = { SOURCE_DATE_EPOCH };
let work: string;
let storeA: string;
let storeB: string;
const IMAGE = `app-kernel-repro:${process.pid}`;

test.before(async () => {
  if (!isRoot) return;
  const shared = await exportStore();
  const k = await withKernelLayer(shared, 'app:0.1', IMAGE);
  if (k.code !== 0) throw new Error(buildOutput(k));
  work = await makeTempDir('tsbuild-repro-');
  const archive = join(work, 'image.tar');
  try {
    const s = await tsbuild(['--root', shared, 'save', IMAGE, '-o', archive]);
    if (s.code !== 0) throw new Error(`save: ${s.stderr}`);
  } finally {
    await tsbuild(['--root', shared, 'rm', IMAGE]);
  }
  storeA = join(work, 'store-a');
  storeB = join(work, 'store-b');
  for (const root of [storeA, storeB]) {
    const l = await tsbuild(['--root', root, 'load', '-i', archive]);
    if (l.code !== 0) throw new Error(`load into ${root}: ${l.stderr}`);
  }
});
test.after.always(async () => {
  if (work) await removeDir(work);
});

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** firstDifference is the first offset at which two files differ, or -1. */
async function firstDifference(a: string, b: string): Promise<number> {
  const fa = await open(a, 'r');
  const fb = await open(b, 'r');
  try {
    const ba = Buffer.alloc(1 << 20);
    const bb = Buffer.alloc(1 << 20);
    for (let pos = 0; ; pos += ba.length) {
      const ra = (await fa.read(ba, 0, ba.length, pos)).bytesRead;
      const rb = (await fb.read(bb, 0, bb.length, pos)).bytesRead;
      const n = Math.min(ra, rb);
      for (let i = 0; i < n; i++) if (ba[i] !== bb[i]) return pos + i;
      if (ra !== rb) return pos + n;
      if (ra === 0) return -1;
    }
  } finally {
    await fa.close();
    await fb.close();
  }
}

/**
 * structureAt names what a raw disk holds at `offset`: the MBR/GPT, a gap, a partition, and inside the root ext4 the
 * block and (from debugfs icheck/ncheck) the file it belongs to.
 */
function structureAt(raw: string, offset: number): string {
  if (offset < 440) return 'MBR boot code';
  if (offset < 512) return 'MBR partition table / disk signature';
  try {
    const parts = (
      JSON.parse(execFileSync('sfdisk', ['--json', raw]).toString()) as {
        partitiontable: { partitions: Array<{ node: string; start: number; size: number; type: string }> };
      }
    ).partitiontable.partitions;
    const p = parts.find((q) => offset >= q.start * 512 && offset < (q.start + q.size) * 512);
    if (!p) return offset < 1 << 20 ? 'before the first partition (GPT / GRUB core.img)' : 'outside every partition';
    const rel = offset - p.start * 512;
    const where = `partition ${p.node} (type ${p.type}) at +${rel}`;
    if (p !== parts.at(-1)) return where;
    const dev = `${raw}?offset=${p.start * 512}`;
    const block = Math.floor(rel / 4096);
    const q = (cmd: string): string =>
      execFileSync('debugfs', ['-R', cmd, dev], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const ino = /\t(\d+)\s*$/m.exec(q(`icheck ${block}`))?.[1];
    const file = ino ? /\t(\S.*)$/m.exec(q(`ncheck ${ino}`))?.[1] : undefined;
    return `${where}: ext4 block ${block}${ino ? `, inode ${ino}${file ? ` (${file})` : ''}` : ' (metadata)'}`;
  } catch (err) {
    return `(could not tell: ${(err as Error).message.split('\n')[0]})`;
  }
}

/** explain is the assertion message for two files that differ. */
async function explain(a: string, b: string, format: string): Promise<string> {
  const off = await firstDifference(a, b);
  if (format === 'raw') return `${a} and ${b} first differ at byte ${off}: ${structureAt(a, off)}`;
  // a container: convert both to raw to locate the guest bytes too
  const ra = `${a}.check.raw`;
  const rb = `${b}.check.raw`;
  execFileSync('qemu-img', ['convert', '-O', 'raw', a, ra]);
  execFileSync('qemu-img', ['convert', '-O', 'raw', b, rb]);
  const guest = await firstDifference(ra, rb);
  const inGuest = guest < 0 ? 'the guest disks are identical' : `guest byte ${guest}: ${structureAt(ra, guest)}`;
  return `${a} and ${b} first differ at file byte ${off} (${format} container); ${inGuest}`;
}

async function exportTwice(
  t: { is: (a: unknown, b: unknown, m?: string) => void; log: (...s: string[]) => void },
  image: string,
  file: string,
  flags: string[],
): Promise<void> {
  const outA = join(work, 'out-a', 'x', file);
  const outB = join(work, 'out-b-elsewhere', `other-${file}`);
  execFileSync('mkdir', ['-p', join(work, 'out-a', 'x'), join(work, 'out-b-elsewhere')]);
  const ra = await tsbuild(['--root', storeA, 'export', image, '-o', outA, ...flags], { env });
  t.is(ra.code, 0, ra.stderr);
  await new Promise((r) => setTimeout(r, 1100)); // another second: a clock reading would show
  const rb = await tsbuild(['--root', storeB, 'export', image, '-o', outB, ...flags], { env });
  t.is(rb.code, 0, rb.stderr);
  if (ra.code !== 0 || rb.code !== 0) return;
  const [ha, hb] = [await sha256(outA), await sha256(outB)];
  const format = file.slice(file.lastIndexOf('.') + 1);
  t.is(ha, hb, ha === hb ? '' : await explain(outA, outB, format));
  t.log(`${file} ${flags.join(' ')}: sha256 ${ha} (both)`);
}

rootTest('MBR + GRUB qcow2: byte-identical from two stores', async (t) => {
  await exportTwice(t, IMAGE, 'grub.qcow2', ['--bootloader', 'grub']);
});

rootTest('MBR + extlinux raw: byte-identical from two stores', async (t) => {
  await exportTwice(t, IMAGE, 'extlinux.raw', ['--bootloader', 'extlinux']);
});

rootTest('GPT + UEFI qcow2: byte-identical from two stores', async (t) => {
  await exportTwice(t, IMAGE, 'uefi.qcow2', ['--boot', 'uefi']);
});

rootTest('MBR + GRUB vmdk: byte-identical from two stores', async (t) => {
  await exportTwice(t, IMAGE, 'grub.vmdk', ['--bootloader', 'grub']);
});

rootTest('--uuid sets the filesystem UUID, and the rest of the disk still matches', async (t) => {
  const uuid = '0f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5b';
  await exportTwice(t, IMAGE, 'uuid.raw', ['--uuid', uuid]);
  const out = join(work, 'out-a', 'x', 'uuid.raw');
  const got = execFileSync('blkid', ['-p', '-O', String(1 << 20), '-o', 'value', '-s', 'UUID', out])
    .toString()
    .trim();
  t.is(got, uuid);
});

rootTest('the same Dockerfile built FROM the loaded image in two stores gives byte-identical disks', async (t) => {
  const ctx = join(work, 'ctx');
  execFileSync('mkdir', ['-p', ctx]);
  await writeFile(join(ctx, 'hello.txt'), 'hello, reproducible disk\n');
  await writeFile(
    join(ctx, 'Dockerfile'),
    `FROM ${IMAGE}\nCOPY hello.txt /srv/app/hello.txt\nENV REPRO=1\nCMD ["cat", "/srv/app/hello.txt"]\n`,
  );
  for (const root of [storeA, storeB]) {
    const b = await tsbuild(['--root', root, 'build', '-t', 'repro-app:1', '--progress', 'plain', ctx], { env });
    t.is(b.code, 0, buildOutput(b));
  }
  const digest = async (root: string): Promise<string> =>
    (JSON.parse((await tsbuild(['--root', root, 'inspect', 'repro-app:1'])).stdout) as { digest: string }).digest;
  const [ia, ib] = [await digest(storeA), await digest(storeB)];
  t.is(ia, ib, 'the two builds made the same image');
  await exportTwice(t, 'repro-app:1', 'built.qcow2', []);
});

rootTest(
  'the disk is the same whether its raw disk was made in memory, in the store, or in memory that filled up',
  async (t) => {
    const dir = join(work, 'scratch');
    execFileSync('mkdir', ['-p', dir]);
    const exportArgs = (name: string): string[] => ['--root', storeA, 'export', IMAGE, '-o', join(dir, name)];
    const memory = await tsbuild(exportArgs('memory.qcow2'), { env: { ...env, TSBUILD_EXPORT_SCRATCH: 'memory' } });
    t.is(memory.code, 0, memory.stderr);
    t.regex(memory.stderr, /disk \(made in memory\):/);
    const disk = await tsbuild(exportArgs('disk.qcow2'), { env: { ...env, TSBUILD_EXPORT_SCRATCH: 'disk' } });
    t.is(disk.code, 0, disk.stderr);
    t.notRegex(disk.stderr, /made in memory/);
    // a 4 MiB tmpfs over /dev/shm, in a mount namespace of the export's own: mkfs runs out and runs again in the store
    const full = await runCommand(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        'mount -t tmpfs -o size=4m tsbuild-test /dev/shm && exec "$@"',
        'sh',
        process.execPath,
        '--',
        join(repoRoot, 'bin', 'tsbuild.js'),
        ...exportArgs('full.qcow2'),
      ],
      { env: { ...process.env, ...env, TSBUILD_EXPORT_SCRATCH: 'memory' } },
    );
    t.is(full.code, 0, full.stderr);
    t.regex(
      full.stderr,
      /out of space with the raw disk in \/dev\/shm\/tsbuild-export-\d+-[0-9a-f]+; again in the store/,
    );
    const [hm, hd, hf] = await Promise.all(['memory', 'disk', 'full'].map((n) => sha256(join(dir, `${n}.qcow2`))));
    t.is(hd, hm, hd === hm ? '' : await explain(join(dir, 'memory.qcow2'), join(dir, 'disk.qcow2'), 'qcow2'));
    t.is(hf, hm, hf === hm ? '' : await explain(join(dir, 'memory.qcow2'), join(dir, 'full.qcow2'), 'qcow2'));
  },
);

rootTest(
  'a plain qcow2 (--compress none) holds the same guest disk as the raw export, whether made in memory or in the store',
  async (t) => {
    const dir = join(work, 'plain');
    execFileSync('mkdir', ['-p', dir]);
    const exportTo = async (name: string, flags: string[], scratch?: string): Promise<string> => {
      const out = join(dir, name);
      const r = await tsbuild(['--root', storeA, 'export', IMAGE, '-o', out, ...flags], {
        env: { ...env, ...(scratch ? { TSBUILD_EXPORT_SCRATCH: scratch } : {}) },
      });
      t.is(r.code, 0, r.stderr);
      return out;
    };
    const raw = await exportTo('disk.raw', []);
    for (const scratch of ['memory', 'disk']) {
      const qcow2 = await exportTo(`${scratch}.qcow2`, ['--compress', 'none'], scratch);
      execFileSync('qemu-img', ['check', qcow2], { stdio: 'ignore' });
      const same = await runCommand('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, qcow2]);
      t.is(same.code, 0, `${scratch}: ${same.stdout}${same.stderr}`);
      t.regex(same.stdout, /Images are identical/);
    }
  },
);

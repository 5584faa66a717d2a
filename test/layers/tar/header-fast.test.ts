import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeFastDecode, tarStreamHeaders } from '../../helpers/tar-stream-fast-header.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

type Decode = (buf: Buffer, enc?: BufferEncoding, allowUnknown?: boolean) => unknown;

// tar-stream's own decoder: nothing in this file installs the fast one.
const original = tarStreamHeaders().decode as Decode;
const fast = makeFastDecode(original);

function outcome(decode: Decode, block: Buffer, allowUnknown = false): unknown {
  try {
    return { ok: decode(block, 'utf-8', allowUnknown) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** headerBlocks walks a tar and returns every 512-byte header block (PAX and GNU long-name headers included). */
function headerBlocks(tar: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off + 512 <= tar.length;) {
    const block = tar.subarray(off, off + 512);
    out.push(Buffer.from(block));
    const h = original(block, 'utf-8', true) as { size: number } | null;
    if (h === null) {
      off += 512;
      continue;
    }
    off += 512 + Math.ceil(h.size / 512) * 512;
  }
  return out;
}

function withChecksum(block: Buffer): Buffer {
  const b = Buffer.from(block);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

test('the fast header decoder agrees with tar-stream on every header GNU tar writes, in every format', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await mkdir(
    join(dir, 'src/a/very/deep/path/that/keeps/going/on/and/on/until/it/is/longer/than/one/hundred/bytes/for/sure'),
    {
      recursive: true,
    },
  );
  await writeFile(join(dir, 'src/file'), 'x'.repeat(1000));
  await writeFile(join(dir, 'src/ünïcödé-name'), 'u');
  await writeFile(join(dir, 'src', 'n'.repeat(150)), 'long name');
  await symlink('t'.repeat(120), join(dir, 'src/long-link'));
  execFileSync('mkfifo', [join(dir, 'src/fifo')]);
  let blocks = 0;
  let fallbacks = 0; // headers the fast decoder handed back to tar-stream's
  const counted = makeFastDecode((...args) => {
    fallbacks++;
    return original(...args);
  });
  for (const format of ['gnu', 'oldgnu', 'posix', 'ustar', 'v7']) {
    const extra = format === 'gnu' || format === 'posix' ? ['--owner=someone:3000000', '--group=grp:2100000'] : [];
    // ustar and v7 cannot hold some of these names: GNU tar skips those (exit 2) and writes the rest.
    const r = spawnSync(
      'tar',
      [`--format=${format}`, '--numeric-owner', ...extra, '-cf', '-', '-C', join(dir, 'src'), '.'],
      { maxBuffer: 1 << 24 },
    );
    t.true(r.stdout.length > 1024, format);
    for (const block of headerBlocks(r.stdout)) {
      blocks++;
      t.deepEqual(outcome(counted, block), outcome(original, block), `${format} block`);
      t.deepEqual(
        outcome(fast, block, true),
        outcome(original, block, true),
        `${format} block, unknown formats allowed`,
      );
    }
  }
  t.true(blocks > 40);
  t.true(fallbacks < blocks / 2, `the fast path decoded most headers itself (${fallbacks} of ${blocks} fell back)`);
});

test('the fast header decoder agrees with tar-stream on mangled headers', (t) => {
  const tar = execFileSync('tar', ['--format=gnu', '-cf', '-', '-C', '/etc', 'hostname', 'passwd'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const [first] = headerBlocks(tar);
  if (!first) return t.fail('no header');
  // A fixed pseudo-random sequence: reproducible failures.
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = [0, 0x20, 0x30, 0x37, 0x38, 0x2d, 0x2b, 0x80, 0xff, 0x61, 0x2f];
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(first);
    for (let k = 0; k < 1 + rand(4); k++) b[rand(512)] = alphabet[rand(alphabet.length)] as number;
    const fixed = rand(4) > 0 ? withChecksum(b) : b;
    t.deepEqual(outcome(fast, fixed), outcome(original, fixed));
  }
  t.deepEqual(outcome(fast, Buffer.alloc(512)), { ok: null });
});

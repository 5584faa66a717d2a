// Malformed archives through the two users of layers/tar/read.ts: applyLayer fails with one line, E_INVALID,
// "layer tar is truncated or corrupt: …", and TarCheck (import, bootstrap) with "…: not a valid tar archive: …";
// neither waits forever, whatever the archive claims (a directory with a size, a base-256 size it cannot read, 1 TB).
import test from 'ava';
import { once } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tarSync } from '../../../fixtures/hostile-layers.js';
import { TsbuildError } from '../../../sys/errors.js';
import { applyLayer } from '../../../layers/tar/apply.js';
import { TarCheck } from '../../../layers/tar/check.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

/** block makes one ustar header block with a right checksum; `size` is written into the size field as given. */
function block(name: string, type: string, size: string | Buffer): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 100, 'utf8');
  b.write('0000644\0', 100, 'latin1');
  b.write('0000000\0', 108, 'latin1');
  b.write('0000000\0', 116, 'latin1');
  if (typeof size === 'string') b.write(size, 124, 12, 'latin1');
  else size.copy(b, 124, 0, 12);
  b.write('14002351234\0', 136, 'latin1');
  b.write(type, 156, 1, 'latin1');
  b.write('ustar\x0000', 257, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}
const octal = (n: number): string => `${n.toString(8).padStart(11, '0')}\0`;
const END = Buffer.alloc(1024);

const good = tarSync([
  { name: 'a/', type: 'directory' },
  { name: 'a/f', data: 'x'.repeat(1000) },
]);
const badBase256 = Buffer.alloc(12);
badBase256[0] = 0x81;
badBase256[11] = 1;

const malformed: Record<string, { tar: Buffer; says: RegExp }> = {
  'a bad checksum': {
    tar: (() => {
      const b = Buffer.from(good);
      b[600] ^= 4; // inside the second header's name
      return b;
    })(),
    says: /Invalid tar header/,
  },
  'truncated data': { tar: good.subarray(0, 512 * 2 + 300), says: /Unexpected end of data/ },
  'a size that is not a number': {
    tar: Buffer.concat([block('f', '0', 'not-a-num\0\0\0'), END]),
    says: /Invalid header/,
  },
  'a header that claims 1 TB': {
    tar: Buffer.concat([block('f', '0', octal(2 ** 40)), Buffer.alloc(8192, 'd')]),
    says: /Unexpected end of data/,
  },
  'a base-256 size tar-stream read as null (and waited forever)': {
    tar: Buffer.concat([block('f', '0', badBase256), Buffer.alloc(512), END]),
    says: /Invalid header/,
  },
  'trailing garbage after the end-of-archive blocks': {
    tar: Buffer.concat([good, Buffer.alloc(512, 'junk')]),
    says: /Invalid tar header/,
  },
};

for (const [what, { tar, says }] of Object.entries(malformed)) {
  test(`applyLayer: ${what} is one line, E_INVALID, naming the problem`, async (t) => {
    const root = await makeTempDir('tsbuild-read-errors-');
    t.teardown(() => removeDir(root));
    const input = Readable.from([tar.subarray(0, 700), tar.subarray(700)]);
    const err = await t.throwsAsync(applyLayer(input, { root }));
    t.true(err instanceof TsbuildError);
    t.is((err as TsbuildError).code, 'E_INVALID');
    t.regex(err?.message ?? '', /^layer tar is truncated or corrupt: /);
    t.regex(err?.message ?? '', says);
    t.false(err?.message.includes('\n'));
    t.true(input.destroyed);
  });

  test(`TarCheck: ${what} fails the stream as not a valid tar archive`, async (t) => {
    const check = new TarCheck('layer.tar');
    const err = await t.throwsAsync(
      pipeline(
        Readable.from([tar]),
        check,
        new Writable({
          write: (_c, _e, cb) => cb(),
        }),
      ),
    );
    t.regex(err?.message ?? '', /^layer\.tar: not a valid tar archive: /);
    t.regex(err?.message ?? '', says);
  });
}

test('TarCheck passes the bytes through unchanged and counts the entries; a directory with a size does not stall it', async (t) => {
  const dirWithSize = Buffer.concat([block('d/', '5', octal(1024)), block('d/f', '0', octal(0)), END]);
  for (const [tar, entries] of [
    [good, 2],
    [dirWithSize, 2],
  ] as const) {
    const check = new TarCheck('x.tar');
    const out: Buffer[] = [];
    check.on('data', (c: Buffer) => out.push(c));
    const done = once(check, 'end');
    Readable.from([tar.subarray(0, 100), tar.subarray(100, 1500), tar.subarray(1500)]).pipe(check);
    await done;
    t.deepEqual(Buffer.concat(out), tar);
    t.is(check.entries, entries);
  }
});

test('TarCheck refuses an unsafe name before it passes on the chunk that holds it', async (t) => {
  const tar = tarSync([
    { name: 'ok', data: 'fine' },
    { name: '../escape', data: 'bad' },
  ]);
  const check = new TarCheck('x.tar');
  const out: Buffer[] = [];
  check.on('data', (c: Buffer) => out.push(c));
  const err = await t.throwsAsync(pipeline(Readable.from([tar.subarray(0, 1024), tar.subarray(1024)]), check));
  t.is((err as TsbuildError).code, 'E_UNSAFE_ENTRY');
  t.deepEqual(Buffer.concat(out), tar.subarray(0, 1024));
});

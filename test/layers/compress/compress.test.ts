import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { CompressStream } from 'zstd-napi';
import {
  autoDecompress,
  compressStream,
  CorruptDataError,
  decompressStream,
  detectCompression,
  shutdownGzipPool,
  type CompressOptions,
} from '../../../layers/compress/compress.js';
import { InvalidInputError } from '../../../sys/errors.js';
import { GZIP_BLOCK_SIZE } from '../../../layers/compress/gzip-parallel.js';
import type { Compression } from '../../../layers/model/types.js';
import { which } from '../../../sys/exec.js';
import { makeTempDir, removeDir, repoRoot } from '../../helpers/index.js';

const BLOCK = GZIP_BLOCK_SIZE;
const MiB = 1024 * 1024;

test.after.always(() => shutdownGzipPool());

// ---------------------------------------------------------------------------------------------------------------
// helpers

/** run pipes `input` (in chunks of `chunkSize`) through `stream` and returns everything it produced. */
async function run(stream: Duplex, input: Buffer, chunkSize = 64 * 1024): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(chunks(input, chunkSize)),
    stream,
    new Writable({
      write(b: Buffer, _e, cb) {
        out.push(b);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

function* chunks(data: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

const compress = (c: Compression, data: Buffer, opts?: CompressOptions, chunkSize?: number): Promise<Buffer> =>
  run(compressStream(c, opts), data, chunkSize);
const decompress = (c: Compression | 'bzip2' | 'xz', data: Buffer): Promise<Buffer> => run(decompressStream(c), data);
const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** text-like bytes that compress about 3:1, the same for the same seed */
function compressible(n: number, seed = 1): Buffer {
  const words = [
    'usr',
    'lib',
    'share',
    'layer',
    'blob',
    'sha256:',
    'manifest',
    'config',
    '/',
    '\n',
    ' ',
    '.so',
    '0',
    '1',
    '42',
    'x86_64',
  ];
  const out = Buffer.allocUnsafe(n);
  let x = seed;
  let i = 0;
  while (i < n) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    i += out.write(words[(x >>> 0) % words.length] as string, i, 'latin1');
  }
  return out;
}

const textBase = compressible(4 * MiB);

/** mixed is n bytes of 1 MiB segments: every third one random, the others text. */
function mixed(n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let off = 0, i = 0; off < n; off += MiB, i++) {
    const len = Math.min(MiB, n - off);
    if (i % 3 === 0) randomBytes(len).copy(out, off);
    else textBase.copy(out, off, (i * 7919) % MiB, ((i * 7919) % MiB) + len);
  }
  return out;
}

interface ToolResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** tool runs a host command with `input` on stdin. */
function tool(
  argv: string[],
  input?: Buffer,
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    const child = spawn(cmd as string, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      cwd: opts.cwd,
      env: opts.env ?? process.env,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await makeTempDir('tsbuild-compress-');
  t.teardown(() => removeDir(dir));
  return dir;
}

// ---------------------------------------------------------------------------------------------------------------
// round trips

const sizes: [string, number][] = [
  ['empty input', 0],
  ['1 byte', 1],
  ['exactly one gzip block', BLOCK],
  ['one block and one byte', BLOCK + 1],
  ['many blocks', 9 * BLOCK + 12_345],
];

const roundTrip = test.macro({
  async exec(t, c: Compression, size: number) {
    const data = compressible(size, size + 7);
    const packed = await compress(c, data, { threads: 2 });
    if (c === 'none') t.true(packed.equals(data));
    else t.true(packed.length < data.length || size < 64, 'the output is compressed');
    t.true((await decompress(c, packed)).equals(data));
  },
  title: (name = '', c: Compression) => `${c} round-trips ${name}`,
});

for (const c of ['gzip', 'zstd', 'none'] as const) {
  for (const [name, size] of sizes) test(name, roundTrip, c, size);
}

const bigRoundTrip = test.macro({
  async exec(t, c: 'gzip' | 'zstd') {
    const data = mixed(50 * 1000 * 1000);
    const packed = await compress(c, data);
    t.true(packed.length < data.length * 0.7);
    t.true((await decompress(c, packed)).equals(data), 'tsbuild decompresses it');
    const check = await tool([c, '-t'], packed);
    t.is(check.code, 0, check.stderr);
    const cli = await tool([c, '-dc'], packed);
    t.is(cli.code, 0, cli.stderr);
    t.true(cli.stdout.equals(data), `${c} -dc gives the input back`);
  },
  title: (_ = '', c: string) => `${c} round-trips 50 MB of random and compressible data, and the ${c} CLI agrees`,
});
test(bigRoundTrip, 'gzip');
test(bigRoundTrip, 'zstd');

test('gzip output is byte-identical whatever the thread count, the run and the input chunking', async (t) => {
  const data = mixed(6 * MiB + 777);
  const digests = new Set<string>();
  for (const threads of [1, 2, 4]) digests.add(digest(await compress('gzip', data, { threads })));
  digests.add(digest(await compress('gzip', data, { threads: 2 })));
  digests.add(digest(await compress('gzip', data, { threads: 3 }, 7777)));
  digests.add(digest(await compress('gzip', data, { threads: 2 }, BLOCK)));
  t.is(digests.size, 1);
});

test('zstd output is byte-identical for 1, 2 and 4 worker threads and across runs', async (t) => {
  const data = mixed(24 * MiB + 5); // several zstd jobs at level 3 (a job is 4 × the window)
  const digests = new Set<string>();
  for (const threads of [1, 2, 4]) digests.add(digest(await compress('zstd', data, { threads })));
  digests.add(digest(await compress('zstd', data, { threads: 2 }, 5555)));
  t.is(digests.size, 1);
});

test('zstd output is exactly what zstd-napi CompressStream writes with the same parameters', async (t) => {
  for (const data of [Buffer.alloc(0), Buffer.from('x'), mixed(20 * MiB + 3)]) {
    const reference = await run(new CompressStream({ compressionLevel: 3, nbWorkers: 2, checksumFlag: true }), data);
    t.true((await compress('zstd', data, { threads: 2 })).equals(reference), `${data.length} bytes`);
  }
});

test('zstd output is a frame the zstd CLI checks and decompresses', async (t) => {
  const data = mixed(3 * MiB);
  const packed = await compress('zstd', data, { threads: 2 });
  t.deepEqual([...packed.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]);
  t.is((await tool(['zstd', '-t'], packed)).code, 0);
  t.true((await tool(['zstd', '-dc'], packed)).stdout.equals(data));
});

test('zstd levels other than 3 round-trip', async (t) => {
  const data = mixed(2 * MiB);
  for (const level of [1, 19, -5]) {
    t.true((await decompress('zstd', await compress('zstd', data, { level }))).equals(data), `level ${level}`);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// the gzip format

test('gzip output has no timestamp, a fixed OS byte and no optional fields', async (t) => {
  const packed = await compress('gzip', mixed(2 * MiB));
  t.deepEqual([...packed.subarray(0, 10)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
});

test('gzip output is one member: one deflate stream ends exactly at the trailer, whose CRC and size are right', async (t) => {
  const data = mixed(3 * MiB + 3);
  const packed = await compress('gzip', data);
  const body = packed.subarray(10, -8);
  const { buffer, engine } = zlib.inflateRawSync(body, { info: true }) as unknown as {
    buffer: Buffer;
    engine: zlib.Zlib;
  };
  t.true(buffer.equals(data));
  t.is(engine.bytesWritten, body.length);
  t.is(packed.readUInt32LE(packed.length - 8), zlib.crc32(data));
  t.is(packed.readUInt32LE(packed.length - 4), data.length);
});

const sameAsZlib = test.macro({
  async exec(t, size: number, level: number) {
    const data = compressible(size, 3);
    t.true((await compress('gzip', data, { level })).equals(zlib.gzipSync(data, { level })));
  },
  title: (_ = '', size: number, level: number) =>
    `gzip of ${size} bytes (at most one block) at level ${level} is exactly zlib.gzipSync's`,
});
test(sameAsZlib, 0, 6);
test(sameAsZlib, 1000, 1);
test(sameAsZlib, BLOCK, 6);
test(sameAsZlib, BLOCK, 9);

test('gzip levels 0, 1 and 9 round-trip over many blocks, and higher levels compress better', async (t) => {
  const data = mixed(3 * MiB);
  const sizes: number[] = [];
  for (const level of [0, 1, 9]) {
    const packed = await compress('gzip', data, { level });
    t.true(zlib.gunzipSync(packed).equals(data), `level ${level}`);
    sizes.push(packed.length);
  }
  t.true((sizes[0] as number) > data.length);
  t.true((sizes[1] as number) > (sizes[2] as number));
});

test('gzip -t, gunzip -c, pigz -d and busybox gunzip (another inflate) accept the output', async (t) => {
  const data = mixed(4 * MiB + 1);
  const packed = await compress('gzip', data);
  t.is((await tool(['gzip', '-t'], packed)).code, 0);
  t.true((await tool(['gunzip', '-c'], packed)).stdout.equals(data), 'gunzip -c');
  t.true((await tool(['pigz', '-dc'], packed)).stdout.equals(data), 'pigz -dc');
  if (which('busybox')) t.true((await tool(['busybox', 'gunzip', '-c'], packed)).stdout.equals(data), 'busybox');
  t.true(zlib.gunzipSync(packed).equals(data), 'node zlib');
});

const goTest = which('go') ? test : test.skip;
goTest('Go compress/gzip reads the output as a single member', async (t) => {
  const dir = await tempDir(t);
  await writeFile(
    join(dir, 'main.go'),
    [
      'package main',
      'import ("compress/gzip"; "io"; "os")',
      'func main() {',
      '  r, err := gzip.NewReader(os.Stdin)',
      '  if err != nil { os.Stderr.WriteString(err.Error()); os.Exit(1) }',
      '  r.Multistream(false)',
      '  if _, err := io.Copy(os.Stdout, r); err != nil { os.Stderr.WriteString(err.Error()); os.Exit(1) }',
      '  if err := r.Reset(os.Stdin); err != io.EOF { os.Stderr.WriteString("more than one member"); os.Exit(1) }',
      '}',
    ].join('\n'),
  );
  const env = { ...process.env, GOCACHE: join(dir, 'cache'), GOPATH: join(dir, 'gopath'), GO111MODULE: 'off' };
  const build = await tool(['go', 'build', '-o', join(dir, 'gunzip'), join(dir, 'main.go')], undefined, {
    cwd: dir,
    env,
  });
  t.is(build.code, 0, build.stderr);
  const data = mixed(2 * MiB + 99);
  const res = await tool([join(dir, 'gunzip')], await compress('gzip', data));
  t.is(res.code, 0, res.stderr);
  t.true(res.stdout.equals(data));
});

test('the gzip decompressor reads concatenated members', async (t) => {
  const a = compressible(300_000, 1);
  const b = compressible(5, 2);
  const packed = Buffer.concat([await compress('gzip', a), zlib.gzipSync(b)]);
  t.true((await decompress('gzip', packed)).equals(Buffer.concat([a, b])));
});

// ---------------------------------------------------------------------------------------------------------------
// memory: back-pressure both ways

/** pulledWithoutReader pipes an endless source into `stream`, never reads the output, and returns how much the source gave. */
async function pulledWithoutReader(stream: Duplex, source: () => Buffer): Promise<number> {
  let pulled = 0;
  const src = new Readable({
    read() {
      setImmediate(() => {
        const b = source();
        pulled += b.length;
        this.push(b);
      });
    },
  });
  src.pipe(stream);
  let last = -1;
  while (pulled !== last) {
    last = pulled;
    await new Promise((r) => setTimeout(r, 400));
    if (pulled > 256 * MiB) break;
  }
  src.unpipe(stream);
  src.destroy();
  stream.destroy();
  return pulled;
}

const boundedCompressor = test.macro({
  async exec(t, c: 'gzip' | 'zstd') {
    const pulled = await pulledWithoutReader(compressStream(c, { threads: 2 }), () => randomBytes(64 * 1024));
    t.true(pulled < 16 * MiB, `${pulled} bytes pulled in`);
  },
  title: (_ = '', c: string) => `the ${c} compressor stops pulling input while nobody reads its output`,
});
test(boundedCompressor, 'gzip');
test(boundedCompressor, 'zstd');

const boundedDecompressor = test.macro({
  async exec(t, c: 'gzip' | 'zstd') {
    const zeros = Buffer.alloc(256 * MiB);
    const bomb = c === 'gzip' ? zlib.gzipSync(zeros, { level: 9 }) : await compress('zstd', zeros);
    const stream = decompressStream(c);
    stream.write(bomb);
    await new Promise((r) => setTimeout(r, 500));
    const held = stream.readableLength;
    stream.destroy();
    t.true(held < 4 * MiB, `${held} bytes held`);
  },
  title: (_ = '', c: string) =>
    `the ${c} decompressor holds little output while nobody reads it, even from a small blob that expands to 256 MiB`,
});
test(boundedDecompressor, 'gzip');
test(boundedDecompressor, 'zstd');

// ---------------------------------------------------------------------------------------------------------------
// detection and automatic decompression, on files made by the real CLIs

async function cliFixtures(
  t: ExecutionContext,
): Promise<{ tar: Buffer; files: Record<'gzip' | 'zstd' | 'bzip2' | 'xz', Buffer> }> {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'root/etc'), { recursive: true });
  await writeFile(join(dir, 'root/etc/hostname'), 'tsbuild\n');
  await writeFile(join(dir, 'root/blob'), compressible(200_000, 9));
  const tarRes = await tool(['tar', '--sort=name', '-cf', '-', '-C', join(dir, 'root'), '.']);
  t.is(tarRes.code, 0, tarRes.stderr);
  const tar = tarRes.stdout;
  const files = {
    gzip: (await tool(['gzip', '-c'], tar)).stdout,
    zstd: (await tool(['zstd', '-c', '-q'], tar)).stdout,
    bzip2: (await tool(['bzip2', '-c'], tar)).stdout,
    xz: (await tool(['xz', '-c'], tar)).stdout,
  };
  return { tar, files };
}

test('detectCompression names gzip, zstd, bzip2, xz and plain tar files made by the CLIs', async (t) => {
  const { tar, files } = await cliFixtures(t);
  for (const [name, blob] of Object.entries(files)) t.is(detectCompression(blob.subarray(0, 8)) as string, name);
  t.is(detectCompression(tar.subarray(0, 512)), 'none');
});

test('detectCompression says none for heads too short to tell and for near misses', (t) => {
  t.is(detectCompression(new Uint8Array()), 'none');
  t.is(detectCompression(Uint8Array.of(0x1f)), 'none');
  t.is(detectCompression(Uint8Array.of(0x28, 0xb5, 0x2f)), 'none');
  t.is(detectCompression(Buffer.from('BZh0')), 'none');
  t.is(detectCompression(Uint8Array.of(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x01)), 'none');
  t.is(detectCompression(Uint8Array.of(0x50, 0x2a, 0x4d, 0x18)), 'zstd', 'a zstd skippable frame');
});

test('autoDecompress turns every CLI-made compressed tar, and the plain tar, back into the tar', async (t) => {
  const { tar, files } = await cliFixtures(t);
  for (const [name, blob] of Object.entries(files)) {
    const auto = autoDecompress();
    t.true((await run(auto, blob, 3)).equals(tar), `${name} in 3-byte chunks`);
    t.is(auto.detected as string | undefined, name);
    t.true((await run(autoDecompress(), blob)).equals(tar), name);
  }
  t.true((await run(autoDecompress(), tar)).equals(tar), 'plain tar');
});

test('autoDecompress passes empty and tiny inputs through', async (t) => {
  t.is((await run(autoDecompress(), Buffer.alloc(0))).length, 0);
  t.true((await run(autoDecompress(), Buffer.from('abc'))).equals(Buffer.from('abc')));
});

test('decompressStream reads bzip2 and xz through the host tools', async (t) => {
  const { tar, files } = await cliFixtures(t);
  t.true((await decompress('bzip2', files.bzip2)).equals(tar));
  t.true((await decompress('xz', files.xz)).equals(tar));
});

// ---------------------------------------------------------------------------------------------------------------
// failures

async function failure(c: Compression | 'bzip2' | 'xz' | 'auto', data: Buffer): Promise<Error> {
  const stream = c === 'auto' ? autoDecompress() : decompressStream(c);
  const err = await run(stream, data).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  if (!err) throw new Error('decompression succeeded');
  return err;
}

const corrupt = test.macro({
  async exec(t, c: 'gzip' | 'zstd' | 'bzip2' | 'xz' | 'auto', make: (good: Buffer) => Buffer, expected: string) {
    const tar = compressible(400_000, 4);
    const good =
      c === 'gzip' || c === 'auto'
        ? zlib.gzipSync(tar)
        : c === 'zstd'
          ? await compress('zstd', tar)
          : (await tool([c, '-c'], tar)).stdout;
    const err = await failure(c, make(good));
    t.true(err instanceof CorruptDataError && err instanceof InvalidInputError, String(err));
    t.true(err.message.startsWith(`${expected} data is corrupt: `), err.message);
  },
  title: (name = '', c: string) =>
    `${c === 'auto' ? 'autoDecompress' : c} fails on ${name} with an error naming the compression`,
});
const truncate = (b: Buffer): Buffer => b.subarray(0, Math.floor(b.length / 2));
const flip = (b: Buffer): Buffer => {
  const copy = Buffer.from(b);
  for (let i = 100; i < 140; i++) copy[i] = (copy[i] as number) ^ 0x55;
  return copy;
};
const dropTrailer = (b: Buffer): Buffer => b.subarray(0, b.length - 4);
test('a truncated stream', corrupt, 'gzip', truncate, 'gzip');
test('a stream without its trailer', corrupt, 'gzip', dropTrailer, 'gzip');
test('flipped bytes', corrupt, 'gzip', flip, 'gzip');
test('a non-gzip header', corrupt, 'gzip', () => Buffer.from('not gzip at all'), 'gzip');
test('a truncated stream', corrupt, 'zstd', truncate, 'zstd');
test('flipped bytes', corrupt, 'zstd', flip, 'zstd');
test('garbage', corrupt, 'zstd', () => Buffer.from('definitely not zstd'), 'zstd');
test('a truncated stream', corrupt, 'bzip2', truncate, 'bzip2');
test('a truncated stream', corrupt, 'xz', truncate, 'xz');
test('a truncated gzip stream', corrupt, 'auto', truncate, 'gzip');
for (const c of ['gzip', 'zstd', 'bzip2', 'xz'] as const) test('empty input', corrupt, c, () => Buffer.alloc(0), c);

test('bad levels, thread counts and compressions are refused up front', (t) => {
  t.throws(() => compressStream('gzip', { level: 10 }), { instanceOf: InvalidInputError, message: /gzip level/ });
  t.throws(() => compressStream('gzip', { level: 2.5 }), { instanceOf: InvalidInputError });
  t.throws(() => compressStream('zstd', { level: 23 }), { instanceOf: InvalidInputError, message: /zstd level/ });
  t.throws(() => compressStream('gzip', { threads: 0 }), { instanceOf: InvalidInputError, message: /threads/ });
  t.throws(() => compressStream('lz4' as Compression), { instanceOf: InvalidInputError });
  t.throws(() => decompressStream('lz4' as Compression), { instanceOf: InvalidInputError });
});

// ---------------------------------------------------------------------------------------------------------------
// the worker pool: lifetime, failure, and the two ways the worker code is loaded

test.serial(
  'shutting the gzip pool down mid-stream fails that stream, and the next stream starts a new pool',
  async (t) => {
    const data = mixed(8 * MiB);
    const pending = compress('gzip', data, { threads: 2 }, BLOCK);
    await new Promise((r) => setTimeout(r, 30));
    await shutdownGzipPool();
    await t.throwsAsync(pending, { message: /^gzip compression failed: / });
    t.true(zlib.gunzipSync(await compress('gzip', data, { threads: 2 })).equals(data));
  },
);

/** childScript compresses 3 MiB of counter data with gzip and zstd and prints the digests; it never shuts the pool down. */
const childScript = (modulePath: string): string => `
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { compressStream } from ${JSON.stringify(modulePath)};
const data = Buffer.alloc(3 * 1024 * 1024);
for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
for (const c of ['gzip', 'zstd']) {
  const hash = createHash('sha256');
  await pipeline(Readable.from([data]), compressStream(c, { threads: 2 }), new Writable({ write(b, _e, cb) { hash.update(b); cb(); } }));
  console.log(c, hash.digest('hex'));
}
`;

async function expectedChildDigest(): Promise<string> {
  const data = Buffer.alloc(3 * MiB);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
  return `gzip ${digest(await compress('gzip', data, { threads: 1 }))}\nzstd ${digest(await compress('zstd', data, { threads: 1 }))}`;
}

/** runChild runs node with args and fails if it does not exit on its own within the time limit. */
async function runChild(t: ExecutionContext, args: string[], cwd: string): Promise<string> {
  const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) =>
    child.on('close', (c, s) => r([c, s])),
  );
  clearTimeout(timer);
  t.is(signal, null, 'the process exited by itself (idle workers do not keep it alive)');
  t.is(code, 0, Buffer.concat(err).toString());
  return Buffer.concat(out).toString().trim();
}

test('from source under tsx, the gzip and zstd workers load and idle workers let the process exit', async (t) => {
  const dir = await tempDir(t);
  const script = join(dir, 'child.mts');
  await writeFile(script, childScript(join(repoRoot, 'layers', 'compress', 'compress.ts')));
  t.is(await runChild(t, ['--import', 'tsx', script], repoRoot), await expectedChildDigest());
});

test('compiled by tsc, the gzip and zstd workers load from plain node and idle workers let the process exit', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'out');
  // The project's compiler options, but only this module and what it imports (other files may be mid-edit).
  await writeFile(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      extends: join(repoRoot, 'tsconfig.json'),
      compilerOptions: { outDir: out, rootDir: repoRoot, noEmitOnError: true },
      files: [join(repoRoot, 'layers', 'compress', 'compress.ts')],
      include: [],
    }),
  );
  await writeFile(join(dir, 'package.json'), '{"type":"module"}');
  await symlink(join(repoRoot, 'node_modules'), join(dir, 'node_modules'));
  const tsc = await tool(
    [process.execPath, join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')],
    undefined,
    { cwd: repoRoot },
  );
  t.is(tsc.code, 0, tsc.stdout.toString() + tsc.stderr);
  const script = join(dir, 'child.mjs');
  await writeFile(script, childScript(join(out, 'layers', 'compress', 'compress.js')));
  t.is(await runChild(t, [script], dir), await expectedChildDigest());
});

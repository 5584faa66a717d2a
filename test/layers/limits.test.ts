// Decompression bombs (issue 14, part 4): a layer or tarball may expand to at most TSBUILD_MAX_EXPANSION (default
// 100) times its compressed size, never less than the floor (TSBUILD_EXPANSION_FLOOR, default 1 GiB). Here with the
// defaults; test/layers/limits-sources.test.ts covers import and load with a small floor.
import test from 'ava';
import { Readable } from 'node:stream';
import { decompressStream } from '../../layers/compress/compress.js';
import { EXPANSION_FLOOR, expansionFloor, expansionLimit, maxExpansion } from '../../layers/limits.js';
import { openLayer } from '../../layers/store/layer-read.js';
import { Store } from '../../layers/store/store.js';
import { MediaType } from '../../layers/model/types.js';
import { newStoreRoot } from '../helpers/images.js';
import { bomb, BOMB_ZEROS, CHUNK, consume, MiB } from './bombs.js';

const gzBomb = bomb('gzip');
const zstBomb = bomb('zstd');

test('the bombs are what they claim: a few MB that expand to 1.5 GiB', (t) => {
  t.true(gzBomb.length < 4 * MiB, `${gzBomb.length}`);
  t.true(zstBomb.length < MiB, `${zstBomb.length}`);
  t.true(BOMB_ZEROS > expansionLimit(gzBomb.length, 100));
});

test('a stored gzip layer that expands past 100× its size is refused while it streams, naming the ratio and the env var', async (t) => {
  const store = await Store.open(await newStoreRoot(t));
  const put = await store.putBlob(Readable.from([gzBomb]));
  const desc = { mediaType: MediaType.OciLayerGzip, digest: put.digest, size: put.size };
  const err = await t.throwsAsync(consume(openLayer(store, desc)), {
    code: 'E_LIMIT',
    message:
      /expands past 100× its compressed size \(\d+ bytes compressed, more than 1073741824 bytes expanded\): refusing/,
  });
  t.regex((err as { hint?: string }).hint ?? '', /set TSBUILD_MAX_EXPANSION=\d+ to allow it/);
});

test('a zstd layer of zeros is refused the same way, with the descriptor size as the compressed size', async (t) => {
  const err = await t.throwsAsync(
    consume(
      Readable.from([zstBomb]).pipe(
        decompressStream('zstd', { what: 'layer sha256:abc', compressedSize: zstBomb.length }),
      ),
    ),
    { code: 'E_LIMIT' },
  );
  t.true(err?.message.startsWith('layer sha256:abc expands past 100× its compressed size'), err?.message);
});

test('TSBUILD_MAX_EXPANSION raises the limit and TSBUILD_EXPANSION_FLOOR moves the floor', async (t) => {
  const zeros = 4 * CHUNK;
  const small = bomb('gzip', zeros, 16 * MiB);
  const floor = String(32 * MiB);
  await t.throwsAsync(
    consume(Readable.from([small]).pipe(decompressStream('gzip', { env: { TSBUILD_EXPANSION_FLOOR: floor } }))),
    { code: 'E_LIMIT', message: /more than 33554432 bytes expanded/ },
  );
  const env = { TSBUILD_EXPANSION_FLOOR: floor, TSBUILD_MAX_EXPANSION: '100000' };
  t.is(await consume(Readable.from([small]).pipe(decompressStream('gzip', { env }))), zeros + 512);
});

test('the floor: a small layer of zeros (ratio ~1000, under 1 GiB) is never refused', async (t) => {
  const small = bomb('gzip', 4 * CHUNK);
  t.true(small.length * 100 < 4 * CHUNK, 'its ratio is over 100');
  t.is(await consume(Readable.from([small]).pipe(decompressStream('gzip'))), 4 * CHUNK + 512);
  t.is(expansionLimit(1000, 100), EXPANSION_FLOOR);
});

test('TSBUILD_MAX_EXPANSION and TSBUILD_EXPANSION_FLOOR must be positive numbers', (t) => {
  t.is(maxExpansion({}), 100);
  t.is(maxExpansion({ TSBUILD_MAX_EXPANSION: '250' }), 250);
  t.is(expansionFloor({}), EXPANSION_FLOOR);
  for (const bad of ['abc', '0', '-5', 'Infinity']) {
    t.throws(() => maxExpansion({ TSBUILD_MAX_EXPANSION: bad }), {
      message: /TSBUILD_MAX_EXPANSION=.*not a positive number/,
    });
    t.throws(() => expansionFloor({ TSBUILD_EXPANSION_FLOOR: bad }), { message: /TSBUILD_EXPANSION_FLOOR=/ });
  }
});

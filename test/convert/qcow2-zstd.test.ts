import test from 'ava';
import zstd from 'zstd-napi/binding.js';
import { ZstdClusterPool } from '../../convert/qcow2-zstd.js';
import { noise } from '../helpers/bytes.js';

const KiB = 1024;

/** text makes compressible bytes: numbered lines. */
function text(size: number): Buffer {
  const lines: string[] = [];
  for (let n = 0, len = 0; len < size; n++) {
    const line = `${(n * 7919) % 100003} cluster ${n % 13} refcount ${n % 7}\n`;
    lines.push(line);
    len += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, size);
}

test('ZstdClusterPool: each frame is the cluster compressed alone at the level, whatever the number of threads', async (t) => {
  const C = 64 * KiB;
  const data = Buffer.from(new SharedArrayBuffer(16 * C));
  Buffer.concat(Array.from({ length: 16 }, (_, i) => (i % 3 === 0 ? noise(C, `p${i}`) : text(C - i)))).copy(data);
  const clusters = [0, 1, 2, 5, 9, 15];
  const expected = clusters.map((i) => {
    const dst = Buffer.alloc(zstd.compressBound(C));
    const n = new zstd.CCtx().compress(dst, data.subarray(i * C, (i + 1) * C), 3);
    return n < C ? dst.subarray(0, n) : undefined;
  });
  t.is(expected[0], undefined, 'random data does not shrink and is left plain');
  for (const threads of [1, 3]) {
    const pool = new ZstdClusterPool(3, threads);
    t.teardown(() => pool.close());
    const jobs = await Promise.all([pool.compress(data, C, clusters), pool.compress(data, C, [...clusters].reverse())]);
    t.deepEqual(jobs[0], expected, `${threads} thread(s)`);
    t.deepEqual(jobs[1], [...expected].reverse(), `${threads} thread(s), other order`);
  }
});

test('ZstdClusterPool: a job the worker cannot do is rejected, and a closed pool refuses work', async (t) => {
  const pool = new ZstdClusterPool(3, 1);
  const data = Buffer.from(new SharedArrayBuffer(64 * KiB));
  await t.throwsAsync(pool.compress(data, 64 * KiB, [7]), { message: /zstd compression of qcow2 clusters failed/ });
  t.deepEqual(await pool.compress(data, 64 * KiB, []), []);
  await pool.close();
  await t.throwsAsync(pool.compress(data, 64 * KiB, [0]), { message: /closed/ });
  t.throws(() => pool.compress(Buffer.alloc(64 * KiB), 64 * KiB, [0]), { instanceOf: TypeError });
});

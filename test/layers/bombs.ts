// Decompression bombs for the limit tests: real gzip and zstd streams of a tar that holds one file of zeros, made of
// a repeated compressed member/frame so that GiBs of tar cost a few MB and little time.
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';

export const MiB = 1 << 20;
export const CHUNK = 64 * MiB;
/** the zeros in a bomb: 1.5 GiB, past the 1 GiB floor */
export const BOMB_ZEROS = 24 * CHUNK;

/** ustarHeader is the 512-byte header of a regular file `name` of `size` bytes. */
export function ustarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\x0000', 257);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

/**
 * bomb is a compressed tar of one file of zeros: the header, then `zeros` zero bytes (the file, its padding and
 * the two end blocks) as the same compressed 64 MiB member repeated. gzip readers read concatenated members, zstd
 * readers concatenated frames.
 */
export function bomb(kind: 'gzip' | 'zstd', zeros = BOMB_ZEROS, chunk = CHUNK): Buffer {
  const compress = (b: Buffer): Buffer => (kind === 'gzip' ? zlib.gzipSync(b, { level: 9 }) : zstdSync(b));
  const head = compress(ustarHeader('zeros', zeros - 1024));
  const member = compress(Buffer.alloc(chunk));
  return Buffer.concat([head, ...Array.from({ length: zeros / chunk }, () => member)]);
}

function zstdSync(b: Buffer): Buffer {
  return zstdCompress(b);
}

/** consume reads a stream to its end, counting bytes. */
export async function consume(s: Readable): Promise<number> {
  let n = 0;
  await pipeline(
    s,
    new Writable({
      write(b: Buffer, _e, cb) {
        n += b.length;
        cb();
      },
    }),
  );
  return n;
}

// A faster decoder for tar-stream's 512-byte headers, once what applyLayer and TarCheck read layers with; they now
// use layers/tar/read.ts, and the tests compare that reader with tar-stream as it was used then (read-compare).
//
// tar-stream's headers.decode slices a Buffer for every field and parses octal through strings; on a layer of
// 20k entries that is a third of the time spent reading the tar. installFastHeaderDecoder() swaps in a decoder
// that reads the common case (ustar or GNU magic, plain octal numbers) straight from the bytes and hands every
// other header (base-256 numbers, odd padding, unknown formats, bad checksums, the end-of-archive block) to the
// original, so its results and errors are tar-stream's own. Same technique as installPaxCodec (layers/tar/pax.ts).
import { createRequire } from 'node:module';

type Decode = (buf: Buffer, filenameEncoding?: BufferEncoding, allowUnknownFormat?: boolean) => unknown;

const TYPES = new Map<number, string>([
  [0, 'file'],
  [1, 'link'],
  [2, 'symlink'],
  [3, 'character-device'],
  [4, 'block-device'],
  [5, 'directory'],
  [6, 'fifo'],
  [7, 'contiguous-file'],
  [72, 'pax-header'],
  [55, 'pax-global-header'],
  [27, 'gnu-long-link-path'],
  [28, 'gnu-long-path'],
  [30, 'gnu-long-path'],
]);

/** octal reads a plain octal field (spaces, NULs, digits, NUL/space padding); -1 for anything else. */
function octal(buf: Buffer, off: number, len: number): number {
  const end = off + len;
  let i = off;
  while (i < end && buf[i] === 32) i++;
  while (i < end && buf[i] === 0) i++;
  if (i === end) return 0;
  let n = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = buf[i] as number;
    if (c < 48 || c > 55) break;
    n = n * 8 + (c - 48);
    digits++;
  }
  if (digits === 0) return -1;
  for (; i < end; i++) if (buf[i] !== 0 && buf[i] !== 32) return -1;
  return n;
}

function text(buf: Buffer, off: number, len: number, encoding: BufferEncoding | undefined): string {
  const end = off + len;
  let e = off;
  while (e < end && buf[e] !== 0) e++;
  return buf.toString(encoding, off, e);
}

/** makeFastDecode wraps tar-stream's decode; exported for the test that compares the two. */
export function makeFastDecode(original: Decode): Decode {
  return function decode(buf, filenameEncoding, allowUnknownFormat) {
    let sum = 256;
    for (let i = 0; i < 148; i++) sum += buf[i] as number;
    for (let i = 156; i < 512; i++) sum += buf[i] as number;
    const checksum = octal(buf, 148, 8);
    const mode = octal(buf, 100, 8);
    const uid = octal(buf, 108, 8);
    const gid = octal(buf, 116, 8);
    const size = octal(buf, 124, 12);
    const mtime = octal(buf, 136, 12);
    const devmajor = octal(buf, 329, 8);
    const devminor = octal(buf, 337, 8);
    const magic = buf[257] === 0x75 && buf[258] === 0x73 && buf[259] === 0x74 && buf[260] === 0x61 && buf[261] === 0x72;
    const ustar = magic && buf[262] === 0;
    const gnu = magic && buf[262] === 0x20 && buf[263] === 0x20 && buf[264] === 0;
    // A field that is not plain octal is -1, which makes the bitwise or negative (so may a huge value: harmless).
    if (
      sum === 256 ||
      sum !== checksum ||
      (!ustar && !gnu) ||
      (mode | uid | gid | size | mtime | devmajor | devminor) < 0
    ) {
      return original(buf, filenameEncoding, allowUnknownFormat);
    }
    let typeflag = buf[156] === 0 ? 0 : (buf[156] as number) - 48;
    let name = text(buf, 0, 100, filenameEncoding);
    if (ustar && buf[345]) name = `${text(buf, 345, 155, filenameEncoding)}/${name}`;
    if (typeflag === 0 && name && name[name.length - 1] === '/') typeflag = 5;
    return {
      name,
      mode,
      uid,
      gid,
      size,
      byteOffset: 0,
      mtime: new Date(1000 * mtime),
      type: TYPES.get(typeflag) ?? null,
      linkname: buf[157] === 0 ? null : text(buf, 157, 100, filenameEncoding),
      uname: text(buf, 265, 32, undefined),
      gname: text(buf, 297, 32, undefined),
      devmajor,
      devminor,
      pax: null,
    };
  };
}

/** tarStreamHeaders returns tar-stream's internal headers module (the object extract() calls through). */
export function tarStreamHeaders(): { decode: Decode } {
  const require = createRequire(import.meta.url);
  return createRequire(require.resolve('tar-stream'))('./headers.js') as { decode: Decode };
}

let installed = false;
/** installFastHeaderDecoder makes tar-stream's extract() use the fast decoder. Idempotent. */
export function installFastHeaderDecoder(): void {
  if (installed) return;
  const headers = tarStreamHeaders();
  headers.decode = makeFastDecode(headers.decode);
  installed = true;
}

// One 512-byte tar header, decoded straight from the bytes it arrived in (layers/tar/read.ts reads the stream).
//
// The results are tar-stream's (3.x, headers.decode, with the reading of a type-0 name that ends in '/' as a
// directory that applyLayer has always used: test/helpers/tar-stream-fast-header.ts): the same fields, the same
// values for every header tar-stream accepts, its error messages. Numbers are read from plain octal digits without a string in the
// common case; anything else (base-256, odd padding, junk after the digits) takes tar-stream's slower rules
// (parseInt of the digits up to the first space). A base-256 field whose first byte is neither 0x80 nor 0xff, which
// tar-stream reads as null (a size of null made its extract wait forever), makes the reader refuse the header.
import { decodePaxRecords } from './pax.js';

export type TarType =
  | 'file'
  | 'link'
  | 'symlink'
  | 'character-device'
  | 'block-device'
  | 'directory'
  | 'fifo'
  | 'contiguous-file'
  | 'pax-header'
  | 'pax-global-header'
  | 'gnu-long-link-path'
  | 'gnu-long-path';

/** TarHeader is what tar-stream's extract() gives for an entry (after long names and PAX records are applied). */
export interface TarHeader {
  name: string;
  /** the mode field as written (type bits included when the writer put them there) */
  mode: number;
  uid: number;
  gid: number;
  /** bytes of data that follow (a directory's are not read: tar-stream reads no data for a directory) */
  size: number;
  /** where the entry's data starts in the archive */
  byteOffset: number;
  mtime: Date;
  /** null: a type tar-stream does not know (sparse, vendor-specific) */
  type: TarType | null;
  linkname: string | null;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** the entry's PAX records (merged over the global ones): SCHILY.xattr.* values are latin1 (see pax.ts) */
  pax: Record<string, string> | null;
}

/** TarFormatError: the bytes are not a tar archive, or not a whole one (tar-stream's messages). */
export class TarFormatError extends Error {
  override name = 'TarFormatError';
}

export const BAD_CHECKSUM = 'Invalid tar header. Maybe the tar is corrupted or it needs to be gunzipped?';
export const UNKNOWN_FORMAT = 'Invalid tar header: unknown format.';
export const INVALID_HEADER = 'Invalid header';
export const HEADER_TOO_BIG = 'Header exceeds max size';
export const UNEXPECTED_END = 'Unexpected end of data';

/** The largest PAX or GNU long-name header tar-stream reads (its MAX_HEADER_SIZE). */
export const MAX_LONG_HEADER = 4 * 1024 * 1024;

const TYPES: Array<TarType | undefined> = [];
TYPES[0] = 'file';
TYPES[1] = 'link';
TYPES[2] = 'symlink';
TYPES[3] = 'character-device';
TYPES[4] = 'block-device';
TYPES[5] = 'directory';
TYPES[6] = 'fifo';
TYPES[7] = 'contiguous-file';
TYPES[72] = 'pax-header'; // 'x'
TYPES[55] = 'pax-global-header'; // 'g'
TYPES[27] = 'gnu-long-link-path'; // 'K'
TYPES[28] = 'gnu-long-path'; // 'L'
TYPES[30] = 'gnu-long-path'; // 'N' (old GNU)

/** where the numeric fields start: mode, uid, gid, size, mtime, devmajor, devminor */
const NUMERIC_FIELDS = [100, 108, 116, 124, 136, 329, 337];

/** num reads a numeric field as tar-stream's decodeOct does: plain octal fast, the rest by its rules. */
function num(buf: Buffer, off: number, len: number): number {
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
  if (digits > 0 && digits <= 16) {
    let clean = true;
    for (; i < end; i++) {
      if (buf[i] !== 0 && buf[i] !== 32) {
        clean = false;
        break;
      }
    }
    if (clean) return n;
  }
  return slowNum(buf, off, len);
}

/** slowNum is tar-stream's decodeOct: base-256 when the first byte has its high bit, else parseInt(…, 8). */
function slowNum(buf: Buffer, off: number, len: number): number {
  if ((buf[off] as number) & 0x80) return base256(buf, off, len);
  const end = off + len;
  let i = off;
  while (i < end && buf[i] === 32) i++;
  let stop = i;
  while (stop < end && buf[stop] !== 32) stop++;
  while (i < stop && buf[i] === 0) i++;
  if (stop === i) return 0;
  return Number.parseInt(buf.toString('utf8', i, stop), 8);
}

/**
 * base256 reads a GNU base-256 field (0x80: positive, 0xff: negative, two's complement); NaN for any other first
 * byte (tar-stream's null, which as a size stalled its extract).
 */
function base256(buf: Buffer, off: number, len: number): number {
  const first = buf[off];
  if (first !== 0x80 && first !== 0xff) return Number.NaN;
  const positive = first === 0x80;
  let sum = 0;
  let scale = 1;
  for (let i = off + len - 1; i > off; i--) {
    const b = buf[i] as number;
    sum += (positive ? b : 0xff - b) * scale;
    scale *= 256;
  }
  return positive ? sum : -1 * sum;
}

function str(buf: Buffer, off: number, len: number): string {
  const end = off + len;
  let e = off;
  while (e < end && buf[e] !== 0) e++;
  return e === off ? '' : buf.toString('utf8', off, e);
}

/**
 * decodeHeader decodes the block at buf[off, off + 512): null for a block of zeros (skipped, as tar-stream skips
 * it), a header, or a TarFormatError (bad checksum, unknown magic).
 */
export function decodeHeader(buf: Buffer, off: number): TarHeader | null {
  let sum = 256;
  for (let i = off, e = off + 148; i < e; i++) sum += buf[i] as number;
  for (let i = off + 156, e = off + 512; i < e; i++) sum += buf[i] as number;
  if (sum === 256) return null;
  if (sum !== num(buf, off + 148, 8)) throw new TarFormatError(BAD_CHECKSUM);
  const magic =
    buf[off + 257] === 0x75 &&
    buf[off + 258] === 0x73 &&
    buf[off + 259] === 0x74 &&
    buf[off + 260] === 0x61 &&
    buf[off + 261] === 0x72;
  const ustar = magic && buf[off + 262] === 0;
  const gnu = magic && buf[off + 262] === 0x20 && buf[off + 263] === 0x20 && buf[off + 264] === 0;
  if (!ustar && !gnu) throw new TarFormatError(UNKNOWN_FORMAT);
  // tar-stream reads a base-256 field with any other first byte as null (no mode, no owner, or a size that made
  // it wait forever): refused here
  for (const at of NUMERIC_FIELDS) {
    const first = buf[off + at] as number;
    if (first & 0x80 && first !== 0x80 && first !== 0xff) throw new TarFormatError(INVALID_HEADER);
  }
  const flag = buf[off + 156] as number;
  let typeflag = flag === 0 ? 0 : flag - 48;
  let name = str(buf, off, 100);
  if (ustar && buf[off + 345]) name = `${str(buf, off + 345, 155)}/${name}`;
  if (typeflag === 0 && name.endsWith('/')) typeflag = 5;
  return {
    name,
    mode: num(buf, off + 100, 8),
    uid: num(buf, off + 108, 8),
    gid: num(buf, off + 116, 8),
    size: num(buf, off + 124, 12),
    byteOffset: 0,
    mtime: new Date(1000 * num(buf, off + 136, 12)),
    type: (typeflag >= 0 ? TYPES[typeflag] : undefined) ?? null,
    linkname: buf[off + 157] === 0 ? null : str(buf, off + 157, 100),
    uname: str(buf, off + 265, 32),
    gname: str(buf, off + 297, 32),
    devmajor: num(buf, off + 329, 8),
    devminor: num(buf, off + 337, 8),
    pax: null,
  };
}

/** decodeLongPath reads a GNU long name or link target: its bytes up to the first NUL. */
export function decodeLongPath(buf: Buffer): string {
  return str(buf, 0, buf.length);
}

/** decodePax reads PAX records (pax.ts's binary-safe decoder: xattr values stay bytes, as latin1). */
export function decodePax(buf: Buffer): Record<string, string> {
  return decodePaxRecords(buf);
}

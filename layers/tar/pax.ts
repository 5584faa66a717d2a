// Binary-safe PAX records for tar-stream.
//
// tar-stream reads and writes PAX record values as UTF-8 text, which mangles binary xattr values such as
// `security.capability`. Go's archive/tar (docker, umoci, buildah) stores them as raw bytes, so we do too:
// installPaxCodec() swaps tar-stream's two PAX functions for binary-safe ones:
// - writing: give pack.entry() `pax: { 'SCHILY.xattr.NAME': Buffer }` (see xattrRecords); Buffers are written
//   byte for byte, strings as UTF-8;
// - reading: `SCHILY.xattr.*` values come back as latin1 strings (one char per byte); xattrsFromPax() turns
//   them back into Buffers.
import { createRequire } from 'node:module';

const XATTR_PREFIX = 'SCHILY.xattr.';

export type PaxValue = string | Uint8Array;

/** encodePaxRecords serializes `len key=value\n` records; Uint8Array values are written byte for byte. */
export function encodePaxRecords(records: ReadonlyArray<readonly [string, PaxValue]>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of records) {
    const body = Buffer.concat([
      Buffer.from(` ${key}=`),
      typeof value === 'string' ? Buffer.from(value) : Buffer.from(value),
      Buffer.from('\n'),
    ]);
    // The length field counts itself: find the fixed point.
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    parts.push(Buffer.from(String(len)), body);
  }
  return Buffer.concat(parts);
}

/** decodePaxRecords parses PAX records; xattr values come back as latin1 strings (bytes kept), others as UTF-8. */
export function decodePaxRecords(buf: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let rest = buf;
  while (rest.length) {
    const sp = rest.indexOf(0x20);
    if (sp <= 0) break;
    const len = Number.parseInt(rest.subarray(0, sp).toString('ascii'), 10);
    if (!Number.isSafeInteger(len) || len <= sp + 1 || len > rest.length) break;
    const rec = rest.subarray(sp + 1, len - 1); // drop the trailing newline
    const eq = rec.indexOf(0x3d);
    if (eq < 0) break;
    const key = rec.subarray(0, eq).toString('utf8');
    const raw = rec.subarray(eq + 1);
    out[key] = key.startsWith(XATTR_PREFIX) ? raw.toString('latin1') : raw.toString('utf8');
    rest = rest.subarray(len);
  }
  return out;
}

interface PaxOpts {
  name?: string;
  linkname?: string;
  pax?: Record<string, PaxValue>;
}

/** encodePaxHeader is tar-stream's encodePax with binary-safe values: path, linkpath, then the entry's records. */
export function encodePaxHeader(opts: PaxOpts): Buffer {
  const records: Array<[string, PaxValue]> = [];
  if (opts.name) records.push(['path', opts.name]);
  if (opts.linkname) records.push(['linkpath', opts.linkname]);
  for (const [k, v] of Object.entries(opts.pax ?? {})) records.push([k, v]);
  return encodePaxRecords(records);
}

let installed = false;
/** installPaxCodec makes tar-stream's pack() and extract() use the binary-safe PAX codec. Idempotent. */
export function installPaxCodec(): void {
  if (installed) return;
  const require = createRequire(import.meta.url);
  // tar-stream's package exports hide headers.js; resolve it next to the main file: the instance pack.js and
  // extract.js call through (they look the functions up on the module object at call time).
  const main = require.resolve('tar-stream');
  const headers = createRequire(main)('./headers.js') as {
    decodePax: (b: Buffer) => Record<string, string>;
    encodePax: (o: PaxOpts) => Buffer;
  };
  headers.decodePax = decodePaxRecords;
  headers.encodePax = encodePaxHeader;
  installed = true;
}

/** xattrsFromPax picks the xattrs out of an entry's PAX records (after installPaxCodec). */
export function xattrsFromPax(pax: Record<string, string> | undefined): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  if (!pax) return out;
  for (const [k, v] of Object.entries(pax)) {
    if (k.startsWith(XATTR_PREFIX)) out[k.slice(XATTR_PREFIX.length)] = Buffer.from(v, 'latin1');
  }
  return out;
}

/** xattrRecords turns xattrs into an entry's `pax` object, names sorted (deterministic). */
export function xattrRecords(xattrs: Record<string, Uint8Array>): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  for (const name of Object.keys(xattrs).sort()) out[XATTR_PREFIX + name] = xattrs[name] as Uint8Array;
  return out;
}

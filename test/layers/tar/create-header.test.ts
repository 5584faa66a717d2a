// putUstarHeader (layers/tar/entry.ts) writes the bytes of tar-stream's headers.encode, which layer tars were written
// with before: compared here on names, owners, sizes, times and types around every field's limits.
import test from 'ava';
import { createRequire } from 'node:module';
import { isAsciiString, putUstarHeader, TYPEFLAG } from '../../../layers/tar/entry.js';

const require = createRequire(import.meta.url);
const headers = createRequire(require.resolve('tar-stream'))('./headers.js') as {
  encode(h: Record<string, unknown>): Buffer | null;
};

const TYPES = Object.entries(TYPEFLAG) as Array<[string, number]>;

/** a deterministic pseudo-random generator */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x / 2 ** 32;
  };
}

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)] as T;
}

function nameOf(r: () => number): string {
  const parts: string[] = [];
  const n = 1 + Math.floor(r() * 6);
  for (let i = 0; i < n; i++) {
    const len = pick(r, [1, 2, 10, 40, 54, 99, 100, 101, 154, 155, 156, 200]);
    const ch = pick(r, ['a', 'b', 'é', '日', '-', '.', 'Z']);
    parts.push(ch.repeat(len));
  }
  const name = parts.join('/');
  return r() < 0.3 ? `${name}/` : name;
}

test('putUstarHeader writes what tar-stream encodes, and refuses what it refuses', (t) => {
  const r = rng(42);
  const numbers = [0, 1, 7, 8, 0o777777, 0o777777 + 1, 0o7777777, 0o7777777 + 1, 2 ** 31 - 1, 2 ** 32, 8 ** 11 - 1];
  let written = 0;
  let refused = 0;
  for (let i = 0; i < 20000; i++) {
    const [type, flag] = pick(r, TYPES);
    const name = r() < 0.5 ? nameOf(r) : pick(r, ['a', 'dir/', 'x'.repeat(100), `${'x'.repeat(100)}/`, 'p/q']);
    const linkname = r() < 0.5 ? undefined : pick(r, ['', 't', 't'.repeat(100), 't'.repeat(101), 'é', nameOf(r)]);
    const h = {
      name,
      mode: pick(r, [0, 0o644, 0o755, 0o4755, 0o7777, 0o100644, 0o40755, 0o120777]),
      uid: pick(r, numbers.slice(0, 8)),
      gid: pick(r, numbers.slice(0, 8)),
      size: pick(r, numbers),
      mtime: pick(r, [0, 1, 946684800, 2 ** 31 - 1]),
      devmajor: pick(r, [0, 1, 259, 0o777777, 0o777777 + 1]),
      devminor: pick(r, [0, 3, 65537, 0o777777 + 1]),
    };
    const want = headers.encode({
      ...h,
      mtime: new Date(h.mtime * 1000),
      type,
      ...(linkname === undefined ? {} : { linkname }),
    });
    const buf = Buffer.alloc(1024);
    const ok = putUstarHeader(
      buf,
      256,
      h.name,
      h.mode,
      h.uid,
      h.gid,
      h.size,
      h.mtime,
      flag,
      linkname,
      h.devmajor,
      h.devminor,
    );
    if (want === null) {
      t.false(ok, JSON.stringify(h));
      t.is(buf.subarray(0, 256).toString('hex') + buf.subarray(768).toString('hex'), '00'.repeat(512));
      refused++;
    } else if (!ok) {
      // refused a name tar-stream takes: only a non-ASCII link target that fits (written as PAX-free UTF-8 there)
      t.true(linkname !== undefined && !isAsciiString(linkname), JSON.stringify({ ...h, linkname }));
      refused++;
    } else {
      t.true(buf.subarray(256, 768).equals(want), JSON.stringify({ ...h, linkname, type }));
      t.is(buf.subarray(0, 256).toString('hex'), '00'.repeat(256));
      t.is(buf.subarray(768).toString('hex'), '00'.repeat(256));
      written++;
    }
  }
  t.true(written > 5000 && refused > 1000, `${written} written, ${refused} refused`);
});

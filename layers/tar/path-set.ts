// PathSet: a set of relative paths that keeps 8 bytes per path instead of the path (issue 14: applying a layer of a
// million entries remembered every path it wrote as a string in a Set, some 90 bytes each).
//
// A path is kept as a 64-bit keyed hash (two 32-bit hashes seeded at random per set) in an open-addressing table
// of Uint32 pairs, at most half full. `has` never misses a path that was added; it may answer true for a path that
// was not (two different paths with the same 64 bits): for a set of a million paths, about one chance in 10^13
// per query. The seeds are private to the process, so a layer cannot be written to make two of its paths collide.
// Paths cannot be listed back or removed: the one user (layers/tar/apply-state.ts, `written`) only adds and asks.
import { randomBytes } from 'node:crypto';

const INITIAL_SLOTS = 1 << 10;

export class PathSet {
  /** slot i holds the pair (table[2i], table[2i+1]); (0, 0) is an empty slot */
  private table = new Uint32Array(2 * INITIAL_SLOTS);
  private mask = INITIAL_SLOTS - 1;
  private count = 0;
  private readonly seedA: number;
  private readonly seedB: number;
  /** the last hash computed (fields, not an array: no garbage per call) */
  private ha = 0;
  private hb = 0;

  constructor() {
    const seeds = randomBytes(8);
    this.seedA = seeds.readUInt32LE(0);
    this.seedB = seeds.readUInt32LE(4);
  }

  /** the number of distinct paths added (distinct hashes, to be exact) */
  get size(): number {
    return this.count;
  }

  /** add adds `path`; it returns false when the set already had it. */
  add(path: string): boolean {
    this.hash(path);
    const a = this.ha;
    const b = this.hb;
    const i = this.find(a, b);
    if (this.table[2 * i] !== 0 || this.table[2 * i + 1] !== 0) return false;
    this.table[2 * i] = a;
    this.table[2 * i + 1] = b;
    if (++this.count * 2 > this.mask + 1) this.grow();
    return true;
  }

  /** has tells whether `path` was added (or, very rarely, a path with the same hash; see the file's header). */
  has(path: string): boolean {
    this.hash(path);
    const i = this.find(this.ha, this.hb);
    return this.table[2 * i] !== 0 || this.table[2 * i + 1] !== 0;
  }

  /** find returns the slot holding (a, b), or the empty slot where it would go (linear probing). */
  private find(a: number, b: number): number {
    const t = this.table;
    for (let i = (a ^ Math.imul(b, 0x9e3779b1)) & this.mask; ; i = (i + 1) & this.mask) {
      const x = t[2 * i] as number;
      const y = t[2 * i + 1] as number;
      if ((x === a && y === b) || (x === 0 && y === 0)) return i;
    }
  }

  private grow(): void {
    const old = this.table;
    this.table = new Uint32Array(old.length * 2);
    this.mask = old.length - 1; // slots double: old.length / 2 * 2
    for (let j = 0; j < old.length; j += 2) {
      const a = old[j] as number;
      const b = old[j + 1] as number;
      if (a === 0 && b === 0) continue;
      const i = this.find(a, b);
      this.table[2 * i] = a;
      this.table[2 * i + 1] = b;
    }
  }

  /** hash sets (ha, hb) to two 32-bit hashes of the path's UTF-16 code units (murmur-style mixing), never (0, 0). */
  private hash(s: string): void {
    let a = this.seedA ^ s.length;
    let b = this.seedB ^ Math.imul(s.length, 0x85ebca6b);
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      a = Math.imul(a ^ c, 0x5bd1e995);
      a ^= a >>> 15;
      b = Math.imul(b ^ c, 0xcc9e2d51);
      b = (b << 13) | (b >>> 19);
      b = Math.imul(b, 5) + 0xe6546b64;
    }
    a = fmix(a);
    b = fmix(b ^ a);
    this.ha = a >>> 0;
    this.hb = a === 0 && b === 0 ? 1 : b >>> 0;
  }
}

/** fmix is murmur3's final avalanche of a 32-bit value. */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

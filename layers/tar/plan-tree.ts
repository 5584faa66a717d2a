// The compact form of a layer tar's plan (layers/tar/create-plan.ts): one string per directory, not one per entry.
//
// Each directory that has entries in the plan keeps its children's keys, sorted and joined into one latin1 string
// (an arena): a key is a rank char (1 opaque marker, 2 whiteout, 3 anything else), the name's UTF-8 bytes as
// latin1 chars, and '/' for a directory; keys are separated by '\0' (never in a name, never a rank). Entries are
// read back in depth-first order, each directory right before its subtree, which is the order layers/tar/entry.ts
// describes (bytewise by name, directories ending in '/', the opaque marker then the whiteouts first in a
// directory). A million entries in a thousand directories cost some 20 MB here, against 60 MB for a key string
// per entry and 500 MB for an object per entry before (issue 14).
import { OCI_OPAQUE_NAME, OCI_WHITEOUT_PREFIX } from './whiteout.js';

/** PlanItem is one entry to write: a path of the tree (`rel` set) or a whiteout/opaque marker (`rel` unset). */
export interface PlanItem {
  /** entry name: relative, '/'-separated, directories end in '/' */
  name: string;
  /** the path below the root, without a trailing '/' */
  rel?: string;
  /** what the plan believes the type is (from readdir or an earlier lstat): a mismatch means the tree changed */
  isDir?: boolean;
}

const RANK_OPAQUE = '\x01';
const RANK_WHITEOUT = '\x02';
const RANK_OTHER = '\x03';
const SEP = '\0';
const ASCII = /^[\x00-\x7f]*$/;

/** childKey is a directory child's key: rank, the name's bytes as latin1, '/' for a directory. */
export function childKey(name: string, isDir: boolean): string {
  const rank =
    name === OCI_OPAQUE_NAME ? RANK_OPAQUE : name.startsWith(OCI_WHITEOUT_PREFIX) ? RANK_WHITEOUT : RANK_OTHER;
  const bytes = ASCII.test(name) ? name : Buffer.from(name, 'utf8').toString('latin1');
  return rank + bytes + (isDir ? '/' : '');
}

/** rawKey is childKey of a name given as its UTF-8 bytes in a latin1 string. */
export function rawKey(raw: string, isDir: boolean): string {
  const rank = raw === OCI_OPAQUE_NAME ? RANK_OPAQUE : raw.startsWith(OCI_WHITEOUT_PREFIX) ? RANK_WHITEOUT : RANK_OTHER;
  return isDir ? `${rank}${raw}/` : rank + raw;
}

/**
 * PlanTree collects the keys of each directory, then reads the entries back in order. `add` takes the keys of one
 * directory in any order; `close` sorts and joins them (after which the directory takes no more).
 */
export class PlanTree {
  /** closed directories: relative path ('' for the root) → joined sorted keys */
  private readonly lists = new Map<string, string>();
  /** directories still collecting keys */
  private readonly open = new Map<string, string[]>();
  count = 0;

  /** add adds one child key to directory `dir` (opening it when needed). */
  add(dir: string, key: string): void {
    let keys = this.open.get(dir);
    if (!keys) {
      if (this.lists.has(dir)) throw new Error(`plan: directory ${JSON.stringify(dir)} was already closed`);
      this.open.set(dir, (keys = []));
    }
    keys.push(key);
    this.count++;
  }

  /** addAll adds child keys to directory `dir` (opening it when needed); the array becomes the tree's. */
  addAll(dir: string, keys: string[]): void {
    if (keys.length === 0) return;
    const open = this.open.get(dir);
    if (open) open.push(...keys);
    else {
      if (this.lists.has(dir)) throw new Error(`plan: directory ${JSON.stringify(dir)} was already closed`);
      this.open.set(dir, keys);
    }
    this.count += keys.length;
  }

  /** isClosed tells whether `dir`'s keys are joined (it takes no more). */
  isClosed(dir: string): boolean {
    return this.lists.has(dir);
  }

  /** isOpen tells whether `dir` is collecting keys. */
  isOpen(dir: string): boolean {
    return this.open.has(dir);
  }

  /** close sorts and joins the keys of `dir`; nothing can be added to it afterwards. */
  close(dir: string): void {
    const keys = this.open.get(dir);
    if (!keys) return;
    this.open.delete(dir);
    keys.sort();
    this.lists.set(dir, keys.join(SEP)); // one flat string (a sorted join, not a rope)
  }

  /**
   * cursor closes every directory still open and returns a reader of the entries in order. With `markers`, a
   * non-directory key ranked as an opaque marker or a whiteout is a marker (a change set); without, a plain entry
   * (a directory listing, where such a name is an ordinary file).
   */
  cursor(markers: boolean): () => PlanItem | undefined {
    for (const dir of [...this.open.keys()]) this.close(dir);
    const lists = this.lists;
    /** the directories being read: their relative path (with a trailing '/', '' for the root), list and position */
    const stack: Array<{ prefix: string; list: string; pos: number }> = [];
    const root = lists.get('');
    if (root !== undefined) stack.push({ prefix: '', list: root, pos: 0 });
    return () => {
      for (;;) {
        const top = stack.at(-1);
        if (!top) return undefined;
        if (top.pos > top.list.length) {
          stack.pop();
          continue;
        }
        let end = top.list.indexOf(SEP, top.pos);
        if (end < 0) end = top.list.length;
        const key = top.list.slice(top.pos + 1, end); // without the rank
        const rank = top.list[top.pos];
        top.pos = end + 1;
        const isDir = key.endsWith('/');
        const bytes = isDir ? key.slice(0, -1) : key;
        const base = ASCII.test(bytes) ? bytes : Buffer.from(bytes, 'latin1').toString('utf8');
        const rel = top.prefix + base;
        if (markers && rank !== RANK_OTHER && !isDir) return { name: rel }; // a marker: its rel is left unset
        if (!isDir) return { name: rel, rel, isDir };
        const list = lists.get(rel);
        if (list !== undefined) stack.push({ prefix: `${rel}/`, list, pos: 0 });
        return { name: `${rel}/`, rel, isDir };
      }
    };
  }
}

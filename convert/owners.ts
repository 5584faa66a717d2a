// Owners for an unprivileged export. A user who is not root extracts every file as itself (it cannot chown) and
// cannot make device nodes, so `mkfs.ext4 -d` would record that user's uid everywhere. The layer tars still say
// who owns what: ownersFromLayers reads their headers (whiteouts applied) and fixOwnership patches the finished
// filesystem with `debugfs -w` (set_inode_field uid/gid/mode, mknod), still without root, loop devices or mounts.
import { OCI_OPAQUE_NAME, OCI_WHITEOUT_PREFIX } from '../layers/tar/whiteout.js';
import { chmod, lstat, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { extract, type Header } from 'tar-stream';
import { wrap } from '../sys/errors.js';
import { openLayer } from '../layers/store/layer-read.js';
import type { Store } from '../layers/store/store.js';
import { installPaxCodec } from '../layers/tar/pax.js';
import type { Descriptor } from '../layers/model/types.js';
import { run } from '../sys/exec.js';

/** OwnerEntry is what a layer says about one path. `mode` is the permission bits (0o7777). */
export interface OwnerEntry {
  uid: number;
  gid: number;
  mode: number;
  type: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo' | 'other';
  devmajor?: number;
  devminor?: number;
}

/** OwnerMap: rootfs-relative path (no leading '/') → entry, for the flattened image. */
export type OwnerMap = Map<string, OwnerEntry>;

const WH = OCI_WHITEOUT_PREFIX;
const OPAQUE = OCI_OPAQUE_NAME;

/**
 * ownersFromLayers reads the headers of each layer (base first) and returns the owner, mode and type of every path
 * of the flattened tree: later layers replace earlier entries, `.wh.NAME` removes NAME and what is below it, an
 * opaque marker removes what lower layers had below its directory.
 */
export async function ownersFromLayers(store: Store, layers: Descriptor[]): Promise<OwnerMap> {
  installPaxCodec();
  const map: OwnerMap = new Map();
  for (const desc of layers) {
    const entries = await readHeaders(openLayer(store, desc)).catch((err) => {
      throw wrap(`reading layer ${desc.digest}`, err);
    });
    applyHeaders(map, entries);
  }
  return map;
}

/** applyHeaders folds one layer's headers into the map (whiteouts and opaque markers first, then the entries). */
export function applyHeaders(
  map: OwnerMap,
  headers: Array<Pick<Header, 'name' | 'type' | 'uid' | 'gid' | 'mode' | 'devmajor' | 'devminor'>>,
): void {
  const removeBelow = (dir: string): void => {
    const prefix = dir === '' ? '' : `${dir}/`;
    for (const k of map.keys()) if (k.startsWith(prefix) && k !== dir) map.delete(k);
  };
  const adds: typeof headers = [];
  for (const h of headers) {
    const path = cleanPath(h.name);
    if (path === undefined) continue;
    const slash = path.lastIndexOf('/');
    const dir = slash < 0 ? '' : path.slice(0, slash);
    const base = path.slice(slash + 1);
    if (base === OPAQUE) removeBelow(dir);
    else if (base.startsWith(WH)) {
      const target = dir === '' ? base.slice(WH.length) : `${dir}/${base.slice(WH.length)}`;
      map.delete(target);
      removeBelow(target);
    } else adds.push({ ...h, name: path });
  }
  for (const h of adds) {
    const type = (h.type ?? 'file') as OwnerEntry['type'];
    const e: OwnerEntry = { uid: h.uid ?? 0, gid: h.gid ?? 0, mode: (h.mode ?? 0o644) & 0o7777, type };
    if (h.devmajor !== undefined && h.devmajor !== null) e.devmajor = h.devmajor;
    if (h.devminor !== undefined && h.devminor !== null) e.devminor = h.devminor;
    // a non-directory replacing a directory hides what was below it
    if (type !== 'directory' && map.get(h.name)?.type === 'directory') removeBelow(h.name);
    map.set(h.name, e);
  }
}

function cleanPath(name: string): string | undefined {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return undefined;
  return parts.length ? parts.join('/') : undefined;
}

async function readHeaders(tar: Readable): Promise<Header[]> {
  const out: Header[] = [];
  const ex = extract();
  await new Promise<void>((resolve, reject) => {
    ex.on('entry', (header, stream, next) => {
      out.push(header);
      stream.on('end', next);
      stream.on('error', reject);
      stream.resume();
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
    tar.on('error', (e) => ex.destroy(e));
    tar.pipe(ex);
  });
  return out;
}

/**
 * makeTreeReadable gives the owner read (and directory search) permission on everything below `root` that lacks
 * it, so that mkfs can copy it; the modes recorded in the layers are put back by fixOwnership. Returns how many
 * paths it changed.
 */
export async function makeTreeReadable(root: string): Promise<number> {
  let changed = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const ent of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, ent.name);
      if (ent.isSymbolicLink()) continue;
      const st = await lstat(p);
      const want = ent.isDirectory() ? 0o700 : 0o400;
      if ((st.mode & want) !== want) {
        await chmod(p, (st.mode & 0o7777) | want);
        changed++;
      }
      if (ent.isDirectory()) await walk(p);
    }
  };
  const st = await lstat(root);
  if ((st.mode & 0o700) !== 0o700) await chmod(root, (st.mode & 0o7777) | 0o700);
  await walk(root);
  return changed;
}

/**
 * ownershipCommands compares the tree below `root` (as the calling user extracted and extended it) with the
 * layers' owner map and returns debugfs commands that make the filesystem say what the image says: uid and gid of
 * every path (paths the export added itself belong to root), modes that differ, and device nodes and fifos that
 * could not be created. Paths debugfs cannot quote (a '"' or a newline) are returned in `skipped`.
 */
export async function ownershipCommands(
  root: string,
  owners: OwnerMap,
): Promise<{ commands: string[]; skipped: string[] }> {
  const commands: string[] = [];
  const skipped: string[] = [];
  const seen = new Set<string>();
  const q = (rel: string): string | undefined => (/["\n\r]/.test(rel) ? undefined : `"/${rel}"`);
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const ent of await readdir(dir, { withFileTypes: true })) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      seen.add(r);
      const p = join(dir, ent.name);
      const st = await lstat(p);
      const quoted = q(r);
      if (!quoted) {
        skipped.push(r);
        if (st.isDirectory()) await walk(p, r);
        continue;
      }
      const want = owners.get(r);
      const uid = want?.uid ?? 0;
      const gid = want?.gid ?? 0;
      if (st.uid !== uid) commands.push(`sif ${quoted} uid ${uid}`);
      if (st.gid !== gid) commands.push(`sif ${quoted} gid ${gid}`);
      if (want && !st.isSymbolicLink() && (st.mode & 0o7777) !== want.mode) {
        commands.push(`sif ${quoted} mode 0${((st.mode & 0o170000) | want.mode).toString(8)}`);
      }
      if (st.isDirectory()) await walk(p, r);
    }
  };
  await walk(root, '');
  // device nodes and fifos the unprivileged extraction left out
  const nodes = [...owners.entries()].filter(
    ([p, e]) => !seen.has(p) && (e.type === 'character-device' || e.type === 'block-device' || e.type === 'fifo'),
  );
  nodes.sort(([a], [b]) => (a < b ? -1 : 1));
  for (const [p, e] of nodes) {
    const parent = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '';
    const quoted = q(p);
    if (!quoted || (parent && !seen.has(parent))) {
      skipped.push(p);
      continue;
    }
    // debugfs's mknod links the bare name into its current directory: cd there first
    const base = p.slice(p.lastIndexOf('/') + 1);
    commands.push(`cd "/${parent}"`);
    if (e.type === 'fifo') commands.push(`mknod "${base}" p`);
    else
      commands.push(
        `mknod "${base}" ${e.type === 'character-device' ? 'c' : 'b'} ${e.devmajor ?? 0} ${e.devminor ?? 0}`,
      );
    const typeBits = e.type === 'fifo' ? 0o010000 : e.type === 'character-device' ? 0o020000 : 0o060000;
    commands.push(
      `sif ${quoted} mode 0${(typeBits | e.mode).toString(8)}`,
      `sif ${quoted} uid ${e.uid}`,
      `sif ${quoted} gid ${e.gid}`,
    );
  }
  return { commands, skipped };
}

export const OWNERS_TOOLS = { debugfs: 'e2fsprogs' };

/**
 * fixOwnership runs the commands against the ext4 filesystem at `offset` in `image` (debugfs understands the
 * `file?offset=N` form, so no loop device is needed). Returns the number of commands run.
 */
export async function fixOwnership(opts: {
  image: string;
  offset: number;
  commands: string[];
  workDir: string;
  /** SOURCE_DATE_EPOCH: the times of the nodes debugfs makes */
  time?: number;
  signal?: AbortSignal;
}): Promise<number> {
  if (opts.commands.length === 0) return 0;
  const script = join(opts.workDir, 'owners.debugfs');
  await writeFile(script, `${opts.commands.join('\n')}\n`);
  const r = await run(['debugfs', '-w', '-f', script, `${opts.image}?offset=${opts.offset}`], {
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.time === undefined ? {} : { env: { ...process.env, E2FSPROGS_FAKE_TIME: String(opts.time) } }),
  });
  // debugfs reports failed commands on stderr but exits 0: surface the first one
  const bad = r.stderr
    .split('\n')
    .find((l) => /^\S.*: .*(not found|Invalid|error|No such|cannot)/i.test(l) && !l.startsWith('debugfs '));
  if (bad) throw new Error(`debugfs could not fix owners: ${bad.trim()}`);
  return opts.commands.length;
}

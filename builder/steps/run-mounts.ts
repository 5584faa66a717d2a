// RUN --mount: reading the specs (BuildKit's instructions/commands_runmount.go rules) and making what each mount
// needs on this machine for one RUN (host directories and files that the runtime bind-mounts).
//
// type=bind   read-only by default; `rw` makes writes possible and discards them. From the context (the
//             .dockerignore applies, files are owned by 0:0) or from a stage/image (`from=`).
// type=cache  a directory that persists between builds in <store>/cache-mounts/, keyed by `id` (default: the
//             target); created with mode/uid/gid (0755, 0, 0); `from=`+`source=` seed it once. Never in a layer.
//             With --no-cache a build starts its cache mounts empty (directories of its own, in its scratch).
// type=tmpfs  a real tmpfs (size= when given), made by the runtime inside the step's mount namespace.
// type=secret a --secret value as a read-only file (default /run/secrets/<id>, mode 0400) and/or an env var;
//             `required` fails the step when the secret was not given. Never in a layer, a history entry or a key.
// type=ssh    a socket of a --ssh agent (builder/ssh-forward.ts) at the target (default /run/buildkit/ssh_agent.N,
//             N counting the RUN's ssh mounts), uid/gid/mode (0, 0, 0600); SSH_AUTH_SOCK = the first one unless
//             the stage sets it. An id not given: the step runs without it, or fails when `required` (BuildKit's
//             messages, checked when the step runs, as BuildKit does). The key is the mount's spec, not the socket.
// prepareMounts turns a RUN's mounts into cache-key parts, mount points (stubs), env and, on a cache miss, the
// host directories and files to bind. Owners of cache directories and secret files are set through the Host.
import { createHash } from 'node:crypto';
import { chmodSync, lstatSync } from 'node:fs';
import { mkdtemp, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { ensurePrivateDir, privateDirPath } from '../../layers/store/private-dirs.js';
import { InvalidInputError, TsbuildError } from '../../sys/errors.js';
import type { Host } from '../../sys/host.js';
import type { Mount, TmpfsMount } from '../../runtime/spec.js';
import type { Stub, View } from '../../unionfs/rootfs.js';
import { closest } from '../dockerfile/flags.js';
import { splitCsv } from '../plan.js';
import { hashSelection, selectSources } from './copy-select.js';
import { copyInto } from './copy-write.js';
import type { StepEnv } from './step.js';
import { DEFAULT_SSH_ID, type SshForwarder } from '../ssh-forward.js';

export type RunMount =
  | { type: 'bind'; target: string; source: string; from?: string; readonly: boolean }
  | {
      type: 'cache';
      target: string;
      id: string;
      sharing: 'shared' | 'private' | 'locked';
      from?: string;
      source: string;
      readonly: boolean;
      mode: number;
      uid: number;
      gid: number;
    }
  | { type: 'tmpfs'; target: string; size?: number }
  | {
      type: 'secret';
      id: string;
      target?: string;
      env?: string;
      required: boolean;
      mode: number;
      uid: number;
      gid: number;
    }
  | { type: 'ssh'; id: string; target?: string; required: boolean; mode: number; uid: number; gid: number };

/** MountError is a --mount value BuildKit would refuse. */
export class MountError extends TsbuildError {
  constructor(message: string) {
    super('E_MOUNT', message);
  }
}

const BOOL_KEYS = new Set(['readonly', 'ro', 'rw', 'readwrite', 'required']);

function parseBool(key: string, v: string | undefined): boolean {
  if (v === undefined) return true;
  const s = v.toLowerCase();
  if (s === 'true' || s === '1') return true;
  if (s === 'false' || s === '0') return false;
  throw new MountError(`invalid value for ${key}: ${v}`);
}

function parseId(key: string, v: string): number {
  if (!/^[0-9]+$/.test(v) || Number(v) > 0xffffffff) throw new MountError(`invalid value for ${key}: ${v}`);
  return Number(v);
}

/**
 * parseMount reads one `--mount` value. `expand` expands variables in values; `workdir` makes a relative target
 * absolute. Throws MountError.
 */
export function parseMount(spec: string, expand: (s: string) => string, workdir: string): RunMount {
  const fields: Record<string, string | undefined> = {};
  let type = 'bind';
  for (const raw of splitCsv(spec)) {
    const field = raw.trim();
    if (field === '') continue;
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    const value = eq < 0 ? undefined : expand(field.slice(eq + 1));
    if (value === undefined && !BOOL_KEYS.has(key))
      throw new MountError(`invalid field '${field}' must be a key=value pair`);
    if (key === 'type') {
      type = (value ?? '').toLowerCase();
      continue;
    }
    const canonicalKey =
      key === 'dst' || key === 'destination'
        ? 'target'
        : key === 'src'
          ? 'source'
          : key === 'ro'
            ? 'readonly'
            : key === 'readwrite'
              ? 'rw'
              : key;
    const known = [
      'target',
      'source',
      'from',
      'readonly',
      'rw',
      'id',
      'sharing',
      'mode',
      'uid',
      'gid',
      'required',
      'size',
      'env',
    ];
    if (!known.includes(canonicalKey)) {
      const near = closest(key, [...known, 'type']);
      throw new MountError(`unexpected key '${key}' in '${field}'${near ? ` (did you mean ${near}?)` : ''}`);
    }
    fields[canonicalKey] = value ?? 'true';
  }
  const absTarget = (t: string | undefined): string | undefined => {
    if (t === undefined || t === '') return undefined;
    return posix.normalize(posix.isAbsolute(t) ? t : posix.join('/', workdir, t));
  };
  let target = absTarget(fields.target);
  if (target === '/') throw new MountError('a RUN mount cannot target /');
  const readonly =
    fields.rw !== undefined
      ? !parseBool('rw', fields.rw)
      : fields.readonly !== undefined
        ? parseBool('readonly', fields.readonly)
        : undefined;
  switch (type) {
    case 'bind': {
      if (!target) throw new MountError('mount type bind requires a target');
      return {
        type: 'bind',
        target,
        source: fields.source ?? '/',
        ...(fields.from ? { from: fields.from } : {}),
        readonly: readonly ?? true,
      };
    }
    case 'cache': {
      if (!target) throw new MountError('mount type cache requires a target');
      const sharing = (fields.sharing ?? 'shared').toLowerCase();
      if (sharing !== 'shared' && sharing !== 'private' && sharing !== 'locked')
        throw new MountError(`unsupported sharing value "${sharing}"`);
      const mode = fields.mode === undefined ? 0o755 : Number.parseInt(fields.mode, 8);
      if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)
        throw new MountError(`invalid value for mode: ${fields.mode}`);
      return {
        type: 'cache',
        target,
        id: fields.id || target,
        sharing,
        ...(fields.from ? { from: fields.from } : {}),
        source: fields.source ?? '/',
        readonly: readonly ?? false,
        mode,
        uid: fields.uid === undefined ? 0 : parseId('uid', fields.uid),
        gid: fields.gid === undefined ? 0 : parseId('gid', fields.gid),
      };
    }
    case 'tmpfs': {
      if (!target) throw new MountError('mount type tmpfs requires a target');
      let size: number | undefined;
      if (fields.size !== undefined) {
        const m = /^([0-9]+)([kmg]?)b?$/i.exec(fields.size);
        if (!m) throw new MountError(`invalid value for size: ${fields.size}`);
        size =
          Number(m[1]) *
          ({ '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 } as Record<string, number>)[m[2]!.toLowerCase()]!;
      }
      return { type: 'tmpfs', target, ...(size === undefined ? {} : { size }) };
    }
    case 'secret': {
      let id = fields.id ?? '';
      if (id === '' && target) id = posix.basename(target);
      if (id === '') throw new MountError('secret mount requires an id or a target');
      if (!target && fields.env === undefined) target = `/run/secrets/${id}`;
      const mode = fields.mode === undefined ? 0o400 : Number.parseInt(fields.mode, 8);
      if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)
        throw new MountError(`invalid value for mode: ${fields.mode}`);
      return {
        type: 'secret',
        id,
        ...(target ? { target } : {}),
        ...(fields.env ? { env: fields.env } : {}),
        required: fields.required === undefined ? false : parseBool('required', fields.required),
        mode,
        uid: fields.uid === undefined ? 0 : parseId('uid', fields.uid),
        gid: fields.gid === undefined ? 0 : parseId('gid', fields.gid),
      };
    }
    case 'ssh': {
      if (fields.source !== undefined) throw new MountError('ssh does not support source');
      const mode = fields.mode === undefined ? 0o600 : Number.parseInt(fields.mode, 8);
      if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)
        throw new MountError(`invalid value for mode: ${fields.mode}`);
      return {
        type: 'ssh',
        id: fields.id || DEFAULT_SSH_ID,
        ...(target ? { target } : {}),
        required: fields.required === undefined ? false : parseBool('required', fields.required),
        mode,
        uid: fields.uid === undefined ? 0 : parseId('uid', fields.uid),
        gid: fields.gid === undefined ? 0 : parseId('gid', fields.gid),
      };
    }
    default: {
      const near = closest(type, MOUNT_TYPES);
      throw new MountError(`unsupported mount type "${type}"${near ? ` (did you mean ${near}?)` : ''}`);
    }
  }
}

/** The mount types of `RUN --mount` (BuildKit's list). */
const MOUNT_TYPES = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];

/** mountTarget is where a mount appears in the container, and whether it is a directory (for mount points). */
export function mountStub(m: RunMount, sourceIsDir: boolean): { path: string; dir: boolean } | undefined {
  switch (m.type) {
    case 'secret':
    case 'ssh':
      return m.target ? { path: m.target, dir: false } : undefined;
    case 'bind':
      return { path: m.target, dir: sourceIsDir };
    default:
      return { path: m.target, dir: true };
  }
}

/** cacheMountDir is the host directory of a cache mount id in a store. */
export function cacheMountDir(storeRoot: string, id: string): string {
  return join(privateDirPath(storeRoot, 'cache-mounts'), createHash('sha256').update(id).digest('hex').slice(0, 32));
}

/** locks serializes `sharing=locked` cache mounts of one id within this process. */
const locks = new Map<string, Promise<void>>();

/** lockCacheMount waits for other holders of a locked cache id; returns the release function. */
export async function lockCacheMount(id: string): Promise<() => void> {
  const prev = locks.get(id) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const chained = prev.then(() => mine);
  locks.set(id, chained);
  await prev;
  return () => {
    release();
    if (locks.get(id) === chained) locks.delete(id);
  };
}

/** ensureCacheDir creates a cache mount directory on first use (mode, uid, gid), seeded by `seed` when given. */
export async function ensureCacheDir(
  host: Host,
  dir: string,
  m: Extract<RunMount, { type: 'cache' }>,
  seed?: (dir: string) => Promise<void>,
): Promise<void> {
  if (lstatSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
    // its mtime is its last use: `prune --all --filter until=` goes by it
    const now = new Date();
    await utimes(dir, now, now).catch(() => {});
    return;
  }
  await ensurePrivateDir(join(dir, '..'));
  const tmp = await mkdtemp(`${dir}.tmp-`);
  try {
    if (seed) await seed(tmp);
    chmodSync(tmp, m.mode);
    host.lchown(tmp, m.uid, m.gid);
    await rename(tmp, dir).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
      await rm(tmp, { recursive: true, force: true });
    });
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** writeSecretFile writes a secret for one RUN into a private directory (mode, owner as the mount asks). */
export async function writeSecretFile(
  host: Host,
  dir: string,
  m: Extract<RunMount, { type: 'secret' }>,
  value: Uint8Array,
): Promise<Mount | undefined> {
  if (!m.target) return undefined;
  const file = join(
    dir,
    `secret-${createHash('sha256').update(m.id).update(String(Math.random())).digest('hex').slice(0, 16)}`,
  );
  await writeFile(file, value, { mode: 0o600, flag: 'wx' });
  host.lchown(file, m.uid, m.gid);
  chmodSync(file, m.mode);
  return { source: file, destination: m.target, readonly: true };
}

/** PreparedMounts is what a RUN's mounts need: key parts, mount points, env, and the mounts themselves on demand. */
export interface PreparedMounts {
  keys: unknown[];
  stubs: Stub[];
  env: string[];
  /** type=tmpfs mounts, for the runtime to make */
  tmpfs: TmpfsMount[];
  /** a private directory for this RUN (copies, secrets, the runtime's files) */
  dir: string;
  /** makes the host side of each mount (on a cache miss only) */
  materialize: () => Promise<Mount[]>;
  release: () => Promise<void>;
}

/** prepareMounts resolves RUN --mount sources, their cache-key parts, stubs and env (secrets). */
export async function prepareMounts(
  o: StepEnv,
  mounts: RunMount[],
  secrets: ReadonlyMap<string, Uint8Array>,
  opts: { freshCaches?: boolean; ssh?: SshForwarder; hasEnv?: (key: string) => boolean } = {},
): Promise<PreparedMounts> {
  const dir = await mkdtemp(join(o.tmpDir, 'run-'));
  const views: View[] = [];
  const releases: Array<() => void | Promise<void>> = [];
  const keys: unknown[] = [];
  const stubs: Stub[] = [];
  const env: string[] = [];
  const tmpfs: TmpfsMount[] = [];
  const makers: Array<() => Promise<Mount | undefined>> = [];
  let sshMounts = 0;
  const release = async (): Promise<void> => {
    for (const r of releases.reverse()) await r();
    for (const v of views) await v.release();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (const m of mounts) {
      switch (m.type) {
        case 'bind': {
          const src = await o.source(m.from, 'RUN --mount');
          if (src.view) views.push(src.view);
          const from = src.from;
          const sel = selectSources(from, [m.source]);
          const s = sel[0]!;
          const isDir = s.node.st.isDirectory();
          keys.push({
            type: 'bind',
            target: m.target,
            readonly: m.readonly,
            source: m.source,
            from: m.from ?? null,
            content: await hashSelection(sel, from.resetOwner, from.digests),
          });
          const st = mountStub(m, isDir);
          if (st) stubs.push(st);
          makers.push(async () => {
            // A copy: .dockerignore and ownership apply, and writes (rw) are thrown away.
            const copy = await mkdtemp(join(dir, 'bind-'));
            const target = isDir ? '/' : `/${s.node.name}`;
            await copyInto(copy, from, sel, { dest: isDir ? '/' : target, tmpDir: dir, host: o.host });
            return { source: isDir ? copy : join(copy, s.node.name), destination: m.target, readonly: m.readonly };
          });
          break;
        }
        case 'cache': {
          keys.push({ type: 'cache', target: m.target, readonly: m.readonly, mode: m.mode, uid: m.uid, gid: m.gid });
          stubs.push({ path: m.target, dir: true });
          // --no-cache: this build's own directory for the id (in its scratch, shared by its steps)
          const at = opts.freshCaches
            ? join(o.tmpDir, 'cache-mounts', createHash('sha256').update(m.id).digest('hex').slice(0, 32))
            : cacheMountDir(o.store.root, m.id);
          makers.push(async () => {
            if (m.sharing === 'locked') releases.push(await lockCacheMount(m.id));
            let seed: ((d: string) => Promise<void>) | undefined;
            if (m.from !== undefined) {
              const src = await o.source(m.from, 'RUN --mount');
              if (src.view) views.push(src.view);
              const sel = selectSources(src.from, [m.source]);
              seed = async (d) => copyInto(d, src.from, sel, { dest: '/', tmpDir: dir, host: o.host });
            }
            await ensureCacheDir(o.host, at, m, seed);
            return { source: at, destination: m.target, readonly: m.readonly };
          });
          break;
        }
        case 'tmpfs': {
          keys.push({ type: 'tmpfs', target: m.target, size: m.size ?? null });
          stubs.push({ path: m.target, dir: true });
          tmpfs.push(m.size === undefined ? { destination: m.target } : { destination: m.target, size: m.size });
          break;
        }
        case 'secret': {
          keys.push({
            type: 'secret',
            id: m.id,
            target: m.target ?? null,
            env: m.env ?? null,
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            required: m.required,
          });
          const value = secrets.get(m.id);
          if (value === undefined) {
            if (m.required)
              throw new InvalidInputError(
                `secret ${m.id}: not found`,
                `pass it with --secret id=${m.id},src=FILE or --secret id=${m.id},env=VAR`,
              );
            break;
          }
          if (m.env) env.push(`${m.env}=${Buffer.from(value).toString()}`);
          if (m.target) {
            stubs.push({ path: m.target, dir: false });
            makers.push(() => writeSecretFile(o.host, dir, m, value));
          }
          break;
        }
        case 'ssh': {
          const target = m.target ?? `/run/buildkit/ssh_agent.${sshMounts}`;
          if (sshMounts++ === 0 && !opts.hasEnv?.('SSH_AUTH_SOCK')) env.push(`SSH_AUTH_SOCK=${target}`);
          const { id, uid, gid, mode, required } = m;
          keys.push({ type: 'ssh', id, target, mode, uid, gid, required });
          const ssh = opts.ssh;
          if (!ssh?.has(id)) {
            if (required)
              makers.push(() => {
                throw new InvalidInputError(
                  ssh ? `unset ssh forward key ${id}` : `no SSH key ${JSON.stringify(id)} forwarded from the client`,
                  `pass --ssh ${id === DEFAULT_SSH_ID ? 'default' : `${id}=SOCKET_OR_KEY`}`,
                );
              });
            break;
          }
          stubs.push({ path: target, dir: false });
          makers.push(async () => {
            const l = await ssh.listen(id, { uid, gid, mode, host: o.host });
            releases.push(l.close);
            return { source: l.path, destination: target, readonly: false };
          });
          break;
        }
      }
    }
  } catch (err) {
    await release();
    throw err;
  }
  return {
    keys,
    stubs,
    env,
    tmpfs,
    dir,
    release,
    materialize: async () => {
      const out: Mount[] = [];
      for (const make of makers) {
        const m = await make();
        if (m) out.push(m);
      }
      return out;
    },
  };
}

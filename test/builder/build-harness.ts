// The differential harness of the Dockerfile case table: the same case (fixtures/build/<case>/) built by tsbuild and
// by `buildah bud` (Debian's buildah 1.28: vfs storage in temp dirs, chroot isolation, --layers, docker format),
// both images reduced to the same comparable form: the rootfs as one line per path (type, mode, owner, size,
// content hash or link target, hard-link group; never times) and the config fields a Dockerfile sets.
//
// buildah's result for a case depends only on its inputs (the context tree, the Dockerfile, build args, the base
// image digest, buildah's version), so it is kept in CACHE/buildah-oracle/<key>.json and buildah runs again only
// when a case changes (TSBUILD_ORACLE_CACHE=0 always runs it).
import type { ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, cp, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build, type BuildOptions, type BuildResult } from '../../builder/build.js';
import { makeBusyboxRootfs } from '../../fixtures/busybox.js';
import { prepareBuildContext } from '../../fixtures/build/contexts.js';
import { autoDecompress } from '../../layers/compress/compress.js';
import { getImage, type Image } from '../../layers/store/image.js';
import { importImage } from '../../layers/sources/import.js';
import { loadArchive } from '../../layers/sources/archive-load.js';
import { saveImages } from '../../layers/sources/archive-save.js';
import { Store } from '../../layers/store/store.js';
import { applyLayer } from '../../layers/tar/apply.js';
import type { ContainerConfig, ImageConfig, Manifest, Index } from '../../layers/model/types.js';
import { imageLayers } from '../../layers/model/layer.js';
import { flatten } from '../../unionfs/flatten.js';
import { verifyImage } from '../../layers/store/verify.js';
import { makeTempDir, removeDir, repoRoot } from '../helpers/index.js';
import { CACHE, cacheDir } from '../helpers/images.js';

const execFileP = promisify(execFile);

/** verifiedBuild builds, then checks the image it wrote (layers/store/verify.ts) and asserts it is sound. */
export async function verifiedBuild(t: ExecutionContext, opts: BuildOptions): Promise<BuildResult> {
  const r = await build(opts);
  t.deepEqual(await verifyImage(opts.store, r.image), [], `image ${r.digest} verifies`);
  return r;
}

/** verifyStored checks an image in the store by name (images built through the CLI) and asserts it is sound. */
export async function verifyStored(t: ExecutionContext, store: Store, name: string): Promise<void> {
  const image = await getImage(store, name);
  t.deepEqual(await verifyImage(store, image), [], `image ${name} verifies`);
}

export const CASES_DIR = join(repoRoot, 'fixtures', 'build');
export const BUILDAH = existsSync('/usr/bin/buildah') ? '/usr/bin/buildah' : 'buildah';
/** The fixed SOURCE_DATE_EPOCH of the busybox base, so that its digest is the same on every run. */
const BASE_EPOCH = 1_700_000_000;

/** CaseSpec is fixtures/build/<case>/case.json. */
export interface CaseSpec {
  name: string;
  /** the sentence the test is titled with */
  title: string;
  /** the base image the Dockerfile names: busybox:test (default) or debian:bookworm */
  base?: 'busybox' | 'debian';
  buildArgs?: Record<string, string>;
  target?: string;
  /** compare with buildah (default), or skip it because buildah 1.28 lacks the feature */
  buildah?: 'compare' | 'skip' | 'fails';
  /** where BuildKit's behaviour differs from buildah's: what differs and which side is asserted */
  differs?: string;
  /**
   * config fields and rootfs paths left out of the buildah comparison (BuildKit's are asserted in `expect`);
   * `content`: paths compared without their data (type, mode, owner, size only), for files that hold the day they
   * were written (the buildah result may come from the test cache, made on another day)
   */
  ignore?: { config?: string[]; paths?: string[]; content?: string[] };
  /** BuildKit's behaviour, asserted on tsbuild's image */
  expect?: {
    config?: Record<string, unknown>;
    /** path → 'absent' | { content?, mode?, uid?, gid?, type?, link? } */
    files?: Record<
      string,
      'absent' | { content?: string; mode?: string; uid?: number; gid?: number; type?: string; link?: string }
    >;
    /** created_by of the history entries this build added, in order */
    history?: Array<{ createdBy: string; emptyLayer?: boolean }>;
    /** how many layers the build added on top of the base */
    newLayers?: number;
    /** the build fails with a message matching this */
    error?: string;
    author?: string;
  };
}

export function listCases(): string[] {
  return readdirSync(CASES_DIR, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(CASES_DIR, d.name, 'case.json')))
    .map((d) => d.name)
    .sort();
}

export function readCase(name: string): CaseSpec {
  const spec = JSON.parse(readFileSync(join(CASES_DIR, name, 'case.json'), 'utf8')) as Omit<CaseSpec, 'name'>;
  return { name, ...spec };
}

/** prepareContext copies a case into `dir` (without case.json), with fixed modes, plus its generated files. */
export async function prepareContext(name: string, dir: string): Promise<void> {
  await cp(join(CASES_DIR, name), dir, {
    recursive: true,
    verbatimSymlinks: true,
    filter: (src) => !src.endsWith('/case.json'),
  });
  const fix = async (d: string): Promise<void> => {
    await chmod(d, 0o755);
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await fix(p);
      else if (e.isFile()) await chmod(p, e.name.endsWith('.sh') ? 0o755 : 0o644);
    }
  };
  await fix(dir);
  await prepareBuildContext(name, dir);
}

/** treeOf describes a rootfs: one line per path, never times. The root itself is left out. */
export function treeOf(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const inodes = new Map<string, string>();
  const walk = (dir: string, rel: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const abs = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(abs);
      const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
      let line: string;
      if (st.isDirectory()) line = `dir ${mode} ${st.uid}:${st.gid}`;
      else if (st.isSymbolicLink()) line = `link ${st.uid}:${st.gid} -> ${readlinkSync(abs)}`;
      else if (st.isFile()) {
        line = `file ${mode} ${st.uid}:${st.gid} ${st.size} ${createHash('sha256').update(readFileSync(abs)).digest('hex').slice(0, 16)}`;
        if (st.nlink > 1) {
          const key = `${st.dev}:${st.ino}`;
          const first = inodes.get(key);
          if (first) line += ` hardlink=${first}`;
          else inodes.set(key, r);
        }
      } else if (st.isCharacterDevice() || st.isBlockDevice())
        line = `${st.isCharacterDevice() ? 'char' : 'block'} ${mode} ${st.uid}:${st.gid} ${st.rdev}`;
      else if (st.isFIFO()) line = `fifo ${mode} ${st.uid}:${st.gid}`;
      else line = `other ${mode}`;
      out[r] = line;
      if (st.isDirectory()) walk(abs, r);
    }
  };
  walk(root, '');
  return out;
}

/** CONFIG_FIELDS are the config fields a Dockerfile sets and the comparison covers. */
export const CONFIG_FIELDS = [
  'Env',
  'Cmd',
  'Entrypoint',
  'WorkingDir',
  'User',
  'ExposedPorts',
  'Volumes',
  'Labels',
  'StopSignal',
  'Healthcheck',
  'Shell',
] as const;

/** pickConfig keeps CONFIG_FIELDS, dropping empty values (null, '', [], {}) so both tools' spellings compare. */
export function pickConfig(c: ContainerConfig | Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const src = (c ?? {}) as Record<string, unknown>;
  for (const k of CONFIG_FIELDS) {
    let v = src[k];
    if (k === 'Labels' && v && typeof v === 'object') {
      v = Object.fromEntries(Object.entries(v as Record<string, string>).filter(([l]) => l !== 'io.buildah.version'));
    }
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v) && v.length === 0) continue;
    if (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0) continue;
    out[k] = v;
  }
  return out;
}

/** Result is one tool's image reduced for comparison. */
export interface Result {
  config: Record<string, unknown>;
  tree: Record<string, string>;
  /** set when the build failed */
  error?: string;
}

// ─── bases ──────────────────────────────────────────────────────────────────────────────────────────────────────

export interface Bases {
  /** a store holding busybox:test (and debian:bookworm when asked) */
  storeRoot: string;
  /** `tsbuild save` archives of the bases, for buildah */
  archives: Partial<Record<'busybox' | 'debian', string>>;
  /** what identifies a base's content: its diffIDs and run config (part of the oracle key; the history names a
   *  temp directory, so the manifest digest changes from run to run) */
  digests: Partial<Record<'busybox' | 'debian', string>>;
  dir: string;
}

/** makeBases imports busybox:test (fixed times, so a fixed digest) into a fresh store and saves it for buildah. */
export async function makeBases(opts: { debianStoreRoot?: string } = {}): Promise<Bases> {
  const dir = await makeTempDir('tsbuild-bases-');
  const storeRoot = join(dir, 'store');
  const store = await Store.open(storeRoot);
  const tree = join(dir, 'bb');
  await mkdir(tree);
  await makeBusyboxRootfs(tree);
  await importImage(store, {
    source: tree,
    name: 'busybox:test',
    sourceDateEpoch: BASE_EPOCH,
    config: { Cmd: ['/bin/sh'] },
  });
  await removeDir(tree);
  const bases: Bases = { storeRoot, archives: {}, digests: {}, dir };
  const save = async (kind: 'busybox' | 'debian', s: Store, name: string): Promise<void> => {
    const image = await getImage(s, name);
    const file = join(dir, `${kind}.tar`);
    await saveImages(s, { images: [{ image, names: [name] }], output: file });
    bases.archives[kind] = file;
    bases.digests[kind] = createHash('sha256')
      .update(JSON.stringify([image.config.rootfs.diff_ids, image.config.config ?? {}]))
      .digest('hex');
  };
  await save('busybox', store, 'busybox:test');
  if (opts.debianStoreRoot) {
    const deb = await Store.open(opts.debianStoreRoot);
    await save('debian', deb, 'debian:bookworm');
    // the test store gets it too (through the archive: the two stores stay independent)
    await loadArchive(store, { input: bases.archives.debian! });
  }
  return bases;
}

/** busyboxStore makes a fresh store holding busybox:test (fixed times), removed after the test. */
export async function busyboxStore(t: { teardown(fn: () => unknown): void }): Promise<Store> {
  const dir = await makeTempDir('tsbuild-store-');
  t.teardown(() => removeDir(dir));
  const tree = join(dir, 'bb');
  await makeBusyboxRootfs(tree);
  const store = await Store.open(join(dir, 'store'));
  await importImage(store, {
    source: tree,
    name: 'busybox:test',
    sourceDateEpoch: BASE_EPOCH,
    config: { Cmd: ['/bin/sh'] },
  });
  await removeDir(tree);
  return store;
}

// ─── tsbuild side ───────────────────────────────────────────────────────────────────────────────────────────────

/** reduceImage unpacks an image of a store and reduces it. */
export async function reduceImage(store: Store, image: Image): Promise<Result> {
  const dir = await makeTempDir('tsbuild-unpack-');
  try {
    await flatten({ store, layers: imageLayers(image), dir: join(dir, 'rootfs'), method: 'apply' });
    return { config: pickConfig(image.config.config), tree: treeOf(join(dir, 'rootfs')) };
  } finally {
    await removeDir(dir);
  }
}

// ─── buildah side ───────────────────────────────────────────────────────────────────────────────────────────────

let buildahVersion: string | undefined;

/** Buildah is one buildah storage (vfs, temp --root/--runroot) with the bases pulled in. */
export class Buildah {
  private pulled = new Set<string>();
  private constructor(readonly dir: string) {}

  static async create(): Promise<Buildah> {
    return new Buildah(await makeTempDir('tsbuild-buildah-'));
  }

  private args(): string[] {
    return ['--root', join(this.dir, 'root'), '--runroot', join(this.dir, 'run'), '--storage-driver', 'vfs'];
  }

  async run(args: string[], opts: { cwd?: string } = {}): Promise<{ stdout: string; stderr: string }> {
    return execFileP(BUILDAH, [...this.args(), ...args], {
      maxBuffer: 256 << 20,
      env: { ...process.env, BUILDAH_ISOLATION: 'chroot', BUILDAH_LAYERS: 'true' },
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    });
  }

  async pull(archive: string): Promise<void> {
    if (this.pulled.has(archive)) return;
    await this.run(['pull', '-q', `oci-archive:${archive}`]);
    this.pulled.add(archive);
  }

  /** build runs buildah bud on a prepared context and reduces its image; a failure gives `error`. */
  async build(ctx: string, spec: CaseSpec, tag: string): Promise<Result> {
    const args = [
      'bud',
      '--isolation',
      'chroot',
      '--layers',
      '--format',
      'docker',
      '--pull=never',
      '--identity-label=false',
      '-t',
      tag,
    ];
    for (const [k, v] of Object.entries(spec.buildArgs ?? {})) args.push('--build-arg', `${k}=${v}`);
    if (spec.target) args.push('--target', spec.target);
    args.push('-f', join(ctx, 'Dockerfile'), ctx);
    try {
      await this.run(args, { cwd: ctx });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      return { config: {}, tree: {}, error: (e.stderr ?? e.message).trim().split('\n').slice(-3).join(' | ') };
    }
    const info = JSON.parse((await this.run(['inspect', '--type', 'image', tag])).stdout) as {
      Docker: { config: ContainerConfig };
    };
    const out = join(this.dir, `oci-${tag.replace(/[^a-z0-9]/g, '_')}`);
    await this.run(['push', '-q', tag, `oci:${out}`]);
    const root = join(this.dir, `rootfs-${tag.replace(/[^a-z0-9]/g, '_')}`);
    await mkdir(root);
    await unpackLayout(out, root);
    const tree = treeOf(root);
    await removeDir(root);
    await removeDir(out);
    await this.run(['rmi', '-f', tag]).catch(() => {});
    return { config: pickConfig(info.Docker.config), tree };
  }

  async destroy(): Promise<void> {
    await removeDir(this.dir);
  }
}

/** unpackLayout applies the layers of the single image of an OCI layout directory into `root`. */
async function unpackLayout(layout: string, root: string): Promise<void> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as Index;
  const blob = (d: string): string => join(layout, 'blobs', 'sha256', d.replace(/^sha256:/, ''));
  const manifest = JSON.parse(await readFile(blob(index.manifests[0]!.digest), 'utf8')) as Manifest;
  for (const l of manifest.layers) {
    const input = createReadStream(blob(l.digest));
    const plain = autoDecompress();
    input.on('error', (e) => plain.destroy(e));
    await applyLayer(input.pipe(plain), { root, whiteouts: 'delete' });
  }
}

/** oracleKey names a buildah result by everything it depends on. */
export async function oracleKey(ctx: string, spec: CaseSpec, bases: Bases): Promise<string> {
  buildahVersion ??= (await execFileP(BUILDAH, ['--version'])).stdout.trim();
  const h = createHash('sha256');
  h.update(
    `${buildahVersion}\n${JSON.stringify({ buildArgs: spec.buildArgs ?? {}, target: spec.target ?? '', base: bases.digests[spec.base ?? 'busybox'] })}\n`,
  );
  for (const [p, line] of Object.entries(treeOf(ctx))) h.update(`${p} ${line}\n`);
  return h.digest('hex');
}

/** buildahResult returns buildah's result for a case, from the oracle cache or by running buildah. */
export async function buildahResult(
  buildah: () => Promise<Buildah>,
  ctx: string,
  spec: CaseSpec,
  bases: Bases,
): Promise<Result> {
  const key = await oracleKey(ctx, spec, bases);
  const file = join(CACHE, 'buildah-oracle', `${spec.name}-${key.slice(0, 24)}.json`);
  if (process.env.TSBUILD_ORACLE_CACHE !== '0' && existsSync(file))
    return JSON.parse(readFileSync(file, 'utf8')) as Result;
  const b = await buildah();
  await b.pull(bases.archives[spec.base ?? 'busybox']!);
  const r = await b.build(ctx, spec, `case-${spec.name}`);
  await cacheDir('buildah-oracle');
  await writeFile(`${file}.tmp`, JSON.stringify(r));
  await rename(`${file}.tmp`, file);
  return r;
}

/**
 * dropBuildahStubs removes what buildah 1.28's chroot isolation leaks into RUN layers and BuildKit does not:
 * empty /etc/hosts and /etc/resolv.conf files and an empty /run directory, when tsbuild's image lacks them.
 */
export function dropBuildahStubs(theirs: Record<string, string>, ours: Record<string, string>): Record<string, string> {
  const out = { ...theirs };
  for (const p of ['etc/hosts', 'etc/resolv.conf']) {
    if (out[p] !== undefined && ours[p] === undefined && / 0 [0-9a-f]{16}$/.test(out[p]!)) delete out[p];
  }
  if (out.run !== undefined && ours.run === undefined && !Object.keys(out).some((k) => k.startsWith('run/')))
    delete out.run;
  return out;
}

export type { ImageConfig };

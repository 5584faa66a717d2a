// The harness of the BuildKit port: each case is one observable outcome of a test in moby/buildkit's
// frontend/dockerfile (the file and function it comes from are in `from`), replayed offline on busybox:test.
// A case is data: a Dockerfile, a context, build options, and what BuildKit's test asserts (files in the result,
// config fields, history, or an error message). The harness builds it with build() into a store shared by the file
// and checks the image with verifyImage.
//
// A case that fails today for a reason owned elsewhere carries `pending: '<owner>: <what>'`: it is declared with
// test.failing, so it is reported and turns red the day it passes (then drop the mark).
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, chown, mkdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { build, type BuildOptions, type BuildResult } from '../../../builder/build.js';
import { getImage, type Image, tagImage } from '../../../layers/store/image.js';
import { imageLayers } from '../../../layers/model/layer.js';
import type { Store } from '../../../layers/store/store.js';
import { verifyImage } from '../../../layers/store/verify.js';
import { flatten } from '../../../unionfs/flatten.js';
import { isRoot, makeTempDir, removeDir } from '../../helpers/index.js';
import { busyboxStore } from '../build-harness.js';

/** A file of the context: text, or with a mode, or a symlink, or a directory. */
export type CtxEntry =
  | string
  | { content: string; mode?: number; uid?: number; gid?: number }
  | { link: string }
  | { dir: true; mode?: number }
  | { socket: true }
  /** a tar archive of these files (gzip-compressed when asked) */
  | { tar: Record<string, string>; gzip?: boolean }
  /** a file of these exact bytes (a hand-made tar: fixtures/hostile-layers.ts tarSync) */
  | { bytes: Uint8Array };

/**
 * A named context (`--build-context NAME=VALUE`): the value as given (a function: computed when the case runs, e.g.
 * a registry address), a directory of these files, or an OCI image layout of an image in the store, named in the
 * value by its tag (`PATH:v1`, the layout's entry annotated with it), its digest (`PATH@sha256:…`) or neither.
 */
export type NamedCtx =
  string | (() => string) | { dir: Record<string, CtxEntry> } | { ociLayout: string; by: 'tag' | 'digest' | 'none' };

/** What a path of the result must be. A string is the file's exact content. */
export type FileWant =
  | 'absent'
  | string
  | {
      content?: string | RegExp;
      mode?: string;
      uid?: number;
      gid?: number;
      type?: 'file' | 'dir' | 'symlink';
      link?: string;
    };

export interface BkCase {
  /** the BuildKit test: `<file> <function>`, e.g. `dockerfile_copy_test.go testCopyChown` */
  from: string;
  /** what the case shows, as a sentence */
  title: string;
  /** the Dockerfile (written as `Dockerfile` unless dockerfileName says otherwise) */
  dockerfile: string;
  /** `$URL` in the Dockerfile becomes this (a server on 127.0.0.1 the test file starts) */
  url?: () => string;
  /** the name the Dockerfile is written under in the context (BuildKit's filename tests) */
  dockerfileName?: string;
  /** -f, relative to the context */
  dockerfilePath?: string;
  context?: Record<string, CtxEntry>;
  buildArgs?: Record<string, string>;
  target?: string;
  secrets?: Record<string, string>;
  sourceDateEpoch?: number;
  labels?: Record<string, string>;
  /** named contexts by name (`--build-context`) */
  contexts?: Record<string, NamedCtx>;
  /** work before the build, once the `before` images are built (push an image to a registry the file started) */
  setup?: (store: Store) => Promise<void>;
  /** RUN's network (default none: the cases are offline) */
  network?: 'none' | 'default' | 'host';
  /** --allow entitlements */
  allow?: string[];
  /** --ssh agents (a function: sockets and keys are made when the test runs) */
  ssh?: () => BuildOptions['ssh'];
  expect: {
    files?: Record<string, FileWant>;
    /** config fields (image.config.config); 'absent' = unset or empty */
    config?: Record<string, unknown>;
    /** top-level image config fields (author, os, architecture, created …) */
    image?: Record<string, unknown>;
    /** history rows this build added: created_by (string or pattern) and empty_layer */
    history?: Array<{ createdBy: string | RegExp; emptyLayer?: boolean }>;
    newLayers?: number;
    /** the build fails with a message containing this (or matching the pattern) */
    error?: string | RegExp;
    /** a progress step is named with this (BuildKit's vertex names) */
    step?: string | RegExp;
    /** a warning containing this is reported */
    warning?: string | RegExp;
    /** anything else, on the result */
    check?: (
      t: ExecutionContext,
      r: { image: Image; base: Image; root?: string; result: BuildResult; store: Store },
    ) => void | Promise<void>;
  };
  /** images built first into the same store (a base with ONBUILD triggers, an image to inherit from) */
  before?: Array<{ tag: string; dockerfile: string; context?: Record<string, CtxEntry> }>;
  /** known to fail today: `<owner>: <what>` */
  pending?: string;
}

/** writeOciLayout writes the image `tag` of the store as an OCI image layout in `dir`; returns its manifest digest. */
export async function writeOciLayout(store: Store, tag: string, dir: string, refName?: string): Promise<string> {
  const image = await getImage(store, tag);
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const blobs = [image.descriptor, image.manifest.config, ...image.manifest.layers];
  for (const d of blobs)
    await writeFile(join(dir, 'blobs', 'sha256', d.digest.slice(7)), await store.readBlob(d.digest, 1 << 30));
  const entry = { mediaType: image.descriptor.mediaType, digest: image.descriptor.digest, size: image.descriptor.size };
  const annotations = refName ? { annotations: { 'org.opencontainers.image.ref.name': refName } } : {};
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ ...entry, ...annotations }],
  };
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return image.descriptor.digest;
}

/** namedContexts makes the case's named contexts (directories, layouts) and gives the values to build with. */
async function namedContexts(t: ExecutionContext, store: Store, c: BkCase): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(c.contexts ?? {})) {
    if (typeof v === 'string') out[name] = v;
    else if (typeof v === 'function') out[name] = v();
    else {
      const dir = await makeTempDir('tsbuild-bk-named-');
      t.teardown(() => removeDir(dir));
      if ('dir' in v) {
        await writeContext(dir, { ...c, dockerfileName: '', context: v.dir });
        out[name] = dir;
      } else {
        const digest = await writeOciLayout(store, v.ociLayout, dir, v.by === 'tag' ? 'v1' : undefined);
        out[name] = `oci-layout://${dir}${v.by === 'tag' ? ':v1' : v.by === 'digest' ? `@${digest}` : ''}`;
      }
    }
  }
  return out;
}

const match = (got: string, want: string | RegExp): boolean =>
  typeof want === 'string' ? got.includes(want) : want.test(got);

async function writeContext(dir: string, c: BkCase): Promise<void> {
  const name = c.dockerfileName ?? 'Dockerfile';
  const entries: Record<string, CtxEntry> = { ...(c.dockerfileName === '' ? {} : { [name]: c.dockerfile }) };
  Object.assign(entries, c.context ?? {});
  for (const [p, e] of Object.entries(entries)) {
    const abs = join(dir, p);
    await mkdir(dirname(abs), { recursive: true });
    if (typeof e === 'string') await writeFile(abs, e, { mode: 0o644 });
    else if ('link' in e) await symlink(e.link, abs);
    else if ('bytes' in e) await writeFile(abs, e.bytes, { mode: 0o600 });
    else if ('socket' in e) {
      const py = 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])';
      execFileSync('python3', ['-c', py, abs]);
    } else if ('tar' in e) {
      const src = await makeTempDir('tsbuild-bk-tar-');
      for (const [f, text] of Object.entries(e.tar)) {
        await mkdir(dirname(join(src, f)), { recursive: true });
        await writeFile(join(src, f), text);
      }
      const names = Object.keys(e.tar).sort();
      execFileSync('tar', [e.gzip ? '-czf' : '-cf', abs, '--owner=0', '--group=0', '-C', src, ...names]);
      await removeDir(src);
    } else if ('dir' in e) {
      await mkdir(abs, { recursive: true });
      if (e.mode !== undefined) await chmod(abs, e.mode);
    } else {
      await writeFile(abs, e.content);
      await chmod(abs, e.mode ?? 0o644);
      if (e.uid !== undefined) await chown(abs, e.uid, e.gid ?? e.uid);
    }
  }
  // fixed times: BuildKit's tests never depend on them, and cache keys stay stable between runs
  const epoch = new Date(1_600_000_000_000);
  for (const p of Object.keys(entries)) {
    const e = entries[p];
    if (typeof e === 'object' && ('link' in e || 'socket' in e)) continue;
    await utimes(join(dir, p), epoch, epoch).catch(() => {});
  }
}

function checkFile(t: ExecutionContext, root: string, p: string, want: FileWant): void {
  const abs = join(root, p);
  const st = lstatSync(abs, { throwIfNoEntry: false });
  if (want === 'absent') {
    t.is(st, undefined, `${p} should be absent`);
    return;
  }
  if (!st) {
    t.fail(`${p} is missing`);
    return;
  }
  const w = typeof want === 'string' ? { content: want } : want;
  const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
  if (w.type !== undefined) t.is(type, w.type, `${p} type`);
  if (w.content !== undefined) {
    const text = readFileSync(abs, 'utf8');
    if (typeof w.content === 'string') t.is(text, w.content, `${p} content`);
    else t.regex(text, w.content, `${p} content`);
  }
  if (w.mode !== undefined) t.is((st.mode & 0o7777).toString(8).padStart(4, '0'), w.mode, `${p} mode`);
  if (w.uid !== undefined) t.is(st.uid, w.uid, `${p} uid`);
  if (w.gid !== undefined) t.is(st.gid, w.gid, `${p} gid`);
  if (w.link !== undefined) t.is(readlinkSync(abs), w.link, `${p} link`);
}

const isEmpty = (v: unknown): boolean =>
  v === undefined ||
  v === null ||
  v === '' ||
  (Array.isArray(v) && v.length === 0) ||
  (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);

/** readImageFile reads one file of an image in the store (flattened into a temporary directory). */
export async function readImageFile(store: Store, tag: string, path: string): Promise<string> {
  const dir = await makeTempDir('tsbuild-bk-read-');
  try {
    const image = await getImage(store, tag);
    await flatten({ store, layers: imageLayers(image), dir: join(dir, 'r'), method: 'apply' });
    return readFileSync(join(dir, 'r', path), 'utf8');
  } finally {
    await removeDir(dir);
  }
}

/** runCase builds one case in `store` and checks what it expects. */
export async function runCase(t: ExecutionContext, store: Store, c: BkCase, tag: string): Promise<void> {
  const ctx = await makeTempDir('tsbuild-bk-ctx-');
  t.teardown(() => removeDir(ctx));
  await writeContext(ctx, c.url ? { ...c, dockerfile: c.dockerfile.replaceAll('$URL', c.url()) } : c);
  for (const [i, b] of (c.before ?? []).entries()) {
    const dir = await makeTempDir('tsbuild-bk-before-');
    t.teardown(() => removeDir(dir));
    await writeContext(dir, { ...c, dockerfile: b.dockerfile, context: b.context ?? {}, dockerfileName: 'Dockerfile' });
    await build({ store, context: dir, tags: [b.tag], network: c.network ?? 'none' }).catch((err: Error) => {
      throw new Error(`building ${b.tag} (before ${i}): ${err.message}`);
    });
  }
  await c.setup?.(store);
  const buildContexts = await namedContexts(t, store, c);
  const log: string[] = [];
  const warnings: string[] = [];
  const steps: string[] = [];
  const opts: BuildOptions = {
    store,
    context: ctx,
    tags: [tag],
    network: c.network ?? 'none',
    buildArgs: c.buildArgs ?? {},
    ...(c.target ? { target: c.target } : {}),
    ...(c.dockerfilePath ? { dockerfile: join(ctx, c.dockerfilePath) } : {}),
    ...(c.secrets
      ? { secrets: Object.fromEntries(Object.entries(c.secrets).map(([k, v]) => [k, new TextEncoder().encode(v)])) }
      : {}),
    ...(c.sourceDateEpoch !== undefined ? { sourceDateEpoch: c.sourceDateEpoch } : {}),
    ...(c.labels ? { labels: c.labels } : {}),
    ...(c.contexts ? { buildContexts } : {}),
    ...(c.allow ? { allow: c.allow } : {}),
    ...(c.ssh ? { ssh: c.ssh() } : {}),
    onEvent: (e) => {
      if (e.type === 'log') log.push(e.data);
      if (e.type === 'warning') warnings.push(e.message);
      if (e.type === 'step') steps.push(e.name);
    },
  };
  const e = c.expect;
  if (e.error !== undefined) {
    const err = await t.throwsAsync(build(opts));
    if (err) t.true(match(err.message, e.error), `error: ${err.message}`);
    return;
  }
  const result = await build(opts).catch((err: Error) => {
    throw new Error(`${err.message}\n${log.join('').slice(-2000)}`);
  });
  t.deepEqual(await verifyImage(store, result.image), [], 'the image verifies');
  const image = await getImage(store, tag);
  const base = await getImage(store, 'busybox:test');
  if (e.warning !== undefined)
    t.true(
      warnings.some((w) => match(w, e.warning!)),
      `warning ${String(e.warning)} among ${JSON.stringify(warnings)}`,
    );
  if (e.step !== undefined)
    t.true(
      steps.some((n) => match(n, e.step!)),
      `a step named ${String(e.step)} among ${JSON.stringify(steps)}`,
    );
  const config = (image.config.config ?? {}) as Record<string, unknown>;
  for (const [k, want] of Object.entries(e.config ?? {})) {
    if (want === 'absent') t.true(isEmpty(config[k]), `config ${k} should be absent, is ${JSON.stringify(config[k])}`);
    else t.deepEqual(config[k], want, `config ${k}`);
  }
  for (const [k, want] of Object.entries(e.image ?? {})) {
    t.deepEqual((image.config as unknown as Record<string, unknown>)[k], want, `image ${k}`);
  }
  const added = (image.config.history ?? []).slice((base.config.history ?? []).length);
  if (e.history) {
    t.is(added.length, e.history.length, `history: ${JSON.stringify(added.map((h) => h.created_by))}`);
    e.history.forEach((h, i) => {
      const got = added[i];
      if (!got) return;
      t.true(match(got.created_by ?? '', h.createdBy), `history ${i}: ${got.created_by} vs ${String(h.createdBy)}`);
      t.is(got.empty_layer ?? false, h.emptyLayer ?? false, `history ${i} (${got.created_by}) empty_layer`);
    });
  }
  if (e.newLayers !== undefined)
    t.is(image.config.rootfs.diff_ids.length - base.config.rootfs.diff_ids.length, e.newLayers, 'new layers');
  let root: string | undefined;
  if (e.files || e.check) {
    const dir = await makeTempDir('tsbuild-bk-rootfs-');
    t.teardown(() => removeDir(dir));
    root = join(dir, 'r');
    await flatten({ store, layers: imageLayers(image), dir: root, method: 'apply' });
    for (const [p, want] of Object.entries(e.files ?? {})) checkFile(t, root, p, want);
  }
  await e.check?.(t, { image, base, ...(root ? { root } : {}), result, store });
}

/**
 * declareCases declares one test per case, serial (builds share the file's store), titled with the case and its
 * origin. Cases need root (RUN, owners): without it they are declared skipped.
 */
export function declareCases(cases: readonly BkCase[]): void {
  let store: Promise<Store> | undefined;
  const cleanups: Array<() => unknown> = [];
  test.after.always(async () => {
    for (const fn of cleanups) await fn();
  });
  // busybox:test is also busybox:latest, so that BuildKit's `FROM busybox` reads as it is
  const getStore = (): Promise<Store> =>
    (store ??= (async () => {
      const s = await busyboxStore({ teardown: (fn) => cleanups.push(fn) });
      await tagImage(s, (await getImage(s, 'busybox:test')).descriptor, 'busybox:latest');
      return s;
    })());
  cases.forEach((c, i) => {
    const title = `${c.title} [${c.from}]${c.pending ? ` (pending: ${c.pending})` : ''}`;
    const fn = async (t: ExecutionContext): Promise<void> => runCase(t, await getStore(), c, `bk-case-${i}:latest`);
    if (!isRoot) test.serial.skip(title, fn);
    else if (c.pending) test.serial.failing(title, fn);
    else test.serial(title, fn);
  });
}

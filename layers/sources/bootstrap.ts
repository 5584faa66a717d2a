// `tsbuild bootstrap`: base images made from a distribution's own archive, the way official images are made.
// Debian (and Ubuntu suites) with mmdebstrap; Alpine from its minirootfs release tarball. Both end in the
// same place: one deterministic layer committed from a directory or a checked tar stream.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { requireTools, run } from '../../sys/exec.js';
import { autoDecompress } from '../compress/compress.js';
import { commitLayer, type CommittedLayer } from '../store/commit.js';
import { InvalidInputError, TsbuildError } from '../../sys/errors.js';
import { defaultHost, type Host } from '../../sys/host.js';
import { tagImage, writeImage } from '../store/image.js';
import { createdTime, DEFAULT_PATH } from './import.js';
import type { Store } from '../store/store.js';
import { TarCheck } from '../tar/check.js';
import { tarFromDirectory } from '../tar/create.js';
import type { Compression, ContainerConfig, Descriptor } from '../model/types.js';

export const DEBIAN_MIRROR = 'http://deb.debian.org/debian';
export const ALPINE_MIRROR = 'https://dl-cdn.alpinelinux.org/alpine';
const DEBIAN_SUITES = ['bookworm', 'bullseye', 'trixie', 'forky', 'sid', 'stable', 'testing', 'unstable', 'oldstable'];

export interface BootstrapOptions {
  /** `debian:bookworm`, `alpine:3.20`, … */
  distro: string;
  /** mmdebstrap variant (Debian): minbase (default), required, important, standard, … */
  variant?: string;
  /** extra packages */
  include?: string[];
  mirror?: string;
  /** name to tag (default: the distro reference itself) */
  name?: string;
  compression?: Compression;
  sourceDateEpoch?: number;
  /** progress lines from the underlying tool */
  onLog?: (line: string) => void;
  /** the host whose privilege picks mmdebstrap's mode: root, or unshare (default: defaultHost()) */
  host?: Host;
}

export interface BootstrapResult {
  name: string;
  descriptor: Descriptor;
  layer: CommittedLayer;
}

/** parseDistro splits `debian:bookworm` into a family and a release; throws for what it does not know. */
export function parseDistro(input: string): { family: 'debian' | 'alpine'; release: string } {
  const [family, release = ''] = input.split(':');
  if (family === 'debian' && (DEBIAN_SUITES.includes(release) || /^\d+$/.test(release))) {
    return {
      family,
      release: release === '12' ? 'bookworm' : release === '11' ? 'bullseye' : release === '13' ? 'trixie' : release,
    };
  }
  if (family === 'alpine' && /^(\d+\.\d+|edge)$/.test(release)) return { family, release };
  throw new InvalidInputError(
    `cannot bootstrap ${JSON.stringify(input)}`,
    `supported: debian:<suite> (${DEBIAN_SUITES.slice(0, 3).join(', ')}, …), alpine:<major.minor>`,
  );
}

/** bootstrapImage creates and tags the base image. */
export async function bootstrapImage(store: Store, opts: BootstrapOptions): Promise<BootstrapResult> {
  const distro = parseDistro(opts.distro);
  const name = opts.name ?? opts.distro;
  const lease = await store.beginWrite();
  try {
    const { layer, config, createdBy } =
      distro.family === 'debian'
        ? await debianLayer(store, distro.release, opts)
        : await alpineLayer(store, distro.release, opts);
    const created = createdTime(opts.sourceDateEpoch);
    const { descriptor } = await writeImage(store, {
      config: { created, architecture: 'amd64', os: 'linux', config, history: [{ created, created_by: createdBy }] },
      layers: [layer],
    });
    await tagImage(store, descriptor, name);
    return { name, descriptor, layer };
  } finally {
    await lease.end();
  }
}

async function debianLayer(store: Store, suite: string, opts: BootstrapOptions) {
  requireTools({ mmdebstrap: 'mmdebstrap' });
  const variant = opts.variant ?? 'minbase';
  if (!/^[a-z-]+$/.test(variant)) throw new InvalidInputError(`bad variant ${JSON.stringify(variant)}`);
  const include = opts.include ?? [];
  for (const p of include)
    if (!/^[a-z0-9][a-z0-9+.:=~-]*$/.test(p)) throw new InvalidInputError(`bad package name ${JSON.stringify(p)}`);
  const tmpRoot = await store.privateDir('tmp');
  const work = await mkdtemp(join(tmpRoot, 'bootstrap-'));
  const rootfs = join(work, 'rootfs');
  try {
    const argv = [
      'mmdebstrap',
      `--variant=${variant}`,
      `--mode=${(opts.host ?? defaultHost()).caps().root ? 'root' : 'unshare'}`,
      '--format=directory',
      '--skip=output/dev',
      ...(include.length ? [`--include=${include.join(',')}`] : []),
      suite,
      rootfs,
      opts.mirror ?? DEBIAN_MIRROR,
    ];
    const env = {
      ...process.env,
      ...(opts.sourceDateEpoch === undefined ? {} : { SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch) }),
    };
    await run(argv, {
      env,
      ...(opts.onLog
        ? {
            onStderr: (s: string) =>
              s
                .split('\n')
                .filter(Boolean)
                .forEach((l) => opts.onLog?.(l)),
          }
        : {}),
    });
    const tarOpts = opts.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: opts.sourceDateEpoch };
    const layer = await commitLayer(store, tarFromDirectory(rootfs, tarOpts), {
      compression: opts.compression ?? 'gzip',
    });
    const config: ContainerConfig = { Env: [DEFAULT_PATH], Cmd: ['bash'] };
    const createdBy = `tsbuild bootstrap debian:${suite} --variant ${variant}${include.length ? ` --include ${include.join(',')}` : ''}`;
    return { layer, config, createdBy };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** alpineRelease is one entry of a branch's latest-releases.yaml. */
export interface AlpineRelease {
  flavor: string;
  arch: string;
  version: string;
  file: string;
  sha256: string;
}

/** parseLatestReleases reads Alpine's latest-releases.yaml (a flat list of maps; no YAML library needed). */
export function parseLatestReleases(text: string): AlpineRelease[] {
  const out: AlpineRelease[] = [];
  let cur: Record<string, string> | undefined;
  for (const line of text.split('\n')) {
    if (/^-\s*$/.test(line) || /^- /.test(line)) {
      if (cur) out.push(cur as unknown as AlpineRelease);
      cur = {};
    }
    const m = /^[-\s]*([a-z_0-9]+):\s*"?([^"]*)"?\s*$/.exec(line);
    if (m && cur) cur[m[1] as string] = m[2] as string;
  }
  if (cur) out.push(cur as unknown as AlpineRelease);
  return out.filter((r) => r.flavor && r.file && r.sha256);
}

async function fetchOk(url: string): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new TsbuildError(
      'E_UNREACHABLE',
      `cannot reach ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`,
      {
        hint: 'this machine may not reach the Alpine mirror; pass --mirror URL of a reachable mirror',
      },
    );
  }
  if (!res.ok) throw new TsbuildError('E_FETCH', `GET ${url}: HTTP ${res.status}`);
  return res;
}

async function alpineLayer(store: Store, release: string, opts: BootstrapOptions) {
  const mirror = (opts.mirror ?? ALPINE_MIRROR).replace(/\/$/, '');
  const branch = release === 'edge' ? 'edge' : `v${release}`;
  const base = `${mirror}/${branch}/releases/x86_64`;
  const yaml = await (await fetchOk(`${base}/latest-releases.yaml`)).text();
  const rel = parseLatestReleases(yaml).find(
    (r) => r.flavor === 'alpine-minirootfs' && (!r.arch || r.arch === 'x86_64'),
  );
  if (!rel) throw new InvalidInputError(`${base}/latest-releases.yaml lists no alpine-minirootfs`);
  if (!/^[\w.+-]+$/.test(rel.file))
    throw new InvalidInputError(`${base}/latest-releases.yaml: bad file name ${JSON.stringify(rel.file)}`);
  const res = await fetchOk(`${base}/${rel.file}`);
  if (!res.body) throw new TsbuildError('E_FETCH', `GET ${base}/${rel.file}: empty body`);
  const hash = createHash('sha256');
  const download = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  const verified = download.pipe(
    new Transform({
      transform(chunk: Buffer, _e, cb) {
        hash.update(chunk);
        cb(null, chunk);
      },
      flush(cb) {
        const got = hash.digest('hex');
        cb(
          got === rel.sha256
            ? null
            : new TsbuildError(
                'E_DIGEST_MISMATCH',
                `${rel.file}: sha256 ${got} does not match the release's ${rel.sha256}`,
              ),
        );
      },
    }),
  );
  download.on('error', (err: Error) => verified.destroy(err));
  const plain = autoDecompress();
  verified.on('error', (err) => plain.destroy(err));
  const check = new TarCheck(rel.file);
  plain.on('error', (err) => check.destroy(err));
  const layer = await commitLayer(store, verified.pipe(plain).pipe(check), { compression: opts.compression ?? 'gzip' });
  const config: ContainerConfig = { Env: [DEFAULT_PATH], Cmd: ['/bin/sh'] };
  return { layer, config, createdBy: `tsbuild bootstrap alpine:${release} (${rel.file})` };
}

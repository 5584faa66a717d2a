// `tsbuild [build] [flags] CONTEXT|-`: flags → build() → the image digest on stdout, progress on stderr; --output
// writes a copy of the result (cli/build-output.ts).
import { readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { build } from '../../builder/build.js';
import { parseCacheSpec } from '../../layers/cache/spec.js';
import { splitCsv } from '../../builder/plan.js';
import { splitBuildContexts } from '../../builder/named-contexts.js';
import { parseSshFlag } from '../../builder/ssh-forward.js';
import type { ExtraHost } from '../../builder/steps/run.js';
import type { StorageDriver } from '../../unionfs/rootfs.js';
import { InvalidInputError, wrap } from '../../sys/errors.js';
import { parseOutput, writeOutput } from '../build-output.js';
import { type GlobalFlags, compressionFlag, list, openStore, out, sourceDateEpoch } from '../common.js';
import { plainRenderer } from '../progress/build-plain.js';
import type { ProgressMode, Renderer } from '../progress/build-render.js';
import { ttyRenderer } from '../progress/build-tty.js';
import { type Limits, parseBytes, parseUlimits } from '../../runtime/spec.js';

const SIGNALS: Array<[NodeJS.Signals, number]> = [
  ['SIGINT', 130],
  ['SIGTERM', 143],
];

export interface BuildFlags extends GlobalFlags {
  file?: string;
  tag?: unknown;
  'build-arg'?: unknown;
  target?: string;
  'build-context'?: unknown;
  cache?: boolean;
  pull?: boolean;
  secret?: unknown;
  network?: string;
  allow?: unknown;
  ssh?: unknown;
  'shm-size'?: string | number;
  platform?: string;
  compression?: string;
  progress?: string;
  iidfile?: string;
  'metadata-file'?: string;
  squash?: boolean;
  label?: unknown;
  'add-host'?: unknown;
  output?: unknown;
  quiet?: boolean;
  memory?: string | number;
  'pids-limit'?: string | number;
  ulimit?: unknown;
  'cache-from'?: unknown;
  'cache-to'?: unknown;
}

export default async function buildCmd(context: string | undefined, flags: BuildFlags): Promise<void> {
  if (context === undefined || context === '') {
    throw new InvalidInputError(
      'build needs a context: a directory, a tar archive, or - (Dockerfile on stdin)',
      'tsbuild -f Dockerfile -t app:0.1 .',
    );
  }
  const store = await openStore(flags);
  const buildArgs = parseBuildArgs(list(flags['build-arg']), process.env);
  const secrets = await parseSecrets(list(flags.secret), process.env);
  const buildContexts = splitBuildContexts(list(flags['build-context']));
  const ssh = list(flags.ssh).map((v) => parseSshFlag(v, process.env));
  const network = String(flags.network ?? 'default');
  if (network !== 'default' && network !== 'none' && network !== 'host') {
    throw new InvalidInputError(`--network must be default, none or host (got ${JSON.stringify(network)})`);
  }
  const limits: Limits = {};
  if (flags.memory !== undefined) limits.memory = parseBytes(String(flags.memory));
  if (flags['pids-limit'] !== undefined) {
    const n = Number(flags['pids-limit']);
    if (!Number.isInteger(n) || n <= 0)
      throw new InvalidInputError(
        `--pids-limit must be a positive integer (got ${JSON.stringify(flags['pids-limit'])})`,
      );
    limits.pids = n;
  }
  const ulimits = parseUlimits(list(flags.ulimit));
  const labels = parseLabels(list(flags.label));
  const addHosts = parseAddHosts(list(flags['add-host']));
  const cacheFrom = list(flags['cache-from']).map((v) => parseCacheSpec(v, 'from'));
  const cacheTo = list(flags['cache-to']).map((v) => parseCacheSpec(v, 'to'));
  const outputs = list(flags.output).map(parseOutput);
  if (outputs.length > 1) throw new InvalidInputError('--output may be given once');
  const output = outputs[0];
  const renderer = flags.quiet ? undefined : pickRenderer(String(flags.progress ?? 'auto') as ProgressMode);
  const sde = sourceDateEpoch();
  const driver = process.env.TSBUILD_STORAGE_DRIVER as StorageDriver | undefined;
  const file = flags.file === undefined ? undefined : String(flags.file);
  // SIGINT/SIGTERM abort the build (RUN killed, roots unmounted, work directories removed), then exit 130/143
  const abort = new AbortController();
  let interrupted: { sig: NodeJS.Signals; code: number } | undefined;
  const handlers = SIGNALS.map(([sig, code]) => {
    const h = (): void => {
      interrupted ??= { sig, code };
      abort.abort(new Error(`build interrupted (${sig})`));
    };
    process.once(sig, h); // a second signal gets the default action
    return [sig, h] as const;
  });
  try {
    const r = await build({
      store,
      signal: abort.signal,
      context,
      ...(file === undefined ? {} : { dockerfile: file }),
      tags: list(flags.tag),
      buildArgs,
      ...(flags.target ? { target: String(flags.target) } : {}),
      ...(Object.keys(buildContexts).length ? { buildContexts } : {}),
      noCache: flags.cache === false,
      pull: flags.pull === true,
      secrets,
      network,
      allow: list(flags.allow),
      ...(ssh.length ? { ssh } : {}),
      ...(flags['shm-size'] === undefined ? {} : { shmSize: parseBytes(String(flags['shm-size'])) }),
      ...(Object.keys(limits).length ? { limits } : {}),
      ...(ulimits.length ? { ulimits } : {}),
      platform: String(flags.platform ?? 'linux/amd64'),
      compression: compressionFlag(flags.compression),
      squash: flags.squash === true,
      labels,
      addHosts,
      ...(sde === undefined ? {} : { sourceDateEpoch: sde }),
      ...(driver === 'vfs' || driver === 'overlay' ? { storageDriver: driver } : {}),
      ...(cacheFrom.length ? { cacheFrom } : {}),
      ...(cacheTo.length ? { cacheTo } : {}),
      onEvent: (e) => renderer?.onEvent(e),
    });
    renderer?.finish();
    if (flags.iidfile) await writeFile(String(flags.iidfile), r.digest);
    if (flags['metadata-file']) {
      const meta = {
        'containerimage.digest': r.digest,
        'containerimage.config.digest': r.configDigest,
        'containerimage.descriptor': r.descriptor,
        ...(r.tags.length ? { 'image.name': r.tags.join(',') } : {}),
      };
      await writeFile(String(flags['metadata-file']), `${JSON.stringify(meta, null, 2)}\n`);
    }
    if (output) {
      await writeOutput(output, {
        store,
        image: r.image,
        names: list(flags.tag),
        ...(sde === undefined ? {} : { sourceDateEpoch: sde }),
      });
    }
    // with the output on stdout, the digest is only in --iidfile / --metadata-file
    if (output?.dest !== '-') out(r.digest);
  } catch (err) {
    renderer?.finish();
    if (interrupted) {
      process.stderr.write(`error: build interrupted (${interrupted.sig})\n`);
      process.exitCode = interrupted.code;
      return;
    }
    throw err;
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
  }
}

function pickRenderer(mode: ProgressMode): Renderer | undefined {
  const write = (s: string): void => void process.stderr.write(s);
  switch (mode) {
    case 'quiet':
      return undefined;
    case 'plain':
      return plainRenderer(write);
    case 'tty':
      return ttyRenderer(process.stderr);
    case 'auto':
      return process.stderr.isTTY ? ttyRenderer(process.stderr) : plainRenderer(write);
    default:
      throw new InvalidInputError(`--progress must be auto, plain, tty or quiet (got ${JSON.stringify(mode)})`);
  }
}

/** parseBuildArgs reads `K=V` (or `K`, taken from the environment and dropped when unset there). */
export function parseBuildArgs(values: string[], env: NodeJS.ProcessEnv): Map<string, string> {
  const out = new Map<string, string>();
  for (const v of values) {
    const eq = v.indexOf('=');
    const key = eq < 0 ? v : v.slice(0, eq);
    if (key === '') throw new InvalidInputError(`invalid --build-arg ${JSON.stringify(v)}: the name is empty`);
    if (eq < 0) {
      const fromEnv = env[key];
      if (fromEnv !== undefined) out.set(key, fromEnv);
    } else out.set(key, v.slice(eq + 1));
  }
  return out;
}

/** parseLabels reads `--label K=V` (or `K`, an empty value), docker's way; the last value of a key wins. */
export function parseLabels(values: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    const key = eq < 0 ? v : v.slice(0, eq);
    if (key === '') throw new InvalidInputError(`invalid --label ${JSON.stringify(v)}: the name is empty`);
    out[key] = eq < 0 ? '' : v.slice(eq + 1);
  }
  return out;
}

/** parseAddHosts reads `--add-host NAME:IP` (or NAME=IP; IPv6 addresses may be in brackets). */
export function parseAddHosts(values: string[]): ExtraHost[] {
  return values.map((v) => {
    const sep = v.search(/[:=]/);
    const host = sep < 0 ? '' : v.slice(0, sep);
    let ip = sep < 0 ? '' : v.slice(sep + 1);
    if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
    if (host === '' || ip === '') throw new InvalidInputError(`invalid --add-host ${JSON.stringify(v)}: give NAME:IP`);
    if (ip !== 'host-gateway' && isIP(ip) === 0)
      throw new InvalidInputError(`invalid --add-host ${JSON.stringify(v)}: ${ip} is not an IP address`);
    if (/\s/.test(host)) throw new InvalidInputError(`invalid --add-host ${JSON.stringify(v)}: the name has a space`);
    return { host, ip };
  });
}

/** parseSecrets reads `id=ID,src=PATH` / `id=ID,env=VAR` (`type=file|env`, `source=` also accepted). */
export async function parseSecrets(values: string[], env: NodeJS.ProcessEnv): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const v of values) {
    const f: Record<string, string> = {};
    for (const field of splitCsv(v)) {
      const eq = field.indexOf('=');
      if (eq < 0)
        throw new InvalidInputError(`invalid --secret ${JSON.stringify(v)}: ${JSON.stringify(field)} is not key=value`);
      f[field.slice(0, eq).trim().toLowerCase()] = field.slice(eq + 1);
    }
    const id = f.id;
    if (!id) throw new InvalidInputError(`invalid --secret ${JSON.stringify(v)}: id= is required`);
    const src = f.src ?? f.source;
    const type = f.type ?? (f.env !== undefined ? 'env' : 'file');
    if (type === 'env' || (src === undefined && f.env !== undefined)) {
      const name = f.env ?? src ?? id;
      const value = env[name];
      if (value === undefined) throw new InvalidInputError(`--secret ${id}: environment variable ${name} is not set`);
      out.set(id, Buffer.from(value));
    } else if (type === 'file') {
      if (src === undefined) {
        const value = env[id];
        if (value === undefined) throw new InvalidInputError(`--secret ${id}: give src=FILE or env=VAR`);
        out.set(id, Buffer.from(value));
        continue;
      }
      try {
        out.set(id, await readFile(src));
      } catch (err) {
        throw wrap(`--secret ${id}: reading ${src}`, err);
      }
    } else throw new InvalidInputError(`--secret ${id}: type must be file or env`);
  }
  return out;
}

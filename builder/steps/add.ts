// ADD's own sources: HTTP(S) URLs, downloaded into the step's staging directory (mode 0600, mtime from
// Last-Modified or SOURCE_DATE_EPOCH), checked against --checksum, and keyed by URL and content. Everything else
// ADD shares with COPY (builder/steps/copy.ts), including the extraction of local archives
// (builder/steps/copy-write.ts). Git URLs are refused there.
import { createHash } from 'node:crypto';
import { createWriteStream, lutimesSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InvalidInputError } from '../../sys/errors.js';
import type { AddInstruction } from '../dockerfile/instructions.js';
import { type CopyFrom, hashSelection, selectSources } from './copy-select.js';
import { copyStep, type CopyOptions } from './copy.js';
import type { FsStep, StageState, StepEnv } from './step.js';
import { expandWord } from '../dockerfile/expand.js';

/** isGitSource is BuildKit's test for a Git source of ADD (git@…, git://, or a URL ending in .git or with #ref). */
function isGitSource(s: string): boolean {
  return /^git@|^git:\/\/|^ssh:\/\//.test(s) || /^https?:\/\/[^#]*\.git(#.*)?$/.test(s);
}

/** DIGEST_LENGTHS are the algorithms --checksum accepts (go-digest's) and their hex lengths. */
const DIGEST_LENGTHS: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/**
 * checkChecksum validates an expanded --checksum as BuildKit does (go-digest's messages): `algorithm:hex` with a
 * known algorithm and the right length.
 */
export function checkChecksum(checksum: string): { algorithm: string; hex: string } {
  const i = checksum.indexOf(':');
  if (i <= 0 || i === checksum.length - 1) throw new InvalidInputError('invalid checksum digest format');
  const algorithm = checksum.slice(0, i);
  const hex = checksum.slice(i + 1);
  const want = DIGEST_LENGTHS[algorithm];
  if (want === undefined) throw new InvalidInputError('unsupported digest algorithm');
  if (hex.length !== want) throw new InvalidInputError('invalid checksum digest length');
  if (!/^[a-f0-9]+$/.test(hex)) throw new InvalidInputError('invalid checksum digest format');
  return { algorithm, hex };
}

/** addStep makes the ADD step: COPY's, with URLs fetched. --checksum expands the stage's variables. */
export function addStep(env: StepEnv, stage: StageState, ins: AddInstruction, o: Omit<CopyOptions, 'remote'>): FsStep {
  let checksum: string | undefined;
  if (ins.checksum !== undefined) {
    const x = (w: string): string => expandWord(w, stage.env, { escape: o.escape });
    checksum = x(ins.checksum);
    const sources = ins.sources.map(x);
    if (sources.length !== 1) throw new InvalidInputError("checksum can't be specified for multiple sources");
    if (!/^https?:\/\//i.test(sources[0]!) && !isGitSource(sources[0]!))
      throw new InvalidInputError('checksum requires HTTP(S) or Git sources');
    checkChecksum(checksum);
  }
  return copyStep(
    env,
    stage,
    { ...ins, ...(checksum === undefined ? {} : { checksum }) },
    {
      ...o,
      remote: {
        matches: (s) => /^https?:\/\//i.test(s),
        fetch: async (url, staging) => {
          const file = await download(env, url, staging, checksum);
          const from: CopyFrom = { root: staging, label: url, resetOwner: true };
          const sel = selectSources(from, [file]);
          const unpack = ins.unpack === true;
          return { group: { from, sel, unpack }, keyPart: { url, content: await hashSelection(sel, true), unpack } };
        },
      },
    },
  );
}

/** download fetches an ADD URL into `dir` (mode 0600, mtime from Last-Modified) and checks --checksum. */
async function download(env: StepEnv, url: string, dir: string, checksum?: string): Promise<string> {
  const got = await fetchUrl(url, dir, { signal: env.signal, ...(checksum === undefined ? {} : { checksum }) });
  const mtime = env.epoch ?? got.lastModified ?? Date.now() / 1000;
  lutimesSync(got.path, mtime, mtime);
  return got.name;
}

/** FetchedUrl is a URL downloaded by fetchUrl. */
export interface FetchedUrl {
  /** `url-XXXX/<name>`, relative to the directory given: the name is the URL's last path element (else __unnamed__) */
  name: string;
  /** the file's absolute path */
  path: string;
  /** the response's Last-Modified, in seconds, when it has a valid one */
  lastModified?: number;
}

/**
 * fetchUrl downloads a URL (redirects followed) into a new subdirectory of `dir` (mode 0600), checked against
 * `checksum` when given. Throws InvalidInputError for an HTTP error status or a checksum mismatch. Shared by ADD and
 * by SOURCE_DATE_EPOCH taken from a stage's remote ADD (builder/source-epoch.ts).
 */
export async function fetchUrl(
  url: string,
  dir: string,
  o: { signal?: AbortSignal; checksum?: string } = {},
): Promise<FetchedUrl> {
  let name = '__unnamed__';
  try {
    const base = posix.basename(new URL(url).pathname);
    if (base && base !== '.' && base !== '/') name = decodeURIComponent(base);
  } catch {
    // keep the default name
  }
  if (name.includes('/') || name === '..') name = '__unnamed__';
  const res = await fetch(url, { redirect: 'follow', ...(o.signal ? { signal: o.signal } : {}) });
  if (!res.ok || !res.body) throw new InvalidInputError(`ADD ${url}: HTTP ${res.status} ${res.statusText}`);
  const sub = await mkdtemp(join(dir, 'url-'));
  const file = join(sub, name);
  const { checksum } = o;
  const algorithm = checksum === undefined ? 'sha256' : checkChecksum(checksum).algorithm;
  const hash = createHash(algorithm);
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  body.on('data', (b: Buffer) => hash.update(b));
  await pipeline(body, createWriteStream(file, { mode: 0o600, flags: 'wx' }));
  const got = `${algorithm}:${hash.digest('hex')}`;
  if (checksum !== undefined && checksum !== got) {
    throw new InvalidInputError(`ADD ${url}: checksum mismatch: expected ${checksum}, got ${got}`);
  }
  const lm = res.headers.get('last-modified');
  const t = lm ? Date.parse(lm) : NaN;
  return {
    name: `${posix.basename(sub)}/${name}`,
    path: file,
    ...(Number.isNaN(t) ? {} : { lastModified: Math.floor(t / 1000) }),
  };
}

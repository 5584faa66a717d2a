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

/** addStep makes the ADD step: COPY's, with URLs fetched. */
export function addStep(env: StepEnv, stage: StageState, ins: AddInstruction, o: Omit<CopyOptions, 'remote'>): FsStep {
  return copyStep(env, stage, ins, {
    ...o,
    remote: {
      matches: (s) => /^https?:\/\//i.test(s),
      fetch: async (url, staging) => {
        const file = await download(env, url, staging, ins.checksum);
        const from: CopyFrom = { root: staging, label: url, resetOwner: true };
        const sel = selectSources(from, [file]);
        const unpack = ins.unpack === true;
        return { group: { from, sel, unpack }, keyPart: { url, content: await hashSelection(sel, true), unpack } };
      },
    },
  });
}

/** download fetches an ADD URL into `dir` (mode 0600, mtime from Last-Modified) and checks --checksum. */
async function download(env: StepEnv, url: string, dir: string, checksum?: string): Promise<string> {
  let name = '__unnamed__';
  try {
    const base = posix.basename(new URL(url).pathname);
    if (base && base !== '.' && base !== '/') name = decodeURIComponent(base);
  } catch {
    // keep the default name
  }
  if (name.includes('/') || name === '..') name = '__unnamed__';
  const res = await fetch(url, { redirect: 'follow', signal: env.signal });
  if (!res.ok || !res.body) throw new InvalidInputError(`ADD ${url}: HTTP ${res.status} ${res.statusText}`);
  const sub = await mkdtemp(join(dir, 'url-'));
  const file = join(sub, name);
  const hash = createHash('sha256');
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  body.on('data', (b: Buffer) => hash.update(b));
  await pipeline(body, createWriteStream(file, { mode: 0o600, flags: 'wx' }));
  const got = `sha256:${hash.digest('hex')}`;
  if (checksum !== undefined && checksum !== got) {
    throw new InvalidInputError(`ADD ${url}: checksum mismatch: expected ${checksum}, got ${got}`);
  }
  const lm = res.headers.get('last-modified');
  const t = lm ? Date.parse(lm) : NaN;
  const mtime = env.epoch ?? (Number.isNaN(t) ? Date.now() / 1000 : t / 1000);
  lutimesSync(file, mtime, mtime);
  return `${posix.basename(sub)}/${name}`;
}

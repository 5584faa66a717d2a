// The COPY and ADD step: the instruction's words expanded, its sources grouped (the context or a --from stage or
// image, heredocs, and for ADD the downloads of builder/steps/add.ts) in source order, each group selected and
// hashed (builder/steps/copy-select.ts) into the cache key, and on a miss copied into a step root
// (builder/steps/copy-write.ts). `--link` (without --chmod) copies into an empty directory that becomes the
// layer on its own, keyed apart from the stage's filesystem as BuildKit's merge-op does.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { InvalidInputError } from '../../sys/errors.js';
import type { Layer } from '../../layers/model/layer.js';
import type { View } from '../../unionfs/rootfs.js';
import { cacheKey } from '../cache.js';
import { expandWord, lexWord } from '../dockerfile/expand.js';
import type { AddInstruction, CopyInstruction } from '../dockerfile/instructions.js';
import { type CopyFrom, hashSelection, type Selected, selectSources } from './copy-select.js';
import { copyInto, parseChmod, resolveChown, writeStagedFile } from './copy-write.js';
import { commitOptions, commitStep, type FsStep, type StageState, type StepEnv } from './step.js';

/** SourceGroup is one run of sources from one filesystem, in source order. */
export interface SourceGroup {
  from: CopyFrom;
  sel: Selected[];
  unpack: boolean;
}

/** RemoteSource is a kind of source that is not a path (ADD's URLs): which sources it takes, and how it fetches one into `staging`. */
export interface RemoteSource {
  matches(source: string): boolean;
  fetch(source: string, staging: string): Promise<{ group: SourceGroup; keyPart: unknown }>;
}

export interface CopyOptions {
  escape: string;
  /** ADD: how URLs are fetched */
  remote?: RemoteSource;
}

/** copyStep makes the COPY (or ADD) step; the instruction is checked here (before the step is shown). */
export function copyStep(
  env: StepEnv,
  stage: StageState,
  ins: CopyInstruction | AddInstruction,
  o: CopyOptions,
): FsStep {
  const x = (word: string): string => expandWord(word, stage.env, { escape: o.escape });
  const isAdd = ins.kind === 'add';
  const KW = isAdd ? 'ADD' : 'COPY';
  const sources = ins.sources.map(x);
  // BuildKit's check, after expansion (a URL may come from a variable)
  if (!isAdd && sources.some((src) => /^https?:\/\//i.test(src)))
    throw new InvalidInputError("source can't be a URL for COPY");
  const destRaw = x(ins.dest);
  const chown = ins.chown === undefined ? undefined : x(ins.chown);
  const chmodRaw = ins.chmod === undefined ? undefined : x(ins.chmod);
  const chmod = chmodRaw === undefined || chmodRaw === '' ? undefined : parseChmod(chmodRaw);
  const parents = ins.kind === 'copy' && ins.parents;
  const exclude = ins.exclude.map(x);
  const from = ins.kind === 'copy' ? ins.from : undefined;
  if (isAdd && ins.checksum !== undefined && (sources.length !== 1 || !/^https?:\/\//.test(sources[0] ?? ''))) {
    throw new InvalidInputError('checksum requires a single HTTP(S) source');
  }
  const dest = destPath(destRaw, stage.config.WorkingDir || '/');
  const inline = ins.inline.map((s) => ({
    name: s.name,
    content: s.expand ? lexWord(s.content, stage.env, { skipProcessQuotes: true }).result : s.content,
  }));
  let createdBy = KW;
  if (parents) createdBy += ' --parents';
  if (chown) createdBy += ` --chown=${chown}`;
  if (chmodRaw) createdBy += ` --chmod=${chmodRaw}`;
  for (const s of sources) createdBy += ` ${s}`;
  for (const s of inline) createdBy += ` <<${s.name}`;
  createdBy += ` ${destRaw} # buildkit`;
  const link = ins.link && !chmod;

  let staging: string | undefined;
  const views: View[] = [];
  const groups: SourceGroup[] = [];
  const writeOpts = (tmpDir: string) => ({
    ...(env.epoch === undefined ? {} : { mtime: env.epoch }),
    tmpDir,
    host: env.host,
  });

  return {
    display: displayCopy(ins),
    createdBy,
    takesPending: !link, // --link reads the stage through a view of its settled layers
    cacheKey: async () => {
      const dir = (staging = await mkdtemp(join(env.tmpDir, 'copy-')));
      // What to copy: groups in source order (URLs and heredocs come from the staging dir).
      const keyParts: unknown[] = [];
      const local: string[] = [];
      const flushLocal = async (): Promise<void> => {
        if (!local.length) return;
        const src = await env.source(from, KW);
        if (src.view) views.push(src.view);
        const sel = selectSources(src.from, local, { exclude, parents });
        const unpack = isAdd && (ins.unpack ?? true);
        groups.push({ from: src.from, sel, unpack });
        keyParts.push({
          sources: [...local],
          content: await hashSelection(sel, src.from.resetOwner, src.from.digests),
          unpack,
        });
        local.length = 0;
      };
      for (const s of sources) {
        if (o.remote?.matches(s) && !isGitUrl(s)) {
          await flushLocal();
          const remote = await o.remote.fetch(s, dir);
          groups.push(remote.group);
          keyParts.push(remote.keyPart);
        } else if (isGitUrl(s)) {
          throw new InvalidInputError(`${KW} from a git repository (${s}) is not supported by tsbuild`);
        } else local.push(s);
      }
      await flushLocal();
      for (const [i, s] of inline.entries()) {
        const sub = join(dir, `inline-${i}`);
        await mkdir(sub);
        await writeStagedFile(sub, posix.basename(s.name) || s.name, s.content, 0o644, env.epoch);
        const sfrom: CopyFrom = { root: sub, label: `heredoc ${s.name}`, resetOwner: true };
        const sel = selectSources(sfrom, [posix.basename(s.name)]);
        groups.push({ from: sfrom, sel, unpack: false });
        keyParts.push({ heredoc: s.name, sha: createHash('sha256').update(s.content).digest('hex') });
      }
      const spec = {
        op: KW.toLowerCase(),
        dest,
        chown: chown ?? null,
        chmod: chmodRaw ?? null,
        parents,
        exclude,
        parts: keyParts,
        epoch: env.epoch ?? null,
      };
      return link ? cacheKey(stage.fsKey, { op: 'link', layer: cacheKey('', spec) }) : cacheKey(stage.fsKey, spec);
    },
    apply: async () => {
      if (link) return copyLinked(env, stage, groups, dest, chown, staging!);
      const root = await env.rootfs.openStep(stage.layers, [], stage.pending);
      try {
        const owner = chown === undefined ? undefined : resolveChown(root.dir, chown);
        for (const g of groups) {
          await copyInto(root.dir, g.from, g.sel, {
            dest,
            ...(owner ? { chown: owner } : {}),
            ...(chmod ? { chmod } : {}),
            unpack: g.unpack,
            ...writeOpts(staging!),
          });
        }
        return await commitStep(root, commitOptions(env));
      } finally {
        await root.discard();
      }
    },
    release: async () => {
      for (const v of views) await v.release().catch(() => {});
      if (staging) await rm(staging, { recursive: true, force: true });
    },
  };
}

/** copyLinked is COPY --link: the files are copied into an empty directory, which becomes the layer on its own. */
async function copyLinked(
  env: StepEnv,
  stage: StageState,
  groups: SourceGroup[],
  dest: string,
  chown: string | undefined,
  staging: string,
): Promise<Layer | null> {
  const scratch = await mkdtemp(join(staging, 'link-'));
  let owner: { uid: number; gid: number } | undefined;
  if (chown !== undefined) {
    const view = await env.rootfs.view(stage.layers);
    try {
      owner = resolveChown(view.dir, chown);
    } finally {
      await view.release();
    }
  }
  for (const g of groups) {
    await copyInto(scratch, g.from, g.sel, {
      dest,
      ...(owner ? { chown: owner } : {}),
      ...(env.epoch === undefined ? {} : { mtime: env.epoch }),
      unpack: g.unpack,
      tmpDir: staging,
      host: env.host,
    });
  }
  if ((await readdir(scratch)).length === 0) return null;
  const [{ tarFromDirectory }, { commitLayer }] = await Promise.all([
    import('../../layers/tar/create.js'),
    import('../../layers/store/commit.js'),
  ]);
  const tar = tarFromDirectory(scratch, env.epoch === undefined ? {} : { sourceDateEpoch: env.epoch });
  const c = await commitLayer(env.store, tar, { compression: env.compression });
  return { descriptor: c.descriptor, diffId: c.diffId };
}

/** isGitUrl tells whether a source names a git repository (which tsbuild does not fetch). */
export function isGitUrl(s: string): boolean {
  return /^git@|^git:\/\/|\.git(#.*)?$/.test(s) || /^https?:\/\/[^/]+\/.+\.git(\/|#|$)/.test(s);
}

/**
 * destPath is BuildKit's pathRelativeToWorkingDir: an absolute destination is cleaned, a relative one is joined
 * to WORKDIR; a trailing `/` (or `/.`, `.`, '') is kept as `/`: the destination is a directory.
 */
export function destPath(dest: string, workdir: string): string {
  const dir = dest === '' || dest === '.' || dest.endsWith('/') || dest.endsWith('/.');
  const abs = posix.isAbsolute(dest) ? dest : posix.join('/', workdir, dest);
  let clean = posix.normalize(abs);
  if (clean.length > 1 && clean.endsWith('/')) clean = clean.slice(0, -1);
  return dir && clean !== '/' ? `${clean}/` : clean;
}

function displayCopy(ins: CopyInstruction | AddInstruction): string {
  const text = ins.raw.replace(/^\s*\S+/, ins.kind === 'add' ? 'ADD' : 'COPY').replace(/\s*\n\s*/g, ' ');
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

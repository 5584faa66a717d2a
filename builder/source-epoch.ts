// SOURCE_DATE_EPOCH naming a source-only stage, as BuildKit's dockerfile2llb/epoch.go reads it: `ARG
// SOURCE_DATE_EPOCH=mysource` (or the build arg) where `FROM scratch AS mysource` holds only ARGs and one remote ADD.
// The epoch of the build is then the time of what that ADD downloads: the response's Last-Modified, else the newest
// mtime of a regular file when the download is a tar archive (plain, gzip, bzip2, xz or zstd), else none (the build
// runs without an epoch, as BuildKit's does). The time is resolved once, before any stage runs, and then serves as
// a numeric SOURCE_DATE_EPOCH does: history, layer and image times, and the SOURCE_DATE_EPOCH an ARG reads.
//
// Two halves: epochStageSource (pure, called by plan.ts: the checks and their BuildKit messages, the URL expanded)
// and resolvePlanEpoch (I/O, called by build.ts once the plan is made: download, read, give the plan its epoch).
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DockerfileError } from './dockerfile/errors.js';
import type { Instruction } from './dockerfile/instructions.js';
import type { BuildEvent } from './events.js';
import type { BuildPlan, StagePlan } from './plan.js';

const KEY = 'SOURCE_DATE_EPOCH';

/** EpochSource is the remote ADD of the stage SOURCE_DATE_EPOCH names, to be resolved before the build. */
export interface EpochSource {
  /** the stage's name as written after AS */
  stage: string;
  /** the ADD's URL, expanded */
  url: string;
  /** the ADD's --checksum, expanded */
  checksum?: string;
  /** the Dockerfile's name and the stage's FROM line (errors name it, as BuildKit's do) */
  file: string;
  line: number;
  endLine?: number;
}

/** isGitSource is copy.ts's isGitUrl (not imported: that module loads the filesystem steps). */
const isGitSource = (s: string): boolean =>
  /^git@|^git:\/\/|\.git(#.*)?$/.test(s) || /^https?:\/\/[^/]+\/.+\.git(\/|#|$)/.test(s);

/**
 * epochStageSource checks that `stage` is a source-only stage and returns its remote ADD, with BuildKit's messages:
 * FROM scratch, then in order ARGs (a build arg, else the default expanded over the global args without
 * SOURCE_DATE_EPOCH and the ARGs before it) and exactly one ADD of exactly one HTTP(S) source; anything else fails
 * through `fail`. A Git source is refused (tsbuild does not fetch Git repositories). `expand` is plan.ts's.
 */
export function epochStageSource(
  stage: StagePlan,
  o: {
    globalArgs: ReadonlyMap<string, string>;
    buildArgs: ReadonlyMap<string, string>;
    expand: (ins: Instruction, word: string, env: Map<string, string>) => string;
    fail: (reason: string) => never;
    file: string;
  },
): EpochSource {
  if (stage.base.kind !== 'scratch') o.fail('SOURCE_DATE_EPOCH stage must use FROM scratch');
  const env = new Map(o.globalArgs);
  env.delete(KEY);
  let found: EpochSource | undefined;
  for (const { ins, onbuild } of stage.steps) {
    if (onbuild) continue; // a scratch parent has none; BuildKit reads the stage's own commands
    if (ins.kind === 'arg') {
      for (const a of ins.args) {
        const given = o.buildArgs.get(a.key);
        if (given !== undefined) env.set(a.key, given);
        else if (a.value !== undefined) env.set(a.key, o.expand(ins, a.value, env));
      }
    } else if (ins.kind === 'add') {
      if (found) o.fail('SOURCE_DATE_EPOCH stage must contain exactly one remote ADD');
      if (ins.inline.length !== 0 || ins.sources.length !== 1)
        o.fail('SOURCE_DATE_EPOCH stage must contain exactly one remote ADD source');
      const url = o.expand(ins, ins.sources[0]!, env);
      if (isGitSource(url))
        o.fail(`SOURCE_DATE_EPOCH stage source ${url} is a Git repository, which tsbuild does not fetch`);
      if (!/^https?:\/\//.test(url)) o.fail('SOURCE_DATE_EPOCH stage source must be a single HTTP(S) or Git ADD');
      found = {
        stage: stage.name ?? stage.displayName,
        url,
        ...(ins.checksum === undefined ? {} : { checksum: o.expand(ins, ins.checksum, env) }),
        file: o.file,
        line: stage.from.line,
        ...(stage.from.endLine === undefined ? {} : { endLine: stage.from.endLine }),
      };
    } else {
      o.fail(`SOURCE_DATE_EPOCH stage does not meet source-only requirements: unsupported ${ins.kind} instruction`);
    }
  }
  return found ?? o.fail('SOURCE_DATE_EPOCH stage must contain exactly one remote ADD');
}

/**
 * buildArgsWithEpoch is build()'s --build-arg map, with SOURCE_DATE_EPOCH from the environment (BuildOptions
 * .sourceDateEpoch) when no build arg gives one.
 */
export function buildArgsWithEpoch(
  given: ReadonlyMap<string, string> | Readonly<Record<string, string>> | undefined,
  envEpoch: number | undefined,
): Map<string, string> {
  const out = new Map<string, string>(given instanceof Map ? given : Object.entries((given ?? {}) as object));
  if (envEpoch !== undefined && !out.has(KEY)) out.set(KEY, String(envEpoch));
  return out;
}

/** SourceTime is the time a download gives, and where it comes from. */
export interface SourceTime {
  epoch?: number;
  from: 'last-modified' | 'archive' | 'none';
}

/**
 * resolvePlanEpoch resolves the plan's epochSource (a no-op without one): downloads the URL into `tmpDir`, takes its
 * time (sourceTime) and returns the plan with that epoch, SOURCE_DATE_EPOCH in its global and build args replaced by
 * the seconds (or removed when the source has no time, as BuildKit's setBuildArgValue does), and no epochSource. It
 * shows as the step `[internal] resolve SOURCE_DATE_EPOCH source stage NAME`. A failed download or a checksum
 * mismatch is a DockerfileError on the stage's FROM line.
 */
export async function resolvePlanEpoch(
  plan: BuildPlan,
  o: {
    tmpDir: string;
    signal?: AbortSignal;
    step?: (name: string) => number;
    onEvent?: (e: BuildEvent) => void;
  },
): Promise<BuildPlan> {
  const src = plan.epochSource;
  if (!src) return plan;
  const id = o.step?.(`[internal] resolve SOURCE_DATE_EPOCH source stage ${src.stage}`);
  const event = (
    e: { type: 'status'; message: string } | { type: 'done' } | { type: 'error'; message: string },
  ): void => {
    if (id !== undefined) o.onEvent?.({ ...e, id } as BuildEvent);
  };
  let time: SourceTime;
  const dir = await mkdtemp(join(o.tmpDir, 'epoch-'));
  try {
    const { fetchUrl } = await import('./steps/add.js');
    const got = await fetchUrl(src.url, dir, {
      ...(o.signal ? { signal: o.signal } : {}),
      ...(src.checksum === undefined ? {} : { checksum: src.checksum }),
    });
    time = await sourceTime(got.path, got.lastModified);
  } catch (err) {
    event({ type: 'error', message: (err as Error)?.message ?? String(err) });
    if ((err as Error)?.name === 'AbortError' || o.signal?.aborted) throw err;
    throw new DockerfileError({
      file: src.file,
      line: src.line,
      ...(src.endLine === undefined ? {} : { endLine: src.endLine }),
      reason: `SOURCE_DATE_EPOCH from stage ${src.stage}: ${(err as Error)?.message ?? String(err)}`,
      cause: err,
    });
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
  const how = { 'last-modified': 'the Last-Modified of', archive: 'the newest file in', none: '' }[time.from];
  event({
    type: 'status',
    message:
      time.epoch === undefined
        ? `${src.url} gives no time (no Last-Modified, no file in a tar archive): SOURCE_DATE_EPOCH is unset`
        : `SOURCE_DATE_EPOCH=${time.epoch} from ${how} ${src.url}`,
  });
  event({ type: 'done' });
  const value = time.epoch === undefined ? undefined : String(time.epoch);
  const replace = (m: ReadonlyMap<string, string>): Map<string, string> => {
    const out = new Map(m);
    if (out.has(KEY)) {
      if (value === undefined) out.delete(KEY);
      else out.set(KEY, value);
    }
    return out;
  };
  const { epochSource: _resolved, epoch: _none, ...rest } = plan;
  return {
    ...rest,
    globalArgs: replace(plan.globalArgs),
    buildArgs: replace(plan.buildArgs),
    ...(time.epoch === undefined ? {} : { epoch: time.epoch }),
  };
}

/**
 * sourceTime is the time of a downloaded file: `lastModified` (seconds) when the server sent one, else the newest
 * mtime (whole seconds) of a regular file when the file is a tar archive, else none. A file that is no archive, or
 * a corrupt one, has no time of its own (BuildKit's archiveMaxTimeFromRef with allowNonArchive).
 */
export async function sourceTime(path: string, lastModified?: number): Promise<SourceTime> {
  if (lastModified !== undefined) return { epoch: lastModified, from: 'last-modified' };
  const epoch = await archiveMaxTime(path);
  return epoch === undefined ? { from: 'none' } : { epoch, from: 'archive' };
}

/** NOT_REGULAR are the tar entry types Go's FileInfo().Mode().IsRegular() rejects. */
const NOT_REGULAR = new Set(['directory', 'symlink', 'character-device', 'block-device', 'fifo']);

/**
 * archiveMaxTime reads a tar archive (plain or compressed) and returns the newest mtime of its regular files (a PAX
 * mtime wins over the header's), in whole seconds; undefined when there are none or the file is not a readable tar.
 */
export async function archiveMaxTime(path: string): Promise<number | undefined> {
  const [{ autoDecompress }, { extract }] = await Promise.all([
    import('../layers/compress/compress.js'),
    import('tar-stream'),
  ]);
  const input = createReadStream(path, { highWaterMark: 1 << 20 });
  const plain = autoDecompress({ what: path });
  const ex = extract();
  input.on('error', (err) => plain.destroy(err));
  plain.on('error', (err) => ex.destroy(err));
  input.pipe(plain).pipe(ex);
  let max: number | undefined;
  try {
    for await (const entry of ex) {
      const h = entry.header;
      const typeBits = (h.mode ?? 0) & 0o170000;
      if (!NOT_REGULAR.has(h.type ?? 'file') && (typeBits === 0 || typeBits === 0o100000)) {
        const pax = Number.parseFloat((h.pax as Record<string, string> | undefined)?.mtime ?? '');
        const t = Math.floor(Number.isFinite(pax) ? pax : (h.mtime?.getTime() ?? 0) / 1000);
        if (max === undefined || t > max) max = t;
      }
      entry.resume();
    }
    return max;
  } catch {
    return undefined;
  } finally {
    input.destroy();
    plain.destroy();
    ex.destroy();
  }
}

// The build plan: parsed instructions + build args + target → stages, what each needs, and which to build.
// Pure: no I/O. BuildKit's dockerfile2llb is the reference for every rule here (global ARG evaluation, FROM
// expansion, stage lookup, `--from` rules, ONBUILD triggers of a parent stage, the reachable set of --target).

import { DockerfileError } from './dockerfile/errors.js';
import { expandWord, ExpansionError } from './dockerfile/expand.js';
import { closest } from './dockerfile/flags.js';
import type { FromInstruction, Instruction } from './dockerfile/instructions.js';
import { lookupName } from './context-names.js';
import type { NamedContext } from './named-contexts.js';
import { type EpochSource, epochStageSource } from './source-epoch.js';

/** Platform is os/architecture[/variant], as --platform and FROM --platform name it. */
export interface PlanPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

/** PROXY_ARGS are usable in RUN without an ARG declaration, and stay out of history and cache keys unless declared. */
export const PROXY_ARGS: readonly string[] = [
  'HTTP_PROXY',
  'http_proxy',
  'HTTPS_PROXY',
  'https_proxy',
  'FTP_PROXY',
  'ftp_proxy',
  'NO_PROXY',
  'no_proxy',
  'ALL_PROXY',
  'all_proxy',
];

/** StageBase is what a stage starts from. */
export type StageBase = { kind: 'scratch' } | { kind: 'stage'; index: number } | { kind: 'image'; ref: string };

/** StageStep is one instruction of a stage; `onbuild` marks a trigger inherited from the parent stage's ONBUILD. */
export interface StageStep {
  ins: Instruction;
  onbuild: boolean;
}

export interface StagePlan {
  index: number;
  /** the name after AS (lowercase), if any */
  name?: string;
  /** what progress shows: the name, `stage-N` for an unnamed stage, '' when the Dockerfile has one stage */
  displayName: string;
  from: FromInstruction;
  base: StageBase;
  /** FROM --platform, expanded */
  platform?: string;
  /** the instructions after FROM, ONBUILD triggers of a parent stage first */
  steps: StageStep[];
  /** stages this one needs: its base stage, COPY --from and RUN --mount from= stages (sorted, unique) */
  deps: number[];
  /** images (not stages) named by COPY --from or RUN --mount from= */
  images: string[];
  /** progress steps: FROM of an image + RUN, COPY, ADD and WORKDIR (BuildKit's cmdTotal) */
  total: number;
  /**
   * a named context (--build-context) of the stage's name replaces the stage: its base is that context (an 'image'
   * base of the stage's name), its instructions and the context image's ONBUILD triggers never run
   */
  replaced?: boolean;
}

export interface BuildPlan {
  stages: StagePlan[];
  /** the stage --target names (default: the last) */
  target: number;
  /** the stages to build, in Dockerfile order: the target and everything it needs */
  needed: number[];
  /** ARGs before the first FROM after --build-arg, plus the automatic platform ARGs */
  globalArgs: Map<string, string>;
  /** --build-arg values as given */
  buildArgs: Map<string, string>;
  /** --build-arg names no ARG declares (proxy args excepted) */
  unusedBuildArgs: string[];
  /** SOURCE_DATE_EPOCH (seconds) from --build-arg or a global ARG default */
  epoch?: number;
  /** SOURCE_DATE_EPOCH names a source-only stage: its remote ADD, which build() resolves into `epoch` */
  epochSource?: EpochSource;
  targetPlatform: PlanPlatform;
  buildPlatform: PlanPlatform;
  /** --build-context contexts by normalized name (loaded when a stage reaches them: builder/named-contexts.ts) */
  namedContexts: ReadonlyMap<string, NamedContext>;
}

export interface PlanOptions {
  instructions: Instruction[];
  buildArgs?: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
  /** --target: a stage name (case-insensitive) */
  target?: string;
  /** default linux/amd64 */
  targetPlatform?: PlanPlatform;
  /** default linux/amd64 */
  buildPlatform?: PlanPlatform;
  /** the `# escape=` character */
  escape?: string;
  /** the Dockerfile name for messages */
  file?: string;
  /** --build-context contexts by normalized name (builder/named-contexts.ts): a stage of such a name is replaced */
  namedContexts?: ReadonlyMap<string, NamedContext>;
}

export const DEFAULT_PLATFORM: PlanPlatform = { os: 'linux', architecture: 'amd64' };

/** formatPlatform prints os/arch[/variant]. */
export function formatPlatform(p: PlanPlatform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/**
 * platformArgs are the automatic global ARGs (BuildKit defaultArgs), TARGETSTAGE included: the --target as given,
 * else the name of the last stage, else "default".
 */
export function platformArgs(target: PlanPlatform, build: PlanPlatform, targetStage = 'default'): Map<string, string> {
  return new Map([
    ['BUILDPLATFORM', formatPlatform(build)],
    ['BUILDOS', build.os],
    ['BUILDOSVERSION', ''],
    ['BUILDARCH', build.architecture],
    ['BUILDVARIANT', build.variant ?? ''],
    ['TARGETPLATFORM', formatPlatform(target)],
    ['TARGETOS', target.os],
    ['TARGETOSVERSION', ''],
    ['TARGETARCH', target.architecture],
    ['TARGETVARIANT', target.variant ?? ''],
    ['TARGETSTAGE', targetStage || 'default'],
  ]);
}

/**
 * planBuild turns instructions into stages. Throws DockerfileError (naming the line) for a blank base name, an
 * expansion error in FROM or a global ARG, `--from` with a variable, `--from` naming a later stage or an invalid
 * index, a stage depending on itself, and an unknown --target.
 */
export function planBuild(opts: PlanOptions): BuildPlan {
  const file = opts.file ?? 'Dockerfile';
  const escape = opts.escape ?? '\\';
  const targetPlatform = opts.targetPlatform ?? DEFAULT_PLATFORM;
  const buildPlatform = opts.buildPlatform ?? DEFAULT_PLATFORM;
  const named = opts.namedContexts ?? new Map<string, NamedContext>();
  const buildArgs = new Map<string, string>(
    opts.buildArgs instanceof Map ? opts.buildArgs : Object.entries((opts.buildArgs ?? {}) as Record<string, string>),
  );
  const fail = (ins: Instruction, reason: string, cause?: unknown): never => {
    throw new DockerfileError({
      file,
      line: ins.line,
      endLine: ins.endLine,
      reason,
      ...(cause === undefined ? {} : { cause }),
    });
  };
  const expand = (ins: Instruction, word: string, env: Map<string, string>): string => {
    try {
      return expandWord(word, env, { escape });
    } catch (err) {
      if (err instanceof ExpansionError) return fail(ins, err.message, err);
      throw err;
    }
  };

  // Global scope: the automatic platform ARGs, then the ARGs before the first FROM (a --build-arg wins over a default).
  const lastFrom = opts.instructions.findLast((ins): ins is FromInstruction => ins.kind === 'from');
  if (!lastFrom) throw new DockerfileError({ file, line: 0, reason: 'dockerfile contains no stages to build' });
  const globalArgs = platformArgs(targetPlatform, buildPlatform, opts.target || lastFrom.stage || 'default');
  const declared = new Set<string>();
  let i = 0;
  const all = opts.instructions;
  for (; i < all.length && all[i]!.kind !== 'from'; i++) {
    const ins = all[i]!;
    if (ins.kind !== 'arg')
      fail(ins, `${ins.keyword.toUpperCase()} before the first FROM: only ARG may come before FROM`);
    if (ins.kind !== 'arg') continue;
    for (const a of ins.args) {
      declared.add(a.key);
      const given = buildArgs.get(a.key);
      const value = given ?? (a.value === undefined ? undefined : expand(ins, a.value, globalArgs));
      if (value !== undefined) globalArgs.set(a.key, value);
    }
  }

  // Split into stages.
  const raw: Array<{ from: FromInstruction; body: Instruction[] }> = [];
  for (; i < all.length; i++) {
    const ins = all[i]!;
    if (ins.kind === 'from') raw.push({ from: ins, body: [] });
    else raw.at(-1)!.body.push(ins);
  }

  const stages: StagePlan[] = [];
  const byName = new Map<string, number>();
  for (const [index, { from, body }] of raw.entries()) {
    const baseName = expand(from, from.image, globalArgs);
    if (baseName === '') fail(from, `base name (${from.image}) should not be blank`);
    let base: StageBase;
    const stageIndex = byName.get(baseName);
    const replaced = from.stage !== undefined && named.has(lookupName(from.stage) ?? '');
    if (replaced) base = { kind: 'image', ref: from.stage! };
    else if (stageIndex !== undefined) base = { kind: 'stage', index: stageIndex };
    else if (baseName.toLowerCase() === 'scratch') base = { kind: 'scratch' };
    else base = { kind: 'image', ref: baseName };
    let platform: string | undefined;
    if (from.platform !== undefined) {
      platform = expand(from, from.platform, globalArgs);
      if (platform === '') fail(from, `empty platform value from expression ${from.platform}`);
    }
    for (const ins of body) for (const a of ins.kind === 'arg' ? ins.args : []) declared.add(a.key);
    const stage: StagePlan = {
      index,
      ...(from.stage === undefined ? {} : { name: from.stage }),
      displayName: from.stage ?? `stage-${index}`,
      from,
      base,
      ...(platform === undefined ? {} : { platform }),
      steps: replaced ? [] : body.map((ins) => ({ ins, onbuild: false })),
      deps: [],
      images: [],
      total: 0,
      ...(replaced ? { replaced } : {}),
    };
    if (from.stage !== undefined) byName.set(from.stage, index);
    stages.push(stage);
  }
  if (stages.length === 1) stages[0]!.displayName = '';

  // ONBUILD triggers written in a parent stage run first in a stage built FROM it.
  for (const stage of stages) {
    if (stage.base.kind !== 'stage') continue;
    const parent = stages[stage.base.index]!;
    const triggers = parent.steps.filter((s) => !s.onbuild && s.ins.kind === 'onbuild');
    stage.steps = [
      ...triggers.map((s) => ({ ins: (s.ins as Extract<Instruction, { kind: 'onbuild' }>).trigger, onbuild: true })),
      ...stage.steps,
    ];
  }

  // Dependencies: the base stage, COPY --from, RUN --mount from=.
  for (const stage of stages) {
    const deps = new Set<number>();
    const images = new Set<string>();
    if (stage.base.kind === 'stage') deps.add(stage.base.index);
    const refer = (ins: Instruction, from: string, _what: string): void => {
      const idx = resolveStageRef(from, stages, byName);
      // a replaced stage is its named context, read by name (BuildKit has it resolved already: any order is fine)
      if (idx === undefined || stages[idx]?.replaced) {
        images.add(idx === undefined ? from : stages[idx]!.name!);
        return;
      }
      if (idx === -1) fail(ins, `invalid stage index ${from}`);
      if (idx === stage.index)
        fail(ins, `circular dependency detected on stage: ${stage.name ?? `stage-${stage.index}`}`);
      if (idx > stage.index) {
        fail(
          ins,
          `cannot copy from stage ${JSON.stringify(from)}, it needs to be defined before current stage ${JSON.stringify(stage.displayName || `stage-${stage.index}`)}`,
        );
      }
      deps.add(idx);
    };
    for (const { ins } of stage.steps) {
      if (ins.kind === 'copy' && ins.from !== undefined) {
        if (/[$]/.test(ins.from) || expand(ins, ins.from, new Map()) !== ins.from) {
          fail(
            ins,
            'variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround',
          );
        }
        refer(ins, ins.from, 'COPY --from');
      }
      if (ins.kind === 'run') {
        for (const m of ins.mounts) {
          const from = mountFromOption(m);
          // BuildKit reads mounts before any expansion: a `$` anywhere but last is refused (commands_runmount.go)
          const dollar = from?.indexOf('$') ?? -1;
          if (from !== undefined && dollar !== -1 && dollar !== from.length - 1)
            fail(ins, "'from' doesn't support variable expansion, define alias stage instead");
          if (from !== undefined && from !== '') refer(ins, from, 'RUN --mount');
        }
      }
    }
    stage.deps = [...deps].sort((a, b) => a - b);
    stage.images = [...images];
    stage.total =
      (stage.base.kind === 'image' ? 1 : 0) +
      stage.steps.filter((s) => ['run', 'copy', 'add', 'workdir'].includes(s.ins.kind)).length;
  }

  // The target and what it needs.
  let target = stages.length - 1;
  if (opts.target !== undefined && opts.target !== '') {
    const t = byName.get(opts.target.toLowerCase());
    if (t === undefined) {
      const names = [...byName.keys()];
      const guess = closest(opts.target, names);
      throw new DockerfileError({
        file,
        line: 0,
        reason: `target stage ${JSON.stringify(opts.target)} could not be found${guess ? ` (did you mean ${guess}?)` : ''}`,
        ...(names.length ? { hint: `stages: ${names.join(', ')}` } : {}),
      });
    }
    target = t;
  }
  const needed = new Set<number>();
  const visit = (n: number): void => {
    if (needed.has(n)) return;
    needed.add(n);
    for (const d of stages[n]!.deps) visit(d);
  };
  visit(target);

  const proxies = new Set(PROXY_ARGS);
  const unusedBuildArgs = [...buildArgs.keys()].filter(
    (k) => !declared.has(k) && !proxies.has(k) && k !== 'SOURCE_DATE_EPOCH',
  );

  let epoch: number | undefined;
  let epochSource: EpochSource | undefined;
  const sde = buildArgs.get('SOURCE_DATE_EPOCH') ?? (globalArgs.get('SOURCE_DATE_EPOCH') || undefined);
  // BuildKit (dockerfile2llb/epoch.go): seconds; `context` (unset here: a local or tar context has no time of its
  // own); a named context (a local or image one has no time to give, so the epoch stays unset); or a source-only
  // stage (FROM scratch, ARGs, one remote ADD) whose download gives the time: builder/source-epoch.ts checks it
  // here and build() resolves it (resolvePlanEpoch) before any stage runs.
  const namedEpoch = sde !== undefined && sde !== '' && named.has(lookupName(sde) ?? '');
  if (sde !== undefined && sde !== '' && sde !== 'context' && !namedEpoch) {
    const stage = /^\d+$/.test(sde) ? undefined : stages.find((st) => st.name === sde.toLowerCase());
    if (stage) {
      epochSource = epochStageSource(stage, {
        globalArgs,
        buildArgs,
        expand,
        file,
        fail: (reason) => {
          throw new DockerfileError({ file, line: stage.from.line, endLine: stage.from.endLine, reason });
        },
      });
    } else if (!/^\d+$/.test(sde))
      throw new DockerfileError({
        file,
        line: 0,
        reason: `invalid SOURCE_DATE_EPOCH: ${sde}`,
      });
    else epoch = Number(sde);
  }

  return {
    stages,
    target,
    needed: [...needed].sort((a, b) => a - b),
    globalArgs,
    buildArgs,
    unusedBuildArgs,
    ...(epoch === undefined ? {} : { epoch }),
    ...(epochSource === undefined ? {} : { epochSource }),
    targetPlatform,
    buildPlatform,
    namedContexts: named,
  };
}

/**
 * resolveStageRef resolves a `--from` value against the stages: a stage name (case-insensitive), or an index.
 * Returns the stage index, -1 for an index out of range, or undefined when it names no stage (an image).
 */
export function resolveStageRef(
  from: string,
  stages: readonly StagePlan[],
  byName: ReadonlyMap<string, number>,
): number | undefined {
  if (/^[0-9]+$/.test(from)) {
    const n = Number(from);
    return n < stages.length ? n : -1;
  }
  return byName.get(from.toLowerCase());
}

/** mountFromOption reads the `from=` field of a raw `--mount` value (CSV), or undefined. */
export function mountFromOption(spec: string): string | undefined {
  for (const field of splitCsv(spec)) {
    const eq = field.indexOf('=');
    if (eq > 0 && field.slice(0, eq).trim().toLowerCase() === 'from') return field.slice(eq + 1);
  }
  return undefined;
}

/** splitCsv splits a `--mount`/`--secret` value into fields: commas separate, double quotes group (encoding/csv). */
export function splitCsv(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      if (c === '"' && s[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

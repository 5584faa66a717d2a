// Applying a metadata instruction (CMD, ENV, EXPOSE, …) to an image config, as BuildKit's dispatchers do.
// Used by the builder for Dockerfile steps and by `tsbuild import --change`. metadataStep is the builder's
// dispatcher of the instructions that only change the config and the stage's env (ARG, ENV, LABEL, CMD, …): it
// returns the history entry's created_by (BuildKit's exact strings), or null when there is none (ONBUILD).
import { posix } from 'node:path';
import { InvalidInputError } from '../../sys/errors.js';
import type { ContainerConfig } from '../../layers/model/types.js';
import { type Env, expandWord, expandWords } from '../dockerfile/expand.js';
import { goList, goQuoteList, healthString } from '../history.js';
import type { CommandLine, Instruction } from '../dockerfile/instructions.js';
import { parseDockerfile } from '../dockerfile/parse.js';
import { parseSignal } from '../dockerfile/signal.js';

export const DEFAULT_SHELL = ['/bin/sh', '-c'];

/** ConfigState is the config being built plus what the dispatchers must remember between instructions. */
export interface ConfigState {
  config: ContainerConfig;
  /** image-config `author` (MAINTAINER) */
  author?: string;
  /** a CMD was set in this stage: ENTRYPOINT then keeps it instead of clearing an inherited one */
  cmdSet: boolean;
}

/** envMap turns a config's Env list into the map expansion reads (later entries win). */
export function envMap(config: ContainerConfig, extra?: ReadonlyMap<string, string>): Map<string, string> {
  const m = new Map<string, string>();
  for (const kv of config.Env ?? []) {
    const eq = kv.indexOf('=');
    if (eq > 0) m.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  for (const [k, v] of extra ?? []) if (!m.has(k)) m.set(k, v);
  return m;
}

/** setEnv replaces KEY=value where KEY already is (keeping the list's order, as BuildKit does), or appends it. */
export function setEnv(env: string[] | undefined, key: string, value: string): string[] {
  const out = [...(env ?? [])];
  const i = out.findIndex((kv) => (kv.includes('=') ? kv.slice(0, kv.indexOf('=')) : kv) === key);
  if (i >= 0) out[i] = `${key}=${value}`;
  else out.push(`${key}=${value}`);
  return out;
}

/** commandArgs turns exec or shell form into argv: shell form runs through the SHELL (default /bin/sh -c). */
export function commandArgs(cmd: CommandLine, shell: string[] | undefined): string[] {
  return cmd.form === 'exec' ? [...cmd.args] : [...(shell ?? DEFAULT_SHELL), cmd.script];
}

/** sortedKeys orders an object's keys as Go's encoding/json writes a map (byte order), as BuildKit's config has them. */
function sortedKeys<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * exposedPorts expands `80`, `80/udp`, `8000-8002/tcp` into config keys (`80/tcp`, …). A published form
 * (`8080:80`, `127.0.0.1:8080:80/udp`, `[::1]:8080:80`) exposes its container part, as docker's port parser does.
 */
export function exposedPorts(spec: string): string[] {
  const published = /^(?:(?:\[[0-9a-fA-F:.]+\]|[0-9.]*):)?[0-9-]*:([0-9-]+(?:\/[a-zA-Z]+)?)$/.exec(spec);
  const container = published ? (published[1] as string) : spec;
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(container);
  if (!m) throw new InvalidInputError(`invalid port ${JSON.stringify(spec)}`);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  const proto = (m[3] ?? 'tcp').toLowerCase();
  if (lo < 0 || hi > 65535 || hi < lo) throw new InvalidInputError(`invalid port range ${JSON.stringify(spec)}`);
  if (hi - lo > 65535) throw new InvalidInputError(`port range ${spec} is too large`);
  const out: string[] = [];
  for (let p = lo; p <= hi; p++) out.push(`${p}/${proto}`);
  return out;
}

/**
 * applyConfigInstruction applies one metadata instruction to `state`, expanding values with `env` where
 * BuildKit does. Returns false for instructions that are not metadata (FROM, RUN, COPY, ADD, ARG).
 */
export function applyConfigInstruction(
  state: ConfigState,
  ins: Instruction,
  env: Env,
  opts: { escape?: string } = {},
): boolean {
  const c = state.config;
  const x = (w: string): string => expandWord(w, env, opts);
  switch (ins.kind) {
    case 'cmd':
      c.Cmd = commandArgs(ins.command, c.Shell);
      state.cmdSet = true;
      return true;
    case 'entrypoint':
      c.Entrypoint = commandArgs(ins.command, c.Shell);
      if (!state.cmdSet) c.Cmd = null;
      return true;
    case 'shell':
      c.Shell = [...ins.shell];
      return true;
    case 'env': {
      // every pair of one ENV sees the environment as it was before the instruction (BuildKit)
      let list = c.Env;
      for (const p of ins.pairs) list = setEnv(list, x(p.key), x(p.value));
      c.Env = list ?? [];
      return true;
    }
    case 'label':
      c.Labels = { ...(c.Labels ?? {}) };
      for (const p of ins.pairs) c.Labels[x(p.key)] = x(p.value);
      return true;
    case 'expose':
      c.ExposedPorts = { ...(c.ExposedPorts ?? {}) };
      for (const raw of ins.ports) {
        for (const word of x(raw).split(/\s+/).filter(Boolean))
          for (const p of exposedPorts(word)) c.ExposedPorts[p] = {};
      }
      c.ExposedPorts = sortedKeys(c.ExposedPorts);
      return true;
    case 'user':
      c.User = x(ins.user);
      return true;
    case 'workdir': {
      const dir = x(ins.path);
      c.WorkingDir = posix.normalize(posix.isAbsolute(dir) ? dir : posix.join(c.WorkingDir || '/', dir));
      if (c.WorkingDir.length > 1 && c.WorkingDir.endsWith('/')) c.WorkingDir = c.WorkingDir.slice(0, -1);
      return true;
    }
    case 'volume':
      c.Volumes = { ...(c.Volumes ?? {}) };
      for (const p of ins.paths) {
        const v = x(p);
        if (!v) throw new InvalidInputError('VOLUME specified can not be an empty string');
        c.Volumes[v] = {};
      }
      return true;
    case 'stopsignal': {
      const sig = x(ins.signal);
      if (parseSignal(sig) === null) throw new InvalidInputError(`invalid STOPSIGNAL ${JSON.stringify(sig)}`);
      c.StopSignal = sig;
      return true;
    }
    case 'healthcheck':
      c.Healthcheck = { ...ins.health };
      return true;
    case 'onbuild':
      c.OnBuild = [...(c.OnBuild ?? []), ins.expression];
      return true;
    case 'maintainer':
      state.author = ins.maintainer;
      return true;
    default:
      return false;
  }
}

const CHANGEABLE = new Set([
  'cmd',
  'entrypoint',
  'env',
  'expose',
  'label',
  'onbuild',
  'user',
  'volume',
  'workdir',
  'stopsignal',
  'healthcheck',
  'shell',
]);

/** applyConfigChanges applies `--change` instructions (docker import/commit style) to a copy of `config`. */
export function applyConfigChanges(config: ContainerConfig, changes: string[]): ContainerConfig {
  const state: ConfigState = { config: structuredClone(config), cmdSet: false };
  for (const [i, change] of changes.entries()) {
    const { instructions } = parseDockerfile(change, { file: `--change ${i + 1}`, fragment: true });
    for (const ins of instructions) {
      if (!CHANGEABLE.has(ins.kind)) {
        throw new InvalidInputError(
          `--change ${JSON.stringify(change)}: ${ins.kind.toUpperCase()} is not a config change`,
          `allowed: ${[...CHANGEABLE].map((k) => k.toUpperCase()).join(', ')}`,
        );
      }
      applyConfigInstruction(state, ins, envMap(state.config));
    }
  }
  return state.config;
}

/** StageMeta is the part of a stage the metadata instructions change. */
export interface StageMeta {
  config: ContainerConfig;
  author?: string;
  cmdSet: boolean;
  /** image Env plus ARG values: what expansion and RUN see */
  env: Map<string, string>;
  /** ARGs declared in the stage, with their values */
  buildArgs: Array<{ key: string; value?: string }>;
}

export interface MetadataOptions {
  escape: string;
  /** --build-arg values */
  buildArgs: ReadonlyMap<string, string>;
  /** the values of ARGs before the first FROM */
  globalArgs: ReadonlyMap<string, string>;
}

/**
 * metadataStep applies a metadata instruction (anything but FROM, RUN, COPY, ADD; WORKDIR only changes the config
 * here) to the stage and returns its created_by, or null for no history entry.
 */
export function metadataStep(st: StageMeta, ins: Instruction, o: MetadataOptions): string | null {
  const x = (w: string): string => expandWord(w, st.env, { escape: o.escape });
  const apply = (): void => {
    const state: ConfigState = { config: st.config, cmdSet: st.cmdSet };
    applyConfigInstruction(state, ins, st.env, { escape: o.escape });
    st.config = state.config;
    st.cmdSet = state.cmdSet;
  };
  switch (ins.kind) {
    case 'arg': {
      // BuildKit's dispatchArg: --build-arg, else the default (expanded), else the global value.
      const parts: string[] = [];
      for (const a of ins.args) {
        const given = o.buildArgs.get(a.key);
        let value: string | undefined;
        if (given !== undefined) value = given;
        else if (a.value !== undefined) value = x(a.value);
        else if (o.globalArgs.has(a.key)) value = o.globalArgs.get(a.key);
        if (value !== undefined) st.env.set(a.key, value);
        st.buildArgs.push(value === undefined ? { key: a.key } : { key: a.key, value });
        parts.push(value === undefined ? a.key : `${a.key}=${value}`);
      }
      return `ARG ${parts.join(' ')}`;
    }
    case 'env': {
      // BuildKit's dispatchEnv: values see the env before the instruction; a key keeps its place.
      const snapshot = new Map(st.env);
      const parts: string[] = [];
      const list = [...(st.config.Env ?? [])];
      for (const p of ins.pairs) {
        const k = expandWord(p.key, snapshot, { escape: o.escape });
        const v = expandWord(p.value, snapshot, { escape: o.escape });
        st.env.set(k, v);
        const i = list.findIndex((e) => (e.indexOf('=') < 0 ? e : e.slice(0, e.indexOf('='))) === k);
        if (i >= 0) list[i] = `${k}=${v}`;
        else list.push(`${k}=${v}`);
        parts.push(`${k}=${v}`);
      }
      st.config.Env = list;
      return `ENV ${parts.join(' ')}`;
    }
    case 'label': {
      const labels = { ...(st.config.Labels ?? {}) };
      const parts: string[] = [];
      for (const p of ins.pairs) {
        const k = x(p.key);
        const v = x(p.value);
        labels[k] = v;
        parts.push(`${k}=${v}`);
      }
      st.config.Labels = labels;
      return `LABEL ${parts.join(' ')}`;
    }
    case 'workdir':
      apply();
      return `WORKDIR ${st.config.WorkingDir || '/'}`;
    case 'onbuild':
      apply();
      return null; // BuildKit writes no history entry for ONBUILD
    case 'cmd':
      apply();
      st.config.ArgsEscaped = true;
      return `CMD ${goQuoteList(st.config.Cmd ?? [])}`;
    case 'entrypoint':
      apply();
      return `ENTRYPOINT ${goQuoteList(st.config.Entrypoint ?? [])}`;
    case 'shell':
      apply();
      return `SHELL ${goList(ins.shell)}`;
    case 'expose': {
      const ports: string[] = [];
      // BuildKit sorts the words as written (instructions/parse.go parseExpose), before expanding them
      for (const raw of [...ins.ports].sort())
        for (const w of expandWords(raw, st.env, { escape: o.escape })) ports.push(...exposedPorts(w));
      st.config.ExposedPorts = { ...(st.config.ExposedPorts ?? {}) };
      for (const p of ports) st.config.ExposedPorts[p] = {};
      st.config.ExposedPorts = sortedKeys(st.config.ExposedPorts);
      return `EXPOSE ${goList(ports)}`;
    }
    case 'user':
      apply();
      return `USER ${st.config.User ?? ''}`;
    case 'volume': {
      const vols = ins.paths.map(x);
      apply();
      return `VOLUME ${goList(vols)}`;
    }
    case 'stopsignal':
      apply();
      return `STOPSIGNAL ${st.config.StopSignal ?? ''}`;
    case 'healthcheck':
      apply();
      return `HEALTHCHECK ${healthString(st.config.Healthcheck ?? {})}`;
    case 'maintainer':
      st.author = ins.maintainer;
      return `MAINTAINER ${ins.maintainer}`;
    default:
      throw new InvalidInputError(`${ins.keyword.toUpperCase()} is not a metadata instruction`);
  }
}

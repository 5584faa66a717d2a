// parseDockerfile: Dockerfile text → typed instructions (builder/dockerfile/instructions.ts), with BuildKit's rules.
//
// Two layers, as in BuildKit: builder/dockerfile/ast.ts reads the text into parse-tree nodes (directives, continuations,
// comments, flags, JSON vs shell form, heredoc bodies), then this module checks each node and builds its typed
// instruction (argument counts, flags, HEALTHCHECK options, ONBUILD triggers, stage names). Nothing is expanded here.

import { parseAst, type AstNode, type ParseWarning } from './ast.js';
import { DockerfileError } from './errors.js';
import { DurationError, parseGoDuration } from './duration.js';
import { goQuote, goToLower, goTrimSpace } from './go-strings.js';
import { chompHeredoc, parseHeredocWord, runHeredocScript, type Heredoc, type HeredocSpec } from './heredoc.js';
import { closest, FlagError, INSTRUCTION_FLAGS, parseFlags, type Flags } from './flags.js';
import {
  INSTRUCTION_KINDS,
  type AddInstruction,
  type ArgInstruction,
  type CmdInstruction,
  type CommandLine,
  type CopyInstruction,
  type EntrypointInstruction,
  type EnvInstruction,
  type ExposeInstruction,
  type FromInstruction,
  type HealthcheckInstruction,
  type HeredocBody,
  type InlineSource,
  type Instruction,
  type InstructionKind,
  type KeyValue,
  type LabelInstruction,
  type MaintainerInstruction,
  type OnbuildInstruction,
  type RunInstruction,
  type ShellInstruction,
  type StopsignalInstruction,
  type UserInstruction,
  type VolumeInstruction,
  type WorkdirInstruction,
} from './instructions.js';
import { parseSignal } from './signal.js';
import type { HealthConfig } from '../../layers/model/types.js';

export { DockerfileError } from './errors.js';
export type { ParseWarning } from './ast.js';

export interface ParseResult {
  instructions: Instruction[];
  /** Parser directives found at the top of the file; `escape` is always set (default `\`). */
  directives: { escape: string; syntax?: string; check?: string };
  warnings: ParseWarning[];
}

/** InstructionError is an instruction BuildKit's instruction layer rejects; parseDockerfile adds file and line. */
class InstructionError extends Error {}

export interface ParseOptions {
  /** Names the file in messages and warnings (default "Dockerfile"). */
  file?: string;
  /** Parse a fragment, not a whole Dockerfile: no FROM needed, and none of the FROM ordering rules. For ONBUILD
   *  triggers read from a base image's config and for `--change` instructions. */
  fragment?: boolean;
}

/** frontendRef spells a `# syntax=` image as BuildKit resolves it (docker.io/library/NAME:latest). */
function frontendRef(value: string): string {
  let ref = value.trim();
  const first = ref.split('/')[0]!;
  if (!ref.includes('/')) ref = `docker.io/library/${ref}`;
  else if (!first.includes('.') && !first.includes(':') && first !== 'localhost') ref = `docker.io/${ref}`;
  const last = ref.split('/').pop()!;
  if (!last.includes(':') && !ref.includes('@')) ref += ':latest';
  return ref;
}

/** isDockerfileFrontend: docker/dockerfile or docker/dockerfile-upstream, any tag or digest, with or without docker.io. */
function isDockerfileFrontend(value: string): boolean {
  return /^(docker\.io\/)?docker\/dockerfile(-upstream)?(:[\w][\w.-]*)?(@sha256:[a-f0-9]{64})?$/.test(value.trim());
}

/**
 * parseDockerfile parses a Dockerfile into typed instructions. Throws DockerfileError
 * (`Dockerfile:12: unknown instruction: FORM (did you mean FROM?)`) for anything BuildKit refuses to parse, for
 * unknown flags, and (unless `fragment`) for instructions other than ARG before the first FROM.
 */
export function parseDockerfile(text: string, opts: ParseOptions = {}): ParseResult {
  const file = opts.file ?? 'Dockerfile';
  const ast = parseAst(text, { file });
  const warnings: ParseWarning[] = [...ast.warnings];
  const directives: ParseResult['directives'] = { escape: ast.escape };
  for (const d of ast.directives) {
    if (d.name === 'syntax') {
      directives.syntax = d.value;
      // BuildKit runs the image the directive names as the frontend; ours is built in, so only the Dockerfile
      // frontend's own images are accepted, and anything else fails as BuildKit fails to resolve it
      if (!isDockerfileFrontend(d.value)) {
        throw new DockerfileError({
          file,
          line: d.line,
          reason: `failed to resolve source metadata for ${frontendRef(d.value)}: tsbuild has only the built-in Dockerfile frontend`,
        });
      }
      warnings.push({
        file,
        line: d.line,
        code: 'SyntaxDirective',
        message: `syntax directive ${goQuote(d.value)} noted: tsbuild parses Dockerfiles with its built-in front end`,
      });
    } else if (d.name === 'check') {
      directives.check = d.value;
      const message = 'check directive ignored: tsbuild does not run build checks';
      warnings.push({ file, line: d.line, code: 'CheckDirective', message });
    }
  }

  const instructions: Instruction[] = [];
  let seenFrom = false;
  for (const node of ast.nodes) {
    let ins: Instruction;
    try {
      ins = instructionFromNode(node);
    } catch (err) {
      if (err instanceof InstructionError || err instanceof FlagError) {
        throw new DockerfileError({ file, line: node.startLine, endLine: node.endLine, reason: err.message });
      }
      throw err;
    }
    if (ins.kind === 'from') seenFrom = true;
    else if (!seenFrom && ins.kind !== 'arg' && !opts.fragment) {
      throw new DockerfileError({
        file,
        line: node.startLine,
        endLine: node.endLine,
        reason: `${ins.keyword.toUpperCase()} before the first FROM: only ARG may come before FROM`,
      });
    }
    lint(ins, file, warnings);
    instructions.push(ins);
  }
  if (!seenFrom && !opts.fragment)
    throw new DockerfileError({ file, line: 0, reason: 'dockerfile contains no stages to build' });
  return { instructions, directives, warnings };
}

function lint(ins: Instruction, file: string, warnings: ParseWarning[]): void {
  if ((ins.kind === 'env' || ins.kind === 'label') && ins.legacy) {
    const kw = ins.kind.toUpperCase();
    warnings.push({
      file,
      line: ins.line,
      code: 'LegacyKeyValueFormat',
      message: `"${kw} key=value" should be used instead of the legacy "${kw} key value" form`,
    });
  } else if (ins.kind === 'maintainer') {
    const message = 'MAINTAINER is deprecated: use LABEL maintainer=…';
    warnings.push({ file, line: ins.line, code: 'MaintainerDeprecated', message });
  }
}

/** Base is what every instruction carries besides its own fields. */
interface Base {
  keyword: string;
  line: number;
  endLine: number;
  raw: string;
  flags: Flags;
}

/** instructionFromNode checks one parse-tree node and builds its typed instruction. Throws InstructionError. */
function instructionFromNode(node: AstNode): Instruction {
  const kw = goToLower(node.keyword);
  if (!(INSTRUCTION_KINDS as readonly string[]).includes(kw)) {
    if (node.keyword === '') throw new InstructionError('empty instruction: a line continuation with nothing after it');
    const guess = closest(node.keyword, INSTRUCTION_KINDS);
    throw new InstructionError(
      `unknown instruction: ${node.keyword}${guess ? ` (did you mean ${guess.toUpperCase()}?)` : ''}`,
    );
  }
  const kind = kw as InstructionKind;
  // HEALTHCHECK NONE takes no flags; every other instruction's flags are checked against its list.
  if (kind === 'healthcheck' && node.args[0]?.toUpperCase() === 'NONE' && node.flags.length > 0) {
    throw new InstructionError(`HEALTHCHECK NONE takes no flags (got ${node.flags[0]})`);
  }
  const flags = parseFlags(kind, node.flags, INSTRUCTION_FLAGS[kind]);
  const base: Base = { keyword: node.keyword, line: node.startLine, endLine: node.endLine, raw: node.original, flags };
  switch (kind) {
    case 'from':
      return fromInstruction(node, base);
    case 'run':
      return runInstruction(node, base);
    case 'cmd':
    case 'entrypoint':
      return make<CmdInstruction | EntrypointInstruction>(base, { kind, command: commandLine(node) });
    case 'shell':
      return make<ShellInstruction>(base, { kind, shell: shellArgs(node) });
    case 'env':
    case 'label':
      return make<EnvInstruction | LabelInstruction>(base, {
        kind,
        pairs: keyValues(kind.toUpperCase(), node.args),
        legacy: node.args[2] === '',
      });
    case 'arg':
      return make<ArgInstruction>(base, { kind, args: argDeclarations(node.args) });
    case 'expose':
      if (node.args.length === 0) throw new InstructionError('EXPOSE requires at least one argument');
      return make<ExposeInstruction>(base, { kind, ports: [...node.args] });
    case 'user':
      return make<UserInstruction>(base, { kind, user: exactlyOne('USER', node.args) });
    case 'workdir':
      return make<WorkdirInstruction>(base, { kind, path: exactlyOne('WORKDIR', node.args) });
    case 'maintainer':
      return make<MaintainerInstruction>(base, { kind, maintainer: exactlyOne('MAINTAINER', node.args) });
    case 'stopsignal':
      return make<StopsignalInstruction>(base, { kind, signal: stopSignal(node.args) });
    case 'volume':
      return make<VolumeInstruction>(base, { kind, paths: volumePaths(node.args) });
    case 'healthcheck':
      return make<HealthcheckInstruction>(base, { kind, health: healthConfig(node, flags) });
    case 'onbuild':
      return onbuildInstruction(node, base);
    case 'copy':
    case 'add':
      return copyOrAdd(kind, node, base);
  }
}

function lastFlag(flags: Flags, name: string): string | undefined {
  return flags[name]?.at(-1);
}

function fromInstruction(node: AstNode, base: Base): Instruction {
  const args = node.args;
  let stage: string | undefined;
  if (args.length === 3 && goToLower(args[1]!) === 'as') {
    stage = goToLower(args[2]!);
    if (!/^[a-z][a-z0-9\-_.]*$/.test(stage)) {
      const name = goQuote(args[2]!);
      throw new InstructionError(
        `invalid name for build stage: ${name}, name can't start with a number or contain symbols`,
      );
    }
  } else if (args.length !== 1) {
    throw new InstructionError('FROM requires either one or three arguments: FROM image [AS name]');
  }
  const ins = make<FromInstruction>(base, { kind: 'from', image: args[0]! });
  setIf(ins, 'stage', stage);
  setIf(ins, 'platform', lastFlag(base.flags, 'platform'));
  return ins;
}

function runInstruction(node: AstNode, base: Base): Instruction {
  if (node.args.length === 0) throw new InstructionError('RUN requires at least one argument');
  const command = commandLine(node);
  let exec = command;
  const files = [];
  if (command.form === 'shell' && node.heredocs.length > 0) {
    const r = runHeredocScript(command.script, node.heredocs);
    exec = { form: 'shell', script: r.script };
    if (r.file) {
      const name = node.heredocs[0]!.name;
      if (name === '' || name === '.' || name === '..' || name.includes('/')) {
        throw new InstructionError(
          `RUN: heredoc name ${goQuote(name)} cannot be used as a file name for its #! script`,
        );
      }
      files.push(r.file);
    }
  }
  const flags = base.flags;
  const heredocs = node.heredocs.map(heredocBody);
  const ins = make<RunInstruction>(base, { kind: 'run', command, exec, files, heredocs, mounts: flags['mount'] ?? [] });
  setIf(ins, 'network', lastFlag(flags, 'network'));
  setIf(ins, 'security', lastFlag(flags, 'security'));
  return ins;
}

function shellArgs(node: AstNode): string[] {
  if (node.args.length === 0) throw new InstructionError('SHELL requires at least one argument');
  if (!node.json)
    throw new InstructionError('SHELL requires the arguments to be in JSON form, like SHELL ["/bin/sh", "-c"]');
  return [...node.args];
}

/** keyValues reads ENV/LABEL (key, value, separator) triples. */
function keyValues(KW: string, args: string[]): KeyValue[] {
  if (args.length === 0) throw new InstructionError(`${KW} requires at least one argument`);
  const pairs: KeyValue[] = [];
  for (let i = 0; i < args.length; i += 3) {
    const key = args[i]!;
    if (key === '') throw new InstructionError(`${KW} names can not be blank`);
    pairs.push({ key, value: args[i + 1]! });
  }
  return pairs;
}

function argDeclarations(args: string[]): { key: string; value?: string }[] {
  if (args.length === 0) throw new InstructionError('ARG requires at least one argument');
  return args.map((word) => {
    const eq = word.indexOf('=');
    const key = eq < 0 ? word : word.slice(0, eq);
    if (key === '') throw new InstructionError(`ARG names can not be blank (in ${goQuote(word)})`);
    return eq < 0 ? { key } : { key, value: word.slice(eq + 1) };
  });
}

function stopSignal(args: string[]): string {
  const signal = exactlyOne('STOPSIGNAL', args);
  // A signal that comes from a variable is checked once expanded.
  if (!signal.includes('$') && parseSignal(signal) === null) {
    throw new InstructionError(
      `invalid STOPSIGNAL ${goQuote(signal)}: expected a signal name (SIGTERM, TERM…) or number`,
    );
  }
  return signal;
}

function volumePaths(args: string[]): string[] {
  if (args.length === 0) throw new InstructionError('VOLUME requires at least one argument');
  const paths = args.map(goTrimSpace);
  if (paths.includes('')) throw new InstructionError('VOLUME specified can not be an empty string');
  return paths;
}

function onbuildInstruction(node: AstNode, base: Base): Instruction {
  const sub = node.sub;
  if (!sub) throw new InstructionError('ONBUILD requires at least one argument');
  const trigger = goToLower(sub.keyword);
  if (trigger === 'onbuild') throw new InstructionError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  if (trigger === 'from' || trigger === 'maintainer') {
    throw new InstructionError(`${sub.keyword.toUpperCase()} isn't allowed as an ONBUILD trigger`);
  }
  // The expression is what the image config stores; BuildKit appends heredoc bodies and terminators.
  let expression = node.original.replace(/^[\t\n\f\r ]*onbuild[\t\n\f\r ]*/i, '');
  for (const h of node.heredocs) expression += `\n${h.content}${h.name}`;
  let parsed: Instruction;
  try {
    parsed = instructionFromNode({ ...sub, heredocs: node.heredocs });
  } catch (err) {
    if (err instanceof InstructionError || err instanceof FlagError) {
      throw new InstructionError(`ONBUILD ${sub.keyword.toUpperCase()}: ${err.message}`);
    }
    throw err;
  }
  return make<OnbuildInstruction>(base, { kind: 'onbuild', expression, trigger: parsed });
}

function copyOrAdd(kind: 'copy' | 'add', node: AstNode, base: Base): Instruction {
  const KW = kind.toUpperCase();
  const args = node.args;
  if (args.length < 2) {
    throw new InstructionError(
      args.length === 0
        ? `${KW} requires at least two arguments: one or more sources and a destination`
        : `${KW} requires at least two arguments, but only one was provided. Destination could not be determined`,
    );
  }
  const dest = args.at(-1)!;
  if (!node.json && heredocWord(dest)) throw new InstructionError(`${KW} cannot accept a heredoc as a destination`);
  const sources: string[] = [];
  const inline: InlineSource[] = [];
  for (const src of args.slice(0, -1)) {
    // In exec (JSON) form nothing is a heredoc: a source named "<<EOF" is a path.
    const spec = node.json ? null : heredocWord(src);
    if (!spec) {
      if (kind === 'copy' && /^https?:\/\//i.test(src)) throw new InstructionError("source can't be a URL for COPY");
      sources.push(src);
      continue;
    }
    const body = node.heredocs.findLast((h) => h.name === spec.name)?.content ?? '';
    inline.push({ name: spec.name, content: spec.chomp ? chompHeredoc(body) : body, expand: spec.expand });
  }
  const flags = base.flags;
  const link = lastFlag(flags, 'link') === 'true';
  const exclude = flags['exclude'] ?? [];
  let ins: CopyInstruction | AddInstruction;
  if (kind === 'copy') {
    const parents = lastFlag(flags, 'parents') === 'true';
    ins = make<CopyInstruction>(base, { kind, sources, inline, dest, link, parents, exclude });
    setIf(ins, 'from', lastFlag(flags, 'from'));
  } else {
    const keepGitDir = lastFlag(flags, 'keep-git-dir') === 'true';
    ins = make<AddInstruction>(base, { kind, sources, inline, dest, link, keepGitDir, exclude });
    setIf(ins, 'checksum', lastFlag(flags, 'checksum'));
    const unpack = lastFlag(flags, 'unpack');
    if (unpack !== undefined) ins.unpack = unpack === 'true';
  }
  setIf(ins, 'chown', lastFlag(flags, 'chown'));
  setIf(ins, 'chmod', lastFlag(flags, 'chmod'));
  return ins;
}

/**
 * make completes an instruction: the common fields first, then the instruction's own. (Object.assign onto the fresh
 * base, not an object spread: spreads are markedly slower in V8 and a 10 MB Dockerfile has ~350k instructions.)
 */
function make<T extends Instruction>(base: Base, fields: Omit<T, keyof Base>): T {
  return Object.assign(base, fields) as T;
}

/** setIf sets an optional field only when there is a value, so absent options stay absent keys. */
function setIf<T, K extends keyof T>(obj: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) obj[key] = value;
}

function exactlyOne(KW: string, args: readonly string[]): string {
  if (args.length !== 1) throw new InstructionError(`${KW} requires exactly one argument`);
  return args[0]!;
}

function commandLine(node: AstNode): CommandLine {
  return node.json ? { form: 'exec', args: [...node.args] } : { form: 'shell', script: node.args.join(' ') };
}

function heredocBody(h: Heredoc): HeredocBody {
  return {
    name: h.name,
    content: h.chomp ? chompHeredoc(h.content) : h.content,
    expand: h.expand,
    chomp: h.chomp,
    fd: h.fd,
  };
}

function heredocWord(word: string): HeredocSpec | null {
  try {
    return parseHeredocWord(word);
  } catch {
    return null;
  }
}

const MIN_DURATION_NS = 1_000_000; // 1ms, Docker's container.MinimumDuration

/** healthConfig builds the image-config Healthcheck of a HEALTHCHECK node (NONE or CMD, with its flags). */
function healthConfig(node: AstNode, flags: Flags): HealthConfig {
  const args = node.args;
  if (args.length === 0) throw new InstructionError('HEALTHCHECK requires at least one argument');
  const type = args[0]!.toUpperCase();
  const rest = args.slice(1);
  if (type === 'NONE') {
    if (rest.length > 0) throw new InstructionError('HEALTHCHECK NONE takes no arguments');
    return { Test: ['NONE'] };
  }
  if (type !== 'CMD') throw new InstructionError(`Unknown type ${goQuote(type)} in HEALTHCHECK (try CMD)`);
  if (rest.length === 0) throw new InstructionError('Missing command after HEALTHCHECK CMD');
  const health: HealthConfig = { Test: node.json ? ['CMD', ...rest] : ['CMD-SHELL', rest.join(' ')] };
  const durations = [
    ['interval', 'Interval'],
    ['timeout', 'Timeout'],
    ['start-period', 'StartPeriod'],
    ['start-interval', 'StartInterval'],
  ] as const;
  for (const [flag, field] of durations) {
    const value = flags[flag]?.at(-1);
    if (value === undefined || value === '') continue;
    let ns: number;
    try {
      ns = parseGoDuration(value);
    } catch (err) {
      if (err instanceof DurationError) throw new InstructionError(`HEALTHCHECK --${flag}: ${err.message}`);
      throw err;
    }
    if (ns === 0) continue;
    if (ns < MIN_DURATION_NS)
      throw new InstructionError(`HEALTHCHECK --${flag} cannot be less than 1ms (got ${value})`);
    health[field] = ns;
  }
  const retries = flags['retries']?.at(-1);
  if (retries !== undefined && retries !== '') {
    const n = /^[+-]?[0-9]+$/.test(retries) ? Number(retries) : NaN;
    if (!Number.isInteger(n) || n > 2 ** 31 - 1 || n < -(2 ** 31)) {
      throw new InstructionError(`HEALTHCHECK --retries must be a whole number, not ${goQuote(retries)}`);
    }
    if (n < 0) throw new InstructionError(`HEALTHCHECK --retries cannot be negative (${n})`);
    if (n > 0) health.Retries = n;
  }
  return health;
}

// Typed Dockerfile instructions: what builder/dockerfile/parse.ts produces and the planner consumes.
//
// Values are as written, quotes included: expansion (ARG/ENV, quote removal) happens later with the environment of
// the step, using builder/dockerfile/expand.ts (`expandWord` for one value, `expandWords` for lists). Instructions that BuildKit
// expands: ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR (and ONBUILD triggers when they
// run); RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK are never expanded by the builder.

import type { HealthConfig } from '../../layers/model/types.js';
import type { Flags } from './flags.js';
import type { InlineFile } from './heredoc.js';

export type { Flags } from './flags.js';
export type { InlineFile } from './heredoc.js';

interface InstructionBase {
  /** The keyword as written (`run`, `RUN`…). */
  keyword: string;
  /** 1-based first line. */
  line: number;
  /** 1-based last line (continuations, heredoc bodies and terminators included). */
  endLine: number;
  /** The logical line as written: continuations joined, comments inside them dropped, without heredoc bodies. */
  raw: string;
  /** The validated `--flags` (name without `--` → values in order; booleans hold "true"/"false"). */
  flags: Flags;
}

/** CommandLine is exec form (a JSON array, run as is) or shell form (one string for the SHELL, default /bin/sh -c). */
export type CommandLine = { form: 'exec'; args: string[] } | { form: 'shell'; script: string };

/** HeredocBody is one `<<NAME` body of an instruction. */
export interface HeredocBody {
  name: string;
  /** The body, line endings as in the file, leading tabs already stripped when `chomp`. */
  content: string;
  /** False when the name was quoted: the body must not be expanded. */
  expand: boolean;
  /** Written `<<-NAME`. */
  chomp: boolean;
  /** The file descriptor before `<<` (`3<<EOF`), 0 when none. */
  fd: number;
}

/** KeyValue is one ENV or LABEL assignment (key and value unexpanded, quotes kept). */
export interface KeyValue {
  key: string;
  value: string;
}

export interface FromInstruction extends InstructionBase {
  kind: 'from';
  image: string;
  /** The stage name after AS, lowercased (stage names are case-insensitive). */
  stage?: string;
  /** --platform, unexpanded. */
  platform?: string;
}

export interface RunInstruction extends InstructionBase {
  kind: 'run';
  /** The command as written (`<<EOF` words included). */
  command: CommandLine;
  /** What to run: `command` with heredocs applied (builder/dockerfile/heredoc.ts runHeredocScript); `command` when none. */
  exec: CommandLine;
  /** Files to mount read-only before running (a `#!` heredoc becomes /dev/pipes/NAME, mode 0755). */
  files: InlineFile[];
  heredocs: HeredocBody[];
  /** --mount values, unexpanded and unparsed. */
  mounts: string[];
  network?: string;
  security?: string;
}

export interface CmdInstruction extends InstructionBase {
  kind: 'cmd';
  command: CommandLine;
}

export interface EntrypointInstruction extends InstructionBase {
  kind: 'entrypoint';
  command: CommandLine;
}

export interface ShellInstruction extends InstructionBase {
  kind: 'shell';
  shell: string[];
}

export interface EnvInstruction extends InstructionBase {
  kind: 'env';
  pairs: KeyValue[];
  /** Written `ENV key value` (one pair, the value is the rest of the line): deprecated but valid. */
  legacy: boolean;
}

export interface LabelInstruction extends InstructionBase {
  kind: 'label';
  pairs: KeyValue[];
  legacy: boolean;
}

export interface ArgInstruction extends InstructionBase {
  kind: 'arg';
  /** Each declared ARG; `value` is the default when written `NAME=value` (possibly ""). */
  args: { key: string; value?: string }[];
}

export interface ExposeInstruction extends InstructionBase {
  kind: 'expose';
  /** As written: `80`, `80/tcp`, `8000-8010/udp`, `$PORT`. */
  ports: string[];
}

export interface UserInstruction extends InstructionBase {
  kind: 'user';
  user: string;
}

export interface WorkdirInstruction extends InstructionBase {
  kind: 'workdir';
  path: string;
}

export interface VolumeInstruction extends InstructionBase {
  kind: 'volume';
  paths: string[];
}

export interface StopsignalInstruction extends InstructionBase {
  kind: 'stopsignal';
  signal: string;
}

export interface MaintainerInstruction extends InstructionBase {
  kind: 'maintainer';
  maintainer: string;
}

export interface HealthcheckInstruction extends InstructionBase {
  kind: 'healthcheck';
  /** The image-config value: Test is ["NONE"], ["CMD", …] (exec form) or ["CMD-SHELL", script]; durations in ns
   *  (0 = runtime default); Retries 0 = default. */
  health: HealthConfig;
}

export interface OnbuildInstruction extends InstructionBase {
  kind: 'onbuild';
  /** The trigger as stored in the image config (`RUN echo hi`; heredoc bodies appended as BuildKit does). */
  expression: string;
  /** The trigger, parsed and checked now (it runs when an image is built FROM this one). */
  trigger: Instruction;
}

/** InlineSource is a COPY/ADD source given as a heredoc (`COPY <<EOF /etc/motd`). */
export interface InlineSource {
  /** The heredoc name: the file name when the destination is a directory. */
  name: string;
  content: string;
  /** Expand ARG/ENV in the content (the name was not quoted). */
  expand: boolean;
}

export interface CopyInstruction extends InstructionBase {
  kind: 'copy';
  /** Source paths or patterns as written (heredoc sources are in `inline`). */
  sources: string[];
  inline: InlineSource[];
  dest: string;
  from?: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  parents: boolean;
  exclude: string[];
}

export interface AddInstruction extends InstructionBase {
  kind: 'add';
  /** Source paths, URLs or git references as written (heredoc sources are in `inline`). */
  sources: string[];
  inline: InlineSource[];
  dest: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  keepGitDir: boolean;
  checksum?: string;
  exclude: string[];
  /** --unpack: undefined = default (local archives are unpacked, URLs are not). */
  unpack?: boolean;
}

export type Instruction =
  | FromInstruction
  | RunInstruction
  | CmdInstruction
  | EntrypointInstruction
  | ShellInstruction
  | EnvInstruction
  | LabelInstruction
  | ArgInstruction
  | ExposeInstruction
  | UserInstruction
  | WorkdirInstruction
  | VolumeInstruction
  | StopsignalInstruction
  | MaintainerInstruction
  | HealthcheckInstruction
  | OnbuildInstruction
  | CopyInstruction
  | AddInstruction;

export type InstructionKind = Instruction['kind'];

/** INSTRUCTION_KINDS lists every keyword tsbuild understands, lowercase. */
export const INSTRUCTION_KINDS: readonly InstructionKind[] = [
  'from',
  'run',
  'cmd',
  'entrypoint',
  'shell',
  'env',
  'label',
  'arg',
  'expose',
  'user',
  'workdir',
  'volume',
  'stopsignal',
  'maintainer',
  'healthcheck',
  'onbuild',
  'copy',
  'add',
];

// The command line checked before sade sees it, with docker's rules: the command word, unknown flags, flags that
// need a value and flags that take none. The flags come from the sade table in main.ts (one source of truth): a
// flag takes a value unless its default is a boolean or its name starts with `no-` (mri reads `--no-cache` as
// cache=false). Nothing here prints; a bad command line is an InvalidInputError with docker's wording
// (`unknown flag: --bogus`, `flag needs an argument: --tag`) and the hint `See 'tsbuild build --help'.`.
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Sade } from 'sade';
import { InvalidInputError } from '../sys/errors.js';

/** FlagSpec is one declared flag: its long name, its one-letter alias, and whether it takes a value. */
export interface FlagSpec {
  name: string;
  short?: string;
  takesValue: boolean;
}

/** CommandSpec is a command of the table, its aliases and its own flags (the global ones are apart). */
export interface CommandSpec {
  name: string;
  aliases: string[];
  flags: FlagSpec[];
  /** its positionals as declared (`<source> <target>`, `[context]`): the required ones, then the optional ones */
  required: string[];
  optional: string[];
}

export interface CommandTable {
  bin: string;
  global: FlagSpec[];
  commands: CommandSpec[];
  /** the command run when the first word is not a command (`tsbuild .` builds) */
  defaultCommand: string;
}

/** ParsedLine is the command line with the command word first, ready for sade. */
export interface ParsedLine {
  /** the command's name ('' for `tsbuild --help` / `tsbuild --version` without a command) */
  command: string;
  /** the arguments after the program name, the command word first (sade's argv minus node and the script) */
  args: string[];
}

/** FlagError is a command line that does not fit the table; `command` is the command it was read for ('' if none). */
export class FlagError extends InvalidInputError {
  constructor(
    message: string,
    hint: string,
    readonly command: string,
  ) {
    super(message, hint);
  }
}

/** The flags every command takes from sade itself. */
const HELP: FlagSpec = { name: 'help', short: 'h', takesValue: false };
const VERSION: FlagSpec = { name: 'version', short: 'v', takesValue: false };

/** What sade keeps of a command (its tree is not in its type declarations). */
interface SadeEntry {
  alibi: string[];
  usage: string;
  options: Array<[string, string, unknown?]>;
  default: Record<string, unknown>;
}

/** commandTable reads the commands and flags declared on a sade program. */
export function commandTable(prog: Sade): CommandTable {
  const p = prog as unknown as { bin: string; default: string; tree: Record<string, SadeEntry | string> };
  const flagsOf = (e: SadeEntry): FlagSpec[] =>
    e.options.map(([spelling]) => {
      const m = /^(?:-([^-\s,]), )?--(\S+)$/.exec(spelling);
      if (!m) throw new Error(`cannot read the flag ${JSON.stringify(spelling)}`);
      const name = m[2] as string;
      const takesValue = typeof e.default[name] !== 'boolean' && !name.startsWith('no-');
      return { name, ...(m[1] ? { short: m[1] } : {}), takesValue };
    });
  const commands: CommandSpec[] = [];
  for (const [name, e] of Object.entries(p.tree)) {
    if (typeof e === 'string' || name.startsWith('__')) continue;
    const words = e.usage.split(/\s+/).slice(1);
    commands.push({
      name,
      aliases: [...e.alibi],
      flags: flagsOf(e),
      required: words.filter((w) => w.startsWith('<')),
      optional: words.filter((w) => w.startsWith('[')),
    });
  }
  const all = p.tree.__all__;
  return { bin: p.bin, global: typeof all === 'object' ? flagsOf(all) : [], commands, defaultCommand: p.default };
}

export interface ParseOptions {
  /** the token that stands for a lone `-` (main.ts hides it from mri) */
  stdin?: string;
  /** where a first word is looked for as a build context (default: the working directory) */
  cwd?: string;
  /** commands whose words after that many positionals belong to something else (`run IMAGE CMD…`: 1) */
  argsAfter?: Readonly<Record<string, number>>;
  /** per command, docker flags that are not implemented, and why (`--cache-from is not supported yet (…)`) */
  unsupported?: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** commands whose last positional repeats (`rm NAME…`): any number of them past the declared ones */
  variadic?: readonly string[];
}

/**
 * parseCommandLine finds the command word (flags may come before it: `tsbuild --root R images`), checks every flag
 * up to `--` against that command's flags and the global ones, and returns the line with the command word first and
 * every flag in its long spelling (`-it` → `--interactive --tty`), so that sade never reads `-v` as --version.
 * A first word that is not a command is the build context of the default command when it names something on disk,
 * is `-` (`o.stdin`), or looks like a path (`./x`, `a/b`, `.`); any other word is an unknown command, as in docker.
 * `o.argsAfter` names the commands whose trailing words belong to something else (`run IMAGE CMD ARG…`: 1): a `--`
 * is put after that many positionals and nothing past it is checked. Throws InvalidInputError.
 */
export function parseCommandLine(table: CommandTable, args: readonly string[], o: ParseOptions = {}): ParsedLine {
  const byWord = new Map<string, CommandSpec>();
  for (const c of table.commands) for (const w of [c.name, ...c.aliases]) byWord.set(w, c);
  const dflt = byWord.get(table.defaultCommand);
  // Finding the command word: skip the flags' values, reading a flag as the global table, else the default
  // command, else any command that declares it does.
  const lookup = [table.global, dflt?.flags ?? [], ...table.commands.map((c) => c.flags)];
  let word = -1;
  const end = args.indexOf('--') < 0 ? args.length : args.indexOf('--');
  for (let i = 0; i < end; i++) {
    const a = args[i] as string;
    if (!isFlag(a, o.stdin)) {
      word = i;
      break;
    }
    if (a.includes('=')) continue;
    const spec = a.startsWith('--')
      ? findIn(lookup, (f) => f.name === a.slice(2))
      : findIn(lookup, (f) => f.short === a.slice(-1));
    if (spec?.takesValue) i++;
  }
  const first = word < 0 ? undefined : (args[word] as string);
  let cmd = first === undefined ? undefined : byWord.get(first);
  if (cmd) {
    const rest = [...args.slice(0, word), ...args.slice(word + 1)];
    return { command: cmd.name, args: [cmd.name, ...checkArity(table, cmd, normalize(table, cmd, rest, o), o)] };
  }
  if (first !== undefined && !looksLikeContext(first, o)) {
    // a flag before the word may be what went wrong (`tsbuild --ssh default .`): say so first
    if (dflt) normalize(table, dflt, args.slice(0, word), o);
    throw unknownCommand(table, first);
  }
  const wantsMeta = args.slice(0, end).some((a) => ['-h', '--help', '-v', '--version'].includes(a));
  // `tsbuild --help`, `tsbuild --version`: sade answers them for the program
  if (first === undefined && wantsMeta) return { command: '', args: normalize(table, undefined, args, o) };
  cmd = dflt;
  if (!cmd) throw unknownCommand(table, first ?? '');
  return { command: cmd.name, args: [cmd.name, ...checkArity(table, cmd, normalize(table, cmd, args, o), o)] };
}

/**
 * checkArity counts the positionals of a normalized command line against the command's usage, with docker's
 * wording: `"tsbuild images" requires at most 1 argument.`, `"tsbuild tag" requires exactly 2 arguments.`, `"tsbuild
 * prune" accepts no arguments.`; the hint adds the usage. The words after the positionals of a command in
 * `o.argsAfter` (`run IMAGE CMD…`) belong to something else and are not counted. Returns `line` unchanged.
 */
function checkArity(table: CommandTable, cmd: CommandSpec, line: string[], o: ParseOptions): string[] {
  if (line.includes('--help')) return line;
  const flags = [...table.global, ...cmd.flags, HELP];
  const after = o.argsAfter?.[cmd.name];
  let count = 0;
  for (let i = 0; i < line.length; i++) {
    const a = line[i] as string;
    if (a === '--') {
      count += after ? 0 : line.length - i - 1;
      break;
    }
    if (!isFlag(a, o.stdin)) {
      count++;
      continue;
    }
    // normalize spelled every flag long: `--name value` or `--name=value`
    const spec = flags.find((f) => f.name === a.slice(2));
    if (spec?.takesValue) i++;
  }
  const min = cmd.required.length;
  const max = after || o.variadic?.includes(cmd.name) ? Infinity : min + cmd.optional.length;
  if (count >= min && count <= max) return line;
  const n = (k: number): string => `${k} argument${k === 1 ? '' : 's'}`;
  const what =
    max === 0
      ? 'accepts no arguments'
      : min === max
        ? `requires exactly ${n(min)}`
        : max === Infinity
          ? `requires at least ${n(min)}`
          : min === 0
            ? `requires at most ${n(max)}`
            : `requires at least ${min} and at most ${n(max)}`;
  const path = `${table.bin} ${cmd.name}`;
  const last = cmd.required.at(-1);
  const more = max === Infinity ? [after || !last ? '[ARG...]' : `[${last.slice(1, -1)}...]`] : [];
  const usage = [path, ...cmd.required, ...cmd.optional, ...more].join(' ');
  throw new FlagError(`"${path}" ${what}.`, `See '${path} --help'. Usage: ${usage}`, cmd.name);
}

/** mriTypes are the string and boolean flag names of a command, for sade's parser (mri). */
export function mriTypes(table: CommandTable, command: string): { string: string[]; boolean: string[] } {
  const cmd = table.commands.find((c) => c.name === command);
  const flags = [...table.global, ...(cmd?.flags ?? [])];
  const names = (f: FlagSpec): string[] => (f.short ? [f.name, f.short] : [f.name]);
  return {
    string: flags.filter((f) => f.takesValue).flatMap(names),
    boolean: flags.filter((f) => !f.takesValue && !f.name.startsWith('no-')).flatMap(names),
  };
}

/** normalize checks the flags of a command line (the command word taken out) and spells each one long. */
function normalize(
  table: CommandTable,
  cmd: CommandSpec | undefined,
  args: readonly string[],
  o: ParseOptions,
): string[] {
  const flags = [...table.global, ...(cmd?.flags ?? []), HELP, ...(cmd ? [] : [VERSION])];
  const path = cmd ? `${table.bin} ${cmd.name}` : table.bin;
  const fail = (message: string): never => {
    throw new FlagError(message, `See '${path} --help'.`, cmd?.name ?? '');
  };
  const boolValue = (v: string, shown: string): void => {
    if (v !== 'true' && v !== 'false')
      fail(`invalid argument ${JSON.stringify(v)} for "${shown}" flag: it takes no value (or true, false)`);
  };
  const out: string[] = [];
  let positionals = (cmd && o.argsAfter?.[cmd.name]) || Infinity;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--') return [...out, ...args.slice(i)];
    if (!isFlag(a, o.stdin)) {
      out.push(a);
      if (--positionals === 0) {
        const tail = args.slice(i + 1);
        return [...out, ...(tail[0] === '--' ? [] : ['--']), ...tail];
      }
      continue;
    }
    const next = args[i + 1];
    const hasNext = next !== undefined && next !== '--' && !isFlag(next, o.stdin);
    if (a.startsWith('---')) fail(`bad flag syntax: ${a}`);
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const value = eq < 0 ? undefined : a.slice(eq + 1);
      const spec = flags.find((f) => f.name === name);
      const why = cmd && o.unsupported?.[cmd.name]?.[name];
      if (!spec && why) return fail(`--${name} ${why}`);
      if (!spec) return fail(`unknown flag: --${name}`);
      out.push(a);
      if (!spec.takesValue) {
        if (value !== undefined && name.startsWith('no-')) fail(`flag --${name} takes no value`);
        if (value !== undefined) boolValue(value, `--${name}`);
      } else if (value === '' || (value === undefined && !hasNext)) fail(`flag needs an argument: --${name}`);
      else if (value === undefined) out.push(args[++i] as string);
      continue;
    }
    // -abc: one-letter flags, the last of which may take a value (`-t x`, `-t=x`)
    const eq = a.indexOf('=');
    const letters = [...a.slice(1, eq < 0 ? undefined : eq)];
    const value = eq < 0 ? undefined : a.slice(eq + 1);
    for (const [k, letter] of letters.entries()) {
      const spec = flags.find((f) => f.short === letter);
      const last = k === letters.length - 1;
      if (!spec)
        return fail(letters.length === 1 ? `unknown flag: -${letter}` : `unknown shorthand flag: '${letter}' in ${a}`);
      if (spec.takesValue) {
        if (!last || value === '' || (value === undefined && !hasNext))
          fail(`flag needs an argument: '${letter}' in ${a}`);
        if (value === undefined) out.push(`--${spec.name}`, args[++i] as string);
        else out.push(`--${spec.name}=${value}`);
      } else {
        if (last && value !== undefined) boolValue(value, `-${letter}`);
        out.push(last && value !== undefined ? `--${spec.name}=${value}` : `--${spec.name}`);
      }
    }
  }
  return out;
}

function isFlag(a: string, stdin?: string): boolean {
  return a.startsWith('-') && a !== '-' && a !== stdin;
}

function findIn(tables: FlagSpec[][], pred: (f: FlagSpec) => boolean): FlagSpec | undefined {
  for (const t of tables) {
    const f = t.find(pred);
    if (f) return f;
  }
  return undefined;
}

function looksLikeContext(word: string, o: { stdin?: string; cwd?: string }): boolean {
  if (word === '-' || word === o.stdin || word.includes('/') || word.startsWith('.')) return true;
  return statSync(resolve(o.cwd ?? '.', word), { throwIfNoEntry: false }) !== undefined;
}

function unknownCommand(table: CommandTable, word: string): FlagError {
  const words = table.commands.flatMap((c) => [c.name, ...c.aliases]);
  const near = words
    .map((w) => ({ w, d: distance(word, w) }))
    .filter(({ w, d }) => d <= Math.max(1, Math.min(2, w.length - 2)) || (word.length >= 2 && w.startsWith(word)))
    .sort((x, y) => x.d - y.d)[0];
  const suggest = near ? `did you mean ${near.w}? ` : '';
  return new FlagError(`'${word}' is not a ${table.bin} command`, `${suggest}See '${table.bin} --help'.`, '');
}

/** distance is the Levenshtein distance of two short words. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost));
    }
    prev = row;
  }
  return prev[b.length] as number;
}

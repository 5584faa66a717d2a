// Heredocs in RUN, COPY and ADD (also under ONBUILD): finding `<<EOF` words on an instruction line, reading their
// bodies is the AST parser's job (builder/dockerfile/ast.ts); here are the word rules and what a RUN does with its bodies.
//
// BuildKit rules: a heredoc word is `[fd]<<[-]NAME` as a whole shell word (so `cat<<EOF` is not one); the name is
// the word with quotes and escapes removed; any quoting in the name turns expansion of the body off; `<<-` strips
// leading tabs from the body lines and from the terminator line.

import { lexWord } from './expand.js';

/** HeredocSpec is what a `<<NAME` word says. */
export interface HeredocSpec {
  /** The terminator, quotes and escapes removed. */
  name: string;
  /** False when the name was quoted (`<<"EOF"`, `<<'EOF'`, `<<E"O"F`): the body is not expanded. */
  expand: boolean;
  /** `<<-`: leading tabs are stripped from body lines and the terminator. */
  chomp: boolean;
  /** The file descriptor written before `<<` (`3<<EOF`), 0 when none. */
  fd: number;
}

/** Heredoc is a heredoc with its body as read from the file: raw, line endings kept, not chomped. */
export interface Heredoc extends HeredocSpec {
  content: string;
}

const heredocWordRe = /^([0-9]*)<<(-?)([^<]*)$/;

/** HeredocError is a heredoc word the shell lexer cannot read. */
export class HeredocError extends Error {}

/** parseHeredocWord recognises one shell word as a heredoc opener, or returns null. Throws HeredocError. */
export function parseHeredocWord(word: string): HeredocSpec | null {
  const m = heredocWordRe.exec(word);
  if (!m) return null;
  const rest = m[3]!;
  if (rest === '') return null;
  const fd = m[1] === '' ? 0 : Number.parseInt(m[1]!, 10);
  let words: string[];
  let rawWords: string[];
  try {
    words = lexWord(rest, {}, { skipUnsetEnv: true }).words;
    if (words.length !== 1) return null;
    rawWords = lexWord(rest, {}, { skipUnsetEnv: true, rawQuotes: true }).words;
  } catch (err) {
    throw new HeredocError(`invalid heredoc ${word}: ${(err as Error).message}`);
  }
  if (rawWords.length !== words.length) throw new HeredocError(`invalid heredoc ${word}: inconsistent quoting`);
  const name = words[0]!;
  return {
    name,
    expand: quoteCount(name) === quoteCount(rawWords[0]!),
    chomp: m[2] === '-',
    fd: Number.isSafeInteger(fd) && fd <= 0xffffffff ? fd : 0,
  };
}

function quoteCount(s: string): number {
  let n = 0;
  for (const ch of s) if (ch === '"' || ch === "'") n++;
  return n;
}

/**
 * heredocsFromLine lists the heredoc openers of an instruction line, in order. The line is split into shell words
 * with `\` as the escape character whatever the `# escape=` directive says (as BuildKit does); a line the lexer
 * cannot split (an unterminated quote) has no heredocs.
 */
export function heredocsFromLine(line: string): HeredocSpec[] {
  let words: string[];
  try {
    words = lexWord(line, {}, { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true }).words;
  } catch {
    return [];
  }
  const out: HeredocSpec[] = [];
  for (const word of words) {
    const spec = parseHeredocWord(word);
    if (spec) out.push(spec);
  }
  return out;
}

/** chompHeredoc strips the leading tabs of every line of a `<<-` body. */
export function chompHeredoc(content: string): string {
  return content
    .split('\n')
    .map((l) => l.replace(/^\t+/, ''))
    .join('\n');
}

/** isHeredocTerminator says whether a raw body line (newline included) ends the heredoc. */
export function isHeredocTerminator(rawLine: string, spec: HeredocSpec): boolean {
  let text = rawLine.replace(/[\r\n]+$/, '');
  if (spec.chomp) text = text.replace(/^\t+/, '');
  return text === spec.name;
}

/** InlineFile is a file a RUN step needs mounted before it runs (a `#!` heredoc). */
export interface InlineFile {
  path: string;
  content: string;
  mode: number;
}

/**
 * runHeredocScript turns a shell-form RUN with heredocs into what the shell runs, as BuildKit does:
 * - `RUN <<EOF` alone, body starting with `#!`: the (chomped) body becomes an executable file at
 *   /dev/pipes/EOF and the script is that path;
 * - `RUN <<EOF` alone otherwise: the script is the (chomped) body;
 * - anything else (`RUN cat <<A > f`, several heredocs): the command line followed, for each heredoc, by a newline,
 *   its raw body and its terminator, so the shell reads the heredocs itself.
 * The expand flag is ignored here, as in BuildKit (RUN bodies are never expanded by the builder).
 */
export function runHeredocScript(command: string, heredocs: Heredoc[]): { script: string; file?: InlineFile } {
  const first = heredocs[0];
  let single: HeredocSpec | null;
  try {
    single = parseHeredocWord(command);
  } catch {
    single = null;
  }
  if (first && single) {
    const body = first.chomp ? chompHeredoc(first.content) : first.content;
    if (body.startsWith('#!')) {
      const path = `/dev/pipes/${first.name}`;
      return { script: path, file: { path, content: body, mode: 0o755 } };
    }
    return { script: body };
  }
  let script = command;
  for (const h of heredocs) script += `\n${h.content}${h.name}`;
  return { script };
}

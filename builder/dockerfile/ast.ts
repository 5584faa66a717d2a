// The Dockerfile parse tree: BuildKit's line model, before any instruction semantics. One node per instruction with
// its keyword as written, its `--flags`, its arguments split the way BuildKit's parser splits them for that keyword,
// its line range and its heredoc bodies. builder/dockerfile/ast-dump.ts prints it in BuildKit's S-expression form and
// builder/dockerfile/parse.ts builds typed instructions from it.
//
// Why this is not dockerfile-ast: that package (the project's choice for Dockerfile structure) models a Dockerfile
// for an editor, and its line model differs from BuildKit's exactly where the parser goldens look. On the corpus it
// joins `ENV C trailing\\` with the next line (testfile trailing-backslash), drops the whitespace kept from a
// continuation line that holds only ` \` (continueIndent: "echo hi   world"), keeps `--` as a flag and does not
// read flags on CMD (flags), and takes `<<-` from any heredoc on a line to apply to all of them. Working around
// each of these means re-deriving every logical line from the raw text anyway, so the line model (continuations,
// comments inside them, directives, flags, heredoc bodies) is ours, written from BuildKit's documented behaviour
// and checked against its corpora. It was removed from the dependencies.

import { DockerfileError } from './errors.js';
import { DirectiveError, DirectiveScanner, trimContinuation, type Directive } from './directives.js';
import { goQuote, goToLower, goTrimLeftSpace, goTrimSpace, isGoSpace, utf8Length } from './go-strings.js';
import { heredocsFromLine, HeredocError, isHeredocTerminator, type Heredoc } from './heredoc.js';

/** AstNode is one instruction as BuildKit's parser sees it. */
export interface AstNode {
  /** The instruction keyword exactly as written (`run`, `RUN`, `Run`…); unknown keywords are kept too. */
  keyword: string;
  /** The leading `--name[=value]` words, quotes removed (`--` ends them and is not kept). */
  flags: string[];
  /** The arguments, split as the keyword's BuildKit line parser splits them (for ENV and LABEL: key, value, sep). */
  args: string[];
  /** The arguments came from a JSON array (exec form). */
  json: boolean;
  /** ONBUILD's trigger instruction. */
  sub?: AstNode;
  /** The logical line: continuation lines joined, comments inside them dropped, without heredoc bodies. */
  original: string;
  /** 1-based first line. */
  startLine: number;
  /** 1-based last line, heredoc bodies and terminators included. */
  endLine: number;
  /** Heredoc bodies in the order their `<<NAME` words appear (RUN, COPY, ADD, or those under ONBUILD). */
  heredocs: Heredoc[];
}

/** ParseWarning is something the user should hear about that does not stop the build. */
export interface ParseWarning {
  file: string;
  line: number;
  /** A stable name: EmptyContinuationLine, SyntaxDirective, CheckDirective, LegacyKeyValueFormat, MaintainerDeprecated. */
  code: string;
  message: string;
}

export interface AstResult {
  nodes: AstNode[];
  /** The escape character in force (`\` unless `# escape=` said otherwise). */
  escape: string;
  directives: Directive[];
  warnings: ParseWarning[];
}

/** The longest line BuildKit reads (bufio.MaxScanTokenSize - 1 bytes, newline excluded). */
export const MAX_LINE_BYTES = 65535;

/** NodeError is a line BuildKit's parser rejects; parseAst adds the file and line. */
class NodeError extends Error {}

/**
 * parseAst reads a Dockerfile into parse-tree nodes with BuildKit's line rules. Throws DockerfileError (naming
 * `file:line`) for a bad directive, a line over 65535 bytes, ENV/LABEL without a value, a JSON array holding
 * something other than strings, an unterminated heredoc, or a file with no instructions.
 */
export function parseAst(text: string, opts: { file?: string } = {}): AstResult {
  const file = opts.file ?? 'Dockerfile';
  const lines = splitLines(text);
  const directives = new DirectiveScanner();
  const nodes: AstNode[] = [];
  const warnings: ParseWarning[] = [];
  const fail = (line: number, reason: string, endLine?: number): DockerfileError =>
    new DockerfileError({ file, line, reason, ...(endLine === undefined ? {} : { endLine }) });

  let i = 0; // lines consumed = number of the last line read
  const readLine = (): string => {
    let raw = lines[i]!;
    i++;
    if (i === 1 && raw.startsWith('\ufeff')) raw = raw.slice(1);
    if (raw.length * 3 > MAX_LINE_BYTES && utf8Length(trimLineFeed(raw)) > MAX_LINE_BYTES) {
      throw fail(i, `line is longer than the maximum of ${MAX_LINE_BYTES} bytes`);
    }
    return raw;
  };

  while (i < lines.length) {
    const token = goTrimLeftSpace(trimNewline(readLine()));
    try {
      directives.observe(token, i);
    } catch (err) {
      if (err instanceof DirectiveError) throw fail(i, err.message);
      throw err;
    }
    const startLine = i;
    let { text: line, continues } = trimContinuation(token.startsWith('#') ? '' : token, directives.escape);
    if (!continues && line === '') continue;

    let emptyContinuation = 0;
    while (continues && i < lines.length) {
      const raw = trimNewline(readLine());
      const left = goTrimLeftSpace(raw);
      // Comment lines inside a continuation are dropped; so are blank ones (with a warning, as BuildKit does).
      if (left.startsWith('#')) continue;
      if (left === '') {
        emptyContinuation ||= i;
        continue;
      }
      const part = trimContinuation(raw, directives.escape);
      line += part.text;
      continues = part.continues;
    }
    if (emptyContinuation) {
      warnings.push({
        file,
        line: emptyContinuation,
        code: 'EmptyContinuationLine',
        message: `empty continuation line in the instruction starting on line ${startLine} (BuildKit will make this an error)`,
      });
    }

    let node: AstNode;
    try {
      node = nodeFromLine(line, directives.escape);
    } catch (err) {
      if (err instanceof NodeError) throw fail(startLine, err.message, i);
      throw err;
    }

    if (canContainHeredoc(node) && line.includes('<<')) {
      let specs;
      try {
        specs = heredocsFromLine(line);
      } catch (err) {
        if (err instanceof HeredocError) throw fail(startLine, err.message, i);
        throw err;
      }
      for (const spec of specs) {
        let content = '';
        let terminated = false;
        while (i < lines.length) {
          const raw = readLine();
          if (isHeredocTerminator(raw, spec)) {
            terminated = true;
            break;
          }
          content += raw;
        }
        if (!terminated) {
          const reason = `unterminated heredoc <<${spec.name}: no line ${goQuote(spec.name)} before the end of the file`;
          throw fail(startLine, reason, i);
        }
        node.heredocs.push({ ...spec, content });
      }
    }
    node.startLine = startLine;
    node.endLine = i;
    if (node.sub) {
      node.sub.startLine = startLine;
      node.sub.endLine = i;
    }
    nodes.push(node);
  }

  if (nodes.length === 0) throw fail(0, 'file with no instructions');
  return { nodes, escape: directives.escape, directives: directives.found, warnings };
}

/** splitLines cuts text after each "\n", keeping line endings (a last line without one is kept too). */
function splitLines(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  while (start < text.length) {
    const nl = text.indexOf('\n', start);
    if (nl < 0) {
      out.push(text.slice(start));
      break;
    }
    out.push(text.slice(start, nl + 1));
    start = nl + 1;
  }
  return out;
}

function trimNewline(s: string): string {
  let end = s.length;
  while (end > 0 && (s[end - 1] === '\n' || s[end - 1] === '\r')) end--;
  return s.slice(0, end);
}

function trimLineFeed(s: string): string {
  return s.endsWith('\n') ? s.slice(0, -1) : s;
}

function canContainHeredoc(node: AstNode): boolean {
  const target = goToLower(node.keyword) === 'onbuild' && node.sub ? node.sub : node;
  const kw = goToLower(target.keyword);
  return (kw === 'run' || kw === 'copy' || kw === 'add') && !target.json;
}

const asciiSpaceRun = /[\t\v\f\r ]+/;

/** nodeFromLine splits a logical line into keyword, flags and arguments (BuildKit newNodeFromLine). */
function nodeFromLine(line: string, escape: string): AstNode {
  const { keyword, flags, rest } = splitCommand(line);
  const node: AstNode = {
    keyword,
    flags,
    args: [],
    json: false,
    original: line,
    startLine: 0,
    endLine: 0,
    heredocs: [],
  };
  let parsed: { args: string[]; json: boolean } = { args: [], json: false };
  switch (goToLower(keyword)) {
    case 'add':
    case 'copy':
    case 'volume':
      parsed = parseMaybeJsonToList(rest);
      break;
    case 'arg':
      parsed = { args: parseWords(rest, escape), json: false };
      break;
    case 'cmd':
    case 'entrypoint':
    case 'run':
    case 'shell':
      parsed = parseMaybeJson(rest);
      break;
    case 'env':
      parsed = { args: parseNameVal(rest, 'ENV', escape), json: false };
      break;
    case 'label':
      parsed = { args: parseNameVal(rest, 'LABEL', escape), json: false };
      break;
    case 'expose':
    case 'from':
      parsed = { args: splitWhitespace(rest), json: false };
      break;
    case 'healthcheck':
      parsed = parseHealthConfig(rest);
      break;
    case 'maintainer':
    case 'stopsignal':
    case 'user':
    case 'workdir':
      parsed = { args: rest === '' ? [] : [rest], json: false };
      break;
    case 'onbuild':
      if (rest !== '') node.sub = nodeFromLine(rest, escape);
      break;
    default:
      // Unknown instructions keep no arguments; the instruction layer reports them.
      break;
  }
  node.args = parsed.args;
  node.json = parsed.json;
  return node;
}

/** splitCommand separates the keyword, the leading flags and the rest of the line. */
function splitCommand(line: string): { keyword: string; flags: string[]; rest: string } {
  const trimmed = goTrimSpace(line);
  const m = asciiSpaceRun.exec(trimmed);
  if (!m) return { keyword: trimmed, flags: [], rest: '' };
  const { rest, flags } = extractFlags(trimmed.slice(m.index + m[0].length));
  return { keyword: trimmed.slice(0, m.index), flags, rest: goTrimSpace(rest) };
}

const enum Phase {
  Spaces,
  Word,
  Quote,
}

/**
 * extractFlags reads the `--flag` words at the start of `line` (quotes and backslash escapes are removed inside
 * them; a bare `--` ends the flags) and returns them with the rest of the line.
 */
function extractFlags(line: string): { rest: string; flags: string[] } {
  const flags: string[] = [];
  let phase = Phase.Spaces;
  let word = '';
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= line.length; pos++) {
    const ch = line[pos] ?? '';
    if (phase === Phase.Spaces) {
      if (pos === line.length) break;
      if (isGoSpace(ch)) continue;
      if (ch !== '-' || line[pos + 1] !== '-') return { rest: line.slice(pos), flags };
      phase = Phase.Word;
    }
    if (pos === line.length) {
      if (word !== '--' && (blankOK || word.length > 0)) flags.push(word);
      break;
    }
    if (phase === Phase.Word) {
      if (isGoSpace(ch)) {
        if (word === '--') return { rest: line.slice(pos), flags };
        if (blankOK || word.length > 0) flags.push(word);
        phase = Phase.Spaces;
        word = '';
        blankOK = false;
      } else if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = Phase.Quote;
      } else if (ch === '\\') {
        if (pos + 1 < line.length) word += line[++pos];
      } else {
        word += ch;
      }
      continue;
    }
    // Phase.Quote
    if (ch === quote) {
      phase = Phase.Word;
    } else if (ch === '\\') {
      if (pos + 1 === line.length) phase = Phase.Word;
      else word += line[++pos];
    } else {
      word += ch;
    }
  }
  return { rest: '', flags };
}

/**
 * parseWords splits on whitespace outside quotes, keeping quotes and escapes in the words (the expansion step
 * removes them later). The escape character escapes anything outside quotes and inside double quotes.
 */
export function parseWords(rest: string, escape: string): string[] {
  const chars = Array.from(rest);
  const words: string[] = [];
  let phase = Phase.Spaces;
  let word = '';
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= chars.length; pos++) {
    let ch = chars[pos] ?? '';
    if (phase === Phase.Spaces) {
      if (pos === chars.length) break;
      if (isGoSpace(ch)) continue;
      phase = Phase.Word;
    }
    if (pos === chars.length) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === Phase.Word) {
      if (isGoSpace(ch)) {
        phase = Phase.Spaces;
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = Phase.Quote;
      }
      if (ch === escape) {
        if (pos + 1 === chars.length) continue; // an escape at the very end is dropped
        word += ch;
        ch = chars[++pos]!;
      }
      word += ch;
      continue;
    }
    // Phase.Quote: the escape character means nothing inside single quotes.
    if (ch === quote) phase = Phase.Word;
    if (ch === escape && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = Phase.Word;
        continue;
      }
      word += ch;
      ch = chars[++pos]!;
    }
    word += ch;
  }
  return words;
}

/**
 * parseNameVal reads ENV/LABEL arguments as (key, value, separator) triples: `key=value …` gives "=" separators;
 * the legacy `key the rest of the line` gives one pair with an empty separator.
 */
function parseNameVal(rest: string, keyword: string, escape: string): string[] {
  const words = parseWords(rest, escape);
  if (words.length === 0) return [];
  if (!words[0]!.includes('=')) {
    const m = asciiSpaceRun.exec(rest);
    if (!m) throw new NodeError(`${keyword} must have two arguments (${keyword} ${rest} has no value)`);
    return [rest.slice(0, m.index), rest.slice(m.index + m[0].length), ''];
  }
  const out: string[] = [];
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq < 0) throw new NodeError(`${keyword}: can't find = in ${goQuote(word)}; it must be of the form name=value`);
    out.push(word.slice(0, eq), word.slice(eq + 1), '=');
  }
  return out;
}

function splitWhitespace(rest: string): string[] {
  return rest === '' ? [] : rest.split(asciiSpaceRun);
}

/** parseJsonArray returns the strings of a JSON array, or null when `rest` is not valid JSON (shell form). */
function parseJsonArray(rest: string): string[] | null {
  const s = goTrimLeftSpace(rest);
  if (!s.startsWith('[')) return null;
  let value: unknown;
  try {
    value = JSON.parse(s);
  } catch {
    return null;
  }
  if (!Array.isArray(value)) return null;
  return value.map((el: unknown) => {
    if (typeof el !== 'string')
      throw new NodeError('when using JSON array syntax, arrays must be comprised of strings only');
    // Go's JSON decoder turns an unpaired \uD800-\uDFFF escape into U+FFFD.
    return el.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
  });
}

function parseMaybeJson(rest: string): { args: string[]; json: boolean } {
  if (rest === '') return { args: [], json: false };
  const arr = parseJsonArray(rest);
  return arr ? { args: arr, json: true } : { args: [rest], json: false };
}

function parseMaybeJsonToList(rest: string): { args: string[]; json: boolean } {
  const arr = parseJsonArray(rest);
  return arr ? { args: arr, json: true } : { args: splitWhitespace(rest), json: false };
}

/** parseHealthConfig reads HEALTHCHECK: a type word (CMD, NONE…) then a command in shell or JSON form. */
function parseHealthConfig(rest: string): { args: string[]; json: boolean } {
  let sep = 0;
  while (sep < rest.length && !isGoSpace(rest[sep]!)) sep++;
  if (sep === 0) return { args: [], json: false };
  let next = sep;
  while (next < rest.length && isGoSpace(rest[next]!)) next++;
  const cmd = parseMaybeJson(rest.slice(next));
  return { args: [rest.slice(0, sep), ...cmd.args], json: cmd.json };
}

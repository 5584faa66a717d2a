// Word expansion for Dockerfile instructions: BuildKit's shell lexer (`$v`, `${v}`, every `${v…}` modifier, single
// and double quotes, the escape character), with and without word splitting. BuildKit's shell/envVarTest and
// shell/wordsTest corpora are the oracle (see test/builder/expand.test.ts).
//
// Expansion never runs a shell: `$(…)` and backquotes are plain text, positional and special parameters
// ($1, $@, $#, $?, …) are always unset, unset variables expand to "" (BuildKit's code, not its docs).

import { TsbuildError } from '../../sys/errors.js';
import { goQuote, isGoDigit, isGoLetter, isGoSpace } from './go-strings.js';
import { PatternError, replacePattern, trimPrefix, trimSuffix } from './shell-pattern.js';

/** Env is the set of variables visible to an expansion; a Record's inherited keys are never variables. */
export type Env = ReadonlyMap<string, string> | Readonly<Record<string, string>>;

/** ExpansionError is a malformed word (`${}`, an unterminated quote) or a failed `${v:?message}`. */
export class ExpansionError extends TsbuildError {
  constructor(
    readonly word: string,
    readonly reason: string,
  ) {
    // A hostile word can be megabytes long: quote only its start.
    const shown = word.length > 200 ? `${goQuote(word.slice(0, 200))}…` : goQuote(word);
    super('E_EXPAND', `failed to process ${shown}: ${reason}`);
  }
}

export interface LexOptions {
  /** The escape character: `\` (default) or `` ` `` (from the `# escape=` directive). */
  escape?: string;
  /** Keep quote characters in the result (the heredoc detector uses this). */
  rawQuotes?: boolean;
  /** Keep escape characters in the result. */
  rawEscapes?: boolean;
  /** Leave references to unset variables as written (`$v`, `${v:-w}`) instead of expanding them. */
  skipUnsetEnv?: boolean;
  /** Treat quotes as ordinary characters. */
  skipProcessQuotes?: boolean;
}

export interface LexResult {
  /** The expanded text as one word (BuildKit ProcessWord). */
  result: string;
  /** The expanded text split into words (BuildKit ProcessWords): unquoted whitespace from the text or from an
   *  unquoted expansion separates words; empty words are dropped. */
  words: string[];
  /** Variables that were referenced and set. */
  matched: Set<string>;
  /** Variables that were referenced and not set. */
  unmatched: Set<string>;
}

/** Deeper `${…${…}}` nesting than this is refused rather than risking the stack on hostile input. */
const MAX_NESTING = 1000;

/**
 * lexWord runs BuildKit's shell lexer over `source`: it expands variables from `env` and removes quotes and
 * escapes, giving both the single-word and the split-words results. Throws ExpansionError.
 */
export function lexWord(source: string, env: Env, opts: LexOptions = {}): LexResult {
  const escape = opts.escape ?? '\\';
  if (escape !== '\\' && escape !== '`')
    throw new TsbuildError('E_EXPAND', `invalid escape character ${goQuote(escape)}`);
  const lexer = new ShellWord(source, env, escape, opts);
  try {
    const { result, words } = lexer.processStopOn(undefined, opts.rawEscapes ?? false);
    return { result, words, matched: lexer.matched, unmatched: lexer.unmatched };
  } catch (err) {
    if (err instanceof LexError) throw new ExpansionError(source, err.message);
    throw err;
  }
}

/** expandWord expands one word (BuildKit ProcessWord): quotes and escapes removed, whitespace kept. */
export function expandWord(word: string, env: Env, opts: { escape?: string } = {}): string {
  return lexWord(word, env, opts).result;
}

/** expandWords expands `text` and splits it into words (BuildKit ProcessWords), as for multi-argument values. */
export function expandWords(text: string, env: Env, opts: { escape?: string } = {}): string[] {
  return lexWord(text, env, opts).words;
}

class LexError extends Error {}

/** Words accumulates ProcessWords' result: only unquoted, unescaped whitespace separates words. */
class Words {
  word = '';
  words: string[] = [];
  inWord = false;

  addChar(ch: string): void {
    if (isGoSpace(ch)) {
      if (this.inWord && this.word.length !== 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else {
      this.addRawChar(ch);
    }
  }

  addRawChar(ch: string): void {
    this.word += ch;
    this.inWord = true;
  }

  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }

  addRawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }

  getWords(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

const SPECIAL_PARAMS = new Set(['@', '*', '#', '?', '-', '$', '!', '0']);

class ShellWord {
  private pos = 0;
  private depth = 0;
  private rawEscapes: boolean;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(
    private readonly text: string,
    private readonly env: Env,
    private readonly escape: string,
    private readonly opts: LexOptions,
  ) {
    this.rawEscapes = opts.rawEscapes ?? false;
  }

  /** peek returns the character (code point) at the current position, or undefined at the end. */
  private peek(): string | undefined {
    const { text, pos } = this;
    if (pos >= text.length) return undefined;
    const c = text.charCodeAt(pos);
    if (c >= 0xd800 && c <= 0xdbff && pos + 1 < text.length) {
      const d = text.charCodeAt(pos + 1);
      if (d >= 0xdc00 && d <= 0xdfff) return text.slice(pos, pos + 2);
    }
    return text[pos];
  }

  private next(): string | undefined {
    const ch = this.peek();
    if (ch !== undefined) this.pos += ch.length;
    return ch;
  }

  /** processStopOn reads up to `stop` (consumed) or to the end when `stop` is undefined. */
  processStopOn(stop: string | undefined, rawEscapes: boolean): { result: string; words: string[] } {
    let result = '';
    const words = new Words();
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      for (;;) {
        const ch = this.peek();
        if (ch === undefined) break;
        if (stop !== undefined && ch === stop) {
          this.next();
          return { result, words: words.getWords() };
        }
        if (ch === '$') {
          const value = this.processDollar();
          result += value;
          words.addString(value);
          continue;
        }
        if ((ch === "'" || ch === '"') && !this.opts.skipProcessQuotes) {
          const value = ch === "'" ? this.processSingleQuote() : this.processDoubleQuote();
          result += value;
          words.addRawString(value);
          continue;
        }
        let c = this.next()!;
        if (c === this.escape) {
          if (this.rawEscapes) {
            words.addRawChar(c);
            result += c;
          }
          const escaped = this.next();
          // An escape character at the very end is dropped.
          if (escaped === undefined) break;
          c = escaped;
          words.addRawChar(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
      if (stop !== undefined) throw new LexError(`unexpected end of statement while looking for matching ${stop}`);
      return { result, words: words.getWords() };
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processSingleQuote(): string {
    // Everything up to the next single quote is literal; nothing can be escaped.
    let result = '';
    const open = this.next()!;
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const ch = this.next();
      if (ch === undefined) throw new LexError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") {
        if (this.opts.rawQuotes) result += ch;
        return result;
      }
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    // Literal except `$…`; the escape character escapes only `"`, `$` and itself, otherwise it stays.
    let result = '';
    const open = this.next()!;
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const ch = this.peek();
      if (ch === undefined) throw new LexError('unexpected end of statement while looking for matching double-quote');
      if (ch === '"') {
        this.next();
        if (this.opts.rawQuotes) result += ch;
        return result;
      }
      if (ch === '$') {
        result += this.processDollar();
        continue;
      }
      let c = this.next()!;
      if (c === this.escape) {
        if (this.rawEscapes) result += c;
        const after = this.peek();
        if (after === undefined) continue;
        if (after === '"' || after === '$' || after === this.escape) c = this.next()!;
      }
      result += c;
    }
  }

  private processDollar(): string {
    if (++this.depth > MAX_NESTING) throw new LexError(`substitutions nested deeper than ${MAX_NESTING} levels`);
    try {
      return this.dollar();
    } finally {
      this.depth--;
    }
  }

  private dollar(): string {
    this.next(); // the $
    if (this.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const value = this.getEnv(name);
      if (value === undefined) return this.opts.skipUnsetEnv ? `$${name}` : '';
      return value;
    }
    this.next(); // the {
    const first = this.peek();
    if (first === undefined) throw new LexError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new LexError('syntax error: bad substitution');
    const name = this.processName();
    let ch = this.next();
    let modifier = ch ?? '\ufffd';
    switch (ch) {
      case '}': {
        const value = this.getEnv(name);
        if (value === undefined) return this.opts.skipUnsetEnv ? `\${${name}}` : '';
        return value;
      }
      case ':':
      case '+':
      case '-':
      case '?':
      case '#':
      case '%': {
        let nullIsUnset = false;
        if (ch === ':') {
          nullIsUnset = true;
          ch = this.next();
          modifier += ch ?? '\ufffd';
        }
        const word = this.modifierWord('}', ch === '#' || ch === '%', "syntax error: missing '}'");
        const value = this.getEnv(name);
        if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}${modifier}${word}}`;
        const unset = value === undefined || (nullIsUnset && value === '');
        switch (ch) {
          case '-':
            return unset ? word : value!;
          case '+':
            return unset ? '' : word;
          case '?':
            if (value === undefined) throw new LexError(`${name}: ${word || 'is not allowed to be unset'}`);
            if (nullIsUnset && value === '') throw new LexError(`${name}: ${word || 'is not allowed to be empty'}`);
            return value;
          case '#':
          case '%': {
            // `${FOO:#x}` is not a form: only -, + and ? take a colon (BuildKit's lexer refuses it too)
            if (nullIsUnset) throw new LexError(`unsupported modifier (${modifier}) in substitution`);
            // One `#`/`%` removes the shortest match, two the longest.
            const greedy = word.startsWith(ch);
            const pattern = greedy ? word.slice(1) : word;
            try {
              return ch === '%' ? trimSuffix(pattern, value ?? '', greedy) : trimPrefix(pattern, value ?? '', greedy);
            } catch (err) {
              throw patternError(pattern, err);
            }
          }
          default:
            throw new LexError(`unsupported modifier (${modifier}) in substitution`);
        }
      }
      case '/': {
        const all = this.peek() === '/';
        if (all) this.next();
        const pattern = this.modifierWord('/', true, "syntax error: missing '/' in ${}");
        const replacement = this.modifierWord('}', true, "syntax error: missing '}'");
        const value = this.getEnv(name);
        if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}/${pattern}/${replacement}}`;
        try {
          return replacePattern(pattern, value ?? '', replacement, all);
        } catch (err) {
          throw patternError(pattern, err);
        }
      }
      default:
        throw new LexError(`unsupported modifier (${modifier}) in substitution`);
    }
  }

  /** modifierWord reads the word after a modifier up to `stop`; running off the end gives `atEnd`. */
  private modifierWord(stop: string, rawEscapes: boolean, atEnd: string): string {
    try {
      return this.processStopOn(stop, rawEscapes).result;
    } catch (err) {
      if (err instanceof LexError && this.peek() === undefined) throw new LexError(atEnd);
      throw err;
    }
  }

  /** processName reads a variable name: letters, digits and `_`; or a run of digits; or one special parameter. */
  private processName(): string {
    let name = '';
    for (;;) {
      const ch = this.peek();
      if (ch === undefined) break;
      if (name === '' && isGoDigit(ch)) {
        while (this.peek() !== undefined && isGoDigit(this.peek()!)) name += this.next();
        return name;
      }
      if (name === '' && SPECIAL_PARAMS.has(ch)) return this.next()!;
      if (!isGoLetter(ch) && !isGoDigit(ch) && ch !== '_') break;
      name += this.next();
    }
    return name;
  }

  private getEnv(name: string): string | undefined {
    let value: string | undefined;
    if (isMap(this.env)) value = this.env.get(name);
    else if (Object.hasOwn(this.env, name)) value = this.env[name];
    if (value === undefined) this.unmatched.add(name);
    else this.matched.add(name);
    return value;
  }
}

function isMap(env: Env): env is ReadonlyMap<string, string> {
  return env instanceof Map;
}

function patternError(pattern: string, err: unknown): Error {
  if (err instanceof PatternError) return new LexError(`invalid pattern (${pattern}) in substitution: ${err.message}`);
  return err as Error;
}

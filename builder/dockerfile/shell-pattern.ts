// Shell wildcard patterns for ${v#p} ${v##p} ${v%p} ${v%%p} ${v/p/r} ${v//p/r}, with BuildKit's exact results.
//
// BuildKit turns the pattern into a Go regular expression (`*` → `.*` or `.*?`, `?` → `.`, everything else literal,
// no bracket expressions) and uses Go's leftmost-first matching; `%` reverses both the pattern and the value and
// trims a prefix. We compile the same three kinds of item and run them on a small Pike VM (one pass, a set of states
// per position, no backtracking), which gives Go's leftmost-first answers in O(value × pattern) time: a hostile
// pattern cannot blow up. Like Go's `.`, the wildcards never match a newline.

export class PatternError extends Error {}

type Item = { kind: 'lit'; ch: string } | { kind: 'any' } | { kind: 'star' };

interface Program {
  items: Item[];
  greedy: boolean;
}

/** compilePattern parses a pattern as BuildKit does: `\*` `\?` `\\` are literals, `\}` and `\/` drop the backslash. */
function compilePattern(pattern: string[], greedy: boolean): Program {
  const items: Item[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '*') {
      // `.*.*` and `.*` match the same spans with the same priorities: keep one.
      if (items.at(-1)?.kind !== 'star') items.push({ kind: 'star' });
    } else if (ch === '?') {
      items.push({ kind: 'any' });
    } else if (ch === '\\') {
      const next = pattern[i + 1];
      if (next === '}' || next === '/') continue;
      i++;
      if (next !== '*' && next !== '?' && next !== '\\') {
        throw new PatternError(`invalid escape '\\${next ?? ''}'`);
      }
      items.push({ kind: 'lit', ch: next });
    } else {
      items.push({ kind: 'lit', ch });
    }
  }
  return { items, greedy };
}

interface Span {
  start: number;
  end: number;
}

/**
 * find runs the program over `text` from `from` and returns Go's leftmost-first match, or null.
 * `anchored` requires the match to start at `from`.
 */
function find(prog: Program, text: string[], from: number, anchored: boolean): Span | null {
  const { items, greedy } = prog;
  // A thread is a state (item index; items.length means "matched") and the position its match started at.
  // Lists are in priority order; `seen` dedupes states per list (generation = which list is being built).
  let run: Thread[] = [];
  let next: Thread[] = [];
  const seen = new Float64Array(items.length + 1).fill(-1);
  let generation = 0;
  let matched: Span | null = null;

  const push = (list: Thread[], pc: number, start: number): void => {
    if (seen[pc] === generation) return;
    seen[pc] = generation;
    list.push({ pc, start });
  };
  const add = (list: Thread[], pc: number, start: number): void => {
    if (items[pc]?.kind !== 'star') return push(list, pc, start);
    // A star either eats one more character (a thread parked on the star) or moves on; stars are collapsed, so
    // the state after a star is never a star. Greedy prefers eating, lazy prefers moving on.
    if (greedy) {
      push(list, pc, start);
      push(list, pc + 1, start);
    } else {
      push(list, pc + 1, start);
      push(list, pc, start);
    }
  };

  for (let pos = from; ; pos++) {
    if (run.length === 0 && (matched || (anchored && pos !== from))) break;
    if (!matched && (pos === from || !anchored)) add(run, 0, pos);
    generation++;
    const ch = text[pos];
    for (const { pc, start } of run) {
      const item = items[pc];
      if (item === undefined) {
        // Leftmost-first: a match cuts off every lower-priority thread.
        matched = { start, end: pos };
        break;
      }
      if (ch === undefined) continue;
      const ok = item.kind === 'lit' ? ch === item.ch : ch !== '\n';
      if (ok) add(next, item.kind === 'star' ? pc : pc + 1, start);
    }
    if (ch === undefined) break;
    [run, next] = [next, run];
    next.length = 0;
  }
  return matched;
}

interface Thread {
  pc: number;
  start: number;
}

function chars(s: string): string[] {
  return Array.from(s);
}

/** reversePattern reverses a pattern keeping each backslash in front of the character it escapes. */
function reversePattern(pattern: string[]): string[] {
  const out = new Array<string>(pattern.length);
  const last = pattern.length - 1;
  for (let i = 0; i <= last;) {
    const ch = pattern[i]!;
    const o = last - i;
    if (ch === '\\' && i !== last) {
      out[o - 1] = ch;
      out[o] = pattern[i + 1]!;
      i += 2;
    } else {
      out[o] = ch;
      i++;
    }
  }
  return out;
}

/** trimPrefix removes the shortest (or, greedy, the longest) prefix of `value` that `pattern` matches. */
export function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const text = chars(value);
  const m = find(compilePattern(chars(pattern), greedy), text, 0, true);
  return m ? text.slice(m.end).join('') : value;
}

/** trimSuffix removes the shortest (or, greedy, the longest) suffix of `value` that `pattern` matches. */
export function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  const text = chars(value).reverse();
  const m = find(compilePattern(reversePattern(chars(pattern)), greedy), text, 0, true);
  return m ? text.slice(m.end).reverse().join('') : value;
}

/**
 * replacePattern replaces the first (or every) match of `pattern` in `value`. Matching is greedy, as in BuildKit.
 * With `all`, the replacement is a Go regexp template ($0, ${0}, $$ …; other names are empty) and empty matches
 * right after a previous match are skipped, exactly like Go's Regexp.ReplaceAllString.
 */
export function replacePattern(pattern: string, value: string, replacement: string, all: boolean): string {
  const prog = compilePattern(chars(pattern), true);
  const text = chars(value);
  if (!all) {
    const m = find(prog, text, 0, false);
    return m ? text.slice(0, m.start).join('') + replacement + text.slice(m.end).join('') : value;
  }
  let out = '';
  let lastEnd = 0;
  let searchPos = 0;
  while (searchPos <= text.length) {
    const m = find(prog, text, searchPos, false);
    if (!m) break;
    out += text.slice(lastEnd, m.start).join('');
    if (m.end > lastEnd || m.start === 0) out += expandTemplate(replacement, text.slice(m.start, m.end).join(''));
    lastEnd = m.end;
    searchPos = searchPos + 1 > m.end ? searchPos + 1 : m.end;
  }
  return out + text.slice(lastEnd).join('');
}

/** expandTemplate is Go's Regexp.Expand for a regexp whose only group is the whole match ($0). */
function expandTemplate(template: string, match: string): string {
  let out = '';
  let rest = template;
  for (;;) {
    const i = rest.indexOf('$');
    if (i < 0) break;
    out += rest.slice(0, i);
    rest = rest.slice(i + 1);
    if (rest.startsWith('$')) {
      out += '$';
      rest = rest.slice(1);
      continue;
    }
    const m = /^(?:\{([\p{L}\p{Nd}_]+)\}|([\p{L}\p{Nd}_]+))/u.exec(rest);
    if (!m) {
      out += '$';
      continue;
    }
    const name = m[1] ?? m[2]!;
    rest = rest.slice(m[0].length);
    if (name === '0') out += match;
  }
  return out + rest;
}

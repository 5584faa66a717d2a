// Parser directives (`# escape=…`, `# syntax=…`, `# check=…`) and the escape character's second job: line
// continuation. Rules follow BuildKit: directives are only recognised on the lines before the first comment, blank
// line or instruction; keys are case-insensitive, values are not; a repeated directive is an error; an unknown
// directive ends directive parsing (it and all later `#` lines are plain comments).

export const DIRECTIVE_NAMES = ['escape', 'syntax', 'check'] as const;
export type DirectiveName = (typeof DIRECTIVE_NAMES)[number];

export interface Directive {
  name: DirectiveName;
  value: string;
  /** 1-based line number. */
  line: number;
}

/** DirectiveError is a bad directive: repeated, or an escape character other than `\` and `` ` ``. */
export class DirectiveError extends Error {}

// `\s` here is Go's RE2 class [\t\n\f\r ]; the value is trimmed the same way.
const directiveRe = /^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*([^\n]+?)[\t\n\f\r ]*$/;

/**
 * DirectiveScanner is fed every line in order (without its newline, leading whitespace trimmed for lines that start
 * an instruction) and records the directives found at the top of the file. It holds the current escape character.
 */
export class DirectiveScanner {
  escape = '\\';
  readonly found: Directive[] = [];
  private done = false;

  /** observe looks at one line; it throws DirectiveError for a repeated directive or a bad escape value. */
  observe(text: string, line: number): void {
    if (this.done) return;
    const m = directiveRe.exec(text);
    const name = m?.[1]?.toLowerCase();
    if (!m || !(DIRECTIVE_NAMES as readonly string[]).includes(name!)) {
      this.done = true;
      return;
    }
    const key = name as DirectiveName;
    if (this.found.some((d) => d.name === key))
      throw new DirectiveError(`only one ${key} parser directive can be used`);
    const value = m[2]!;
    if (key === 'escape') {
      if (value !== '`' && value !== '\\')
        throw new DirectiveError(`invalid escape character '${value}': it must be \` or \\`);
      this.escape = value;
    }
    this.found.push({ name: key, value, line });
  }
}

/**
 * trimContinuation removes a trailing escape character (and the spaces and tabs after it) that continues the line
 * onto the next one. An escape character preceded by another escape character does not continue the line
 * (`ENV C trailing\\` ends there), as in BuildKit.
 */
export function trimContinuation(line: string, escape: string): { text: string; continues: boolean } {
  let end = line.length;
  while (end > 0 && (line[end - 1] === ' ' || line[end - 1] === '\t')) end--;
  if (end === 0 || line[end - 1] !== escape) return { text: line, continues: false };
  if (end === 1) return { text: '', continues: true };
  if (line[end - 2] === escape) return { text: line, continues: false };
  return { text: line.slice(0, end - 1), continues: true };
}

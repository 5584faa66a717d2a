// The one place that turns an error into what the user sees and an exit code. Every line written is bounded
// (boundLine): a message that carries a 20 kB path keeps its start and end, the middle elided with "…"; --debug
// adds the full text (the stack, which starts with the whole message).
import { InternalError, TsbuildError } from '../sys/errors.js';

/** Exit codes: 0 ok, 1 a failure the user can fix, 70 a bug in tsbuild. */
export const EXIT_USER = 1;
export const EXIT_INTERNAL = 70;

/** MAX_LINE bounds every `error:` and `hint:` line, prefix included (UTF-16 units, as String.length counts). */
export const MAX_LINE = 500;
/** MAX_WORD bounds one whitespace-free run (a path, a value) before the line as a whole is looked at. */
const MAX_WORD = 160;
const ELLIPSIS = '…';
const LONG_WORD = new RegExp(`\\S{${MAX_WORD + 1},}`, 'g');

const ERRNO_HINTS: Record<string, string> = {
  EACCES: 'permission denied: check the file modes, or run as root',
  EPERM: 'operation not permitted: mounts, namespaces and device nodes need root',
  ENOSPC: 'the disk is full: free space or point --root at a larger disk',
  ENOENT: 'a file or directory does not exist',
  ENAMETOOLONG: 'a path or one of its names is longer than the filesystem allows',
};

/** report writes one `error: …` line (plus a hint, plus the stack with --debug) and returns the exit code. */
export function report(err: unknown, opts: { debug?: boolean; write?: (s: string) => void } = {}): number {
  const rawWrite = opts.write ?? ((s: string) => process.stderr.write(s));
  const write = (prefix: string, text: string): void => {
    for (const line of text.split('\n')) rawWrite(`${boundLine(`${prefix}${line}`)}\n`);
  };
  const e = err as Error & { code?: string; hint?: string };
  const message = e instanceof Error ? e.message : String(err);
  const debugText = (): void => {
    if (!opts.debug) return;
    const stack = err instanceof Error ? (err.stack ?? '') : '';
    if (!stack.includes(message)) rawWrite(`${message}\n`);
    if (stack) rawWrite(`${stack}\n`);
  };
  if (err instanceof TsbuildError) {
    write('error: ', message);
    if (err.hint) write('hint: ', err.hint);
    debugText();
    return EXIT_USER;
  }
  if (err instanceof InternalError || !(err instanceof Error) || isProgrammingError(err)) {
    write('error: internal error: ', message);
    write('hint: ', 'this is a bug in tsbuild; please report it with the output of --debug');
    debugText();
    return EXIT_INTERNAL;
  }
  write('error: ', message);
  const hint = e.code ? ERRNO_HINTS[e.code] : undefined;
  if (hint) write('hint: ', hint);
  debugText();
  return EXIT_USER;
}

/**
 * boundLine shortens a line to at most `max` units: every whitespace-free run longer than MAX_WORD is cut in its
 * middle first (so a long path does not push the rest of the message out), then, if the line is still too long,
 * its middle goes. Both ends always survive; a cut never splits a surrogate pair.
 */
export function boundLine(line: string, max = MAX_LINE): string {
  if (line.length <= max) return line;
  const words = line.replace(LONG_WORD, (w) => elideMiddle(w, MAX_WORD));
  return elideMiddle(words, max);
}

/** elideMiddle keeps the first and last parts of `s` around one "…", `max` units in all. */
function elideMiddle(s: string, max: number): string {
  if (s.length <= max) return s;
  const keep = max - ELLIPSIS.length;
  const headEnd = safeCut(s, Math.ceil(keep / 2));
  const tailStart = safeCut(s, s.length - Math.floor(keep / 2), true);
  return `${s.slice(0, headEnd)}${ELLIPSIS}${s.slice(tailStart)}`;
}

/** safeCut moves a cut position off the middle of a surrogate pair (back for a head, forward for a tail). */
function safeCut(s: string, at: number, forward = false): number {
  const lowSurrogate = (i: number): boolean => i > 0 && i < s.length && /[\udc00-\udfff]/.test(s.charAt(i));
  const highBefore = (i: number): boolean => /[\ud800-\udbff]/.test(s.charAt(i - 1));
  if (lowSurrogate(at) && highBefore(at)) return forward ? at + 1 : at - 1;
  return at;
}

function isProgrammingError(err: Error): boolean {
  return (
    err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError || err instanceof SyntaxError
  );
}

// The one place that turns an error into what the user sees and an exit code.
import { InternalError, TsbuildError } from '../sys/errors.js';

/** Exit codes: 0 ok, 1 a failure the user can fix, 70 a bug in tsbuild. */
export const EXIT_USER = 1;
export const EXIT_INTERNAL = 70;

const ERRNO_HINTS: Record<string, string> = {
  EACCES: 'permission denied: check the file modes, or run as root',
  EPERM: 'operation not permitted: mounts, namespaces and device nodes need root',
  ENOSPC: 'the disk is full: free space or point --root at a larger disk',
  ENOENT: 'a file or directory does not exist',
};

/** report writes one `error: …` line (plus a hint, plus the stack with --debug) and returns the exit code. */
export function report(err: unknown, opts: { debug?: boolean; write?: (s: string) => void } = {}): number {
  const write = opts.write ?? ((s: string) => process.stderr.write(s));
  const e = err as Error & { code?: string; hint?: string };
  const message = e instanceof Error ? e.message : String(err);
  if (err instanceof TsbuildError) {
    write(`error: ${message}\n`);
    if (err.hint) write(`hint: ${err.hint}\n`);
    if (opts.debug) write(`${e.stack}\n`);
    return EXIT_USER;
  }
  if (err instanceof InternalError || !(err instanceof Error) || isProgrammingError(err)) {
    write(`error: internal error: ${message}\n`);
    write('hint: this is a bug in tsbuild; please report it with the output of --debug\n');
    if (opts.debug && err instanceof Error) write(`${err.stack}\n`);
    return EXIT_INTERNAL;
  }
  write(`error: ${message}\n`);
  const hint = e.code ? ERRNO_HINTS[e.code] : undefined;
  if (hint) write(`hint: ${hint}\n`);
  if (opts.debug) write(`${e.stack}\n`);
  return EXIT_USER;
}

function isProgrammingError(err: Error): boolean {
  return (
    err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError || err instanceof SyntaxError
  );
}

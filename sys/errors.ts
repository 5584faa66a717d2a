// Error classes that users can act on. Each carries a stable `code`; cli/report.ts maps codes to hints.

/** TsbuildError is a failure the user can fix (exit 1); `hint` is one optional line of advice. */
export class TsbuildError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  constructor(code: string, message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.hint = opts.hint;
  }
  override get name(): string {
    return 'TsbuildError';
  }
}

export class DigestMismatchError extends TsbuildError {
  constructor(
    readonly expected: string,
    readonly actual: string,
    readonly what = 'blob',
  ) {
    super('E_DIGEST_MISMATCH', `${what} ${expected} is corrupt (its content hashes to ${actual})`, {
      hint: 'remove the image and fetch or build it again; `tsbuild prune` drops unreferenced blobs',
    });
  }
}

export class SizeMismatchError extends TsbuildError {
  constructor(
    readonly digest: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super('E_SIZE_MISMATCH', `blob ${digest} has ${actual} bytes, expected ${expected}`);
  }
}

export class NotFoundError extends TsbuildError {
  constructor(what: string, hint?: string) {
    super('E_NOT_FOUND', `${what} not found`, hint === undefined ? {} : { hint });
  }
}

/** UnsafeEntryError refuses a layer entry that would write outside the target root. */
export class UnsafeEntryError extends TsbuildError {
  constructor(
    readonly entry: string,
    reason: string,
  ) {
    super('E_UNSAFE_ENTRY', `refusing layer entry ${JSON.stringify(entry)}: ${reason}`);
  }
}

/** InvalidInputError is bad user input: a malformed name, file, flag value or archive. */
export class InvalidInputError extends TsbuildError {
  constructor(message: string, hint?: string) {
    super('E_INVALID', message, hint === undefined ? {} : { hint });
  }
}

/** ToolError is a failed host command; the message carries the argv and the end of its stderr. */
export class ToolError extends TsbuildError {
  constructor(
    readonly argv: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    signal?: string | null,
  ) {
    const tail = stderr.trim().split('\n').slice(-5).join(' | ');
    const how = signal ? `killed by ${signal}` : `exited with code ${exitCode}`;
    super('E_TOOL', `${argv.join(' ')}: ${how}${tail ? `: ${tail}` : ''}`);
  }
}

/** MissingToolsError lists every host tool that an operation needs and this machine lacks. */
export class MissingToolsError extends TsbuildError {
  constructor(
    readonly tools: string[],
    packages: string[],
  ) {
    super('E_MISSING_TOOLS', `missing host tools: ${tools.join(', ')}`, {
      hint: packages.length ? `install them: apt-get install -y ${packages.join(' ')}` : undefined,
    } as { hint?: string });
  }
}

/** InternalError is a bug in tsbuild (exit 70). */
export class InternalError extends Error {
  readonly code = 'E_INTERNAL';
  override get name(): string {
    return 'InternalError';
  }
}

/** wrap adds context to an error, Go-style: `doing X: cause`. TsbuildErrors keep their code and hint. */
export function wrap(context: string, err: unknown): Error {
  if (err instanceof TsbuildError) {
    const e = new TsbuildError(err.code, `${context}: ${err.message}`, { cause: err });
    (e as { hint: string | undefined }).hint = err.hint;
    return e;
  }
  const e = err as NodeJS.ErrnoException;
  const msg = e instanceof Error ? e.message : String(err);
  const out = new Error(`${context}: ${msg}`, { cause: err });
  if (e && typeof e === 'object' && 'code' in e) (out as NodeJS.ErrnoException).code = e.code;
  return out;
}

/**
 * NoSpaceError is a write that found the filesystem full (ENOSPC) or the quota spent (EDQUOT): "no space left on
 * /srv/store while writing blob sha256:…". `device` is the mount point of the written path (sys/disk-full.ts).
 */
export class NoSpaceError extends TsbuildError {
  constructor(
    readonly device: string,
    readonly what: string,
    cause?: unknown,
  ) {
    super('E_NO_SPACE', `no space left on ${device} while writing ${what}`, {
      hint: 'free space there, or point --root at a larger disk',
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

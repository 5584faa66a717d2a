// Errors a registry answers with: the distribution-spec `{"errors":[{code,message,detail}]}` body, made into one line.
import { TsbuildError } from '../../sys/errors.js';

/** RegistryErrorEntry is one element of a distribution-spec error body. */
export interface RegistryErrorEntry {
  code: string;
  message?: string;
  detail?: unknown;
}

/** RegistryError is a non-success HTTP answer; `status` and the registry's error codes are kept for callers to test. */
export class RegistryError extends TsbuildError {
  constructor(
    message: string,
    readonly status: number,
    readonly errors: RegistryErrorEntry[] = [],
    opts: { hint?: string; code?: string } = {},
  ) {
    super(opts.code ?? 'E_REGISTRY', message, opts.hint === undefined ? {} : { hint: opts.hint });
  }
  /** has tells whether the registry named this error code. */
  has(code: string): boolean {
    return this.errors.some((e) => e.code === code);
  }
}

/** AuthError is a refused login or a missing/insufficient credential. */
export class AuthError extends TsbuildError {
  constructor(message: string, hint?: string) {
    super('E_AUTH', message, hint === undefined ? {} : { hint });
  }
}

/** parseErrorBody reads a distribution-spec error body; anything else yields no entries. */
export function parseErrorBody(text: string): RegistryErrorEntry[] {
  try {
    const doc = JSON.parse(text) as { errors?: unknown };
    if (!doc || !Array.isArray(doc.errors)) return [];
    return doc.errors
      .filter((e): e is { code: unknown; message?: unknown; detail?: unknown } => !!e && typeof e === 'object')
      .map((e) => ({
        code: String(e.code ?? 'UNKNOWN'),
        ...(typeof e.message === 'string' ? { message: e.message } : {}),
        detail: e.detail,
      }))
      .slice(0, 20);
  } catch {
    return [];
  }
}

/** describeErrors renders error entries (or a trimmed text body) for a message: `MANIFEST_INVALID: manifest invalid`. */
export function describeErrors(entries: RegistryErrorEntry[], text: string): string {
  if (entries.length) {
    return entries
      .slice(0, 5)
      .map((e) => {
        const detail =
          e.detail === undefined || e.detail === null
            ? ''
            : ` (${oneLine(typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail), 160)})`;
        return `${e.code}${e.message ? `: ${oneLine(e.message, 200)}` : ''}${detail}`;
      })
      .join('; ');
  }
  return oneLine(text, 200);
}

function oneLine(s: string, max: number): string {
  const flat = s.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

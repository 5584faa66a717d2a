// Names of named contexts (`--build-context NAME=VALUE`), as buildx and BuildKit read them: pure, no I/O (the plan
// uses them; builder/named-contexts.ts loads the contexts).
import { InvalidInputError } from '../sys/errors.js';
import { familiarName, parseReference } from '../layers/model/names.js';

/** splitBuildContexts reads `--build-context NAME=VALUE` flags (buildx ParseContextNames): name → value, last wins. */
export function splitBuildContexts(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    if (v === '') continue;
    const eq = v.indexOf('=');
    if (eq < 0) throw new InvalidInputError(`invalid context value: ${v}, expected key=value`);
    out[contextName(v.slice(0, eq))] = v.slice(eq + 1);
  }
  return out;
}

/**
 * contextName normalizes a context name as buildx does (distribution/reference ParseNormalizedNamed, then its
 * familiar form without `:latest`). Throws InvalidInputError with buildx's wording for a name that is no reference.
 */
export function contextName(name: string): string {
  const why = referenceProblem(name);
  if (why) throw new InvalidInputError(`invalid context name ${name}: ${why}`);
  return familiarName(parseReference(name)).replace(/:latest$/, '');
}

function referenceProblem(s: string): string | undefined {
  if (/^[a-f0-9]{64}$/.test(s)) return `invalid repository name (${s}), cannot specify 64-byte hexadecimal strings`;
  const slash = s.indexOf('/');
  const first = slash < 0 ? '' : s.slice(0, slash);
  const domain = slash >= 0 && (first === 'localhost' || /[.:]/.test(first) || first !== first.toLowerCase());
  let remote = domain ? s.slice(slash + 1) : s;
  if (!domain && !remote.includes('/') && first !== 'docker.io') remote = `library/${remote}`;
  const tagSep = remote.indexOf(':');
  const repo = tagSep < 0 ? remote : remote.slice(0, tagSep);
  if (repo.toLowerCase() !== repo) return `invalid reference format: repository name (${repo}) must be lowercase`;
  try {
    parseReference(s);
  } catch {
    return 'invalid reference format';
  }
  return undefined;
}

/** lookupName is the context name that FROM X or `--from=X` looks up; undefined for scratch, context or no reference. */
export function lookupName(ref: string): string | undefined {
  if (/^(scratch|context)$/i.test(ref) || referenceProblem(ref)) return undefined;
  return contextName(ref);
}

// The `--flags` each instruction accepts and how their values are read (BuildKit's BFlags rules): string flags need
// `=value`, repeatable flags collect every value, boolean flags are `--x`, `--x=true` or `--x=false`. Anything else
// is an error naming the instruction and the flags it does accept: an unknown flag is never silently ignored.

/** Flags maps a flag name (without `--`) to its values in order; a boolean flag holds "true" or "false". */
export type Flags = Record<string, string[]>;

export type FlagKind = 'string' | 'strings' | 'bool';

/** INSTRUCTION_FLAGS lists the flags of every instruction that has any (keyed by lowercase keyword). */
export const INSTRUCTION_FLAGS: Readonly<Record<string, Readonly<Record<string, FlagKind>>>> = {
  from: { platform: 'string' },
  run: { mount: 'strings', network: 'string', security: 'string' },
  copy: { from: 'string', chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'strings' },
  add: {
    chown: 'string',
    chmod: 'string',
    link: 'bool',
    'keep-git-dir': 'bool',
    checksum: 'string',
    exclude: 'strings',
    unpack: 'bool',
  },
  healthcheck: {
    interval: 'string',
    timeout: 'string',
    'start-period': 'string',
    'start-interval': 'string',
    retries: 'string',
  },
};

/** FlagError is a flag the instruction does not accept or a malformed value. */
export class FlagError extends Error {}

/** parseFlags reads the raw `--name[=value]` words of an instruction. `keyword` is for messages. Throws FlagError. */
export function parseFlags(
  keyword: string,
  raw: readonly string[],
  spec: Readonly<Record<string, FlagKind>> = {},
): Flags {
  // Only names listed in `spec` are ever stored, so a plain object is safe.
  const flags: Flags = {};
  const upper = keyword.toUpperCase();
  for (const word of raw) {
    if (!word.startsWith('--'))
      throw new FlagError(`${upper}: expected a flag starting with --, got ${JSON.stringify(word)}`);
    if (word === '--') break;
    const body = word.slice(2);
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const value = eq < 0 ? undefined : body.slice(eq + 1);
    const kind = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (kind === undefined) throw new FlagError(unknownFlag(upper, name, spec));
    const seen = flags[name];
    if (seen && kind !== 'strings') throw new FlagError(`duplicate flag --${name} for ${upper}`);
    if (kind === 'bool') {
      if (value === '') throw new FlagError(`flag --${name} for ${upper} needs a value after =`);
      const v = (value ?? 'true').toLowerCase();
      if (v !== 'true' && v !== 'false') {
        throw new FlagError(`flag --${name} for ${upper} must be true or false, not ${JSON.stringify(value)}`);
      }
      flags[name] = [v];
    } else {
      if (value === undefined) throw new FlagError(`flag --${name} for ${upper} needs a value (--${name}=…)`);
      flags[name] = [...(seen ?? []), value];
    }
  }
  return flags;
}

function unknownFlag(upper: string, name: string, spec: Readonly<Record<string, FlagKind>>): string {
  const valid = Object.keys(spec).sort();
  // BuildKit's wording first (`unknown flag: --mont (did you mean mount?)`), then ours: what is valid
  if (valid.length === 0) return `unknown flag: --${name} (${upper} takes no flags)`;
  const guess = closest(name, valid);
  const hint = guess ? ` (did you mean ${guess}?)` : '';
  return `unknown flag: --${name}${hint} (valid flags for ${upper}: ${valid.map((f) => `--${f}`).join(', ')})`;
}

/** closest returns the candidate within edit distance 2 of `word` (case-insensitive), if exactly one is nearest. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase(), bestDistance);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/**
 * editDistance is the optimal-string-alignment distance (insertions, deletions, substitutions and swaps of two
 * neighbours each count 1), or `limit` once it is certain to reach it (keeps hostile input cheap).
 */
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) >= limit) return limit;
  let prev2: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      let v = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, prev2[j - 2]! + 1);
      cur.push(v);
      rowMin = Math.min(rowMin, v);
    }
    if (rowMin >= limit) return limit;
    prev2 = prev;
    prev = cur;
  }
  return Math.min(prev[b.length]!, limit);
}

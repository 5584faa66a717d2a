// `--cache-from` / `--cache-to` values, buildx's spelling: `type=registry,ref=REG/REPO:TAG[,mode=min|max]`,
// `type=local,dest=DIR` / `type=local,src=DIR` (an OCI image layout directory, `tag=` picks the name, default
// `latest`), `mounts=true` on --cache-to (the RUN --mount=type=cache directories too), `--cache-to type=inline` (the records in the image config, mode=min), and for --cache-from a bare image
// reference (read as `type=registry,ref=…`: a cache manifest, or an image with an inline cache). Options tsbuild does not
// implement are refused with the reason, never accepted and ignored.
import { InvalidInputError } from '../../sys/errors.js';
import { parseReference } from '../model/names.js';

export type CacheMode = 'min' | 'max';

export type CacheSpec =
  | { type: 'registry'; ref: string; mode: CacheMode; ignoreError: boolean; mounts?: boolean }
  | { type: 'local'; dir: string; tag: string; mode: CacheMode; ignoreError: boolean; mounts?: boolean }
  /** --cache-to only: the records go into the image config (mode=min only) */
  | { type: 'inline'; mode: 'min'; ignoreError: boolean };

/** REFUSED: options buildx knows that tsbuild refuses, with the reason. */
const REFUSED: Record<string, string> = {
  compression:
    "is not supported: cache layers are the build's own layers, exported as stored (pick their compression with tsbuild build --compression zstd)",
  'compression-level': 'is not supported: cache layers are exported as the build stored them',
  'force-compression': 'is not supported: cache layers are exported as the build stored them',
  'image-manifest': 'is not supported as false: the cache is always an OCI image manifest',
  'oci-mediatypes': 'is not supported as false: the cache always uses OCI media types',
};

/** splitFields reads `k=v,k=v` (a value may be quoted, as in a CSV field). */
function splitFields(text: string, flag: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.match(/(?:[^,"]|"[^"]*")+/g) ?? []) {
    const eq = raw.indexOf('=');
    if (eq < 0) throw new InvalidInputError(`${flag} ${text}: ${JSON.stringify(raw)} is not key=value`);
    const key = raw.slice(0, eq).trim().toLowerCase();
    const value = raw.slice(eq + 1).replace(/^"(.*)"$/, '$1');
    if (out.has(key)) throw new InvalidInputError(`${flag} ${text}: ${key}= is given twice`);
    out.set(key, value);
  }
  return out;
}

/** parseCacheSpec reads one `--cache-from` (`direction` 'from') or `--cache-to` ('to') value. */
export function parseCacheSpec(text: string, direction: 'from' | 'to'): CacheSpec {
  const flag = `--cache-${direction}`;
  if (text.trim() === '') throw new InvalidInputError(`${flag} is empty`);
  if (!text.includes('=')) {
    if (direction === 'to')
      throw new InvalidInputError(`${flag} ${text}: give type=registry,ref=… or type=local,dest=DIR`);
    return { type: 'registry', ref: checkRef(text, flag), mode: 'min', ignoreError: false };
  }
  const f = splitFields(text, flag);
  const take = (k: string): string | undefined => {
    const v = f.get(k);
    f.delete(k);
    return v;
  };
  const type = take('type') ?? (f.has('ref') ? 'registry' : undefined);
  const modeText = take('mode');
  if (modeText !== undefined && direction === 'from')
    throw new InvalidInputError(`${flag} ${text}: mode= belongs to --cache-to`);
  if (modeText !== undefined && modeText !== 'min' && modeText !== 'max')
    throw new InvalidInputError(`${flag} ${text}: mode must be min or max`);
  const mode: CacheMode = modeText === 'max' ? 'max' : 'min';
  const ignoreText = take('ignore-error');
  if (ignoreText !== undefined && ignoreText !== 'true' && ignoreText !== 'false')
    throw new InvalidInputError(`${flag} ${text}: ignore-error must be true or false`);
  const ignoreError = ignoreText === 'true';
  const mountsText = take('mounts');
  if (mountsText !== undefined && direction === 'from')
    throw new InvalidInputError(`${flag} ${text}: mounts= belongs to --cache-to (a cache's mounts are always read)`);
  if (mountsText !== undefined && mountsText !== 'true' && mountsText !== 'false')
    throw new InvalidInputError(`${flag} ${text}: mounts must be true or false`);
  const mounts = mountsText === 'true' ? { mounts: true } : {};
  for (const k of ['oci-mediatypes', 'image-manifest']) if (f.get(k) === 'true') f.delete(k);
  let spec: CacheSpec;
  if (type === 'registry') {
    const ref = take('ref');
    if (!ref) throw new InvalidInputError(`${flag} ${text}: ref= is required`);
    spec = { type, ref: checkRef(ref, flag), mode, ignoreError, ...mounts };
  } else if (type === 'local') {
    const dir = take(direction === 'to' ? 'dest' : 'src');
    if (!dir) throw new InvalidInputError(`${flag} ${text}: ${direction === 'to' ? 'dest' : 'src'}= is required`);
    const tag = take('tag') ?? 'latest';
    if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(tag))
      throw new InvalidInputError(`${flag} ${text}: tag= is not a valid tag`);
    spec = { type, dir, tag, mode, ignoreError, ...mounts };
  } else if (type === 'inline') {
    if (direction === 'from')
      throw new InvalidInputError(
        `${flag} type=inline: an inline cache is read from the image, give its reference (--cache-from REG/REPO:TAG)`,
      );
    if (mountsText === 'true')
      throw new InvalidInputError(
        `${flag} ${text}: mounts=true needs type=registry or type=local (an image has no room)`,
      );
    if (mode !== 'min')
      throw new InvalidInputError(
        `${flag} ${text}: type=inline supports mode=min only (the image holds only its own layers)`,
        'use type=registry,ref=REG/REPO:cache,mode=max for intermediate stages',
      );
    spec = { type, mode, ignoreError };
  } else {
    throw new InvalidInputError(
      `${flag} ${text}: type must be ${direction === 'to' ? 'registry, local or inline' : 'registry or local'}${type ? ` (got ${JSON.stringify(type)})` : ''}`,
    );
  }
  for (const k of f.keys()) {
    throw new InvalidInputError(`${flag} ${text}: ${k}= ${REFUSED[k] ?? 'is not a known option'}`);
  }
  return spec;
}

function checkRef(ref: string, flag: string): string {
  try {
    parseReference(ref);
  } catch (err) {
    throw new InvalidInputError(`${flag}: ${ref} is not an image reference (${(err as Error).message})`);
  }
  return ref;
}

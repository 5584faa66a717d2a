// The build context: a directory, a tarball (extracted to a temp directory), or `-`: standard input holds either a
// context tarball (docker's `build - < ctx.tar`, the Dockerfile inside) or a Dockerfile and there is no context.
// Reading the Dockerfile and the ignore file, and the .dockerignore filter every use of the context goes through
// (COPY/ADD sources, RUN --mount=type=bind from the context, cache keys).
//
// Ignore files: `<Dockerfile>.dockerignore` next to the Dockerfile wins over `<context>/.dockerignore` (BuildKit).
// Patterns are matched with @balena/dockerignore (case-sensitive, as on Linux). The Dockerfile and the ignore file
// are read even when the patterns exclude them; excluded paths never reach a COPY or a cache key.
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import ignore, { type Ignore } from '@balena/dockerignore';
import { InvalidInputError, NotFoundError, wrap } from '../sys/errors.js';
import type { FileDigests } from './context-digests.js';

/** ContextFilter tells which context paths exist for the build ('/'-separated, relative to the context root). */
export interface ContextFilter {
  /** true when the path was excluded by the ignore file and none of its descendants is re-included */
  excluded(rel: string, isDir: boolean): boolean;
}

/** BuildContext is the context directory on this machine and its ignore filter. */
export interface BuildContext {
  /** absolute path of the context directory */
  root: string;
  filter: ContextFilter;
  /** the ignore patterns in effect (for messages and tests) */
  patterns: string[];
  /** which ignore file they came from ('' when none) */
  ignoreFile: string;
  /** extracted from a tarball into a temp directory (lives for one build) */
  extracted: boolean;
  /** the memo of file digests that cache keys use (builder/context-digests.ts; set by the build) */
  digests?: FileDigests;
}

export interface OpenContextOptions {
  /** a directory, a tar file (plain or compressed), or '-' for none */
  context: string;
  /** -f: a path (relative to the working directory), '-' for stdin; default `<context>/Dockerfile`. For a tarball
   *  context, a path inside it. */
  dockerfile?: string;
  /** where `-` reads from (default process.stdin) */
  stdin?: Readable;
  /** a directory for the extracted tarball (the caller removes it with cleanup()) */
  tmpDir: string;
  cwd?: string;
}

export interface OpenedContext {
  dockerfileText: string;
  /** the Dockerfile's name for messages (`Dockerfile`, `app.Dockerfile`) */
  dockerfileName: string;
  /** null when the build has no context (`-`) */
  context: BuildContext | null;
  cleanup(): Promise<void>;
}

/** MAX_DOCKERFILE is the largest Dockerfile read (BuildKit refuses lines over 64 KiB; files are small). */
const MAX_DOCKERFILE = 16 << 20;

/**
 * openContext resolves the context and reads the Dockerfile and ignore file. Throws NotFoundError for a missing
 * context or Dockerfile, InvalidInputError for a context that is neither a directory nor a tar archive.
 */
export async function openContext(opts: OpenContextOptions): Promise<OpenedContext> {
  const cwd = opts.cwd ?? process.cwd();
  const stdin = opts.stdin ?? process.stdin;
  const cleanups: Array<() => Promise<void>> = [];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    let root: string;
    let tarball = false;
    const extractInto = async (input: Readable, what: string): Promise<string> => {
      await mkdir(opts.tmpDir, { recursive: true });
      const dir = await mkdtemp(join(opts.tmpDir, 'context-'));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      await extractTarball(input, dir, what);
      return dir;
    };
    if (opts.context === '-') {
      // docker build - < X: X is a context archive (plain or compressed tar, the Dockerfile inside) or a Dockerfile
      const { head, stream } = await peek(stdin, 512);
      const { detectCompression } = await import('../layers/compress/compress.js');
      if (detectCompression(head) === 'none' && !isTarHeader(head)) {
        if (opts.dockerfile !== undefined && opts.dockerfile !== '-') {
          throw new InvalidInputError(
            'with a context of - and a Dockerfile on standard input, -f has nothing to name',
            'drop -f, send a context archive on standard input, or give a context directory',
          );
        }
        const text = await readStream(stream, 'the Dockerfile from standard input');
        return { dockerfileText: text, dockerfileName: 'Dockerfile', context: null, cleanup };
      }
      if (opts.dockerfile === '-')
        throw new InvalidInputError('-f - and a context archive on standard input cannot share standard input');
      tarball = true;
      root = await extractInto(stream, 'the build context from standard input');
    } else {
      const ctxPath = resolve(cwd, opts.context);
      const st = await stat(ctxPath).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT')
          throw new NotFoundError(
            `build context ${opts.context}`,
            'give a directory, a tar archive or - (a Dockerfile or a context archive on stdin)',
          );
        throw wrap(`reading build context ${opts.context}`, err);
      });
      if (st.isDirectory()) root = ctxPath;
      else if (st.isFile()) {
        tarball = true;
        root = await extractInto(createReadStream(ctxPath, { highWaterMark: 1 << 20 }), `build context ${ctxPath}`);
      } else throw new InvalidInputError(`build context ${opts.context} is neither a directory nor a tar archive`);
    }

    // The Dockerfile: -f relative to the working directory (inside the archive for a tarball context).
    let dfPath: string;
    let dockerfileText: string;
    if (opts.dockerfile === '-') {
      dfPath = join(root, 'Dockerfile');
      dockerfileText = await readStream(stdin, 'the Dockerfile from standard input');
    } else {
      const given = opts.dockerfile;
      if (given === undefined || given === '') dfPath = join(root, 'Dockerfile');
      else if (tarball) dfPath = join(root, safeRelative(given));
      else dfPath = isAbsolute(given) ? given : resolve(cwd, given);
      dockerfileText = await readDockerfile(dfPath, given ?? 'Dockerfile');
    }
    const dockerfileName = opts.dockerfile === '-' ? 'Dockerfile' : basename(dfPath);

    // The ignore file: <Dockerfile>.dockerignore next to the Dockerfile, else <context>/.dockerignore.
    let ignoreFile = '';
    let ignoreText: string | undefined;
    if (opts.dockerfile !== '-') {
      const specific = join(dirname(dfPath), `${basename(dfPath)}.dockerignore`);
      ignoreText = await readOptional(specific);
      if (ignoreText !== undefined) ignoreFile = specific;
    }
    if (ignoreText === undefined) {
      const general = join(root, '.dockerignore');
      ignoreText = await readOptional(general);
      if (ignoreText !== undefined) ignoreFile = general;
    }
    const patterns = ignoreText === undefined ? [] : readIgnorePatterns(ignoreText);
    return {
      dockerfileText,
      dockerfileName,
      context: { root, filter: makeFilter(root, patterns), patterns, ignoreFile, extracted: tarball },
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/**
 * readIgnorePatterns reads a .dockerignore (moby ignorefile rules): a UTF-8 BOM is dropped, lines starting with `#`
 * are comments, blank lines are skipped. A lone `!` is an error.
 */
export function readIgnorePatterns(text: string): string[] {
  const out: string[] = [];
  const body = text.startsWith('\ufeff') ? text.slice(1) : text;
  for (const [i, rawLine] of body.split(/\r?\n/).entries()) {
    if (rawLine.startsWith('#')) continue;
    const line = rawLine.trim();
    if (line === '') continue;
    if (line === '!') throw new InvalidInputError(`.dockerignore line ${i + 1}: illegal exclusion pattern: "!"`);
    out.push(line);
  }
  return out;
}

/**
 * makeFilter builds the context filter for `patterns`. A path is excluded when the patterns ignore it; an ignored
 * directory is kept (as a parent) when an exception pattern re-includes something below it.
 */
export function makeFilter(root: string, patterns: string[]): ContextFilter {
  if (patterns.length === 0) return { excluded: () => false };
  const ig: Ignore = ignore.default({ ignorecase: false }).add(patterns);
  const hasExceptions = patterns.some((p) => p.startsWith('!'));
  const dirMemo = new Map<string, boolean>();
  const ignored = (rel: string): boolean => rel !== '' && ig.ignores(rel);
  /** keepsSomething: does the ignored directory hold a path the patterns re-include? (memoized walk) */
  const keepsSomething = (rel: string): boolean => {
    const hit = dirMemo.get(rel);
    if (hit !== undefined) return hit;
    let keep = false;
    try {
      for (const d of readdirSyncSafe(join(root, rel))) {
        const child = `${rel}/${d.name}`;
        if (!ignored(child) || (d.isDirectory && keepsSomething(child))) {
          keep = true;
          break;
        }
      }
    } catch {
      keep = false;
    }
    dirMemo.set(rel, keep);
    return keep;
  };
  return {
    excluded(rel: string, isDir: boolean): boolean {
      if (!ignored(rel)) return false;
      return !(isDir && hasExceptions && keepsSomething(rel));
    },
  };
}

function readdirSyncSafe(dir: string): Array<{ name: string; isDirectory: boolean }> {
  return readdirSync(dir, { withFileTypes: true }).map((d) => ({ name: d.name, isDirectory: d.isDirectory() }));
}

/** safeRelative cleans a path given inside a tarball context: no leading '/', no climbing out. */
function safeRelative(p: string): string {
  const parts: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts.join('/');
}

async function readDockerfile(path: string, given: string): Promise<string> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NotFoundError(`Dockerfile ${given}`, 'give its path with -f, or - to read it from standard input');
    }
    throw wrap(`reading ${given}`, err);
  }
  if (st.size > MAX_DOCKERFILE) throw new InvalidInputError(`${given} is ${st.size} bytes: too large for a Dockerfile`);
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw wrap(`reading ${given}`, err);
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw wrap(`reading ${path}`, err);
  }
}

async function readStream(input: Readable, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of input) {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      size += b.length;
      if (size > MAX_DOCKERFILE) throw new InvalidInputError(`${what} is too large for a Dockerfile`);
      chunks.push(b);
    }
  } catch (err) {
    throw wrap(`reading ${what}`, err);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** extractTarball unpacks a context archive (plain or compressed tar) with the layer applier's safety rules. */
async function extractTarball(input: Readable, dir: string, what: string): Promise<void> {
  const [{ autoDecompress }, { applyLayer }] = await Promise.all([
    import('../layers/compress/compress.js'),
    import('../layers/tar/apply.js'),
  ]);
  const plain = autoDecompress();
  input.on('error', (err) => plain.destroy(err));
  try {
    await applyLayer(input.pipe(plain), { root: dir, whiteouts: 'delete' });
  } catch (err) {
    throw wrap(`extracting ${what}`, err);
  }
}

/** peek reads the first `n` bytes of a stream (fewer at its end) and gives back a stream of all of it. */
async function peek(input: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  const it = input[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const chunks: Buffer[] = [];
  let size = 0;
  let ended = false;
  try {
    while (size < n) {
      const r = await it.next();
      if (r.done) {
        ended = true;
        break;
      }
      const b = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
      chunks.push(b);
      size += b.length;
    }
  } catch (err) {
    throw wrap('reading standard input', err);
  }
  const head = Buffer.concat(chunks);
  async function* all(): AsyncGenerator<Buffer> {
    if (head.length) yield head;
    while (!ended) {
      const r = await it.next();
      if (r.done) return;
      yield typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    }
  }
  return { head, stream: Readable.from(all(), { objectMode: false }) };
}

/**
 * isTarHeader tells a tar archive from a Dockerfile by its first 512 bytes, as docker does for `build -`: the ustar
 * magic, or a valid header checksum (old v7 archives). Compressed input is told apart before (detectCompression).
 */
export function isTarHeader(head: Buffer): boolean {
  if (head.length < 512) return false;
  if (head.toString('latin1', 257, 262) === 'ustar') return true;
  const stored = Number.parseInt(
    head
      .toString('latin1', 148, 156)
      .replace(/[\0 ]+/g, ' ')
      .trim(),
    8,
  );
  if (!Number.isFinite(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : (head[i] as number);
  return sum === stored;
}

/**
 * lowercaseDockerfile is BuildKit's fallback without -f: a context directory without `Dockerfile` but with
 * `dockerfile` uses the latter. undefined leaves the default.
 */
export function lowercaseDockerfile(context: string, cwd?: string): string | undefined {
  if (context === '-') return undefined;
  const dir = resolve(cwd ?? process.cwd(), context);
  if (existsSync(join(dir, 'Dockerfile'))) return undefined;
  const lower = join(dir, 'dockerfile');
  return statSync(lower, { throwIfNoEntry: false })?.isFile() ? lower : undefined;
}

// Reading the build context ahead of the COPY that needs it. A COPY's cache key is the digest of every file it
// selects; on a first build that is a read of the whole selection, done when the COPY is reached, while nothing
// else runs. BuildKit transfers the context while the steps before the COPY run. prefetchContext does the same
// here: from the start of the build it hashes, into the context's FileDigests (builder/context-digests.ts, which
// decides when a digest read early may be used), the files under the literal sources of the plan's COPY and ADD
// instructions that read the context. It is only a head start, never a second source of truth:
// - it walks the context as the ignore file shows it, never follows a symlink, and reads nothing outside the
//   context directory;
// - a source that names a variable (`$VAR`) or that the walk cannot place is left to its COPY;
// - one file at a time, yielding to the event loop between files, so the steps' own work is not held up;
// - an error (a file removed or unreadable) ends the prefetch: the COPY reads the file itself and reports it;
// - it stops at the end of the build, or after MAX_BYTES of data or MAX_FILES files.
import type { Dirent } from 'node:fs';
import { lstatSync, readdirSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { BuildContext } from './context.js';
import type { Instruction } from './dockerfile/instructions.js';

/** MAX_BYTES and MAX_FILES: the most a prefetch reads (the rest of a larger context is read by its COPY as before). */
export const MAX_BYTES = 1 << 30;
export const MAX_FILES = 100_000;

/**
 * prefetchRoots gives the context paths ('' for the whole context) that the COPY and ADD instructions of
 * `instructions` read from the context: each source up to its first wildcard, without variables, URLs or git
 * references, sorted, and none inside another.
 */
export function prefetchRoots(instructions: readonly Instruction[]): string[] {
  const roots = new Set<string>();
  for (const ins of instructions) {
    if (ins.kind !== 'copy' && ins.kind !== 'add') continue;
    if (ins.kind === 'copy' && ins.from !== undefined) continue;
    for (const src of ins.sources) {
      if (src.includes('$') || /^[a-z][a-z0-9+.-]*:\/\//i.test(src) || src.startsWith('git@')) continue;
      const wild = src.search(/[*?[\\]/);
      const literal = wild < 0 ? src : src.slice(0, src.lastIndexOf('/', wild) + 1);
      const rel = posix.normalize(`/${literal}`).slice(1).replace(/\/+$/, '');
      if (rel === '..' || rel.startsWith('../')) continue; // normalize of an absolute path never gives these
      roots.add(rel);
    }
  }
  const sorted = [...roots].sort();
  return sorted.filter((r) => !sorted.some((o) => o !== r && (o === '' || r.startsWith(`${o}/`))));
}

/** Prefetch is a running prefetch: stop() ends it (after the file being read) and resolves when it has ended. */
export interface Prefetch {
  stop(): Promise<void>;
  /** resolves when the walk has ended, stopped or not */
  readonly finished: Promise<void>;
  /** files read and bytes read so far */
  readonly counts: { files: number; bytes: number };
}

/** prefetchContext starts reading `roots` of `context` into its digests (a no-op without digests or roots). */
export function prefetchContext(
  context: BuildContext,
  roots: readonly string[],
  limits: { maxBytes?: number; maxFiles?: number } = {},
): Prefetch {
  const maxBytes = limits.maxBytes ?? MAX_BYTES;
  const maxFiles = limits.maxFiles ?? MAX_FILES;
  const counts = { files: 0, bytes: 0 };
  const digests = context.digests;
  let stopped = false;
  const done = (async () => {
    if (!digests) return;
    // let the build's own first steps start before the walk takes its first turn
    await yieldTurn();
    const visit = async (rel: string): Promise<void> => {
      if (stopped || counts.bytes >= maxBytes || counts.files >= maxFiles) return;
      const abs = rel === '' ? context.root : join(context.root, rel);
      const st = lstatSync(abs, { throwIfNoEntry: false });
      if (!st) return;
      if (st.isDirectory()) {
        if (rel !== '' && context.filter.excluded(rel, true)) return;
        let names: Dirent[];
        try {
          names = readdirSync(abs, { withFileTypes: true });
        } catch {
          return;
        }
        for (const d of names) await visit(rel === '' ? d.name : `${rel}/${d.name}`);
        await yieldTurn();
        return;
      }
      if (!st.isFile() || context.filter.excluded(rel, false)) return;
      if (await digests.prefetch(abs, st)) {
        counts.files++;
        counts.bytes += st.size;
      }
      await yieldTurn();
    };
    for (const root of roots) if (insideContext(context.root, root)) await visit(root);
  })().catch(() => {}); // best effort: the COPY reads what was not read here
  return {
    counts,
    finished: done,
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

/**
 * insideContext tells whether every directory above `rel` in the context is a directory, not a symlink: a source
 * reached through a symlink is left to its COPY, so that the walk never reads through a link out of the context.
 */
function insideContext(root: string, rel: string): boolean {
  const parts = rel === '' ? [] : rel.split('/');
  let cur = root;
  for (const part of parts.slice(0, -1)) {
    cur = join(cur, part);
    const st = lstatSync(cur, { throwIfNoEntry: false });
    if (!st?.isDirectory()) return false;
  }
  return true;
}

function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

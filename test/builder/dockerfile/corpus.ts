// Where the upstream corpora live for builder tests: ../shared/corpora next to the checkout (computed from this
// file's location, never from the cwd). A user's clone has no such directory: corpus tests then register one
// skipped test whose title says so, instead of failing or passing with nothing checked.
import test from 'ava';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../helpers/index.js';

/** TSBUILD_CORPORA overrides the location (used to check the skip path). */
export const corporaDir = process.env['TSBUILD_CORPORA'] ?? join(repoRoot, '..', 'shared', 'corpora');
export const buildkitDir = join(corporaDir, 'buildkit-dockerfile');
export const haveBuildkitCorpus = existsSync(buildkitDir);

/** skipCorpus registers the visible skip used when the corpus is absent. */
export function skipCorpus(what: string): void {
  test.skip(`corpus ../shared/corpora not found: ${what} not checked`, () => {});
}

/** readCorpus reads a corpus file as UTF-8. */
export function readCorpus(...parts: string[]): string {
  return readFileSync(join(buildkitDir, ...parts), 'utf8');
}

/** corpusCases lists the case directories under a corpus folder, sorted. */
export function corpusCases(...parts: string[]): string[] {
  return readdirSync(join(buildkitDir, ...parts), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
}

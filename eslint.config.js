// ESLint flat config. `npm run lint` runs it over the source folders, then `prettier --check .`.
// Formatting is prettier's job (eslint-config-prettier turns off every rule that would disagree with it); this file
// keeps only checks that catch bugs, plus the two architecture rules of ARCHITECTURE.md:
//   1. imports run down: sys ← layers ← unionfs ← runtime ← builder, convert ← cli (builder and convert are peers);
//   2. privilege lives behind sys/: only sys/ imports koffi, node:child_process, chown or the libc syscalls, and only
//      sys/ asks for the process's uid/gid (everything else asks the Host: `host.caps()`).
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

/** What each folder may not import (relative imports that climb out of it into these top folders). */
const FORBIDDEN = {
  sys: ['layers', 'unionfs', 'runtime', 'builder', 'convert', 'cli'],
  layers: ['unionfs', 'runtime', 'builder', 'convert', 'cli'],
  unionfs: ['runtime', 'builder', 'convert', 'cli'],
  runtime: ['builder', 'convert', 'cli'],
  builder: ['convert', 'cli'], // convert and builder are peers
  convert: ['builder', 'cli'],
  fixtures: ['cli'], // fixtures may use anything below cli
};

/** Folders that may use privileged modules directly (sys/ is the seam; tests, benchmarks and scripts drive hosts). */
const PRIVILEGED = new Set(['sys']);
/**
 * Folders that may run host tools synchronously with node:child_process: fixtures/ makes test inputs (busybox
 * applets, bzip2/xz archives) while ava declares tests, before sys/exec.ts's async run() could be awaited.
 */
const MAY_SPAWN = new Set(['fixtures']);

const CHOWN = ['chown', 'lchown', 'fchown', 'chownSync', 'lchownSync', 'fchownSync'];
const SYSCALLS = ['mount', 'umount', 'mknod', 'unshare', 'pivotRoot', 'chroot'];

/** `../x/`, `../../x/`, …: a relative import that leaves the current folder and enters top folder x. */
const into = (dirs) => ({
  regex: `^(\\.\\./)+(${dirs.join('|')})(/|$)`,
  message: 'imports run down (sys ← layers ← unionfs ← runtime ← builder, convert ← cli); see ARCHITECTURE.md',
});

const spawnPaths = ['node:child_process', 'child_process'].map((name) => ({
  name,
  message: 'only sys/ starts processes: use sys/exec.ts (run, which) or the Host (sys/host.ts)',
}));
const privilegePaths = [
  { name: 'koffi', message: 'only sys/ loads native code: add the binding to sys/ (libc.ts, process.ts, seek.ts)' },
  ...['node:fs', 'fs', 'node:fs/promises', 'fs/promises'].map((name) => ({
    name,
    importNames: CHOWN,
    message: 'ownership changes go through the Host (host.chown / host.lchown) so tests can record them',
  })),
];
const privilegePatterns = [
  {
    group: ['**/sys/libc', '**/sys/libc.js'],
    importNames: SYSCALLS,
    message: 'mount/umount/mknod/unshare go through the Host (sys/host.ts), not libc directly',
  },
];

/** One no-restricted-imports per folder: flat config replaces (not merges) a rule's options, so compose them here. */
function restrictedImports(folder) {
  const patterns = [];
  if (FORBIDDEN[folder]) patterns.push(into(FORBIDDEN[folder]));
  const paths = [];
  if (!PRIVILEGED.has(folder)) {
    paths.push(...privilegePaths);
    if (!MAY_SPAWN.has(folder)) paths.push(...spawnPaths);
    patterns.push(...privilegePatterns);
  }
  return { 'no-restricted-imports': ['error', { paths, patterns }] };
}

const uidMessage = 'only sys/ asks who we are: use host.caps() (sys/host.ts)';
const uidGetters = ['getuid', 'geteuid', 'getgid', 'getegid'];
// Catches process.getuid(), process.getuid?.(), process['getuid'] and `const { getuid } = process` (checked by hand;
// test/sys/privilege-seam.test.ts greps for the same without eslint).
const privilegeProperties = {
  'no-restricted-properties': [
    'error',
    ...uidGetters.map((property) => ({ object: 'process', property, message: uidMessage })),
  ],
  // no-restricted-imports does not see `await import('…')`.
  'no-restricted-syntax': [
    'error',
    {
      selector: 'ImportExpression[source.value=/^(node:)?child_process$|^koffi$|(^|\\/)sys\\/libc(\\.js)?$/]',
      message: 'only sys/ imports koffi, node:child_process or sys/libc dynamically: go through the Host (sys/host.ts)',
    },
  ],
};

export default defineConfig(
  // fixtures/build/<case>/ are build contexts (data); fixtures/build/contexts.ts is code.
  { ignores: ['dist/**', 'node_modules/**', 'fixtures/build/*/**', 'fixtures/example/**', 'fixtures/export/**'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Off: every hit is a deliberate control-character class (sanitizing registry messages, Go's ASCII fast path).
      'no-control-regex': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
    },
  },
  // Architecture: import direction + the privilege seam, per top folder.
  ...['sys', 'layers', 'unionfs', 'runtime', 'builder', 'convert', 'cli', 'fixtures'].map((folder) => ({
    files: [`${folder}/**/*.ts`],
    rules: {
      ...restrictedImports(folder),
      ...(PRIVILEGED.has(folder) ? {} : privilegeProperties),
    },
  })),
  prettier,
);

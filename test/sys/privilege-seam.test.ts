// The privilege seam and the size budget, checked without eslint (eslint.config.js says the same as lint rules):
// outside sys/, no file starts processes, loads native code, changes ownership, calls the libc syscalls that need
// privilege, or asks for the process's uid/gid; and no source file grows past 500 lines (builder/execute.ts, the
// scheduler, stays under 400). Each check lists every offender as `file:line: text`, so one run shows all the work.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Folders whose code must reach privilege only through sys/ (the Host). */
const UNPRIVILEGED = ['cli', 'layers', 'builder', 'unionfs', 'runtime', 'convert'];
/** Folders whose files count against the size budget. */
const SOURCES = ['cli', 'sys', 'layers', 'builder', 'unionfs', 'runtime', 'convert'];
const MAX_LINES = 500;
const EXECUTE_MAX_LINES = 400;

const CHOWN = new Set(['chown', 'lchown', 'fchown', 'chownSync', 'lchownSync', 'fchownSync']);
const FS_MODULES = new Set(['node:fs', 'fs', 'node:fs/promises', 'fs/promises']);
const SYSCALLS = new Set(['mount', 'umount', 'mknod', 'unshare', 'pivotRoot', 'chroot']);

interface Source {
  path: string; // relative to the repository, with '/'
  text: string;
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...tsFiles(full));
    else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(full);
  }
  return out;
}

function sources(folders: string[]): Source[] {
  return folders
    .flatMap((folder) => tsFiles(join(ROOT, folder)))
    .map((full) => ({ path: relative(ROOT, full).split('\\').join('/'), text: readFileSync(full, 'utf8') }))
    .sort((a, b) => (a.path < b.path ? -1 : 1));
}

function lineOf(text: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

interface Import {
  specifier: string;
  names: string[]; // the imported (not local) names of `{ a, b as c }`; '*' for a namespace import
  index: number;
}

/** The static and dynamic imports of a file (named, default, namespace, side effect, `import('x')`). */
function importsOf(text: string): Import[] {
  const out: Import[] = [];
  const statement = /\b(?:import|export)\s+(?:type\s+)?([^;]*?)\s*from\s*['"]([^'"]+)['"]/g;
  for (const m of text.matchAll(statement)) {
    const clause = m[1] ?? '';
    const braces = /\{([^}]*)\}/.exec(clause);
    const names = braces
      ? (braces[1] ?? '')
          .split(',')
          .map(
            (s) =>
              s
                .trim()
                .replace(/^type\s+/, '')
                .split(/\s+as\s+/)[0] ?? '',
          )
          .filter(Boolean)
      : [];
    if (/\*\s*as\s/.test(clause)) names.push('*');
    out.push({ specifier: m[2] ?? '', names, index: m.index ?? 0 });
  }
  for (const m of text.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|\bimport\s+['"]([^'"]+)['"]/g)) {
    out.push({ specifier: m[1] ?? m[2] ?? '', names: ['*'], index: m.index ?? 0 });
  }
  return out;
}

interface Finding {
  path: string;
  line: number;
  what: string;
}

function findings(files: Source[], check: (file: Source) => Array<{ index: number; what: string }>): string[] {
  const out: Finding[] = [];
  for (const file of files) {
    for (const hit of check(file)) out.push({ path: file.path, line: lineOf(file.text, hit.index), what: hit.what });
  }
  return out.map((f) => `${f.path}:${f.line}: ${f.what}`);
}

const unprivileged = sources(UNPRIVILEGED);

const noneOutsideSys = test.macro({
  exec(t, check: (file: Source) => Array<{ index: number; what: string }>) {
    t.deepEqual(findings(unprivileged, check), []);
  },
  title: (provided) => `outside sys/, no file ${provided ?? ''}`,
});

test('asks for the uid or gid (process.getuid/geteuid/getgid/getegid)', noneOutsideSys, (file) =>
  [...file.text.matchAll(/\bprocess\s*(?:\?\.|\.)\s*gete?[ug]id\b|\bprocess\s*\[\s*['"]gete?[ug]id['"]\s*\]/g)].map(
    (m) => ({ index: m.index ?? 0, what: m[0] }),
  ),
);

test("imports 'node:child_process'", noneOutsideSys, (file) =>
  importsOf(file.text)
    .filter((i) => i.specifier === 'node:child_process' || i.specifier === 'child_process')
    .map((i) => ({ index: i.index, what: `import from '${i.specifier}'` })),
);

test("imports 'koffi'", noneOutsideSys, (file) =>
  importsOf(file.text)
    .filter((i) => i.specifier === 'koffi')
    .map((i) => ({ index: i.index, what: "import from 'koffi'" })),
);

test('changes ownership with node:fs (chown, lchown, fchown and their Sync forms)', noneOutsideSys, (file) => [
  ...importsOf(file.text)
    .filter((i) => FS_MODULES.has(i.specifier))
    .flatMap((i) =>
      i.names.filter((n) => CHOWN.has(n)).map((n) => ({ index: i.index, what: `${n} from '${i.specifier}'` })),
    ),
  // namespace or default imports: `fs.chownSync(…)`, `fsp.lchown(…)`
  ...[...file.text.matchAll(/\b(?:fs|fsp|promises)\.([lf]?chown(?:Sync)?)\s*\(/g)].map((m) => ({
    index: m.index ?? 0,
    what: m[0],
  })),
]);

test('imports mount, umount, mknod, unshare, pivotRoot or chroot from sys/libc', noneOutsideSys, (file) =>
  importsOf(file.text)
    .filter((i) => /(^|\/)sys\/libc(\.js)?$/.test(i.specifier))
    .flatMap((i) =>
      i.names
        .filter((n) => SYSCALLS.has(n) || n === '*')
        .map((n) => ({ index: i.index, what: `${n} from '${i.specifier}'` })),
    ),
);

test(`no source file is longer than ${MAX_LINES} lines`, (t) => {
  const long = sources(SOURCES)
    .map((f) => ({ path: f.path, lines: f.text.split('\n').length - (f.text.endsWith('\n') ? 1 : 0) }))
    .filter((f) => f.lines > MAX_LINES)
    .map((f) => `${f.path}: ${f.lines} lines`);
  t.deepEqual(long, []);
});

test(`builder/execute.ts (scheduling only) is shorter than ${EXECUTE_MAX_LINES} lines`, (t) => {
  const text = readFileSync(join(ROOT, 'builder/execute.ts'), 'utf8');
  const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
  t.true(lines < EXECUTE_MAX_LINES, `builder/execute.ts has ${lines} lines`);
});

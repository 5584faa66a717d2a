// Bundles the compiled CLI (dist/, which `tsc` wrote just before) so that a command starts by reading one file
// instead of resolving, reading and compiling about a hundred ES modules. Run by `npm run build` after tsc; writes
// dist/bundle/ (each file replaced atomically):
//
//   cli.js            the whole CLI as one function expression, (async function (require, meta, entry) { … }), so
//                     that bin/tsbuild.js can compile it with vm.Script and a V8 code cache (Node 20 has none for ES
//                     modules). It is called with a require for Node's modules and the native packages (koffi,
//                     zstd-napi), { url } (what import.meta.url was) and a callback that receives
//                     { ...sys/userns.js, main } (main runs cli/main.js: the command line). ASCII only.
//   cli-<hash>.cache  V8's code cache of cli.js made here (the code that runs when it loads); <hash>, the sha256 of
//                     cli.js that its first line also names, pairs the two: V8 checks only the source's length. A Node
//                     whose V8 differs rejects it and compiles from the source (slower, same result).
//   nsexec.js         the Node executor (sys/nsexec.ts) as one ES module: sys/namespaces.ts spawns the nsexec.js next
//                     to the code that runs, here cli.js.
//   commit-worker.js  the layer writer thread (unionfs/commit-worker.ts) as one ES module: unionfs/commit-thread.ts
//                     starts the commit-worker.js next to the code that runs, here cli.js.
//
// Nothing of dist/ changes: the bundle sits at the same depth as dist/cli/, so what the code finds from its own URL
// (../../package.json, ../../sys/nsexec.c) is the same file. Node's modules and the native packages stay outside;
// every other package is bundled, a few behind a stand-in that loads them on first use (LAZY).
// Usage: node scripts/bundle.mjs
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(repo, 'dist', 'bundle');
/** packages with native code: required from node_modules at run time */
const NATIVE = /^(koffi|zstd-napi)(\/|$)/;
const BUILTIN = new Set(builtinModules);
const outside = (path) => path.startsWith('node:') || BUILTIN.has(path) || NATIVE.test(path);

/**
 * viaRequire turns every import of an outside module into a require() of it, so the bundle holds no import
 * statement and no import(): it compiles as a plain script. A require() of one stays as it is.
 */
const viaRequire = {
  name: 'via-require',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (a) => {
      if (!outside(a.path)) return undefined;
      return a.kind === 'require-call' ? { path: a.path, external: true } : { path: a.path, namespace: 'via-require' };
    });
    b.onLoad({ filter: /.*/, namespace: 'via-require' }, (a) => ({
      contents: `module.exports = require(${JSON.stringify(a.path)});`,
      loader: 'js',
    }));
  },
};

/**
 * Packages that the commands need only now and then (a lock of the index, a tar, zstd) but that cost milliseconds to
 * load: each is bundled behind a stand-in with the same export names (read here) that loads it on first use.
 */
const LAZY = ['proper-lockfile', 'tar-stream', 'zstd-napi/binding.js'];
const requireHere = createRequire(join(repo, 'package.json'));

const lazyPackages = {
  name: 'lazy-packages',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (a) =>
      LAZY.includes(a.path) && a.namespace !== 'lazy' ? { path: a.path, namespace: 'lazy' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy' }, (a) => {
      const real = requireHere(a.path);
      const keys = Object.keys(real);
      // a native package stays outside (required at run time); a plain one is bundled, by its resolved path
      const target = NATIVE.test(a.path) ? a.path : requireHere.resolve(a.path);
      const lines = [
        `let loaded;`,
        `const load = () => (loaded ??= require(${JSON.stringify(target)}));`,
        typeof real === 'function'
          ? `const stand = function (...args) { return load().apply(this, args); };`
          : `const stand = {};`,
        `for (const key of ${JSON.stringify(keys)})`,
        `  Object.defineProperty(stand, key, { get: () => load()[key], enumerable: true, configurable: true });`,
        `module.exports = stand;`,
      ];
      return { contents: lines.join('\n'), loader: 'js', resolveDir: repo };
    });
  },
};

const common = {
  absWorkingDir: repo,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  logLevel: 'warning',
  legalComments: 'none',
  charset: 'ascii',
};

const ENTRY = `import * as userns from './dist/sys/userns.js';
__tsbuild_entry({ ...userns, main: () => import('./dist/cli/main.js') });`;

async function bundleCli() {
  const r = await build({
    ...common,
    stdin: { contents: ENTRY, resolveDir: repo, sourcefile: 'cli-entry.js', loader: 'js' },
    plugins: [lazyPackages, viaRequire],
    define: {
      'import.meta.url': '__tsbuild_meta.url',
      'import.meta.resolve': '__tsbuild_meta.resolve',
      // keys the seccomp filters runtime/exec/program.ts keeps on disk: a new compiler never reads an old one's
      __TSBUILD_SECCOMP_COMPILER: JSON.stringify(seccompCompilerHash()),
    },
    write: false,
  });
  const [file] = r.outputFiles;
  if (!file || r.outputFiles.length !== 1) throw new Error('bundle: expected one output file');
  if (/import\.meta/.test(file.text)) throw new Error('bundle: import.meta left in the CLI bundle');
  const body = `(async function (require, __tsbuild_meta, __tsbuild_entry) {\n'use strict';\n${ascii(shareNamespaces(file.text))}\n})\n`;
  const hash = createHash('sha256').update(body).digest('hex').slice(0, 32);
  const text = `// tsbuild CLI bundle ${hash}: made by scripts/bundle.mjs, loaded by bin/tsbuild.js\n${body}`;
  const path = join(out, 'cli.js');
  // Compiled here once: a syntax error (an import statement left over) fails the build, not the first command.
  const script = new Script(text, { filename: path });
  writeAtomic(join(out, `cli-${hash}.cache`), script.createCachedData());
  writeAtomic(path, text);
  return hash;
}

/** bundleModule bundles one more entry of dist/ as an ES module of its own in dist/bundle/NAME. */
async function bundleModule(name, entry) {
  const path = join(out, name);
  await build({
    ...common,
    entryPoints: [join(repo, 'dist', ...entry.split('/'))],
    external: ['koffi', 'zstd-napi', 'zstd-napi/*'],
    banner: {
      js: "import { createRequire as __tsbuildRequire } from 'node:module';\nconst require = __tsbuildRequire(import.meta.url);",
    },
    outfile: `${path}.${process.pid}.tmp`,
  });
  renameSync(`${path}.${process.pid}.tmp`, path);
}

/** seccompCompilerHash is a hash of the compiled seccomp compiler (dist/sys/seccomp/: the code and its tables). */
function seccompCompilerHash() {
  const dir = join(repo, 'dist', 'sys', 'seccomp');
  const h = createHash('sha256');
  for (const name of readdirSync(dir).sort())
    if (name.endsWith('.js')) h.update(name).update(readFileSync(join(dir, name)));
  return h.digest('hex').slice(0, 32);
}

/**
 * shareNamespaces makes esbuild's __toESM give every importer of a CommonJS module (Node's own modules come in as
 * such, through viaRequire) the same namespace object. esbuild makes one per importing module, each a fresh object
 * with a getter per export copied in: node:fs alone is imported by about 60 modules and has about 100 exports, so the
 * copies cost milliseconds at start. The namespace is only read (its getters read the module), so one is enough.
 */
function shareNamespaces(text) {
  const start = text.indexOf('var __toESM = (mod, isNodeMode, target2) =>');
  const end = text.indexOf('\n));\n', start);
  if (start < 0 || end < 0) throw new Error("bundle: esbuild's __toESM helper not found");
  const memo = [
    'var __toESMEach = __toESM, __namespaces = [new WeakMap(), new WeakMap()];',
    '__toESM = (mod, isNodeMode) => {',
    "  if (mod === null || (typeof mod !== 'object' && typeof mod !== 'function')) return __toESMEach(mod, isNodeMode);",
    '  const seen = __namespaces[isNodeMode ? 1 : 0];',
    '  let ns = seen.get(mod);',
    '  if (ns === undefined) seen.set(mod, (ns = __toESMEach(mod, isNodeMode)));',
    '  return ns;',
    '};',
  ].join('\n');
  const at = end + '\n));\n'.length;
  return `${text.slice(0, at)}${memo}\n${text.slice(at)}`;
}

/**
 * ascii escapes what esbuild's `charset: 'ascii'` leaves outside ASCII (comments kept in class bodies, regular
 * expression literals) as \\uXXXX, which means the same there, so that bin/tsbuild.js can read the file as latin1:
 * a one-byte string, about 3 ms faster to decode and to scan than UTF-8 for a megabyte.
 */
function ascii(text) {
  return text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function writeAtomic(path, data) {
  writeFileSync(`${path}.${process.pid}.tmp`, data);
  renameSync(`${path}.${process.pid}.tmp`, path);
}

readFileSync(join(repo, 'dist', 'cli', 'main.js')); // a clear ENOENT when tsc has not run
mkdirSync(out, { recursive: true });
// Each file replaces its old self atomically (a command starting meanwhile reads the old bundle or the new one).
const [hash] = await Promise.all([
  bundleCli(),
  bundleModule('nsexec.js', 'sys/nsexec.js'),
  bundleModule('commit-worker.js', 'unionfs/commit-worker.js'),
]);
for (const name of readdirSync(out))
  if (name.endsWith('.cache') && name !== `cli-${hash}.cache`) rmSync(join(out, name));

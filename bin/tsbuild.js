#!/usr/bin/env -S node --
// The tsbuild executable: a tiny shim over the compiled CLI (npm run build writes dist/).
// `--version` is answered here, before any module of the CLI is loaded. An ordinary user's command that works on
// a store runs again inside a user namespace of its own (rootless mode, sys/userns.ts).
//
// The CLI is loaded from dist/bundle/cli.js (scripts/bundle.mjs): one file compiled with a V8 code cache instead of
// about a hundred ES modules resolved, read and compiled one by one. The cache is the one the build made (the code
// that runs when the file loads), else, once a command has run, this user's cache for that command word, written
// after it ran (it then also holds the functions the command compiled), in $XDG_CACHE_HOME/tsbuild like the C
// helper. Without the bundle, or when tsc wrote dist/ after it (a bundle older than dist/cli/main.js is stale), the
// modules of dist/ are loaded as they are.
import {
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';

/** KEEP is how many code caches (one per bundle and command word) this user keeps. */
const KEEP = 24;

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-v')) {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`tsbuild, ${version}\n`);
} else if (process.env.TSBUILD_USERNS_INNER) {
  const cli = await loadCli();
  await cli.adoptUserNamespace();
  await cli.main();
  cli.saveCache();
} else {
  const cli = await loadCli();
  const code = cli.wantsUserNamespace(args) ? await cli.reexecInUserNamespace(args).catch(fail) : undefined;
  if (code === undefined) {
    await cli.main();
    cli.saveCache();
  } else process.exitCode = code;
}

/**
 * loadCli returns sys/userns.js's exports, `main`, which runs cli/main.js (the command line), and `saveCache`, which
 * writes this user's code cache for the command when there was none: from the bundle when it is there and not stale,
 * else from the modules of dist/ (and saveCache does nothing).
 */
async function loadCli() {
  const file = new URL('../dist/bundle/cli.js', import.meta.url);
  let text;
  try {
    if (statSync(file).mtimeMs >= statSync(new URL('../dist/cli/main.js', import.meta.url)).mtimeMs)
      text = readFileSync(file, 'latin1'); // ASCII only (scripts/bundle.mjs): a one-byte string
  } catch {
    // no bundle (or no dist/ at all: the import below says so)
  }
  if (text === undefined) {
    const userns = await import('../dist/sys/userns.js');
    return { ...userns, main: () => import('../dist/cli/main.js'), saveCache: () => {} };
  }
  const [{ createRequire }, { fileURLToPath }, { Script }, { homedir }, { dirname }] = await Promise.all([
    import('node:module'),
    import('node:url'),
    import('node:vm'),
    import('node:os'),
    import('node:path'),
  ]);
  // The first line names the text (V8 itself checks only the length of the source a cache was made from).
  const hash = /^\/\/ tsbuild CLI bundle ([0-9a-f]{32}):/.exec(text)?.[1];
  const dir = `${process.env.XDG_CACHE_HOME || `${homedir()}/.cache`}/tsbuild`;
  const word = /^[a-z]{1,20}$/.exec(commandWord(args))?.[0] ?? 'other';
  const mine = hash ? `${dir}/cli-${hash}-${process.version}-${word}.cache` : undefined;
  let cachedData = mine ? ownCache(mine) : undefined;
  const fresh = cachedData === undefined;
  if (fresh && hash) cachedData = readQuiet(new URL(`cli-${hash}.cache`, file));
  const script = new Script(text, { filename: fileURLToPath(file), ...(cachedData ? { cachedData } : {}) });
  let cli;
  await script.runInThisContext()(
    createRequire(file),
    { url: file.href, resolve: (specifier) => import.meta.resolve(specifier) },
    (exports) => (cli = exports),
  );
  const saveCache = () => {
    if (!fresh || !mine) return;
    try {
      // two levels by hand: a recursive mkdirSync loops forever under /proc (XDG_CACHE_HOME=/proc/x)
      for (const d of [dirname(dir), dir]) mkdirQuiet(d);
      writeFileSync(`${mine}.${process.pid}.tmp`, script.createCachedData(), { mode: 0o600 });
      renameSync(`${mine}.${process.pid}.tmp`, mine);
      // the newest KEEP stay: a few commands of a few checkouts (a cache of an old build of the bundle is never read)
      const caches = readdirSync(dir)
        .filter((name) => /^cli-.*\.cache$/.test(name))
        .map((name) => ({ path: `${dir}/${name}`, at: statSync(`${dir}/${name}`).mtimeMs }))
        .sort((a, b) => b.at - a.at);
      for (const old of caches.slice(KEEP)) rmSync(old.path, { force: true });
    } catch {
      // a read-only home: the next command compiles again
    }
  };
  return { ...cli, saveCache };
}

/**
 * ownCache reads a code cache of this user's, only when this user owns it and nobody else can write it: it is code
 * that runs (V8 trusts a cache it accepts).
 */
function ownCache(path) {
  let fd;
  try {
    fd = openSync(path, 'r');
    const st = fstatSync(fd);
    return st.uid === process.geteuid() && (st.mode & 0o022) === 0 ? readFileSync(fd) : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function mkdirQuiet(path) {
  try {
    mkdirSync(path, { mode: 0o700 });
  } catch (e) {
    if (e.code !== 'EEXIST') throw e;
  }
}

function readQuiet(path) {
  try {
    return readFileSync(path);
  } catch {
    return undefined;
  }
}

/** commandWord is the command of a command line (as sys/userns.ts commandOf): the first word after global flags. */
function commandWord(argv) {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--root') i++;
    else if (!a.startsWith('--root=') && a !== '--debug') return a.startsWith('-') ? '' : a;
  }
  return '';
}

/** fail reports a failure to set up the namespace as the CLI reports errors: one line, exit 1. */
function fail(err) {
  process.stderr.write(`error: ${err.message}${err.hint ? `\nhint: ${err.hint}` : ''}\n`);
  return 1;
}

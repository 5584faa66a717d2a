#!/usr/bin/env -S node --
// The tsbuild executable: a tiny shim over the compiled CLI (npm run build writes dist/).
// `--version` is answered here, before any module of the CLI is loaded. An ordinary user's command that works on
// a store runs again inside a user namespace of its own (rootless mode, sys/userns.ts).
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-v')) {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`tsbuild, ${version}\n`);
} else if (process.env.TSBUILD_USERNS_INNER) {
  const { adoptUserNamespace } = await import('../dist/sys/userns.js');
  await adoptUserNamespace();
  await import('../dist/cli/main.js');
} else {
  const userns = await import('../dist/sys/userns.js');
  const code = userns.wantsUserNamespace(args) ? await userns.reexecInUserNamespace(args).catch(fail) : undefined;
  if (code === undefined) await import('../dist/cli/main.js');
  else process.exitCode = code;
}

/** fail reports a failure to set up the namespace as the CLI reports errors: one line, exit 1. */
function fail(err) {
  process.stderr.write(`error: ${err.message}${err.hint ? `\nhint: ${err.hint}` : ''}\n`);
  return 1;
}

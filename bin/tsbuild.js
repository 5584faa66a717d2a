#!/usr/bin/env -S node --
// The tsbuild executable: a tiny shim over the compiled CLI (npm run build writes dist/).
// `--version` is answered here, before any module of the CLI is loaded.
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-v')) {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`tsbuild, ${version}\n`);
} else {
  await import('../dist/cli/main.js');
}

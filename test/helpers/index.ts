// Shared test helpers: temp dirs, root-only gating, running the built CLI.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const isRoot = process.getuid?.() === 0;

/**
 * rootTest registers a test that needs root (mounts, namespaces, device nodes, chown).
 * CI runs as root, so these run there; elsewhere they are skipped, and the title says why.
 */
export const rootTest: typeof test.serial = isRoot ? test.serial : (test.serial.skip as typeof test.serial);

/** makeTempDir makes a fresh directory; the caller (usually t.teardown) removes it with removeDir. */
export async function makeTempDir(prefix = 'tsbuild-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** runCommand runs a program, feeds it `input` (if any) and collects its output and exit status. */
export function runCommand(
  file: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: opts.cwd ?? repoRoot,
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
    );
    child.stdin.on('error', () => {}); // the command may exit before reading its input
    child.stdin.end(opts.input);
  });
}

/** tsbuild runs the built CLI (bin/tsbuild.js, compiled by `npm run build`) and collects its output. */
export function tsbuild(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer; cwd?: string } = {},
): Promise<CliResult> {
  // `--` ends Node's own options: Node 20 would take a `--env-file` among tsbuild's arguments for itself
  return runCommand(process.execPath, ['--', join(repoRoot, 'bin', 'tsbuild.js'), ...args], {
    ...opts,
    env: { ...process.env, ...opts.env },
  });
}

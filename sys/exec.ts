// The one chokepoint for host commands. Errors carry the argv and the end of stderr.
import { spawn, type SpawnOptions } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { MissingToolsError, ToolError } from './errors.js';

export interface ExecOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** bytes or text written to the command's stdin */
  input?: string | Uint8Array;
  /** pass stdio through instead of capturing (stdout/stderr come back empty) */
  inherit?: boolean;
  /** called with each chunk of stderr as it arrives (progress logs) */
  onStderr?: (chunk: string) => void;
  /** exit codes that do not count as failure */
  okCodes?: number[];
  signal?: AbortSignal;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** run executes argv[0] with the remaining arguments and resolves when it exits with an accepted code. */
export function run(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('run: empty argv');
  const spawnOpts: SpawnOptions = {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: opts.inherit
      ? ['inherit', 'inherit', 'inherit']
      : [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    signal: opts.signal,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, spawnOpts);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => {
      err.push(b);
      opts.onStderr?.(b.toString());
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') reject(new MissingToolsError([cmd], []));
      else reject(e);
    });
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      const ok = code === 0 || (code !== null && (opts.okCodes ?? []).includes(code));
      if (ok) resolve({ stdout, stderr, code: code ?? 0 });
      else reject(new ToolError(argv, code, stderr, signal));
    });
    if (opts.input !== undefined && child.stdin) {
      child.stdin.on('error', () => {});
      child.stdin.end(opts.input);
    }
  });
}

/** which finds an executable on PATH (plus the sbin directories, which root's tools live in). */
export function which(tool: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const p = join(dir, tool);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** requireTools reports every missing tool at once; `tools` maps a tool to the Debian package that has it. */
export function requireTools(tools: Record<string, string>): void {
  const missing = Object.keys(tools).filter((t) => which(t) === undefined);
  if (missing.length) throw new MissingToolsError(missing, [...new Set(missing.map((t) => tools[t] as string))]);
}

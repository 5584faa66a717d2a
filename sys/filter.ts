// Host commands as stream filters: bytes in on stdin, bytes out on stdout (bzip2 -dc, xz -dc).
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { Duplex } from 'node:stream';
import type { Readable, Writable } from 'node:stream';
import { MissingToolsError, ToolError } from './errors.js';

export interface FilterOptions {
  /** mapError rewrites the failure (a ToolError, or a spawn error) before the Duplex is destroyed with it. */
  mapError?: (err: Error) => Error;
}

/** How much of the command's stderr is kept for the error message. */
const STDERR_KEEP = 16 * 1024;

/**
 * spawnFilter runs argv as a filter and returns a Duplex: what is written goes to the command's stdin, what it
 * prints on stdout comes out. The readable side ends only after the command exited with status 0; any other exit,
 * or a signal, destroys the Duplex with a ToolError carrying the argv and the end of stderr (a missing command gives
 * MissingToolsError). Destroying the Duplex kills the command. The caller ends the writable side; back-pressure holds
 * both ways (stdout is paused while the reader is full).
 */
export function spawnFilter(argv: string[], opts: FilterOptions = {}): Duplex {
  return new FilterStream(argv, opts);
}

class FilterStream extends Duplex {
  private readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  private stderr = '';
  private exited = false;

  constructor(
    private readonly argv: string[],
    private readonly opts: FilterOptions,
  ) {
    super();
    const [cmd, ...args] = argv;
    if (!cmd) throw new Error('spawnFilter: empty argv');
    this.child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const { child } = this;
    // A command that exits early (corrupt input) closes its stdin: the exit status reports that, not EPIPE.
    child.stdin.on('error', () => {});
    child.stdout.on('data', (b: Buffer) => {
      if (!this.push(b)) child.stdout.pause();
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      this.stderr = (this.stderr + s).slice(-STDERR_KEEP);
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      this.exited = true;
      this.fail(e.code === 'ENOENT' ? new MissingToolsError([cmd], []) : e);
    });
    child.on('close', (code, signal) => {
      this.exited = true;
      if (this.destroyed) return;
      if (code === 0) this.push(null);
      else this.fail(new ToolError(this.argv, code, this.stderr, signal));
    });
  }

  private fail(err: Error): void {
    this.destroy(this.opts.mapError ? this.opts.mapError(err) : err);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const { stdin } = this.child;
    if (stdin.destroyed || stdin.writableEnded) return cb(); // the command is gone; its exit status will tell
    if (stdin.write(chunk)) return cb();
    const done = (): void => {
      stdin.off('drain', done);
      stdin.off('close', done);
      cb();
    };
    stdin.on('drain', done);
    stdin.on('close', done);
  }

  override _final(cb: (err?: Error | null) => void): void {
    const { stdin } = this.child;
    if (!stdin.destroyed) stdin.end();
    cb();
  }

  override _read(): void {
    this.child.stdout.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.exited) this.child.kill('SIGKILL');
    this.child.stdin.destroy();
    this.child.stdout.destroy();
    this.child.stderr.destroy();
    cb(err);
  }
}

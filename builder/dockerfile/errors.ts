// The one error type of the Dockerfile front end: a message that names the file and the line.

import { TsbuildError } from '../../sys/errors.js';

/**
 * DockerfileError is a Dockerfile the front end refuses. `message` is `file:line: reason` (`file: reason` when
 * `line` is 0, meaning the whole file); `reason` is the bare text; `endLine` is the last line of the instruction.
 */
export class DockerfileError extends TsbuildError {
  readonly file: string;
  readonly line: number;
  readonly endLine: number;
  readonly reason: string;

  constructor(opts: { file: string; line: number; endLine?: number; reason: string; hint?: string; cause?: unknown }) {
    const where = opts.line > 0 ? `${opts.file}:${opts.line}` : opts.file;
    super('E_DOCKERFILE', `${where}: ${opts.reason}`, {
      ...(opts.hint === undefined ? {} : { hint: opts.hint }),
      ...(opts.cause === undefined ? {} : { cause: opts.cause }),
    });
    this.file = opts.file;
    this.line = opts.line;
    this.endLine = opts.endLine ?? opts.line;
    this.reason = opts.reason;
  }

  override get name(): string {
    return 'DockerfileError';
  }
}

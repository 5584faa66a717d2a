// A pass-through that parses a tar stream as it flows and fails on entries no layer may hold.
import { posix } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import tar from 'tar-stream';
import { InvalidInputError, UnsafeEntryError } from '../../sys/errors.js';
import { installFastHeaderDecoder } from './header-fast.js';
import { installPaxCodec } from './pax.js';

/** checkEntryName refuses absolute names and names that climb out of the root; returns the cleaned name. */
export function checkEntryName(name: string, what = 'entry'): string {
  if (name.includes('\0')) throw new UnsafeEntryError(name, `${what} name contains a NUL byte`);
  if (name.startsWith('/')) throw new UnsafeEntryError(name, `${what} is an absolute path`);
  const clean = posix.normalize(name);
  if (clean === '..' || clean.startsWith('../')) throw new UnsafeEntryError(name, `${what} climbs out of the root`);
  return clean;
}

/**
 * TarCheck passes a tar stream through unchanged while parsing it; it fails the stream on the first entry
 * whose name or hardlink target is absolute or climbs out, and when the stream is not a tar at all.
 * `entries` counts what it saw.
 */
export class TarCheck extends Transform {
  private readonly extract = tar.extract();
  entries = 0;
  private readonly symlinks = new Set<string>();
  private failed: Error | undefined;
  constructor(private readonly label: string) {
    super({ highWaterMark: 1 << 20 });
    installPaxCodec();
    installFastHeaderDecoder(); // tar-stream's results, fewer allocations (layers/tar/header-fast.ts)
    this.extract.on('entry', (header, body, next) => {
      this.entries++;
      try {
        const name = checkEntryName(header.name);
        if ((name === '.' || name === '') && header.type !== 'directory')
          throw new UnsafeEntryError(header.name, 'it would change the type of the root directory');
        this.checkParents(header.name, name);
        if (header.type === 'link' && header.linkname) {
          const target = checkEntryName(header.linkname, 'hardlink target');
          this.checkParents(header.linkname, target);
          if (this.symlinks.has(target)) throw new UnsafeEntryError(header.name, `hardlink to the symlink ${target}`);
        }
        if (header.type === 'symlink') this.symlinks.add(name);
        else this.symlinks.delete(name);
      } catch (err) {
        this.failed = err as Error;
      }
      body.on('end', next);
      body.resume();
    });
    this.extract.on('error', (err) => {
      this.failed ??= new InvalidInputError(`${label}: not a valid tar archive: ${err.message}`);
    });
  }
  /** checkParents refuses an entry whose path passes through a symlink that an earlier entry of this tar created. */
  private checkParents(raw: string, clean: string): void {
    if (this.symlinks.size === 0) return;
    const parts = clean.split('/');
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (this.symlinks.has(prefix))
        throw new UnsafeEntryError(raw, `path passes through the symlink ${prefix} created by this layer`);
    }
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.failed) return cb(this.failed);
    // tar-stream's (streamx) write has no callback: honour its back-pressure through 'drain'.
    if (this.extract.write(chunk)) cb(null, chunk);
    else this.extract.once('drain', () => cb(this.failed ?? null, chunk));
  }
  override _flush(cb: TransformCallback): void {
    if (this.failed) return cb(this.failed);
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      cb(err ?? this.failed);
    };
    this.extract.once('finish', () => finish());
    this.extract.once('error', (err: Error) =>
      finish(new InvalidInputError(`${this.label}: not a valid tar archive: ${err.message}`)),
    );
    this.extract.end(undefined);
  }
}

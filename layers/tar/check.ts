// A pass-through that parses a tar stream as it flows and fails on entries no layer may hold.
import { posix } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { InvalidInputError, UnsafeEntryError } from '../../sys/errors.js';
import { TarFormatError, TarParser, type TarHeader } from './read.js';

/** checkEntryName refuses absolute names and names that climb out of the root; returns the cleaned name. */
export function checkEntryName(name: string, what = 'entry'): string {
  if (name.includes('\0')) throw new UnsafeEntryError(name, `${what} name contains a NUL byte`);
  if (name.startsWith('/')) throw new UnsafeEntryError(name, `${what} is an absolute path`);
  const clean = posix.normalize(name);
  if (clean === '..' || clean.startsWith('../')) throw new UnsafeEntryError(name, `${what} climbs out of the root`);
  return clean;
}

/**
 * TarCheck passes a tar stream through unchanged while parsing it (layers/tar/read.ts); it fails the stream on the
 * first entry whose name or hardlink target is absolute or climbs out, and when the stream is not a tar at all (or
 * not a whole one): before it passes on the chunk where that shows. `entries` counts what it saw.
 */
export class TarCheck extends Transform {
  entries = 0;
  private readonly symlinks = new Set<string>();
  private readonly parser: TarParser;
  constructor(private readonly label: string) {
    super({ highWaterMark: 1 << 20 });
    this.parser = new TarParser({
      header: (header) => {
        this.entries++;
        this.check(header);
      },
      data: () => {},
      end: () => {},
    });
  }
  private check(header: TarHeader): void {
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
  private failure(err: unknown): Error {
    if (err instanceof TarFormatError)
      return new InvalidInputError(`${this.label}: not a valid tar archive: ${err.message}`);
    return err as Error;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.parser.write(chunk); // the sink never waits
    } catch (err) {
      cb(this.failure(err));
      return;
    }
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    try {
      this.parser.end();
    } catch (err) {
      cb(this.failure(err));
      return;
    }
    cb();
  }
}

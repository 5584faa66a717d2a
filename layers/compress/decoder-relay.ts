// DecoderRelay: a Duplex in front of one decoder (chosen from the first bytes written, or fixed) that counts what
// goes in and what comes out, and stops a decoder whose output grows past the expansion limit (layers/limits.ts):
// a 50 MB gzip of 50 GB of zeros is refused after the floor, never written out in full.
import { Duplex } from 'node:stream';
import { expansionError, expansionLimit } from '../limits.js';

export interface ExpansionGuard {
  /** names the input in the error: `layer sha256:…`, `archive.tar.gz` */
  what: string;
  /** uncompressed/compressed ratio allowed (the floor always applies) */
  ratio: number;
  /** output always allowed, whatever the ratio */
  floor: number;
  /** the whole compressed size when known (a descriptor's size, a file's size); else the bytes read so far count */
  compressedSize?: number;
}

export interface RelayOptions {
  /** the bytes needed to choose (0: choose at once) */
  sniffBytes: number;
  /** chooses the decoder from the first bytes; `guard: false` for a pass-through (nothing to limit) */
  pick(head: Buffer): { decoder: Duplex; guard: boolean; name: string };
  guard?: ExpansionGuard;
}

export class DecoderRelay extends Duplex {
  /** the name `pick` gave, once chosen */
  chosen: string | undefined;
  private inner: Duplex | undefined;
  private head: Buffer[] = [];
  private headLength = 0;
  private bytesIn = 0;
  private bytesOut = 0;
  private limited = false;

  constructor(private readonly opts: RelayOptions) {
    super();
    if (opts.sniffBytes === 0) this.start();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.bytesIn += chunk.length;
    if (this.inner) return this.relay(this.inner, chunk, cb);
    this.head.push(chunk);
    this.headLength += chunk.length;
    if (this.headLength < this.opts.sniffBytes) return cb();
    this.relay(this.start(), this.takeHead(), cb);
  }

  private takeHead(): Buffer {
    const head = Buffer.concat(this.head);
    this.head = [];
    return head;
  }

  /** start chooses the decoder from the bytes so far (the caller writes them to it). */
  private start(): Duplex {
    const { decoder, guard, name } = this.opts.pick(Buffer.concat(this.head));
    this.chosen = name;
    this.limited = guard && this.opts.guard !== undefined;
    this.inner = decoder;
    decoder.on('data', (b: Buffer) => {
      if (this.destroyed) return;
      this.bytesOut += b.length;
      if (this.limited && this.overLimit()) return;
      if (!this.push(b)) decoder.pause();
    });
    decoder.on('end', () => this.push(null));
    decoder.on('error', (err) => this.destroy(err));
    return decoder;
  }

  private overLimit(): boolean {
    const g = this.opts.guard as ExpansionGuard;
    const compressed = g.compressedSize ?? this.bytesIn;
    const limit = expansionLimit(compressed, g.ratio, g.floor);
    if (this.bytesOut <= limit) return false;
    this.destroy(expansionError(g.what, g.ratio, compressed, limit));
    return true;
  }

  private relay(inner: Duplex, chunk: Buffer, cb: (err?: Error | null) => void): void {
    if (chunk.length === 0 || inner.write(chunk)) return cb();
    const done = (): void => {
      inner.off('drain', done);
      inner.off('close', done);
      cb();
    };
    inner.on('drain', done);
    inner.on('close', done);
  }

  override _final(cb: (err?: Error | null) => void): void {
    let inner = this.inner;
    if (!inner) {
      inner = this.start();
      const head = this.takeHead();
      if (head.length > 0) inner.write(head);
    }
    inner.end();
    inner.once('finish', () => cb());
  }

  override _read(): void {
    this.inner?.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.inner?.destroy();
    cb(err);
  }
}

import { InvalidInputError } from '../../sys/errors.js';
import type { TransferEvent } from '../../layers/registry/events.js';
import { pushImage } from '../../layers/registry/push.js';
import { compressionFlag, type GlobalFlags, openStore, out } from '../common.js';
import { humanSize, stderrProgress } from '../progress.js';

export interface RemoteFlags {
  insecure?: boolean;
  'ca-cert'?: string;
  jobs?: number | string;
}

export default async function push(
  name: string,
  dest: string | undefined,
  flags: GlobalFlags & RemoteFlags & { 'chunk-size'?: number | string; compression?: string },
): Promise<void> {
  const store = await openStore(flags);
  const display = transferDisplay('push');
  try {
    const chunk = flags['chunk-size'] === undefined ? undefined : byteCount(flags['chunk-size'], '--chunk-size');
    // a chunk is held in memory (it must be re-sendable)
    if (chunk && chunk > 1 << 30) throw new InvalidInputError('--chunk-size must be at most 1 GiB');
    const r = await pushImage(store, name, dest, {
      ...remoteOptions(flags),
      ...(chunk ? { chunkSize: chunk } : {}),
      compression: compressionFlag(flags.compression),
      onEvent: display.onEvent,
    });
    display.finish();
    display.log(
      `pushed ${r.name}: ${r.blobs.uploaded} blobs uploaded, ${r.blobs.mounted} mounted, ${r.blobs.exists} already there`,
    );
    out(r.digest);
  } finally {
    display.finish();
  }
}

/** remoteOptions reads the flags push, pull and login share. */
export function remoteOptions(flags: RemoteFlags): { insecure?: boolean; caCert?: string; jobs?: number } {
  const o: { insecure?: boolean; caCert?: string; jobs?: number } = {};
  if (flags.insecure) o.insecure = true;
  if (flags['ca-cert'] !== undefined && flags['ca-cert'] !== '') o.caCert = String(flags['ca-cert']);
  if (flags.jobs !== undefined) {
    const n = Number(flags.jobs);
    if (!Number.isInteger(n) || n < 1 || n > 32)
      throw new InvalidInputError(`--jobs must be a whole number from 1 to 32 (got ${JSON.stringify(flags.jobs)})`);
    o.jobs = n;
  }
  return o;
}

/** byteCount parses a size flag: plain bytes, or with a k/M/G suffix (binary units). */
export function byteCount(v: unknown, flag: string): number {
  const m = /^(\d+)\s*([kKmMgG]?)i?[bB]?$/.exec(String(v).trim());
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m?.[2] ?? '').toLowerCase()] ?? 1;
  const n = m ? Number(m[1]) * mult : NaN;
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InvalidInputError(`${flag} must be a positive number of bytes (got ${JSON.stringify(v)})`);
  return n;
}

interface BlobLine {
  digest: string;
  size: number;
  done: number;
  state: string;
}

const DONE_TEXT: Record<string, string> = {
  exists: 'already there',
  mounted: 'mounted',
  uploaded: 'pushed',
  cached: 'already stored',
  downloaded: 'pulled',
};

/**
 * transferDisplay draws push/pull progress on stderr: a bar per blob when stderr is a terminal, plain lines
 * otherwise. Results never go here (they go to stdout).
 */
export function transferDisplay(verb: 'push' | 'pull'): {
  onEvent: (e: TransferEvent) => void;
  log: (line: string) => void;
  finish: () => void;
} {
  const tty = process.stderr.isTTY === true && process.env.TERM !== 'dumb';
  const plain = stderrProgress();
  const lines = new Map<string, BlobLine>();
  let drawn = 0;
  let timer: NodeJS.Timeout | undefined;
  let finished = false;
  const short = (d: string): string => d.slice(7, 19);
  const draw = (): void => {
    timer = undefined;
    const width = Math.max(10, Math.min(30, (process.stderr.columns ?? 80) - 50));
    let text = drawn ? `\x1b[${drawn}A` : '';
    for (const l of lines.values()) {
      const frac = l.size ? Math.min(1, l.done / l.size) : 1;
      const fill = Math.round(frac * width);
      const bar =
        l.state === 'active'
          ? `[${'='.repeat(fill)}${' '.repeat(width - fill)}] ${humanSize(l.done)}/${humanSize(l.size)}`
          : (DONE_TEXT[l.state] ?? l.state);
      text += `\x1b[2K${short(l.digest)}  ${bar}\n`;
    }
    drawn = lines.size;
    process.stderr.write(text);
  };
  const schedule = (): void => {
    if (!finished && !timer) timer = setTimeout(draw, 100);
  };
  const log = (line: string): void => {
    if (tty && drawn) {
      // print above the board: move up, write, redraw below
      process.stderr.write(`\x1b[${drawn}A\x1b[J`);
      drawn = 0;
      plain.step(line);
      if (!finished) draw();
    } else plain.step(line);
  };
  const onEvent = (e: TransferEvent): void => {
    switch (e.type) {
      case 'blob-start':
        lines.set(e.digest, { digest: e.digest, size: e.size, done: 0, state: 'active' });
        if (tty) schedule();
        else plain.step(`${verb === 'push' ? 'uploading' : 'downloading'} ${e.digest} (${humanSize(e.size)})`);
        break;
      case 'blob-progress': {
        const l = lines.get(e.digest);
        if (l) l.done = e.done;
        if (tty) schedule();
        break;
      }
      case 'blob-done': {
        const l = lines.get(e.digest) ?? { digest: e.digest, size: e.size, done: e.size, state: e.outcome };
        l.state = e.outcome;
        l.done = e.size;
        lines.set(e.digest, l);
        if (tty) schedule();
        else plain.step(`${e.digest}: ${DONE_TEXT[e.outcome] ?? e.outcome}`);
        break;
      }
      case 'retry':
        log(`retry ${e.attempt}: ${e.what}: ${e.reason} (again in ${(e.delayMs / 1000).toFixed(1)}s)`);
        break;
      case 'manifest':
        log(`${verb === 'push' ? 'pushed' : 'fetched'} manifest ${e.digest}`);
        break;
      case 'compress':
        log(`compressing layer ${e.digest} (${humanSize(e.size)})`);
        break;
      case 'warning':
        plain.warn('registry', e.message);
        break;
    }
  };
  return {
    onEvent,
    log,
    finish: () => {
      if (finished) return;
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (tty && lines.size) draw();
      finished = true;
      drawn = 0; // the board stays on screen; later lines go below it
    },
  };
}

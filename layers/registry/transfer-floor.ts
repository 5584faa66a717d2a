// The transfer floor: a blob or manifest download must keep up a minimum average rate once a grace period is over,
// like curl's --speed-limit/--speed-time. It bounds every download by grace + size / rate, so a server that drips
// one byte every 20 s (which the socket idle timeout never catches) fails, while a large blob on a slow but
// working link is never cut by a fixed wall clock. Measured over the whole blob, across resumed connections.
//
// TSBUILD_REGISTRY_MIN_RATE (bytes per second, default 16384 = 128 kbit/s) and TSBUILD_REGISTRY_GRACE (seconds,
// default 60) change it; `ClientOptions.transferFloor` does the same for library callers.
import { TsbuildError } from '../../sys/errors.js';
import { positiveNumber } from '../limits.js';

export interface TransferFloor {
  /** time before the rate counts (ms): connection, TLS, auth, a slow first byte */
  graceMs: number;
  /** the lowest average rate accepted after the grace period */
  minBytesPerSec: number;
}

export const DEFAULT_TRANSFER_FLOOR: TransferFloor = { graceMs: 60_000, minBytesPerSec: 16 * 1024 };

/** transferFloor reads TSBUILD_REGISTRY_MIN_RATE and TSBUILD_REGISTRY_GRACE (a bad value is an error). */
export function transferFloor(env: NodeJS.ProcessEnv = process.env): TransferFloor {
  const read = (name: string): number | undefined => positiveNumber(env, name);
  const rate = read('TSBUILD_REGISTRY_MIN_RATE');
  const grace = read('TSBUILD_REGISTRY_GRACE');
  return {
    graceMs: grace === undefined ? DEFAULT_TRANSFER_FLOOR.graceMs : grace * 1000,
    minBytesPerSec: rate ?? DEFAULT_TRANSFER_FLOOR.minBytesPerSec,
  };
}

/**
 * TransferClock watches one download: `progress(bytes)` reports the bytes received so far; when they fall behind
 * grace + bytes / rate, `onLate` is called once with an error saying so. One timer, moved only when it fires.
 */
export class TransferClock {
  private readonly started = Date.now();
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private fired = false;
  private stopped = false;

  constructor(
    private readonly floor: TransferFloor,
    private readonly onLate: (err: Error) => void,
  ) {
    this.arm();
  }

  /** deadline is when `bytes` must have arrived by (ms since the epoch). */
  private deadline(): number {
    return this.started + this.floor.graceMs + (this.bytes / this.floor.minBytesPerSec) * 1000;
  }

  private arm(): void {
    this.timer = setTimeout(() => this.check(), Math.max(0, this.deadline() - Date.now()) + 1);
    this.timer.unref();
  }

  private check(): void {
    if (this.fired || this.stopped) return;
    if (Date.now() < this.deadline()) return this.arm();
    this.fired = true;
    const secs = ((Date.now() - this.started) / 1000).toFixed(1);
    this.onLate(
      new TsbuildError(
        'E_TOO_SLOW',
        `only ${this.bytes} bytes in ${secs} s, below the floor of ${this.floor.minBytesPerSec} bytes/s after ` +
          `${this.floor.graceMs / 1000} s: giving up`,
        {
          hint: 'a slow link? lower TSBUILD_REGISTRY_MIN_RATE (bytes/s, default 16384) or raise TSBUILD_REGISTRY_GRACE (s, default 60)',
        },
      ),
    );
  }

  progress(bytes: number): void {
    this.bytes = bytes;
  }

  /** late tells whether the floor was crossed. */
  get late(): boolean {
    return this.fired;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}

/** tooSlow names what was too slow in the transfer floor's error: `pulling blob sha256:… from …: only 3 bytes …`. */
export function tooSlow(what: string, reason: unknown): TsbuildError {
  const e = reason as TsbuildError;
  return new TsbuildError('E_TOO_SLOW', `${what}: ${e.message}`, e.hint ? { hint: e.hint } : {});
}

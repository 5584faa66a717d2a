// Go's time.ParseDuration, used by HEALTHCHECK --interval/--timeout/--start-period/--start-interval.

/** DurationError is a string time.ParseDuration rejects. */
export class DurationError extends Error {}

const UNIT_NS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n, // U+00B5 micro sign
  μs: 1_000n, // U+03BC Greek mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

const MAX = 1n << 63n;

/**
 * parseGoDuration returns nanoseconds for a Go duration string: a signed sequence of decimal numbers, each with an
 * optional fraction and a unit (ns, us, µs, ms, s, m, h), like "300ms", "-1.5h", "2h45m"; "0" needs no unit.
 * The result is exact up to 2^53 ns (about 104 days). Throws DurationError, with Go's messages.
 */
export function parseGoDuration(input: string): number {
  let s = input;
  let neg = false;
  if (s.startsWith('-') || s.startsWith('+')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0;
  const invalid = (): DurationError => new DurationError(`time: invalid duration "${input}"`);
  if (s === '') throw invalid();
  let total = 0n;
  while (s !== '') {
    if (!/^[0-9.]/.test(s)) throw invalid();
    const intPart = /^[0-9]*/.exec(s)![0];
    s = s.slice(intPart.length);
    let fracPart = '';
    let hasFrac = false;
    if (s.startsWith('.')) {
      s = s.slice(1);
      fracPart = /^[0-9]*/.exec(s)![0];
      s = s.slice(fracPart.length);
      hasFrac = fracPart.length > 0;
    }
    if (intPart === '' && !hasFrac) throw invalid();
    const unitMatch = /^[^0-9.]*/.exec(s)![0];
    if (unitMatch === '') throw new DurationError(`time: missing unit in duration "${input}"`);
    s = s.slice(unitMatch.length);
    const unit = UNIT_NS[unitMatch];
    if (unit === undefined) throw new DurationError(`time: unknown unit "${unitMatch}" in duration "${input}"`);
    const v = intPart === '' ? 0n : BigInt(intPart);
    if (v > MAX / unit) throw invalid();
    let part = v * unit;
    if (hasFrac) {
      // Go keeps fraction digits while they fit in 63 bits and scales with float64.
      let f = 0n;
      let scale = 1;
      for (const d of fracPart) {
        const nf = f * 10n + BigInt(d);
        if (nf >= MAX) break;
        f = nf;
        scale *= 10;
      }
      part += BigInt(Math.trunc(Number(f) * (Number(unit) / scale)));
      if (part > MAX) throw invalid();
    }
    total += part;
    if (total > MAX) throw invalid();
  }
  if (!neg && total > MAX - 1n) throw invalid();
  return neg ? -Number(total) : Number(total);
}

// Image history as BuildKit writes it: the created_by strings of each instruction (Go fmt verbs reproduced), the
// `buildkit.dockerfile.v0` comment, and the created times (a layer's time for its entry; an empty-layer entry
// takes the time of the latest layer before it, or of the first new layer; SOURCE_DATE_EPOCH overrides all).
import type { HealthConfig, HistoryEntry } from '../layers/model/types.js';
import { goQuote } from './dockerfile/go-strings.js';

export const HISTORY_COMMENT = 'buildkit.dockerfile.v0';

/** goQuoteList is Go's `%q` of a []string: `["a" "b"]`. */
export function goQuoteList(args: readonly string[]): string {
  return `[${args.map(goQuote).join(' ')}]`;
}

/** goList is Go's `%v` of a []string: `[a b]`. */
export function goList(args: readonly string[]): string {
  return `[${args.join(' ')}]`;
}

/** goDuration is Go's time.Duration.String() of a nanosecond count. */
export function goDuration(ns: number): string {
  if (ns === 0) return '0s';
  const neg = ns < 0;
  let n = Math.abs(ns);
  let out: string;
  if (n < 1e9) {
    // sub-second: ns, µs or ms with a fraction
    const units: Array<[number, string]> = [
      [1, 'ns'],
      [1e3, 'µs'],
      [1e6, 'ms'],
    ];
    let [div, unit] = units[0]!;
    for (const u of units) if (n >= u[0]) [div, unit] = u;
    out = `${trimFraction(n / div)}${unit}`;
  } else {
    const h = Math.floor(n / 3.6e12);
    n -= h * 3.6e12;
    const m = Math.floor(n / 6e10);
    n -= m * 6e10;
    const s = n / 1e9;
    out = `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${trimFraction(s)}s`;
  }
  return neg ? `-${out}` : out;
}

function trimFraction(v: number): string {
  return Number(v.toFixed(9)).toString();
}

/** healthString is Go's `%+v` of BuildKit's HealthcheckConfig. */
export function healthString(h: HealthConfig): string {
  return (
    `{Test:${goList(h.Test ?? [])} Interval:${goDuration(h.Interval ?? 0)} Timeout:${goDuration(h.Timeout ?? 0)} ` +
    `StartPeriod:${goDuration(h.StartPeriod ?? 0)} StartInterval:${goDuration(h.StartInterval ?? 0)} Retries:${h.Retries ?? 0}}`
  );
}

/** NewEntry marks a history entry written by this build; `layerTime` is set for one that has a layer. */
export interface NewEntry {
  layerTime?: string;
}

/**
 * HistoryLog tracks the entries a build adds (across stages built FROM each other) so that their created times can
 * be filled in at the end.
 */
export class HistoryLog {
  private readonly fresh = new WeakMap<HistoryEntry, NewEntry>();

  /** add makes a new entry; `layerTime` when it has a layer. */
  add(createdBy: string, layer: { time: string } | null): HistoryEntry {
    const e: HistoryEntry = { created_by: createdBy, comment: HISTORY_COMMENT };
    if (!layer) e.empty_layer = true;
    this.fresh.set(e, layer ? { layerTime: layer.time } : {});
    return e;
  }

  /**
   * finalize sets `created` on the new entries of `history`: with an epoch, the epoch; else a layer entry gets its
   * layer's time and an empty-layer entry the time of the latest layer entry before it (or, before any, of the
   * first new layer, or `now`).
   */
  finalize(history: HistoryEntry[], now: string, epoch?: string): HistoryEntry[] {
    const out = history.map((e) => ({ ...e }));
    const firstLayer = history.map((e) => this.fresh.get(e)?.layerTime).find((t) => t !== undefined);
    let t = firstLayer ?? now;
    for (const [i, e] of history.entries()) {
      const mark = this.fresh.get(e);
      if (!mark) continue;
      if (mark.layerTime !== undefined) t = mark.layerTime;
      const o = out[i]!;
      o.created = epoch ?? t;
      // keep the key order BuildKit writes: created, created_by, comment, empty_layer
      out[i] = {
        created: o.created,
        created_by: o.created_by,
        comment: o.comment,
        ...(o.empty_layer ? { empty_layer: true } : {}),
      } as HistoryEntry;
    }
    return out;
  }
}

/** epochTime formats SOURCE_DATE_EPOCH as RFC 3339. */
export function epochTime(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// Progress on stderr: a step log (plain) that never mixes with results on stdout.
export interface Progress {
  step(message: string): void;
  warn(code: string, message: string): void;
}

/** stderrProgress logs steps unless quiet; warnings always show. */
export function stderrProgress(opts: { quiet?: boolean } = {}): Progress {
  const start = Date.now();
  return {
    step(message) {
      if (opts.quiet) return;
      const secs = ((Date.now() - start) / 1000).toFixed(1);
      process.stderr.write(`[${secs.padStart(5)}s] ${message}\n`);
    },
    warn(code, message) {
      process.stderr.write(`warning: ${message} (${code})\n`);
    },
  };
}

/** humanSize prints bytes the way `docker images` does (decimal units). */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)}${units[i]}`;
}

/** sinceText prints a time as `3 minutes ago`. */
export function sinceText(iso: string | undefined, now = Date.now()): string {
  if (!iso) return 'N/A';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return 'N/A';
  const s = Math.max(0, Math.round((now - t) / 1000));
  const span = (n: number, unit: string): string => `${n} ${unit}${n === 1 ? '' : 's'} ago`;
  if (s < 60) return span(s, 'second');
  if (s < 3600) return span(Math.round(s / 60), 'minute');
  if (s < 86400) return span(Math.round(s / 3600), 'hour');
  if (s < 86400 * 30) return span(Math.round(s / 86400), 'day');
  if (s < 86400 * 365) return span(Math.round(s / (86400 * 30)), 'month');
  return span(Math.round(s / (86400 * 365)), 'year');
}

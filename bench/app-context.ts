// Issue 15's app context, shared by bench/build.ts (the app case) and bench/copy.ts: 20 directories × 100
// source-like files of 20 KiB (40 MB, 2,000 files) and config.txt ('v1').
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A deterministic text file of `size` bytes that compresses about as source code does (3–4×). */
export function sourceLike(seed: number, size: number): string {
  let x = seed;
  const rnd = (): number => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x;
  };
  let s = '';
  while (s.length < size)
    s += `const v${rnd() % 997} = fn${rnd() % 89}("${rnd().toString(36)}${rnd()
      .toString(36)
      .slice(0, rnd() % 6)}");\n`;
  return s.slice(0, size);
}

/** writeAppContext writes the app context into `ctx` (created). */
export function writeAppContext(ctx: string): void {
  for (let d = 0; d < 20; d++) {
    mkdirSync(join(ctx, 'src', `m${d}`), { recursive: true });
    for (let f = 0; f < 100; f++)
      writeFileSync(join(ctx, 'src', `m${d}`, `f${f}.js`), sourceLike(d * 1000 + f + 1, 20 * 1024));
  }
  writeFileSync(join(ctx, 'config.txt'), 'v1\n');
}

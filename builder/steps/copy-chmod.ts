// COPY/ADD --chmod: an octal mode, or symbolic clauses (chmod(1)'s syntax, as BuildKit accepts it) applied to each
// entry's own mode.
import { InvalidInputError } from '../../sys/errors.js';

/** ChmodSpec is a parsed --chmod: an octal mode, or symbolic clauses applied to each entry's own mode. */
export interface ChmodSpec {
  /** the octal value, when numeric */
  octal?: number;
  apply(mode: number, isDir: boolean): number;
}

/** parseChmod reads --chmod: octal up to 07777, or symbolic (`u=rwX,go=rX`, `+x`, `a-w`, `g=u`). */
export function parseChmod(spec: string): ChmodSpec {
  if (/^[0-9]/.test(spec)) {
    const n = Number.parseInt(spec, 8);
    if (!/^[0-7]+$/.test(spec) || n > 0o7777) {
      throw new InvalidInputError(
        `invalid chmod parameter: '${spec}'. it should be octal string and between 0 and 07777`,
      );
    }
    return { octal: n, apply: () => n };
  }
  const clauses = spec.split(',').map((clause) => {
    const m = /^([ugoa]*)((?:[-+=](?:[rwxXst]*|[ugo]))+)$/.exec(clause);
    if (!m)
      throw new InvalidInputError(
        `invalid chmod parameter: ${JSON.stringify(spec)}: bad clause ${JSON.stringify(clause)}`,
      );
    const who = m[1] || 'a';
    const ops = [...m[2]!.matchAll(/([-+=])([ugo]|[rwxXst]*)/g)].map((o) => ({ op: o[1]!, perms: o[2]! }));
    return { who, ops };
  });
  return {
    apply(mode: number, isDir: boolean): number {
      let m = mode & 0o7777;
      for (const { who, ops } of clauses) {
        let mask = 0;
        if (who.includes('u') || who.includes('a')) mask |= 0o4700;
        if (who.includes('g') || who.includes('a')) mask |= 0o2070;
        if (who.includes('o') || who.includes('a')) mask |= 0o1007;
        for (const { op, perms } of ops) {
          let bits = 0;
          if (perms === 'u' || perms === 'g' || perms === 'o') {
            const shift = perms === 'u' ? 6 : perms === 'g' ? 3 : 0;
            const v = (m >> shift) & 7;
            bits = (v << 6) | (v << 3) | v;
          } else {
            for (const p of perms) {
              if (p === 'r') bits |= 0o444;
              else if (p === 'w') bits |= 0o222;
              else if (p === 'x') bits |= 0o111;
              else if (p === 'X') {
                if (isDir || (mode & 0o111) !== 0) bits |= 0o111;
              } else if (p === 's') bits |= 0o6000;
              else if (p === 't') bits |= 0o1000;
            }
          }
          bits &= mask;
          if (op === '+') m |= bits;
          else if (op === '-') m &= ~bits;
          else m = (m & ~(mask & 0o777)) | bits;
        }
      }
      return m;
    },
  };
}

// Go string semantics the Dockerfile front end must reproduce byte for byte: what counts as a space, a letter or a
// digit (package unicode), strings.TrimSpace, strings.ToLower and strconv.Quote. BuildKit is written in Go and its
// corpora encode these rules, so we mirror them rather than use JavaScript's slightly different notions.

/** isGoSpace is Go's unicode.IsSpace: Latin-1 spaces incl. NEL and NBSP, plus Unicode White_Space (never U+FEFF). */
export function isGoSpace(ch: string): boolean {
  if (ch.length === 0) return false;
  const c = ch.codePointAt(0)!;
  if (c <= 0xff) return c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0x85 || c === 0xa0;
  return (
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

const letterRe = /^\p{L}$/u;
const digitRe = /^\p{Nd}$/u;
const printRe = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;

/** isGoLetter is Go's unicode.IsLetter (category L) for one code point. */
export function isGoLetter(ch: string): boolean {
  if (ch.length === 1) {
    const c = ch.charCodeAt(0);
    if (c < 0x80) return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  }
  return letterRe.test(ch);
}

/** isGoDigit is Go's unicode.IsDigit (category Nd) for one code point. */
export function isGoDigit(ch: string): boolean {
  if (ch.length === 1) {
    const c = ch.charCodeAt(0);
    if (c < 0x80) return c >= 0x30 && c <= 0x39;
  }
  return digitRe.test(ch);
}

/** goTrimLeftSpace drops leading isGoSpace characters. */
export function goTrimLeftSpace(s: string): string {
  let i = 0;
  while (i < s.length) {
    const ch = String.fromCodePoint(s.codePointAt(i)!);
    if (!isGoSpace(ch)) break;
    i += ch.length;
  }
  return s.slice(i);
}

/** goTrimSpace is strings.TrimSpace: drops leading and trailing isGoSpace characters. */
export function goTrimSpace(s: string): string {
  const left = goTrimLeftSpace(s);
  let end = left.length;
  while (end > 0) {
    // Every Go space is in the BMP, so one UTF-16 unit is one character here.
    if (!isGoSpace(left[end - 1]!)) break;
    end--;
  }
  return left.slice(0, end);
}

/** goToLower is strings.ToLower: a one-to-one mapping per code point (JavaScript's full mapping can grow 'İ'). */
export function goToLower(s: string): string {
  if (/^[\x00-\x7f]*$/.test(s)) return s.toLowerCase();
  let out = '';
  for (const ch of s) {
    const lower = ch.toLowerCase();
    out += lower.length === ch.length ? lower : String.fromCodePoint(lower.codePointAt(0)!);
  }
  return out;
}

/** goEqualFold is strings.EqualFold for the ASCII-only words the parser compares ("as"). */
export function goEqualFold(a: string, b: string): boolean {
  return goToLower(a) === goToLower(b);
}

/**
 * goQuote is strconv.Quote: a double-quoted Go string literal with Go's escapes. Printable characters (Unicode
 * letters, marks, numbers, punctuation, symbols and the ASCII space) are kept; everything else is escaped as
 * \a \b \f \n \r \t \v, \xHH below U+0020 and for DEL, \uHHHH or \UHHHHHHHH. A lone UTF-16 surrogate, which Go
 * strings cannot hold, is written as U+FFFD (what Go's decoder turns it into).
 */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    let c = ch.codePointAt(0)!;
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c >= 0x20 && c < 0x7f) out += String.fromCodePoint(c);
    else if (c >= 0x80 && c !== 0xfffd && printRe.test(ch)) out += ch;
    else if (c === 0xfffd) out += '\ufffd';
    else out += goEscape(c);
  }
  return out + '"';
}

function goEscape(c: number): string {
  switch (c) {
    case 0x07:
      return '\\a';
    case 0x08:
      return '\\b';
    case 0x0c:
      return '\\f';
    case 0x0a:
      return '\\n';
    case 0x0d:
      return '\\r';
    case 0x09:
      return '\\t';
    case 0x0b:
      return '\\v';
  }
  if (c < 0x20 || c === 0x7f) return `\\x${c.toString(16).padStart(2, '0')}`;
  if (c < 0x10000) return `\\u${c.toString(16).padStart(4, '0')}`;
  return `\\U${c.toString(16).padStart(8, '0')}`;
}

/** utf8Length is the number of bytes `s` takes in UTF-8 (lone surrogates count as U+FFFD, 3 bytes). */
export function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

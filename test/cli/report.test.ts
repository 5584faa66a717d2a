// cli/report.ts: what the user sees of an error. Every line it writes stays short (a 20 kB path in an ENAMETOOLONG
// message is elided in the middle), the start and the end of the message survive, and --debug adds the full text.
import test from 'ava';
import { InvalidInputError, TsbuildError } from '../../sys/errors.js';
import { boundLine, MAX_LINE, report } from '../../cli/report.js';

function capture(err: unknown, debug = false): { code: number; out: string } {
  let out = '';
  const code = report(err, { debug, write: (s) => (out += s) });
  return { code, out };
}

const longPath = `/srv/ctx/${'d'.repeat(250)}/`.repeat(80) + 'file.txt';

function enametoolong(): NodeJS.ErrnoException {
  const e = new Error(`ENAMETOOLONG: name too long, open '${longPath}'`) as NodeJS.ErrnoException;
  e.code = 'ENAMETOOLONG';
  return e;
}

test('an ENAMETOOLONG error of 20 kB is printed as one bounded line that keeps its start and its end', (t) => {
  const { code, out } = capture(enametoolong());
  t.is(code, 1);
  const lines = out.split('\n').filter(Boolean);
  t.true(
    lines.every((l) => l.length <= MAX_LINE),
    lines.map((l) => l.length).join(', '),
  );
  const first = lines[0] as string;
  t.true(first.startsWith('error: ENAMETOOLONG: name too long, open '), first.slice(0, 80));
  t.true(first.endsWith("file.txt'"), first.slice(-80));
  t.true(first.includes('…'));
});

test('a TsbuildError with a long value and a long hint gets bounded error and hint lines', (t) => {
  const err = new InvalidInputError(
    `COPY failed for ${'x'.repeat(5000)}: no such file`,
    `check ${'y'.repeat(3000)} exists`,
  );
  const { code, out } = capture(err);
  t.is(code, 1);
  const lines = out.split('\n').filter(Boolean);
  t.is(lines.length, 2);
  t.true(lines.every((l) => l.length <= MAX_LINE));
  t.regex(lines[0] as string, /^error: COPY failed for x+…x+: no such file$/);
  t.regex(lines[1] as string, /^hint: check y+…y+ exists$/);
});

test('an internal error is bounded too', (t) => {
  const { code, out } = capture(new TypeError(`cannot read ${'z'.repeat(10_000)}`));
  t.is(code, 70);
  t.true(out.split('\n').every((l) => l.length <= MAX_LINE));
});

test('with --debug the full message follows the bounded line', (t) => {
  const { out } = capture(enametoolong(), true);
  const lines = out.split('\n');
  t.true((lines[0] as string).length <= MAX_LINE);
  t.true(out.includes(longPath), 'the whole path is there once');
});

test('short messages are printed unchanged', (t) => {
  const { out } = capture(new TsbuildError('E_X', 'pulling blob sha256:abc: HTTP 500', { hint: 'try again' }));
  t.is(out, 'error: pulling blob sha256:abc: HTTP 500\nhint: try again\n');
});

test('boundLine elides long words first, then the middle of the line, and never breaks a surrogate pair', (t) => {
  t.is(boundLine('short'), 'short');
  const many = Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ');
  const b = boundLine(many);
  t.true(b.length <= MAX_LINE);
  t.true(b.startsWith('word0 word1 '));
  t.true(b.endsWith('word198 word199'));
  const emoji = '😀'.repeat(2000);
  const e = boundLine(`x ${emoji} y`);
  t.true(e.length <= MAX_LINE);
  t.false(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(e), 'no lone surrogate');
  t.true(e.startsWith('x 😀') && e.endsWith('😀 y'));
});

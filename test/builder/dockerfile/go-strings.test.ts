import test from 'ava';
import { goQuote, goToLower, goTrimSpace, isGoSpace } from '../../../builder/dockerfile/go-strings.js';

const quotes = test.macro({
  exec(t, input: string, expected: string) {
    t.is(goQuote(input), expected);
  },
  title: (_title, input: string, expected: string) => `goQuote(${JSON.stringify(input)}) is ${expected}`,
});

test(quotes, '', '""');
test(quotes, 'a b', '"a b"');
test(quotes, 'say "hi" \\o/', '"say \\"hi\\" \\\\o/"');
test(quotes, '\x07\b\f\n\r\t\v', '"\\a\\b\\f\\n\\r\\t\\v"');
test(quotes, '\x00\x1b\x7f', '"\\x00\\x1b\\x7f"');
test(quotes, 'é한국어😀', '"é한국어😀"');
test(quotes, '\u00a0\u0085\u00ad\u2028\ufeff', '"\\u00a0\\u0085\\u00ad\\u2028\\ufeff"');
test(quotes, '\u{e0001}\u{10ffff}', '"\\U000e0001\\U0010ffff"');
test(quotes, '\ud800', '"\ufffd"');

test('isGoSpace follows Go: NEL and NBSP are spaces, the BOM is not', (t) => {
  t.true(isGoSpace('\u0085'));
  t.true(isGoSpace('\u00a0'));
  t.true(isGoSpace('\u3000'));
  t.false(isGoSpace('\ufeff'));
  t.false(isGoSpace('\u200b'));
});

test('goTrimSpace trims Go spaces only', (t) => {
  t.is(goTrimSpace('\u00a0\t a b \u0085'), 'a b');
  t.is(goTrimSpace('\ufeffx'), '\ufeffx');
});

test('goToLower maps each character to one character', (t) => {
  t.is(goToLower('RUN'), 'run');
  t.is(goToLower('\u0130X'), 'ix');
});

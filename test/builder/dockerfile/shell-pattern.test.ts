import test from 'ava';
import { PatternError, replacePattern, trimPrefix, trimSuffix } from '../../../builder/dockerfile/shell-pattern.js';

// Expected values are Go's: the same pattern as a regexp (leftmost-first, `.` not matching "\n").
test('trimPrefix removes the shortest or the longest matching prefix', (t) => {
  t.is(trimPrefix('*/', 'a/b/c', false), 'b/c');
  t.is(trimPrefix('*/', 'a/b/c', true), 'c');
  t.is(trimPrefix('?', 'ab', false), 'b');
  t.is(trimPrefix('x', 'ab', false), 'ab');
  t.is(trimPrefix('', 'ab', true), 'ab');
  t.is(trimPrefix('*', 'ab', true), '');
  t.is(trimPrefix('*', 'ab', false), 'ab');
});

test('trimSuffix removes the shortest or the longest matching suffix', (t) => {
  t.is(trimSuffix('.*', 'a.tar.gz', false), 'a.tar');
  t.is(trimSuffix('.*', 'a.tar.gz', true), 'a');
  t.is(trimSuffix('\\*?', 'a*b', false), 'a');
  t.is(trimSuffix('a\\*', 'xa*', false), 'x');
});

test('wildcards do not cross a newline, as in Go', (t) => {
  t.is(trimPrefix('*b', 'a\nb', true), 'a\nb');
  t.is(trimPrefix('?', '\nb', true), '\nb');
  t.is(replacePattern('a*', 'ab\nab', 'X', true), 'X\nX');
});

test('characters are code points, not UTF-16 units', (t) => {
  t.is(trimPrefix('?', '😀x', false), 'x');
  t.is(trimSuffix('?', 'x😀', false), 'x');
});

test('regexp metacharacters and brackets are literal', (t) => {
  t.is(trimPrefix('[a]', '[a]b', false), 'b');
  t.is(replacePattern('.+', 'a.+b', '_', false), 'a_b');
});

test('replacePattern replaces the first or every greedy match', (t) => {
  t.is(replacePattern('b*', 'abcbd', 'X', false), 'aX');
  t.is(replacePattern('b?', 'abcbd', 'X', true), 'aXX');
  t.is(replacePattern('', 'ab', '-', true), '-a-b-');
  t.is(replacePattern('x*', 'abc', '-', true), 'abc');
  t.is(replacePattern('*', 'abc', '-', true), '-');
});

test('replacePattern with every match expands a Go template', (t) => {
  t.is(replacePattern('b', 'abc', '[$0|${0}|$$|$1|$]', true), 'a[b|b|$||$]c');
  t.is(replacePattern('b', 'abc', '[$0]', false), 'a[$0]c');
});

test('a bad escape in a pattern is refused', (t) => {
  t.throws(() => trimPrefix('\\x', 'a', false), { instanceOf: PatternError, message: "invalid escape '\\x'" });
  t.is(trimPrefix('\\}\\/', '}/x', false), 'x');
});

test('matching is linear in the value for hostile patterns', (t) => {
  const value = 'a'.repeat(30_000);
  const start = performance.now();
  t.is(trimPrefix('*a*a*a*a*a*a*a*a*b', value, true), value);
  t.is(replacePattern('a*a*a*b', value, 'x', true), value);
  t.true(performance.now() - start < 3000);
});

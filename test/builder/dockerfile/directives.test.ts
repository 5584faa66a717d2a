import test from 'ava';
import { DirectiveError, DirectiveScanner, trimContinuation } from '../../../builder/dockerfile/directives.js';

test('directive keys are case-insensitive and values are trimmed', (t) => {
  const d = new DirectiveScanner();
  d.observe('#  SYNTAX =  docker/dockerfile:1  ', 1);
  d.observe('#check=skip=all', 2);
  t.deepEqual(d.found, [
    { name: 'syntax', value: 'docker/dockerfile:1', line: 1 },
    { name: 'check', value: 'skip=all', line: 2 },
  ]);
});

test('directive parsing stops at the first other line', (t) => {
  const d = new DirectiveScanner();
  d.observe('', 1);
  d.observe('# escape=`', 2);
  t.is(d.escape, '\\');
  t.deepEqual(d.found, []);
});

test('a repeated directive or a bad escape value is an error', (t) => {
  const d = new DirectiveScanner();
  d.observe('# syntax=a', 1);
  t.throws(() => d.observe('# syntax=b', 2), {
    instanceOf: DirectiveError,
    message: 'only one syntax parser directive can be used',
  });
  t.throws(() => new DirectiveScanner().observe('# escape=ab', 1), { instanceOf: DirectiveError });
});

test('trimContinuation recognises the escape character at the end of a line', (t) => {
  t.deepEqual(trimContinuation('a \\', '\\'), { text: 'a ', continues: true });
  t.deepEqual(trimContinuation('a\\ \t', '\\'), { text: 'a', continues: true });
  t.deepEqual(trimContinuation('\\', '\\'), { text: '', continues: true });
  t.deepEqual(trimContinuation('a\\\\', '\\'), { text: 'a\\\\', continues: false });
  t.deepEqual(trimContinuation('a `', '`'), { text: 'a ', continues: true });
  t.deepEqual(trimContinuation('a \\', '`'), { text: 'a \\', continues: false });
});

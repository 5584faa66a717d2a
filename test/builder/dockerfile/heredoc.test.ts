import test from 'ava';
import {
  chompHeredoc,
  heredocsFromLine,
  parseHeredocWord,
  runHeredocScript,
} from '../../../builder/dockerfile/heredoc.js';

test('parseHeredocWord reads the name, fd, chomp and expand flags', (t) => {
  t.deepEqual(parseHeredocWord('<<EOF'), { name: 'EOF', expand: true, chomp: false, fd: 0 });
  t.deepEqual(parseHeredocWord('<<-EOF'), { name: 'EOF', expand: true, chomp: true, fd: 0 });
  t.deepEqual(parseHeredocWord('3<<"E O"'), { name: 'E O', expand: false, chomp: false, fd: 3 });
  t.deepEqual(parseHeredocWord("<<E'O'F"), { name: 'EOF', expand: false, chomp: false, fd: 0 });
  t.deepEqual(parseHeredocWord('<<E\\OF'), { name: 'EOF', expand: true, chomp: false, fd: 0 });
});

test('parseHeredocWord rejects words that are not heredoc openers', (t) => {
  t.is(parseHeredocWord('<<'), null);
  t.is(parseHeredocWord('<<-'), null);
  t.is(parseHeredocWord('cat<<EOF'), null);
  t.is(parseHeredocWord('<<<EOF'), null);
  t.is(parseHeredocWord('<<A B'), null);
});

test('heredocsFromLine finds every opener that is a whole shell word', (t) => {
  t.deepEqual(
    heredocsFromLine('RUN <<A cat "<<B" \'<<C\' \\<<D <<-E').map((h) => h.name),
    ['A', 'E'],
  );
  t.deepEqual(heredocsFromLine('RUN echo "unterminated <<A'), []);
});

test('chompHeredoc strips leading tabs from every line, nothing else', (t) => {
  t.is(chompHeredoc('\t\ta\n  \tb\n\tc\r\n'), 'a\n  \tb\nc\r\n');
});

test('runHeredocScript applies BuildKit RUN rules', (t) => {
  const h = (name: string, content: string, chomp = false) => ({ name, content, chomp, expand: true, fd: 0 });
  t.deepEqual(runHeredocScript('<<EOF', [h('EOF', 'echo a\n')]), { script: 'echo a\n' });
  t.deepEqual(runHeredocScript('<<-EOF', [h('EOF', '\techo a\n', true)]), { script: 'echo a\n' });
  t.deepEqual(runHeredocScript('<<EOF', [h('EOF', '#!/bin/sh\necho a\n')]), {
    script: '/dev/pipes/EOF',
    file: { path: '/dev/pipes/EOF', content: '#!/bin/sh\necho a\n', mode: 0o755 },
  });
  t.deepEqual(runHeredocScript('python3 <<EOF', [h('EOF', '#!x\nprint(1)\n')]), {
    script: 'python3 <<EOF\n#!x\nprint(1)\nEOF',
  });
});

import test from 'ava';
import { parseAst, type AstNode } from '../../../builder/dockerfile/ast.js';
import { dumpAst } from '../../../builder/dockerfile/ast-dump.js';
import { DockerfileError } from '../../../builder/dockerfile/errors.js';
import { corpusCases, haveBuildkitCorpus, readCorpus, skipCorpus } from './corpus.js';

// BuildKit parser goldens: the dump of every testfiles/<case>/Dockerfile equals its `result`, byte for byte.
if (haveBuildkitCorpus) {
  const cases = corpusCases('parser', 'testfiles');
  test('the parser golden corpus holds at least the 33 upstream cases', (t) => {
    t.true(cases.length >= 33, `found ${cases.length}`);
  });
  for (const name of cases) {
    test(`golden ${name}: the AST dump equals BuildKit's result`, (t) => {
      const ast = parseAst(readCorpus('parser', 'testfiles', name, 'Dockerfile'));
      t.is(dumpAst(ast), readCorpus('parser', 'testfiles', name, 'result'));
    });
  }

  const negatives = corpusCases('parser', 'testfiles-negative');
  test('the negative corpus holds at least the 4 upstream cases', (t) => {
    t.true(negatives.length >= 4, `found ${negatives.length}`);
  });
  for (const name of negatives) {
    test(`negative ${name}: parsing fails with a DockerfileError`, (t) => {
      const err = t.throws(() => parseAst(readCorpus('parser', 'testfiles-negative', name, 'Dockerfile')), {
        instanceOf: DockerfileError,
      });
      t.regex(err?.message ?? '', /^Dockerfile(:\d+)?: /);
    });
  }

  test('testfile-line: instructions start and end on the lines BuildKit reports', (t) => {
    const ast = parseAst(readCorpus('parser', 'testfile-line', 'Dockerfile'));
    t.deepEqual(
      ast.nodes.map((n) => [n.startLine, n.endLine]),
      [
        [5, 5],
        [11, 12],
        [17, 31],
      ],
    );
  });
} else {
  skipCorpus('BuildKit parser goldens, negative cases and line numbers');
}

const dumps = test.macro({
  exec(t, dockerfile: string, expected: string) {
    t.is(dumpAst(parseAst(dockerfile)), expected);
  },
  title: (title = '') => title,
});

test(
  'a line ending in an escaped escape character does not continue',
  dumps,
  'ENV C a\\\\\nENV D b\n',
  '(env "C" "a\\\\\\\\" "")\n(env "D" "b" "")\n',
);
test('an escape character alone on a line continues without adding text', dumps, 'RUN a \\\n\\\nb\n', '(run "a b")\n');
test('a continuation keeps the leading whitespace of the next line', dumps, 'RUN a\\\n   b\n', '(run "a   b")\n');
test(
  'comment lines inside a continuation are dropped, even indented',
  dumps,
  'RUN a \\\n   # note\n b\n',
  '(run "a  b")\n',
);
test('a commented-out instruction ending in \\ does not continue', dumps, '# RUN x \\\nFROM y\n', '(from "y")\n');
test('CRLF line endings are removed', dumps, 'FROM a\r\nRUN b \\\r\n c\r\n', '(from "a")\n(run "b  c")\n');
test('a UTF-8 byte-order mark before the first line is ignored', dumps, '\ufeffFROM a\n', '(from "a")\n');
test('keywords are case-insensitive and dumped in lowercase', dumps, 'fRoM a\n', '(from "a")\n');
test('unknown instructions are kept without arguments', dumps, 'FORM a b\n', '(form)\n');
test(
  'the escape directive switches continuation to the backtick',
  dumps,
  '# escape=`\nRUN a `\n b \\\n',
  '(run "a  b \\\\")\n',
);
test(
  'a directive after an instruction is a plain comment',
  dumps,
  'FROM a\n# escape=`\nRUN b `\n',
  '(from "a")\n(run "b `")\n',
);
test('an unknown directive ends directive parsing', dumps, '# foo=bar\n# escape=`\nRUN a `\n', '(run "a `")\n');
test('flags stop at a bare --', dumps, 'COPY --a=1 -- --b c\n', '(copy ["--a=1"] "--b" "c")\n');
test('flags may be quoted', dumps, 'COPY --chown="a b" x y\n', '(copy ["--chown=a b"] "x" "y")\n');
test('JSON with trailing text falls back to shell form', dumps, 'CMD ["a"] b\n', '(cmd "[\\"a\\"] b")\n');
test('JSON strings are decoded', dumps, 'RUN ["a\\u00e9", "\\t"]\n', '(run "aé" "\\t")\n');
test('non-printable characters are dumped with Go escapes', dumps, 'RUN a\u00a0b\u0007\n', '(run "a\\u00a0b\\a")\n');
test('ONBUILD nests its trigger', dumps, 'ONBUILD ADD --chown=a x y\n', '(onbuild (add ["--chown=a"] "x" "y"))\n');
test('ARG keeps quotes in its words', dumps, 'ARG a="b c" d\n', '(arg "a=\\"b c\\"" "d")\n');
test(
  'LABEL in key=value form gives triples',
  dumps,
  'LABEL a=b "c d"=e\n',
  '(label "a" "b" "=" "\\"c d\\"" "e" "=")\n',
);
test(
  'HEALTHCHECK separates the type from a JSON command',
  dumps,
  'HEALTHCHECK CMD ["a", "b"]\n',
  '(healthcheck "CMD" "a" "b")\n',
);

function node(dockerfile: string, i = 0): AstNode {
  const n = parseAst(dockerfile).nodes[i];
  if (!n) throw new Error('no such node');
  return n;
}

test('a heredoc body is read after the instruction line, line endings kept', (t) => {
  const n = node('FROM a\nRUN <<EOF\nline 1\r\n\tline 2\nEOF\nRUN b\n', 1);
  t.is(n.startLine, 2);
  t.is(n.endLine, 5);
  t.deepEqual(n.heredocs, [{ name: 'EOF', expand: true, chomp: false, fd: 0, content: 'line 1\r\n\tline 2\n' }]);
  t.deepEqual(n.args, ['<<EOF']);
});

test('several heredocs on one line are read in order', (t) => {
  const n = node('COPY <<A <<B /dst/\na\nA\nb\nB\n');
  t.deepEqual(
    n.heredocs.map((h) => [h.name, h.content]),
    [
      ['A', 'a\n'],
      ['B', 'b\n'],
    ],
  );
  t.is(n.endLine, 5);
});

test('<<- accepts a tab-indented terminator and keeps the body raw', (t) => {
  const n = node('RUN <<-EOF\n\tx\n\t\tEOF\n');
  t.deepEqual(n.heredocs, [{ name: 'EOF', expand: true, chomp: true, fd: 0, content: '\tx\n' }]);
});

test('a quoted heredoc name turns expansion off', (t) => {
  t.false(node('RUN <<"EOF"\nx\nEOF\n').heredocs[0]?.expand);
  t.false(node("RUN <<'EOF'\nx\nEOF\n").heredocs[0]?.expand);
  t.true(node('RUN <<EOF\nx\nEOF\n').heredocs[0]?.expand);
});

test('heredocs under ONBUILD are read too', (t) => {
  const n = node('ONBUILD RUN <<EOF\nx\nEOF\n');
  t.is(n.heredocs[0]?.content, 'x\n');
  t.is(n.endLine, 3);
});

test('exec-form RUN and other instructions have no heredocs', (t) => {
  const ast = parseAst('RUN ["<<EOF"]\nENV a=<<EOF\n');
  t.is(ast.nodes.length, 2);
  t.deepEqual(
    ast.nodes.map((n) => n.heredocs.length),
    [0, 0],
  );
});

test('a heredoc word glued to a command is not a heredoc', (t) => {
  t.deepEqual(node('RUN cat<<EOF\n').heredocs, []);
});

test('an unterminated heredoc is an error naming the instruction line', (t) => {
  const err = t.throws(() => parseAst('FROM a\nRUN <<EOF\nx\n'), { instanceOf: DockerfileError });
  t.is(err?.message, 'Dockerfile:2: unterminated heredoc <<EOF: no line "EOF" before the end of the file');
  t.is(err?.line, 2);
});

test('directives are reported with their lines and the escape in force', (t) => {
  const ast = parseAst('# syntax = docker/dockerfile:1 \n#ESCAPE=`\n\nFROM a\n');
  t.is(ast.escape, '`');
  t.deepEqual(ast.directives, [
    { name: 'syntax', value: 'docker/dockerfile:1', line: 1 },
    { name: 'escape', value: '`', line: 2 },
  ]);
});

test('empty continuation lines produce a warning on the empty line', (t) => {
  const ast = parseAst('RUN a \\\n\n b\n', { file: 'x/Dockerfile' });
  t.is(ast.warnings.length, 1);
  t.like(ast.warnings[0], { file: 'x/Dockerfile', line: 2, code: 'EmptyContinuationLine' });
});

test('a line over 65535 bytes is refused', (t) => {
  const ok = `RUN ${'x'.repeat(65531)}\n`;
  t.is(parseAst(ok).nodes.length, 1);
  const err = t.throws(() => parseAst(`FROM a\nRUN ${'é'.repeat(32766)}\n`), { instanceOf: DockerfileError });
  t.is(err?.message, 'Dockerfile:2: line is longer than the maximum of 65535 bytes');
});

test('a large hostile file parses in linear time', (t) => {
  // 1 MB of continuation lines, quotes and heredoc-looking words: one logical line, parsed quickly.
  const text = `RUN ${'a "b <<c \'d $e ${f \\\n'.repeat(50_000)}end\n`;
  const start = performance.now();
  const ast = parseAst(text);
  t.is(ast.nodes.length, 1);
  t.true(performance.now() - start < 5000);
});

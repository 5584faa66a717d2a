import test from 'ava';
import { expandWord, expandWords, ExpansionError, lexWord } from '../../../builder/dockerfile/expand.js';
import { haveBuildkitCorpus, readCorpus, skipCorpus } from './corpus.js';

// BuildKit's shell/envVarTest: `PLATFORM|input|expected`, read the way BuildKit's own test reads it. A (all) and U
// (unix) lines must give `expected` ("error": must throw); W (Windows) lines are skipped, each visibly.
if (haveBuildkitCorpus) {
  const env = { PWD: '/home', SHELL: 'bash', KOREAN: '한국어', NULL: '' };
  const counts = { A: 0, U: 0, W: 0 };
  readCorpus('shell', 'envVarTest')
    .split('\n')
    .forEach((rawLine, i) => {
      if (rawLine.startsWith('#')) return;
      const line = rawLine.trim();
      if (line === '') return;
      const fields = line.split('|').map((f) => f.trim());
      const [platform, input, expected] = fields as [string, string, string];
      const where = `envVarTest line ${i + 1}`;
      if (fields.length !== 3 || !['A', 'U', 'W'].includes(platform)) {
        test(`${where} is well formed`, (t) => t.fail(`bad line ${JSON.stringify(rawLine)}`));
        return;
      }
      counts[platform as 'A' | 'U' | 'W']++;
      if (platform === 'W') {
        test.skip(`${where} (Windows only): ${input}`, () => {});
      } else if (expected === 'error') {
        test(`${where}: ${input} is an error`, (t) => {
          t.throws(() => expandWord(input, env), { instanceOf: ExpansionError });
        });
      } else {
        test(`${where}: ${input} expands to ${JSON.stringify(expected)}`, (t) => {
          t.is(expandWord(input, env), expected);
        });
      }
    });
  test('envVarTest has lines for all platforms, unix and Windows', (t) => {
    t.log(`A=${counts.A} U=${counts.U} W=${counts.W} (W skipped)`);
    t.true(counts.A > 200 && counts.U > 0 && counts.W > 0);
  });

  // BuildKit's shell/wordsTest: `ENV k=v` lines build the environment; `input|w1,w2,…` gives the expected words.
  const wordsEnv: Record<string, string> = {};
  let wordLines = 0;
  readCorpus('shell', 'wordsTest')
    .split('\n')
    .forEach((line, i) => {
      if (line.startsWith('#') || line === '') return;
      if (line.startsWith('ENV ')) {
        const kv = line.slice(3).replace(/^ +/, '');
        const eq = kv.indexOf('=');
        if (eq < 0) wordsEnv[kv] = '';
        else wordsEnv[kv.slice(0, eq)] = kv.slice(eq + 1);
        return;
      }
      const fields = line.split('|');
      const where = `wordsTest line ${i + 1}`;
      if (fields.length !== 2) {
        test(`${where} is well formed`, (t) => t.fail(`bad line ${JSON.stringify(line)}`));
        return;
      }
      wordLines++;
      const input = fields[0]!.trim();
      const expected = fields[1]!.replace(/^ +/, '').split(',');
      const env = { ...wordsEnv };
      test(`${where}: ${input} splits into ${JSON.stringify(expected)}`, (t) => {
        let words: string[];
        try {
          words = expandWords(input, env);
        } catch (err) {
          t.true(err instanceof ExpansionError);
          words = ['error'];
        }
        t.deepEqual(words, expected);
      });
    });
  test('wordsTest has word-splitting lines', (t) => {
    t.true(wordLines > 20, `found ${wordLines}`);
  });
} else {
  skipCorpus('BuildKit shell/envVarTest and shell/wordsTest');
}

const expands = test.macro({
  exec(t, input: string, env: Record<string, string>, expected: string) {
    t.is(expandWord(input, env), expected);
  },
  title: (_title, input: string, env: Record<string, string>, expected: string) =>
    `${input} with ${JSON.stringify(env)} expands to ${JSON.stringify(expected)}`,
});

const v = { v: 'a/b/c.tar.gz', e: '', n: 'x\ny' };
test(expands, '${v#*/}', v, 'b/c.tar.gz');
test(expands, '${v##*/}', v, 'c.tar.gz');
test(expands, '${v%.*}', v, 'a/b/c.tar');
test(expands, '${v%%.*}', v, 'a/b/c');
test(expands, '${v#a?b}', v, '/c.tar.gz');
test(expands, '${v#zzz}', v, 'a/b/c.tar.gz');
test(expands, '${v/\\//_}', v, 'a_b/c.tar.gz');
test(expands, '${v//\\//_}', v, 'a_b_c.tar.gz');
test(expands, '${v/b*/X}', v, 'a/X');
test(expands, '${v//[./}', v, 'a/b/c.tar.gz');
test(expands, '${v//./-}', v, 'a/b/c-tar-gz');
test(expands, '${v/#/x}', v, 'a/b/c.tar.gz');
test(expands, '${v///x}', { v: 'ab' }, 'xaxbx');
// The lexer expands `$0` in the replacement (to ""); an escaped `\$0` reaches Go's template and means the match.
test(expands, '${v//a/[$0]}', { v: 'aba' }, '[]b[]');
test(expands, '${v//a/<\\$0>}', { v: 'aba' }, '<\\a>b<\\a>');
test(expands, '${v#\\*}', { v: '*x' }, 'x');
test(expands, '${v%\\}}', { v: 'x}' }, 'x');
test(expands, '${n#*y}', v, 'x\ny');
test(expands, '${u#x}${u%x}${u/x/y}', v, '');
test(expands, '${e:-default}/${e-unset}', v, 'default/');
test(expands, '${e:+set}/${e+set}', v, '/set');
test(expands, '${e?}', v, '');
test(expands, '"${v%/*}"\'$v\'\\$v', v, 'a/b$v$v');
test(expands, '${constructor}${toString:-unset}', {}, 'unset');
test(expands, '$$ $1 $# ${#} $@x', {}, '    x');
test(expands, '$(id) `id`', {}, '$(id) `id`');

const refuses = test.macro({
  exec(t, input: string, message: string) {
    const err = t.throws(() => expandWord(input, {}), { instanceOf: ExpansionError });
    t.is(err?.message, message);
    t.is(err?.code, 'E_EXPAND');
  },
  title: (_title, input: string) => `${input} is refused with a clear message`,
});

// BuildKit's lexer: a colon takes only -, + and ? (lex_test.go TestProcessWithMatches, ${FOO:#} and friends)
test(refuses, '${v:#a}', 'failed to process "${v:#a}": unsupported modifier (:#) in substitution');
test(refuses, '${v:%%}', 'failed to process "${v:%%}": unsupported modifier (:%) in substitution');
test(refuses, '${}', 'failed to process "${}": syntax error: bad substitution');
test(refuses, '${v', `failed to process "\${v": unsupported modifier (\ufffd) in substitution`);
test(refuses, '${v:-a', 'failed to process "${v:-a": syntax error: missing \'}\'');
test(refuses, '${v/a}', 'failed to process "${v/a}": syntax error: missing \'/\' in ${}');
test(refuses, '${v?must be set}', 'failed to process "${v?must be set}": v: must be set');
test(refuses, '${v:?}', 'failed to process "${v:?}": v: is not allowed to be unset');
test(refuses, '${v:=x}', 'failed to process "${v:=x}": unsupported modifier (:=) in substitution');
test(
  refuses,
  '${v#\\a}',
  'failed to process "${v#\\\\a}": invalid pattern (\\a) in substitution: invalid escape \'\\a\'',
);
test(
  refuses,
  "'open",
  'failed to process "\'open": unexpected end of statement while looking for matching single-quote',
);
test(
  refuses,
  '"open',
  'failed to process "\\"open": unexpected end of statement while looking for matching double-quote',
);

test('an empty value fails ${v:?} with "empty", not "unset"', (t) => {
  t.throws(() => expandWord('${v:?}', { v: '' }), { message: /v: is not allowed to be empty$/ });
});

test('a Map works as the environment', (t) => {
  t.is(expandWord('$a-${b}', new Map([['a', '1']])), '1-');
});

test('the backtick escape character escapes like the backslash does', (t) => {
  t.is(expandWord('a`$b`"c\\d', { b: 'x' }, { escape: '`' }), 'a$b"c\\d');
  t.deepEqual(expandWords('a` b c', {}, { escape: '`' }), ['a b', 'c']);
});

test('an unquoted expansion splits into words, a quoted one does not', (t) => {
  const env = { s: ' x  y ' };
  t.deepEqual(expandWords('a${s}b', env), ['a', 'x', 'y', 'b']);
  t.deepEqual(expandWords('a"${s}"b', env), ['a x  y b']);
  t.deepEqual(expandWords('"" \'\' x', env), ['x']);
});

test('lexWord reports which variables were set and which were not', (t) => {
  const r = lexWord('$a ${b:-x} ${c}', { a: '1', c: '' });
  t.deepEqual([...r.matched].sort(), ['a', 'c']);
  t.deepEqual([...r.unmatched], ['b']);
});

test('skipUnsetEnv leaves references to unset variables as written', (t) => {
  t.is(lexWord('$a ${b} ${c:-d} ${e/f/g} $x', { x: '1' }, { skipUnsetEnv: true }).result, '$a ${b} ${c:-d} ${e/f/g} 1');
});

test('rawQuotes and rawEscapes keep quote and escape characters', (t) => {
  t.is(lexWord(`"a\\"b" 'c'`, {}, { rawQuotes: true, rawEscapes: true }).result, `"a\\"b" 'c'`);
});

test('hostile nesting is refused instead of overflowing the stack', (t) => {
  const deep = '${a:-'.repeat(5000) + 'x' + '}'.repeat(5000);
  t.throws(() => expandWord(deep, {}), { instanceOf: ExpansionError, message: /nested deeper than 1000 levels/ });
  const ok = '${a:-'.repeat(500) + 'x' + '}'.repeat(500);
  t.is(expandWord(ok, {}), 'x');
});

test('a long value and a long pattern stay fast', (t) => {
  const value = 'ab'.repeat(20_000);
  const start = performance.now();
  t.is(expandWord('${v##*a*a*a*a*a*b}', { v: value }), '');
  t.is(expandWord('${v//a?a/x}', { v: value }), 'xb'.repeat(10_000));
  t.true(performance.now() - start < 3000);
});

import test from 'ava';
import { closest, FlagError, INSTRUCTION_FLAGS, parseFlags } from '../../../builder/dockerfile/flags.js';

test('flags are collected by name; repeatable ones keep every value in order', (t) => {
  t.deepEqual(parseFlags('run', ['--mount=a', '--network=none', '--mount=b'], INSTRUCTION_FLAGS['run']), {
    mount: ['a', 'b'],
    network: ['none'],
  });
});

test('boolean flags accept a bare name, true and false', (t) => {
  t.deepEqual(parseFlags('copy', ['--link', '--parents=FALSE'], INSTRUCTION_FLAGS['copy']), {
    link: ['true'],
    parents: ['false'],
  });
  t.throws(() => parseFlags('copy', ['--link='], INSTRUCTION_FLAGS['copy']), { instanceOf: FlagError });
});

test('a flag value may contain = and be empty', (t) => {
  t.deepEqual(parseFlags('copy', ['--chown=a=b', '--chmod='], INSTRUCTION_FLAGS['copy']), {
    chown: ['a=b'],
    chmod: [''],
  });
});

test('names of Object.prototype are unknown flags, not crashes', (t) => {
  t.throws(() => parseFlags('copy', ['--constructor=x'], INSTRUCTION_FLAGS['copy']), {
    message: /unknown flag: --constructor/,
  });
});

test('closest suggests the nearest name within two edits', (t) => {
  t.is(closest('form', ['from', 'run']), 'from');
  t.is(closest('chwon', ['chmod', 'chown']), 'chown');
  t.is(closest('zzzzzz', ['from']), undefined);
});

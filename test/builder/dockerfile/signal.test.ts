import test from 'ava';
import { parseSignal } from '../../../builder/dockerfile/signal.js';

test('signals are accepted by name, with or without SIG, in any case', (t) => {
  t.is(parseSignal('SIGTERM'), 15);
  t.is(parseSignal('kill'), 9);
  t.is(parseSignal('SigRtMin+3'), 37);
  t.is(parseSignal('RTMAX-1'), 63);
});

test('signals are accepted by non-zero number', (t) => {
  t.is(parseSignal('9'), 9);
  t.is(parseSignal('0'), null);
});

test('unknown names are not signals', (t) => {
  t.is(parseSignal('SIGFOO'), null);
  t.is(parseSignal('constructor'), null);
  t.is(parseSignal(''), null);
});
